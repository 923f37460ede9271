"""What the API returns and accepts.

Read serializers are plain fields over rows the views fetched with select_related and one
prefetch: none of them runs a query of its own. Request serializers validate shapes and types
only; the rules (who may, what is allowed) live in `tickets.actions`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.text import slugify
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from channels_in.models import Channel, ChannelKind
from tickets.actions import normalize_tag
from tickets.errors import InvalidInput
from tickets.models import (
    Agent,
    AgentSkill,
    AuthorKind,
    Call,
    CannedResponse,
    Contact,
    DeliveryStatus,
    Direction,
    Message,
    Priority,
    Role,
    Skill,
    Status,
    Tag,
    Team,
    Tier,
    Topic,
)

from .common import IdField, RejectUnknownFieldsMixin, StrictSerializer, check_storable_json

PRIORITY_NAMES = [p.label for p in Priority]
REPLY_STATUSES = [s.value for s in (Status.OPEN, Status.PENDING, Status.RESOLVED)]
MANUAL_STATUSES = [s.value for s in (Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED)]
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


def _choice_error(what: str, choices: list[str]) -> dict[str, str]:
    return {"invalid_choice": f"{what} must be one of {', '.join(choices)}; got {{input!r}}"}


def _one_of(choices: list[str]) -> dict[str, Any]:
    # A subset of a choice set documented elsewhere as an enum (ticket status): as a pattern,
    # so OpenAPI does not see two different enums under one name.
    return {"type": "string", "pattern": "^(" + "|".join(re.escape(c) for c in choices) + ")$"}


@extend_schema_field(_one_of(REPLY_STATUSES))
class ReplyStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            choices=REPLY_STATUSES,
            error_messages=_choice_error("the status after a reply", REPLY_STATUSES),
            **kwargs,
        )


@extend_schema_field(_one_of(MANUAL_STATUSES))
class ManualStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            choices=MANUAL_STATUSES,
            error_messages=_choice_error("status", MANUAL_STATUSES),
            **kwargs,
        )


def _languages() -> list[str]:
    return list(settings.HELPDESK_LANGUAGES)


# --------------------------------------------------------------------------- references


class RefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class ChannelRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=ChannelKind.choices, read_only=True)
    name = serializers.CharField(read_only=True)


class ContactRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.SerializerMethodField()

    def get_name(self, contact: Contact) -> str:
        return str(contact)


class PriorityReasonSerializer(serializers.Serializer):
    signal = serializers.CharField(read_only=True)
    detail = serializers.CharField(read_only=True)
    points = serializers.IntegerField(read_only=True)


# --------------------------------------------------------------------------- tickets


class TicketSerializer(serializers.Serializer):
    """A queue row. Expects channel, contact, team and assignee__user selected and tags
    prefetched."""

    id = serializers.IntegerField(read_only=True)
    subject = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=Status.choices, read_only=True)
    priority = serializers.ChoiceField(
        choices=PRIORITY_NAMES, source="priority_name", read_only=True
    )
    priority_score = serializers.IntegerField(read_only=True)
    priority_reasons = PriorityReasonSerializer(many=True, read_only=True)
    topic = serializers.ChoiceField(choices=Topic.choices, read_only=True)
    language = serializers.CharField(read_only=True)
    channel = ChannelRefSerializer(read_only=True, allow_null=True)
    contact = ContactRefSerializer(read_only=True)
    team = RefSerializer(read_only=True, allow_null=True)
    assignee = RefSerializer(read_only=True, allow_null=True)
    tags = serializers.SerializerMethodField()
    sla_due_at = serializers.DateTimeField(read_only=True)
    waiting_since = serializers.DateTimeField(read_only=True, allow_null=True)
    first_response_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    last_message_at = serializers.DateTimeField(read_only=True)
    preview = serializers.CharField(read_only=True)
    message_count = serializers.IntegerField(read_only=True)
    version = serializers.IntegerField(read_only=True)

    def get_tags(self, ticket: Any) -> list[str]:
        return [tag.name for tag in ticket.tags.all()]


class TicketDetailSerializer(TicketSerializer):
    """A ticket page: the queue row and its deadlines and history marks."""

    is_public = serializers.BooleanField(read_only=True)
    priority_locked = serializers.BooleanField(read_only=True)
    first_response_due = serializers.DateTimeField(read_only=True, allow_null=True)
    resolution_due = serializers.DateTimeField(read_only=True, allow_null=True)
    assigned_at = serializers.DateTimeField(read_only=True, allow_null=True)
    resolved_at = serializers.DateTimeField(read_only=True, allow_null=True)
    closed_at = serializers.DateTimeField(read_only=True, allow_null=True)


class AttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    content_type = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    def get_url(self, attachment: Any) -> str | None:
        # Not stored yet (the worker fetches platform media later): no link to offer.
        if not attachment.file:
            return None
        # The authorized download view, never the media directory: staff who may see the
        # ticket only (tickets.attachments).
        url = reverse("attachment", args=[attachment.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


def author_name(message: Message, contact: Contact | None) -> str:
    if message.author_kind == AuthorKind.AGENT and message.author is not None:
        return message.author.name
    if message.author_kind == AuthorKind.CUSTOMER:
        return str(contact) if contact is not None else "Customer"
    return AuthorKind(message.author_kind).label


class MessageSerializer(serializers.Serializer):
    """A message of a ticket's thread. Expects channel and author__user selected and
    attachments prefetched; the view passes the ticket's contact in the context for customer
    names."""

    id = serializers.IntegerField(read_only=True)
    ticket = serializers.IntegerField(source="ticket_id", read_only=True)
    channel = ChannelRefSerializer(
        read_only=True,
        allow_null=True,
        help_text="Where it came in or went out; null for internal notes.",
    )
    direction = serializers.ChoiceField(choices=Direction.choices, read_only=True)
    author_kind = serializers.ChoiceField(choices=AuthorKind.choices, read_only=True)
    author = RefSerializer(read_only=True, allow_null=True)
    author_name = serializers.SerializerMethodField()
    kind = serializers.CharField(read_only=True)
    text = serializers.CharField(read_only=True)
    html = serializers.CharField(read_only=True, help_text="Sanitized HTML (email bodies).")
    payload = serializers.JSONField(read_only=True)
    is_internal = serializers.BooleanField(read_only=True)
    delivery_status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)
    delivery_error = serializers.CharField(read_only=True)
    sent_at = serializers.DateTimeField(read_only=True, allow_null=True)
    edited_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    attachments = AttachmentSerializer(many=True, read_only=True)

    def get_author_name(self, message: Message) -> str:
        return author_name(message, self.context.get("contact"))


# --------------------------------------------------------------------------- ticket requests


class ReplySerializer(StrictSerializer):
    text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, default=""
    )
    status = ReplyStatusField(
        required=False,
        allow_null=True,
        help_text="Leave the ticket open, pending or resolved after this reply.",
    )
    attachments = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        required=False,
        default=list,
        help_text="Files, as multipart/form-data parts named `attachments`.",
    )


class NoteSerializer(StrictSerializer):
    text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, default=""
    )
    attachments = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        required=False,
        default=list,
        help_text="Files, as multipart/form-data parts named `attachments`.",
    )


class AssignSerializer(StrictSerializer):
    assignee = IdField(allow_null=True, help_text="An agent id, or null to unassign.")


class TransferSerializer(StrictSerializer):
    team = IdField(required=False, allow_null=True)
    agent = IdField(required=False, allow_null=True)
    note = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Internal note: why."
    )


class StatusChangeSerializer(StrictSerializer):
    status = ManualStatusField(help_text="open, pending, resolved or closed.")


class PriorityChangeSerializer(StrictSerializer):
    priority = serializers.ChoiceField(
        choices=PRIORITY_NAMES, error_messages=_choice_error("priority", PRIORITY_NAMES)
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class TagChangeSerializer(StrictSerializer):
    # Names are normalized and checked by the action (lower case, dashes, 50 characters).
    add = serializers.ListField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        required=False,
        default=list,
        max_length=50,
    )
    remove = serializers.ListField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        required=False,
        default=list,
        max_length=50,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("add") and not attrs.get("remove"):
            raise serializers.ValidationError("give tags to `add` or `remove`")
        return attrs


# --------------------------------------------------------------------------- contacts


class IdentitySerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.CharField(read_only=True)
    value = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class AccountSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    number = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)


class ContactSerializer(serializers.Serializer):
    """Expects identities and accounts prefetched."""

    id = serializers.IntegerField(read_only=True)
    display_name = serializers.CharField(read_only=True)
    name = serializers.SerializerMethodField()
    language = serializers.CharField(read_only=True)
    tier = serializers.ChoiceField(choices=Tier.choices, read_only=True)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    notes = serializers.CharField(read_only=True)
    attributes = serializers.DictField(read_only=True)
    identities = IdentitySerializer(many=True, read_only=True)
    accounts = AccountSerializer(many=True, read_only=True)
    merged_into = serializers.IntegerField(source="merged_into_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    last_seen_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_name(self, contact: Contact) -> str:
        return str(contact)


class ContactUpdateSerializer(StrictSerializer):
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    language = serializers.CharField(required=False, allow_blank=True, max_length=8)
    tier = serializers.ChoiceField(
        choices=Tier.choices, required=False, error_messages=_choice_error("tier", Tier.values)
    )
    value = serializers.DecimalField(
        max_digits=12, decimal_places=2, required=False, min_value=Decimal(0)
    )
    notes = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    attributes = serializers.DictField(required=False)
    accounts = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        max_length=100,
        help_text="The contact's account numbers: the whole list (missing ones are removed).",
    )

    def validate_language(self, value: str) -> str:
        if value and value not in _languages():
            raise serializers.ValidationError(
                f"language must be one of {', '.join(_languages())}; got {value!r}"
            )
        return value

    def validate_attributes(self, value: dict[str, Any]) -> dict[str, Any]:
        check_storable_json(value, what="attributes")
        return value


class MergeSerializer(StrictSerializer):
    source = IdField(help_text="The contact merged into this one (it moves here).")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class ContactMergeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    target = serializers.IntegerField(source="target_id", read_only=True)
    source = serializers.IntegerField(source="source_id", read_only=True)
    actor = RefSerializer(read_only=True, allow_null=True)
    reason = serializers.CharField(read_only=True)
    identity_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    ticket_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    account_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    call_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    undone_at = serializers.DateTimeField(read_only=True, allow_null=True)
    undone_by = RefSerializer(read_only=True, allow_null=True)


class CallSerializer(StrictSerializer):
    """A logged phone call. `summary` is null on a timeline entry for a call about a ticket
    the caller may not open."""

    id = serializers.IntegerField(read_only=True)
    contact = serializers.IntegerField(source="contact_id", read_only=True)
    ticket = IdField(
        source="ticket_id",
        required=False,
        allow_null=True,
        default=None,
        help_text="The ticket the call was about; it also appears on that ticket's thread.",
    )
    agent = RefSerializer(read_only=True, allow_null=True)
    direction = serializers.ChoiceField(
        choices=Call.Direction.choices,
        required=False,
        default=Call.Direction.INBOUND,
        error_messages=_choice_error("direction", Call.Direction.values),
    )
    phone = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    duration_seconds = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=86400
    )
    summary = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", trim_whitespace=False
    )
    created_at = serializers.DateTimeField(read_only=True)


# --------------------------------------------------------------------------- timeline


class TimelineTicketSerializer(serializers.Serializer):
    """A ticket on a contact's timeline. `visible` is false for tickets the caller may not
    open: then this summary is all there is (no preview, no messages)."""

    id = serializers.IntegerField(read_only=True)
    subject = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=Status.choices, read_only=True)
    channel = ChannelRefSerializer(read_only=True, allow_null=True)
    team = RefSerializer(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    last_message_at = serializers.DateTimeField(read_only=True)
    resolved_at = serializers.DateTimeField(read_only=True, allow_null=True)
    closed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    visible = serializers.BooleanField(read_only=True)


class TimelineEntrySerializer(serializers.Serializer):
    """One entry; exactly one of `ticket`, `message` and `call` is set, as `type` says."""

    type = serializers.ChoiceField(choices=["ticket", "message", "call"], read_only=True)
    at = serializers.DateTimeField(read_only=True)
    ticket = TimelineTicketSerializer(read_only=True, allow_null=True)
    message = MessageSerializer(read_only=True, allow_null=True)
    call = CallSerializer(read_only=True, allow_null=True)


class TimelinePageSerializer(serializers.Serializer):
    results = TimelineEntrySerializer(many=True, read_only=True)
    next = serializers.URLField(read_only=True, allow_null=True)


# --------------------------------------------------------------------------- configuration


class TeamSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "parent", "description", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "slug": {"required": False, "help_text": "Derived from the name if left out."}
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("slug"):
            slug = slugify(attrs.get("name", ""))[:60]
            if not slug:
                raise serializers.ValidationError(
                    {"slug": ["give a slug (Latin letters, digits, dashes) for this name"]}
                )
            if Team.objects.filter(slug=slug).exists():
                raise serializers.ValidationError(
                    {"slug": [f"slug {slug!r} is taken; give another one"]}
                )
            attrs["slug"] = slug
        return attrs

    def validate_parent(self, parent: Team | None) -> Team | None:
        node = parent
        while node is not None and self.instance is not None:
            if node.pk == self.instance.pk:
                raise serializers.ValidationError("a team cannot be its own ancestor")
            node = node.parent
        return parent


class TagSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "color"]
        read_only_fields = ["id"]

    def validate_name(self, value: str) -> str:
        try:
            name = normalize_tag(value)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.message) from exc
        clash = Tag.objects.filter(name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"tag {name!r} already exists")
        return name

    def validate_color(self, value: str) -> str:
        if not COLOR_RE.match(value):
            raise serializers.ValidationError(f"color must look like #1a2b3c; got {value!r}")
        return value.lower()


class AgentSkillSerializer(StrictSerializer):
    id = IdField(source="skill_id", help_text="A skill id.")
    name = serializers.CharField(source="skill.name", read_only=True)
    proficiency = serializers.IntegerField(min_value=1, max_value=5, default=3)


class AgentTeamsField(serializers.ListField):
    """Team ids; reads the prefetched `teams` of an agent."""

    def get_attribute(self, agent: Agent) -> list[int]:
        return [team.pk for team in agent.teams.all()]


class AgentSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """An agent. Expects user selected and teams, agentskill_set__skill prefetched.

    `username`, names, email and `password` belong to the login account and are set when an
    admin creates the agent; after that an admin changes role, teams, skills, languages,
    capacity and auto-assignment."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", max_length=150)
    name = serializers.CharField(read_only=True)
    first_name = serializers.CharField(
        source="user.first_name", max_length=150, required=False, allow_blank=True
    )
    last_name = serializers.CharField(
        source="user.last_name", max_length=150, required=False, allow_blank=True
    )
    email = serializers.EmailField(source="user.email", required=False, allow_blank=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        min_length=8,
        max_length=128,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Login password of a new agent; without it the account cannot sign in "
        "with a password.",
    )
    role = serializers.ChoiceField(
        choices=Role.choices, required=False, error_messages=_choice_error("role", Role.values)
    )
    teams = AgentTeamsField(child=IdField(), required=False, max_length=100)
    skills = AgentSkillSerializer(many=True, required=False, source="agentskill_set")
    languages = serializers.ListField(
        child=serializers.CharField(max_length=8), required=False, max_length=20
    )
    capacity = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    auto_assign = serializers.BooleanField(required=False)
    open_count = serializers.IntegerField(read_only=True)
    presence = serializers.CharField(read_only=True)
    last_assigned_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def validate_username(self, value: str) -> str:
        if self.instance is not None and value != self.instance.user.username:
            raise serializers.ValidationError("a username cannot change")
        if (
            self.instance is None
            and get_user_model().objects.filter(username__iexact=value).exists()
        ):
            raise serializers.ValidationError(f"username {value!r} is taken")
        return value

    def validate_teams(self, value: list[int]) -> list[Team]:
        teams = list(Team.objects.filter(pk__in=value))
        missing = sorted(set(value) - {team.pk for team in teams})
        if missing:
            raise serializers.ValidationError(f"no team with id {missing[0]}")
        return teams

    def validate_skills(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [item["skill_id"] for item in value]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("a skill is listed twice")
        found = set(Skill.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = sorted(set(ids) - found)
        if missing:
            raise serializers.ValidationError(f"no skill with id {missing[0]}")
        return value

    def validate_languages(self, value: list[str]) -> list[str]:
        unknown = [code for code in value if code not in _languages()]
        if unknown:
            raise serializers.ValidationError(
                f"unknown language {unknown[0]!r}; expected some of: {', '.join(_languages())}"
            )
        return list(dict.fromkeys(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and "user" not in attrs:
            raise serializers.ValidationError({"username": ["a new agent needs a username"]})
        if self.instance is not None:
            account = attrs.get("user", {})
            if set(account) - {"username"} or "password" in attrs:
                raise serializers.ValidationError(
                    "names, email and password belong to the login account; "
                    "change them in the account settings"
                )
        return attrs

    def create(self, validated: dict[str, Any]) -> Agent:
        account = validated.pop("user")
        password = validated.pop("password", None)
        teams = validated.pop("teams", None)
        skills = validated.pop("agentskill_set", None)
        user = get_user_model().objects.create_user(
            username=account["username"],
            password=password,
            first_name=account.get("first_name", ""),
            last_name=account.get("last_name", ""),
            email=account.get("email", ""),
        )
        agent = Agent.objects.create(user=user, **validated)
        self._set_relations(agent, teams, skills)
        return agent

    def update(self, agent: Agent, validated: dict[str, Any]) -> Agent:
        validated.pop("user", None)
        teams = validated.pop("teams", None)
        skills = validated.pop("agentskill_set", None)
        for name, value in validated.items():
            setattr(agent, name, value)
        if validated:
            agent.save(update_fields=list(validated))
        self._set_relations(agent, teams, skills)
        return agent

    def _set_relations(
        self, agent: Agent, teams: list[Team] | None, skills: list[dict[str, Any]] | None
    ) -> None:
        if teams is not None:
            agent.teams.set(teams)
        if skills is not None:
            AgentSkill.objects.filter(agent=agent).delete()
            AgentSkill.objects.bulk_create(
                [
                    AgentSkill(
                        agent=agent, skill_id=item["skill_id"], proficiency=item["proficiency"]
                    )
                    for item in skills
                ]
            )


class CannedResponseSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    created_by = RefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = CannedResponse
        fields = [
            "id",
            "shortcut",
            "title",
            "body",
            "language",
            "team",
            "created_by",
            "usage_count",
            "updated_at",
        ]
        read_only_fields = ["id", "created_by", "usage_count", "updated_at"]
        # The unique-together check is ours (with a readable message), not DRF's.
        validators: list[Any] = []

    def validate_language(self, value: str) -> str:
        if value and value not in _languages():
            raise serializers.ValidationError(
                f"language must be one of {', '.join(_languages())} or empty (any); got {value!r}"
            )
        return value

    def validate_body(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("the body is empty")
        if len(value) > settings.HELPDESK_MAX_MESSAGE_CHARS:
            raise serializers.ValidationError(
                f"the body is {len(value)} characters; the limit is "
                f"{settings.HELPDESK_MAX_MESSAGE_CHARS}"
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name) if self.instance is not None else None

        shortcut, language, team = current("shortcut"), current("language") or "", current("team")
        clash = CannedResponse.objects.filter(shortcut=shortcut, language=language, team=team)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            scope = f"team {team.name}" if team is not None else "all teams"
            raise serializers.ValidationError(
                {
                    "shortcut": [
                        f"/{shortcut} already exists for language {language or 'any'} and {scope}"
                    ]
                }
            )
        return attrs


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}],
            "nullable": True,
        },
    }
)
class CredentialsField(serializers.DictField):
    """Platform secrets: write-only, a JSON object of names to strings (or numbers, flags)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("credentials must be a JSON object")
        for key, value in data.items():
            if not isinstance(key, str) or not key or len(key) > 64:
                raise serializers.ValidationError(f"credential name {key!r} is not valid")
            if value is not None and not isinstance(value, str | int | bool):
                raise serializers.ValidationError(
                    f"credential {key!r} must be text, a number or true/false"
                )
            if isinstance(value, str) and len(value) > 4000:
                raise serializers.ValidationError(f"credential {key!r} is too long")
        # The message names the credential, never its value.
        check_storable_json(data, what="a credential")
        return dict(data)


class ChannelSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A connected channel. `credentials` is write-only: it is never returned, only the names
    of the credentials set (so an admin sees what is configured, not the secrets). On update,
    `credentials` is merged into the stored ones; a null value removes that credential."""

    credentials = CredentialsField(write_only=True, required=False)
    credential_names = serializers.SerializerMethodField()
    settings = serializers.JSONField(required=False)

    class Meta:
        model = Channel
        fields = [
            "id",
            "kind",
            "key",
            "name",
            "settings",
            "credentials",
            "credential_names",
            "default_team",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def get_credential_names(self, channel: Channel) -> list[str]:
        return sorted(channel.credentials or {})

    def validate_settings(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("settings must be a JSON object")
        check_storable_json(value, what="settings")
        return value

    def validate_kind(self, value: str) -> str:
        if self.instance is not None and value != self.instance.kind:
            raise serializers.ValidationError(
                "a channel's kind cannot change; connect a new channel instead"
            )
        return value

    def create(self, validated: dict[str, Any]) -> Channel:
        credentials = validated.pop("credentials", {}) or {}
        validated["credentials"] = {k: v for k, v in credentials.items() if v is not None}
        return super().create(validated)

    def update(self, channel: Channel, validated: dict[str, Any]) -> Channel:
        if "credentials" in validated:
            merged = {**(channel.credentials or {}), **validated.pop("credentials")}
            validated["credentials"] = {k: v for k, v in merged.items() if v is not None}
        return super().update(channel, validated)


class SignInSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
