"""Contacts: search, the person with their identities and accounts, their whole history across
channels, merges (and undoing them), and logged phone calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tickets import actions, keyset
from tickets.errors import InvalidInput, NotFound
from tickets.models import (
    AccountNumber,
    Agent,
    Call,
    Contact,
    ContactMerge,
    Identity,
    Message,
    Ticket,
)
from tickets.queue import can_see, visible_filter

from .common import StaffAPIMixin, parse_id, validated
from .filtersets import ContactFilter, ContactMergeFilter
from .pagination import (
    CURSOR_PARAM,
    SIZE_PARAM,
    NewestFirstPagination,
    bad_cursor,
    decode_cursor,
    encode_cursor,
    page_link,
)
from .schema import errors
from .serializers import (
    CallSerializer,
    ContactMergeSerializer,
    ContactSerializer,
    ContactUpdateSerializer,
    MergeSerializer,
    TimelineEntrySerializer,
    TimelinePageSerializer,
)
from .views import ATTACHMENTS

CONTACT_PREFETCH = (
    Prefetch("identities", queryset=Identity.objects.order_by("id")),
    Prefetch("accounts", queryset=AccountNumber.objects.order_by("number")),
)
MERGE_RELATED = ("actor__user", "undone_by__user")


def load_merge(pk: int) -> ContactMerge:
    return ContactMerge.objects.select_related(*MERGE_RELATED).get(pk=pk)


# --------------------------------------------------------------------------- timeline

# Entries are ordered newest first by (time, kind rank, id): unique, so a cursor is exact.
TICKET_RANK, MESSAGE_RANK, CALL_RANK = 0, 1, 2


@dataclass(frozen=True)
class TimelineKey:
    at: datetime
    rank: int
    id: int

    def encode(self) -> str:
        return encode_cursor([self.at.isoformat(), self.rank, self.id])

    @classmethod
    def decode(cls, cursor: str) -> TimelineKey:
        value = decode_cursor(cursor)
        if not isinstance(value, list) or len(value) != 3:
            raise bad_cursor()
        raw_at, rank, pk = value
        try:
            at = parse_datetime(raw_at) if isinstance(raw_at, str) else None
        except ValueError:
            at = None
        if (
            at is None
            or timezone.is_naive(at)
            or rank not in (TICKET_RANK, MESSAGE_RANK, CALL_RANK)
            or not isinstance(pk, int)
            or isinstance(pk, bool)
            or not 0 <= pk < 2**63
        ):
            raise bad_cursor()
        return cls(at, rank, pk)

    def older(self, field: str, rank: int) -> Q:
        """Rows of a source with kind `rank` that come after this key, newest first."""
        if rank < self.rank:
            return Q(**{f"{field}__lte": self.at})
        if rank > self.rank:
            return Q(**{f"{field}__lt": self.at})
        return Q(**{f"{field}__lt": self.at}) | Q(**{field: self.at, "id__lt": self.id})


def build_timeline(
    agent: Agent, contact: Contact, *, cursor: TimelineKey | None, size: int
) -> tuple[list[dict[str, Any]], TimelineKey | None]:
    """One page of a contact's history: tickets, messages and calls, newest first.

    Messages come only from tickets the agent may open; other tickets appear as a summary
    without any text, and calls on them without their summary.
    """

    def page(qs: QuerySet[Any], field: str, rank: int) -> list[Any]:
        if cursor is not None:
            qs = qs.filter(cursor.older(field, rank))
        return list(qs.order_by(f"-{field}", "-id")[: size + 1])

    tickets = page(
        Ticket.objects.filter(contact=contact).select_related("channel", "team"),
        "created_at",
        TICKET_RANK,
    )
    visible_ids = Ticket.objects.filter(contact=contact).filter(visible_filter(agent))
    messages = page(
        Message.objects.filter(ticket__in=visible_ids.values("id")).select_related(
            "author__user", "channel"
        ),
        "created_at",
        MESSAGE_RANK,
    )
    calls = page(
        Call.objects.filter(contact=contact).select_related("agent__user", "ticket"),
        "started_at",
        CALL_RANK,
    )

    entries: list[tuple[TimelineKey, dict[str, Any]]] = []
    for ticket in tickets:
        ticket.visible = can_see(agent, ticket)
        entries.append(
            (
                TimelineKey(ticket.created_at, TICKET_RANK, ticket.pk),
                {"type": "ticket", "at": ticket.created_at, "ticket": ticket},
            )
        )
    prefetch_related_objects(messages, ATTACHMENTS)
    entries.extend(
        (
            TimelineKey(message.created_at, MESSAGE_RANK, message.pk),
            {"type": "message", "at": message.created_at, "message": message},
        )
        for message in messages
    )
    for call in calls:
        if call.ticket is not None and not can_see(agent, call.ticket):
            call.summary = None  # a call about a ticket the agent may not open: no text
        entries.append(
            (
                TimelineKey(call.started_at, CALL_RANK, call.pk),
                {"type": "call", "at": call.started_at, "call": call},
            )
        )
    entries.sort(key=lambda pair: (pair[0].at, pair[0].rank, pair[0].id), reverse=True)
    more = len(entries) > size
    entries = entries[:size]
    next_key = entries[-1][0] if more and entries else None
    return [entry for _, entry in entries], next_key


# --------------------------------------------------------------------------- views


@extend_schema_view(
    list=extend_schema(
        summary="Search contacts",
        description="Newest first, cursor-paginated. Merged-away contacts are left out.",
        responses={200: ContactSerializer(many=True), **errors(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One contact, with identities and account numbers",
        responses={200: ContactSerializer, **errors(401, 403, 404)},
    ),
    partial_update=extend_schema(
        summary="Change a contact",
        description="`accounts`, when given, is the whole list of account numbers.",
        request=ContactUpdateSerializer,
        responses={200: ContactSerializer, **errors(400, 401, 403, 404)},
    ),
)
class ContactViewSet(StaffAPIMixin, viewsets.GenericViewSet):
    queryset = Contact.objects.all()
    serializer_class = ContactSerializer
    pagination_class = NewestFirstPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = ContactFilter

    def get_queryset(self) -> QuerySet[Contact]:
        return Contact.objects.all()

    def get_contact(self, pk: Any) -> Contact:
        contact_id = parse_id(pk, what="contact")
        contact = Contact.objects.filter(pk=contact_id).first()
        if contact is None:
            raise NotFound(f"contact {contact_id} does not exist")
        return contact

    def contact_response(self, contact_id: int) -> Response:
        contact = Contact.objects.prefetch_related(*CONTACT_PREFETCH).get(pk=contact_id)
        return Response(ContactSerializer(contact).data)

    def list(self, request: Request) -> Response:
        queryset = self.filter_queryset(Contact.objects.filter(merged_into__isnull=True))
        rows = self.paginate_queryset(queryset)
        prefetch_related_objects(rows, *CONTACT_PREFETCH)
        return self.get_paginated_response(ContactSerializer(rows, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return self.contact_response(self.get_contact(pk).pk)

    def partial_update(self, request: Request, pk: str) -> Response:
        contact = self.get_contact(pk)
        changes = validated(ContactUpdateSerializer, request)
        accounts = changes.pop("accounts", None)
        if not changes and accounts is None:
            raise InvalidInput("nothing to change: give at least one field")
        actions.do_update_contact(contact, actor=self.agent, accounts=accounts, **changes)
        return self.contact_response(contact.pk)

    @extend_schema(
        summary="The contact's history across channels",
        description="Every ticket, message and logged call, newest first. Tickets the caller "
        "may not open appear as a summary (`ticket.visible` false) without their messages; "
        "calls on them come without a summary. Forward-only cursor (`next`).",
        parameters=[
            OpenApiParameter(CURSOR_PARAM, str, description="Cursor from `next`."),
            OpenApiParameter(
                SIZE_PARAM, int, description="Entries per page (default 25, at most 100)."
            ),
        ],
        responses={200: TimelinePageSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def timeline(self, request: Request, pk: str) -> Response:
        contact = self.get_contact(pk)
        size = keyset.page_size(request.query_params.get(SIZE_PARAM), default=25, maximum=100)
        raw = request.query_params.get(CURSOR_PARAM)
        cursor = TimelineKey.decode(raw) if raw else None
        entries, next_key = build_timeline(self.agent, contact, cursor=cursor, size=size)
        return Response(
            {
                "results": TimelineEntrySerializer(
                    entries, many=True, context={"request": request, "contact": contact}
                ).data,
                "next": page_link(request, next_key.encode() if next_key else None),
            }
        )

    @extend_schema(
        summary="Merge another contact into this one",
        description="The source's identities, account numbers, tickets and calls move here. "
        "Recorded, and reversible with `contacts/merges/{id}/undo/`.",
        request=MergeSerializer,
        responses={201: ContactMergeSerializer, **errors(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def merge(self, request: Request, pk: str) -> Response:
        target = self.get_contact(pk)
        data = validated(MergeSerializer, request)
        source = Contact.objects.filter(pk=data["source"]).first()
        if source is None:
            raise InvalidInput(f"no contact with id {data['source']}", field="source")
        merge = actions.do_merge_contacts(target, source, actor=self.agent, reason=data["reason"])
        return Response(
            ContactMergeSerializer(load_merge(merge.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Log a phone call",
        description="On the contact's timeline, and as an internal entry on `ticket` when given.",
        request=CallSerializer,
        responses={201: CallSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def calls(self, request: Request, pk: str) -> Response:
        contact = self.get_contact(pk)
        data = validated(CallSerializer, request)
        ticket = None
        if data["ticket_id"] is not None:
            ticket = Ticket.objects.filter(pk=data["ticket_id"]).first()
            if ticket is None or not can_see(self.agent, ticket):
                raise InvalidInput(f"no ticket with id {data['ticket_id']}", field="ticket")
        call = actions.do_log_call(
            contact,
            actor=self.agent,
            direction=data["direction"],
            phone=data["phone"],
            started_at=data["started_at"],
            duration_seconds=data["duration_seconds"],
            summary=data["summary"] or "",
            ticket=ticket,
        )
        fresh = Call.objects.select_related("agent__user").get(pk=call.pk)
        return Response(CallSerializer(fresh).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="Contact merges",
        description="Newest first; `contact` narrows to merges into or out of one contact.",
        responses={200: ContactMergeSerializer(many=True), **errors(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One merge", responses={200: ContactMergeSerializer, **errors(401, 403, 404)}
    ),
)
class ContactMergeViewSet(
    StaffAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = ContactMerge.objects.all()
    serializer_class = ContactMergeSerializer
    pagination_class = NewestFirstPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = ContactMergeFilter

    def get_queryset(self) -> QuerySet[ContactMerge]:
        return ContactMerge.objects.select_related(*MERGE_RELATED)

    def get_object(self) -> ContactMerge:
        merge_id = parse_id(self.kwargs["pk"], what="merge")
        merge = self.get_queryset().filter(pk=merge_id).first()
        if merge is None:
            raise NotFound(f"merge {merge_id} does not exist")
        return merge

    @extend_schema(
        summary="Undo a merge",
        description="What moved goes back to the source contact.",
        request=None,
        responses={200: ContactMergeSerializer, **errors(401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def undo(self, request: Request, pk: str) -> Response:
        merge = self.get_object()
        actions.do_unmerge_contacts(merge, actor=self.agent)
        return Response(ContactMergeSerializer(load_merge(merge.pk)).data)
