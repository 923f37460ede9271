"""Configuration: teams, agents, tags, canned responses and channels.

Every staff member reads them; admins change them (canned responses: supervisors too).
None of these is ticket state, so they are written here rather than through `actions`; a
delete that would silently change tickets (a tag on tickets, a team with open work) is
refused with 409 instead.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model, Prefetch, ProtectedError, QuerySet
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from channels_in.models import Channel
from tickets.errors import Conflict, NotFound
from tickets.models import (
    ACTIVE_STATUSES,
    Agent,
    AgentSkill,
    CannedResponse,
    Role,
    Tag,
    Team,
    Ticket,
)

from .common import StaffAPIMixin, parse_id
from .filtersets import CannedResponseFilter
from .pagination import IdPagination
from .permissions import IsStaffMember, ReadOrAdmin, ReadOrSupervisor
from .schema import errors
from .serializers import (
    AgentSerializer,
    CannedResponseSerializer,
    ChannelSerializer,
    TagSerializer,
    TeamSerializer,
)


def config_schema(name: str, serializer: type[serializers.Serializer], who: str) -> Any:
    """The same documentation shape for every configuration resource."""
    write_errors = errors(400, 401, 403, 404)
    return extend_schema_view(
        list=extend_schema(
            summary=f"List {name}",
            responses={200: serializer(many=True), **errors(400, 401, 403)},
        ),
        retrieve=extend_schema(
            summary=f"One of the {name}", responses={200: serializer, **errors(401, 403, 404)}
        ),
        create=extend_schema(
            summary=f"Create ({who})",
            responses={201: serializer, **errors(400, 401, 403, 409)},
        ),
        update=extend_schema(
            summary=f"Replace ({who})", responses={200: serializer, **write_errors}
        ),
        partial_update=extend_schema(
            summary=f"Change ({who})", responses={200: serializer, **write_errors}
        ),
        destroy=extend_schema(
            summary=f"Delete ({who})",
            responses={204: None, **errors(401, 403, 404, 409)},
        ),
    )


class ConfigViewSet(
    StaffAPIMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [IsStaffMember, ReadOrAdmin]
    pagination_class = IdPagination
    filter_backends: list[Any] = []
    what = "object"

    def get_object(self) -> Any:
        pk = parse_id(self.kwargs["pk"], what=self.what)
        obj = self.get_queryset().filter(pk=pk).first()
        if obj is None:
            raise NotFound(f"{self.what} {pk} does not exist")
        self.check_object_permissions(self.request, obj)
        return obj

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self._save(serializer)

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self._save(serializer)

    def _save(self, serializer: serializers.BaseSerializer[Any], **extra: Any) -> None:
        try:
            with transaction.atomic():
                serializer.save(**extra)
        except IntegrityError as exc:
            # Validation checked uniqueness; this is a concurrent request that won the race.
            raise Conflict(f"this {self.what} conflicts with one saved a moment ago") from exc

    def perform_destroy(self, instance: Model) -> None:
        self.check_deletable(instance)
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict(f"this {self.what} is still in use") from exc

    def check_deletable(self, instance: Any) -> None:
        """Raise Conflict when deleting would quietly change other data."""


@config_schema("teams", TeamSerializer, "admins")
class TeamViewSet(ConfigViewSet):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer
    what = "team"

    def get_queryset(self) -> QuerySet[Team]:
        return Team.objects.all()

    def check_deletable(self, team: Team) -> None:
        active = Ticket.objects.filter(team=team, status__in=ACTIVE_STATUSES).count()
        if active:
            raise Conflict(
                f"team {team.name} has {active} active tickets; transfer them to another team first"
            )
        canned = team.cannedresponse_set.count()
        if canned:
            raise Conflict(
                f"team {team.name} has {canned} canned responses; move or delete them first"
            )


@config_schema("agents", AgentSerializer, "admins")
class AgentViewSet(ConfigViewSet):
    queryset = Agent.objects.all()
    serializer_class = AgentSerializer
    what = "agent"

    def get_queryset(self) -> QuerySet[Agent]:
        return Agent.objects.select_related("user").prefetch_related(
            Prefetch("teams", queryset=Team.objects.only("id")),
            Prefetch("agentskill_set", queryset=AgentSkill.objects.select_related("skill")),
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        agent: Agent = serializer.instance  # type: ignore[assignment]
        role = serializer.validated_data.get("role", agent.role)  # type: ignore[union-attr]
        if agent.is_admin and role != Role.ADMIN:
            self._keep_an_admin(agent, "change the role of")
        self._save(serializer)

    def check_deletable(self, agent: Agent) -> None:
        if agent.pk == self.agent.pk:
            raise Conflict("you cannot delete your own agent; ask another admin")
        if agent.is_admin:
            self._keep_an_admin(agent, "delete")
        active = Ticket.objects.filter(assignee=agent, status__in=ACTIVE_STATUSES).count()
        if active:
            raise Conflict(
                f"{agent.name} has {active} active tickets; reassign them before deleting the agent"
            )

    def _keep_an_admin(self, agent: Agent, verb: str) -> None:
        if not Agent.objects.filter(role=Role.ADMIN).exclude(pk=agent.pk).exists():
            raise Conflict(f"cannot {verb} the last admin; make someone else admin first")


@config_schema("tags", TagSerializer, "admins")
class TagViewSet(ConfigViewSet):
    queryset = Tag.objects.all()
    serializer_class = TagSerializer
    what = "tag"

    def get_queryset(self) -> QuerySet[Tag]:
        return Tag.objects.all()

    def check_deletable(self, tag: Tag) -> None:
        # Removing a tag from tickets is a ticket change: it goes through the tags endpoint,
        # with its history, not as a side effect of configuration.
        used = tag.tickets.count()
        if used:
            raise Conflict(f"tag {tag.name!r} is on {used} tickets; remove it from them first")


@config_schema("canned responses", CannedResponseSerializer, "supervisors and admins")
class CannedResponseViewSet(ConfigViewSet):
    queryset = CannedResponse.objects.all()
    serializer_class = CannedResponseSerializer
    permission_classes = [IsStaffMember, ReadOrSupervisor]
    filter_backends = [DjangoFilterBackend]
    filterset_class = CannedResponseFilter
    what = "canned response"

    def get_queryset(self) -> QuerySet[CannedResponse]:
        return CannedResponse.objects.select_related("created_by__user")

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self._save(serializer, created_by=self.agent, updated_at=timezone.now())

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self._save(serializer, updated_at=timezone.now())


@config_schema("channels", ChannelSerializer, "admins")
class ChannelViewSet(ConfigViewSet):
    queryset = Channel.objects.all()
    serializer_class = ChannelSerializer
    what = "channel"

    def get_queryset(self) -> QuerySet[Channel]:
        return Channel.objects.all()

    def perform_destroy(self, instance: Model) -> None:
        try:
            with transaction.atomic():
                instance.delete()
        except ProtectedError as exc:
            raise Conflict(
                "this channel has tickets, messages or webhook events; deactivate it "
                "(is_active: false) instead of deleting it"
            ) from exc
