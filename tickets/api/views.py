"""Tickets: the queue, one ticket, its thread, and every operation an agent performs on it.

Every write calls the `tickets.actions` function that owns it; these views only parse the
request, look up what it names, and serialize what the action returns.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tickets import actions
from tickets import rows as rows_module
from tickets.errors import InvalidInput, NotFound
from tickets.filters import TicketFilter
from tickets.models import ACTIVE_STATUSES, Agent, Attachment, Message, Tag, Team, Ticket
from tickets.queue import visible_filter

from .common import PARSERS, StaffAPIMixin, parse_id, validated
from .pagination import MessagePagination, QueuePagination
from .permissions import agent_of
from .schema import errors
from .serializers import (
    AssignSerializer,
    MessageSerializer,
    NoteSerializer,
    PriorityChangeSerializer,
    ReplySerializer,
    StatusChangeSerializer,
    TagChangeSerializer,
    TicketDetailSerializer,
    TicketSerializer,
    TransferSerializer,
)

TICKET_RELATED = ("channel", "contact", "team", "assignee__user")
# The one prefetch of a ticket page: tag names, nothing else of the tag rows.
TAGS = Prefetch("tags", queryset=Tag.objects.only("id", "name"))
ATTACHMENTS = Prefetch("attachments", queryset=Attachment.objects.order_by("id"))


class TicketFilterBackend(DjangoFilterBackend):
    """django-filter with the calling agent handed to TicketFilter (for `assignee=me`)."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        # The default queue (no filter at all) is most requests: skip building and validating
        # a filterset for nothing (~1.5 ms of a 25-row page).
        if not any(name in request.query_params for name in TicketFilter.base_filters):
            return queryset.filter(status__in=ACTIVE_STATUSES)
        return super().filter_queryset(request, queryset, view)

    def get_filterset_kwargs(
        self, request: Request, queryset: QuerySet[Any], view: Any
    ) -> dict[str, Any]:
        kwargs = super().get_filterset_kwargs(request, queryset, view)
        kwargs["agent"] = agent_of(request)
        return kwargs


def find_agent(pk: int | None, *, field: str) -> Agent | None:
    if pk is None:
        return None
    agent = Agent.objects.select_related("user").filter(pk=pk).first()
    if agent is None:
        raise InvalidInput(f"no agent with id {pk}", field=field)
    return agent


def find_team(pk: int | None, *, field: str) -> Team | None:
    if pk is None:
        return None
    team = Team.objects.filter(pk=pk).first()
    if team is None:
        raise InvalidInput(f"no team with id {pk}", field=field)
    return team


TICKET_ERRORS = errors(400, 401, 403, 404, 409)


@extend_schema_view(
    list=extend_schema(
        summary="The queue",
        description="Tickets the caller may see, most urgent first (priority, then the "
        "nearest SLA deadline, then who has waited longest). Without `status`, only active "
        "tickets (new, open, pending). Cursor-paginated; no counts.",
        responses={200: TicketSerializer(many=True), **errors(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One ticket",
        description="404 for a ticket the caller may not see, exactly as for one that does "
        "not exist.",
        responses={200: TicketDetailSerializer, **errors(401, 403, 404)},
    ),
)
class TicketViewSet(StaffAPIMixin, viewsets.GenericViewSet):
    queryset = Ticket.objects.all()
    serializer_class = TicketSerializer
    pagination_class = QueuePagination
    filter_backends = [TicketFilterBackend]
    filterset_class = TicketFilter

    def get_queryset(self) -> QuerySet[Ticket]:
        return Ticket.objects.filter(visible_filter(self.agent)).select_related(*TICKET_RELATED)

    def list(self, request: Request) -> Response:
        # The fast path of tickets.rows: no joins but the contact, no serializer per row.
        queryset = self.filter_queryset(Ticket.objects.filter(visible_filter(self.agent)))
        rows = rows_module.prepare(self.paginate_queryset(queryset))
        tz = timezone.get_current_timezone()
        return self.get_paginated_response([rows_module.api_row(t, tz) for t in rows])

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(TicketDetailSerializer(self.get_ticket(pk)).data)

    # ------------------------------------------------------------------ helpers

    def get_ticket(self, pk: Any) -> Ticket:
        """A ticket the caller may see, or 404 (the same answer as for a missing one)."""
        ticket_id = parse_id(pk, what="ticket")
        ticket = self.get_queryset().prefetch_related(TAGS).filter(pk=ticket_id).first()
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} does not exist")
        return ticket

    def ticket_response(self, ticket: Ticket) -> Response:
        # After the action: the row as committed. Not filtered by visibility, since a transfer
        # may just have moved the ticket out of the caller's teams.
        fresh = (
            Ticket.objects.select_related(*TICKET_RELATED).prefetch_related(TAGS).get(pk=ticket.pk)
        )
        return Response(TicketDetailSerializer(fresh).data)

    def message_response(self, message: Message, ticket: Ticket) -> Response:
        fresh = (
            Message.objects.select_related("author__user", "channel")
            .prefetch_related(ATTACHMENTS)
            .get(pk=message.pk)
        )
        context = {"request": self.request, "contact": ticket.contact}
        return Response(MessageSerializer(fresh, context=context).data, status=201)

    # ------------------------------------------------------------------ thread

    @extend_schema(
        summary="The thread of a ticket",
        description="Messages oldest first, internal notes included (every caller is staff), "
        "with attachments. Pages by message id: `next` continues toward newer messages.",
        responses={200: MessageSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    @action(
        detail=True,
        methods=["get"],
        pagination_class=MessagePagination,
        filter_backends=[],
        serializer_class=MessageSerializer,
    )
    def messages(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        paginator = MessagePagination()
        rows = paginator.paginate_queryset(
            Message.objects.filter(ticket=ticket).select_related("author__user", "channel"),
            request,
            self,
        )
        prefetch_related_objects(rows, ATTACHMENTS)
        context = {"request": request, "contact": ticket.contact}
        return paginator.get_paginated_response(
            MessageSerializer(rows, many=True, context=context).data
        )

    @extend_schema(
        summary="Reply to the customer",
        description="Sent on the ticket's channel after commit. Claims an unassigned ticket for "
        "the replying agent. JSON, or multipart/form-data with files named `attachments`.",
        request={
            "application/json": ReplySerializer,
            "multipart/form-data": ReplySerializer,
        },
        responses={201: MessageSerializer, **errors(400, 401, 403, 404, 409, 413)},
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=PARSERS,
        filter_backends=[],
    )
    def reply(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(ReplySerializer, request)
        message = actions.do_reply(
            ticket,
            self.agent,
            data["text"],
            attachments=data["attachments"],
            status=data.get("status"),
        )
        return self.message_response(message, ticket)

    @extend_schema(
        summary="Add an internal note",
        description="Visible to staff only; never sent to the customer.",
        request={
            "application/json": NoteSerializer,
            "multipart/form-data": NoteSerializer,
        },
        responses={201: MessageSerializer, **errors(400, 401, 403, 404, 413)},
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=PARSERS,
        filter_backends=[],
    )
    def notes(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(NoteSerializer, request)
        message = actions.do_add_note(
            ticket, self.agent, data["text"], attachments=data["attachments"]
        )
        return self.message_response(message, ticket)

    # ------------------------------------------------------------------ ownership

    @extend_schema(
        summary="Assign or unassign",
        description="To an agent who may work the ticket's team (moving it to another team is "
        "a transfer). Agents hand over their own or unassigned tickets; reassigning a "
        "colleague's ticket is for supervisors.",
        request=AssignSerializer,
        responses={200: TicketDetailSerializer, **TICKET_ERRORS},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def assign(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(AssignSerializer, request)
        assignee = find_agent(data["assignee"], field="assignee")
        return self.ticket_response(actions.do_assign(ticket, assignee, actor=self.agent))

    @extend_schema(
        summary="Transfer to a team and/or agent",
        description="With an optional internal note saying why. To an agent outside the "
        "ticket's team, the ticket follows the agent to their team.",
        request=TransferSerializer,
        responses={200: TicketDetailSerializer, **TICKET_ERRORS},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def transfer(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(TransferSerializer, request)
        team = find_team(data.get("team"), field="team")
        agent = find_agent(data.get("agent"), field="agent")
        return self.ticket_response(
            actions.do_transfer(ticket, actor=self.agent, team=team, agent=agent, note=data["note"])
        )

    @extend_schema(
        summary="Take the next ticket",
        description="Claims the most urgent unassigned ticket the caller may work (their "
        "teams, languages and skills). 204 when nothing is workable; 409 at capacity.",
        request=None,
        responses={
            200: TicketDetailSerializer,
            204: OpenApiResponse(description="Nothing to take right now."),
            **errors(401, 403, 409),
        },
    )
    @action(detail=False, methods=["post"], url_path="take-next", filter_backends=[])
    def take_next(self, request: Request) -> Response:
        ticket = actions.do_take_next(self.agent)
        if ticket is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self.ticket_response(ticket)

    # ------------------------------------------------------------------ state

    @extend_schema(
        summary="Set the status",
        request=StatusChangeSerializer,
        responses={200: TicketDetailSerializer, **TICKET_ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="status", filter_backends=[])
    def set_status(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(StatusChangeSerializer, request)
        return self.ticket_response(actions.do_set_status(ticket, data["status"], actor=self.agent))

    @extend_schema(
        summary="Set the priority",
        description="A person's choice: later messages no longer change the level.",
        request=PriorityChangeSerializer,
        responses={200: TicketDetailSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["post"], url_path="priority", filter_backends=[])
    def set_priority(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(PriorityChangeSerializer, request)
        return self.ticket_response(
            actions.do_set_priority(
                ticket, data["priority"], actor=self.agent, reason=data["reason"]
            )
        )

    @extend_schema(
        summary="Add and remove tags",
        description="Tag names are normalized (lower case, spaces to dashes); new names "
        "create tags.",
        request=TagChangeSerializer,
        responses={200: TicketDetailSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["post"], url_path="tags", filter_backends=[])
    def set_tags(self, request: Request, pk: str) -> Response:
        ticket = self.get_ticket(pk)
        data = validated(TagChangeSerializer, request)
        return self.ticket_response(
            actions.do_update_tags(ticket, actor=self.agent, add=data["add"], remove=data["remove"])
        )
