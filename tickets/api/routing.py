"""Routing over the API: the rules (admins change them, supervisors read them), skills (admins
change them, every staff member reads them), a dry run of the rules on one ticket, and
running routing on a ticket now (supervisors).

Rules and skills are configuration, written here like the rest of `config.py`; running
routing changes a ticket, so it goes through `tickets.actions.do_route_ticket`. The rule
format is documented in `tickets.routing`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone
from django.utils.text import slugify
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from tickets import actions, routing
from tickets.errors import Conflict, NotFound
from tickets.models import ACTIVE_STATUSES, Priority, RoutingRule, Skill, Ticket
from tickets.queue import visible_filter

from .common import (
    RejectUnknownFieldsMixin,
    StaffAPIMixin,
    StrictSerializer,
    check_storable_json,
    parse_id,
    validated,
)
from .config import ConfigViewSet, config_schema
from .permissions import IsStaffMember, IsSupervisor, ReadOrAdmin, agent_of
from .schema import errors
from .serializers import TicketDetailSerializer
from .views import TAGS, TICKET_RELATED


class SupervisorReadAdminWrite(BasePermission):
    """Routing rules: supervisors and admins read them, admins change them. Agents do not
    see them (they say who gets which work, and who does not)."""

    message = "only supervisors and admins may see routing rules; only admins change them"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        if agent is None:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return bool(agent.is_supervisor)
        return bool(agent.is_admin)


def _rule_json(value: Any, what: str, check: Any) -> dict[str, Any]:
    check_storable_json(value, what=what)
    try:
        return check(value)
    except routing.RuleError as exc:
        raise serializers.ValidationError(exc.message) from exc


class RoutingRuleSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    conditions = serializers.JSONField(
        required=False,
        help_text='When the rule applies, e.g. {"channel": ["whatsapp"], "language": ["ru"], '
        '"any": [{"tier": ["vip"]}, {"sentiment": "negative"}]}; {} always applies. '
        "Keys: channel, language, topic, tag, priority, tier, team, sentiment, "
        "business_hours, all, any, not.",
    )
    actions = serializers.JSONField(
        help_text='What it does, e.g. {"team": "outages", "skills": ["hv"], '
        '"priority": "+1", "tags": ["storm"], "assign_to": "alice"}. Keys: team, skills, '
        "optional_skills, priority, tags, assign_to.",
    )

    class Meta:
        model = RoutingRule
        fields = [
            "id",
            "name",
            "position",
            "is_active",
            "conditions",
            "actions",
            "stop",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "name": {"error_messages": {"blank": "a rule needs a name"}},
            "position": {"help_text": "Rules run in ascending position (then id)."},
            "stop": {"help_text": "When this rule matches, later rules are not evaluated."},
        }

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("a rule needs a name")
        return value

    def validate_conditions(self, value: Any) -> dict[str, Any]:
        return _rule_json(value, "conditions", routing.validate_conditions)

    def validate_actions(self, value: Any) -> dict[str, Any]:
        return _rule_json(value, "actions", routing.validate_actions)


class SkillSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Skill
        fields = ["id", "name", "slug"]
        read_only_fields = ["id"]
        extra_kwargs = {
            "slug": {
                "required": False,
                "help_text": "Derived from the name if left out; routing rules name skills by it.",
            }
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("slug"):
            slug = slugify(attrs.get("name", ""))[:60]
            if not slug:
                raise serializers.ValidationError(
                    {"slug": ["give a slug (Latin letters, digits, dashes) for this name"]}
                )
            if Skill.objects.filter(slug=slug).exists():
                raise serializers.ValidationError(
                    {"slug": [f"slug {slug!r} is taken; give another one"]}
                )
            attrs["slug"] = slug
        if (
            self.instance is not None
            and attrs.get("slug", self.instance.slug) != self.instance.slug
        ):
            rules = _rules_using_skill(self.instance.slug)
            if rules:
                raise Conflict(
                    f"routing rule {rules[0]!r} names skill {self.instance.slug!r}; change the "
                    "rule first, then the slug",
                    field="slug",
                )
        return attrs


def _rules_using_skill(slug: str) -> list[str]:
    return [
        name
        for name, acts in RoutingRule.objects.order_by("position", "id").values_list(
            "name", "actions"
        )
        if isinstance(acts, dict)
        and (slug in (acts.get("skills") or ()) or slug in (acts.get("optional_skills") or ()))
    ]


class TicketRefSerializer(StrictSerializer):
    ticket = serializers.IntegerField(min_value=1, help_text="A ticket id.")


class RouteRequestSerializer(StrictSerializer):
    reassign = serializers.BooleanField(
        default=False,
        help_text="Route an assigned ticket again: its agent is released and not chosen.",
    )


PreviewSerializer = inline_serializer(
    "RoutingPreview",
    {
        "matched": serializers.ListField(child=serializers.DictField()),
        "team": serializers.CharField(allow_null=True),
        "priority": serializers.CharField(allow_null=True),
        "skills": serializers.ListField(child=serializers.CharField()),
        "optional_skills": serializers.ListField(child=serializers.CharField()),
        "tags": serializers.ListField(child=serializers.CharField()),
        "assign_to": serializers.CharField(allow_null=True),
        "notes": serializers.ListField(child=serializers.CharField()),
    },
)

RouteResultSerializer = inline_serializer(
    "RouteResult",
    {
        "outcome": serializers.ChoiceField(choices=["assigned", "queued"]),
        "assignee": serializers.DictField(allow_null=True),
        "step": serializers.CharField(),
        "steps": serializers.ListField(child=serializers.DictField()),
        "reason": serializers.CharField(),
        "ticket": TicketDetailSerializer(),
    },
)


@config_schema("routing rules", RoutingRuleSerializer, "admins")
class RoutingRuleViewSet(ConfigViewSet):
    queryset = RoutingRule.objects.all()
    serializer_class = RoutingRuleSerializer
    permission_classes = [IsStaffMember, SupervisorReadAdminWrite]
    what = "routing rule"

    def get_queryset(self) -> QuerySet[RoutingRule]:
        return RoutingRule.objects.all()

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        now = timezone.now()
        self._save(serializer, created_at=now, updated_at=now)

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self._save(serializer, updated_at=timezone.now())

    @extend_schema(
        summary="Try the rules on a ticket (no changes)",
        description="Which active rules match the ticket now and what they would change. "
        "Nothing is written.",
        request=TicketRefSerializer,
        responses={200: PreviewSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=False, methods=["post"], permission_classes=[IsStaffMember, IsSupervisor])
    def preview(self, request: Request) -> Response:
        data = validated(TicketRefSerializer, request)
        ticket = (
            Ticket.objects.filter(visible_filter(self.agent), pk=data["ticket"])
            .select_related("contact", "channel")
            .first()
        )
        if ticket is None:
            raise NotFound(f"ticket {data['ticket']} does not exist")
        rules = routing.load_ruleset()
        facts = routing.facts_of(
            ticket,
            rules,
            tags=sorted(ticket.tags.values_list("name", flat=True)),
            channel_kind=ticket.channel.kind if ticket.channel else "",
            tier=ticket.contact.tier,
        )
        decision = routing.evaluate(rules.rules, facts)
        return Response(
            {
                "matched": decision.matched,
                "team": decision.team,
                "priority": None
                if decision.priority is None
                else Priority(decision.priority).label,
                "skills": decision.skills,
                "optional_skills": decision.optional_skills,
                "tags": decision.tags,
                "assign_to": decision.assign_to,
                "notes": decision.notes,
            }
        )


@config_schema("skills", SkillSerializer, "admins")
class SkillViewSet(ConfigViewSet):
    queryset = Skill.objects.all()
    serializer_class = SkillSerializer
    permission_classes = [IsStaffMember, ReadOrAdmin]
    what = "skill"

    def get_queryset(self) -> QuerySet[Skill]:
        return Skill.objects.all()

    def check_deletable(self, skill: Skill) -> None:
        rules = _rules_using_skill(skill.slug)
        if rules:
            raise Conflict(f"routing rule {rules[0]!r} names skill {skill.slug!r}; change it first")
        needed = Ticket.objects.filter(required_skills=skill, status__in=ACTIVE_STATUSES).count()
        if needed:
            raise Conflict(
                f"{needed} active tickets require skill {skill.name!r}; "
                "resolve them or take the skill off them first"
            )


class TicketRouteView(StaffAPIMixin, APIView):
    """POST /api/v1/tickets/<id>/route/: run routing on a ticket now (supervisors)."""

    permission_classes = [IsStaffMember, IsSupervisor]

    @extend_schema(
        summary="Route a ticket now",
        description="Runs the routing rules, then gives the ticket to the best eligible online "
        "agent (or leaves it in its team's queue: outcome `queued`). An assigned ticket is "
        "routed again only with `reassign: true`; its agent is released and not chosen. "
        "Every step is in the ticket's history (`routing.*` events).",
        request=RouteRequestSerializer,
        responses={200: RouteResultSerializer, **errors(400, 401, 403, 404, 409)},
        tags=["tickets"],
    )
    def post(self, request: Request, pk: str) -> Response:
        ticket_id = parse_id(pk, what="ticket")
        data = validated(RouteRequestSerializer, request)
        result = actions.do_route_ticket(
            ticket_id, actor=self.agent, reassign=data["reassign"], wait=True, reason="supervisor"
        )
        if result.outcome == "unchanged":
            raise Conflict(
                f"ticket {ticket_id} is already assigned; send reassign: true to route it again"
            )
        if result.outcome == "not_routable":
            raise Conflict(result.reason)
        ticket = (
            Ticket.objects.select_related(*TICKET_RELATED).prefetch_related(TAGS).get(pk=ticket_id)
        )
        assignee = ticket.assignee
        return Response(
            {
                "outcome": result.outcome,
                "assignee": {"id": assignee.pk, "name": assignee.name} if assignee else None,
                "step": result.step,
                "steps": result.steps,
                "reason": result.reason,
                "ticket": TicketDetailSerializer(ticket).data,
            }
        )


router = SimpleRouter()
router.register("routing-rules", RoutingRuleViewSet, basename="routing-rule")
router.register("skills", SkillViewSet, basename="skill")

urlpatterns: list[URLPattern | URLResolver] = [
    path("tickets/<str:pk>/route/", TicketRouteView.as_view(), name="ticket-route"),
    *router.urls,
]
