"""REST API for the edge's operations, supervisors and admins only:

- `GET /api/v1/deliveries/?state=failed` — dead letters, newest first (also `queued`,
  `sending`: the outbox, most due first); `GET /api/v1/deliveries/<id>/`;
  `POST /api/v1/deliveries/<id>/retry/` sends a dead letter again.
- `GET /api/v1/events/?status=failed` — inbound events by status (failed newest first,
  pending most due first, ...); `GET /api/v1/events/<id>/` with the body as text;
  `POST /api/v1/events/<id>/replay/` processes one again (idempotent for processed events).

Included from tickets/api/urls.py (the router at the end). Reads go through channels_in.ops,
writes through tickets.actions and channels_in.processing, like the pages.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from tickets.api.common import StaffAPIMixin, parse_id
from tickets.api.pagination import CURSOR_PARAM, SIZE_PARAM, page_link
from tickets.api.permissions import IsStaffMember, IsSupervisor
from tickets.api.schema import errors
from tickets.api.serializers import ChannelRefSerializer, ContactRefSerializer, RefSerializer
from tickets.errors import InvalidInput, NotFound
from tickets.keyset import page_size
from tickets.models import Delivery

from . import ops
from .models import InboundEvent

DEFAULT_SIZE = 25
MAX_SIZE = 100
# The API returns up to this much of a body as text (webhook bodies are at most 1 MB by
# default; raw emails can be tens of megabytes).
API_BODY_BYTES = 2 * 1024 * 1024

PAGE_PARAMETERS = [
    OpenApiParameter(
        CURSOR_PARAM, OpenApiTypes.STR, description="Opaque cursor from `next` or `previous`."
    ),
    OpenApiParameter(
        SIZE_PARAM,
        OpenApiTypes.INT,
        description=f"Items per page (default {DEFAULT_SIZE}, at most {MAX_SIZE}).",
    ),
    OpenApiParameter("channel", OpenApiTypes.INT, description="Only this channel's (its id)."),
]


def _page(request: Request, fetch: Any) -> Response:
    """One keyset page as `{"results", "next", "previous"}`, like every list of the API."""
    size = page_size(request.query_params.get(SIZE_PARAM), default=DEFAULT_SIZE, maximum=MAX_SIZE)
    page = fetch(cursor=request.query_params.get(CURSOR_PARAM) or None, size=size)
    return Response(
        {
            "results": page.rows,
            "next": page_link(request, page.next_cursor),
            "previous": page_link(request, page.previous_cursor),
        }
    )


def _channel_filter(request: Request) -> int | None:
    raw = request.query_params.get("channel")
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise InvalidInput(f"channel must be a channel id, not {raw!r}", field="channel")
    return int(raw)


def page_of(name: str, serializer: type[serializers.Serializer]) -> serializers.Serializer:
    """The schema of a keyset page: `{"results": [...], "next": url, "previous": url}`."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": serializer(many=True, read_only=True),
            "next": serializers.URLField(read_only=True, allow_null=True),
            "previous": serializers.URLField(read_only=True, allow_null=True),
        },
    )()


# Named components of their own: drf-spectacular names enums by field name, and "StatusEnum"
# already means a ticket's status.
@extend_schema_field(
    {"type": "string", "enum": list(Delivery.State.values)}, component_name="DeliveryState"
)
class DeliveryStateField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=Delivery.State.choices, **kwargs)


@extend_schema_field(
    {"type": "string", "enum": list(InboundEvent.Status.values)},
    component_name="InboundEventStatus",
)
class EventStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=InboundEvent.Status.choices, **kwargs)


# --------------------------------------------------------------------------- deliveries


class DeadLetterMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    text = serializers.CharField(read_only=True)
    author = RefSerializer(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)


class DeliverySerializer(serializers.Serializer):
    """One outbound delivery. Expects channel, message__ticket__contact and
    message__author__user selected."""

    id = serializers.IntegerField(read_only=True)
    state = DeliveryStateField(read_only=True)
    ticket = serializers.IntegerField(source="message.ticket_id", read_only=True)
    channel = ChannelRefSerializer(read_only=True, allow_null=True)
    customer = ContactRefSerializer(source="message.ticket.contact", read_only=True)
    message = DeadLetterMessageSerializer(read_only=True)
    last_error = serializers.CharField(
        read_only=True, help_text="The platform's error, as it said it."
    )
    attempts = serializers.IntegerField(read_only=True)
    next_attempt_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(
        read_only=True, help_text="For a dead letter: when it failed for good."
    )


@extend_schema(tags=["deliveries"])
class DeliveryViewSet(StaffAPIMixin, viewsets.GenericViewSet):
    """The outbox and its dead letters, for supervisors and admins."""

    permission_classes = [IsStaffMember, IsSupervisor]
    serializer_class = DeliverySerializer
    pagination_class = None
    filter_backends: list[Any] = []
    queryset = Delivery.objects.none()

    @extend_schema(
        summary="Dead letters (and the outbox)",
        description="Deliveries in one state: `failed` (the default: the dead letters, "
        "newest first), `queued` or `sending` (the outbox, most due first). Cursor pages; "
        "no counts.",
        parameters=[
            OpenApiParameter(
                "state", OpenApiTypes.STR, enum=list(ops.DELIVERY_STATES), default="failed"
            ),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: page_of("DeliveryPage", DeliverySerializer),
            **errors(400, 401, 403),
        },
    )
    def list(self, request: Request) -> Response:
        state = request.query_params.get("state") or "failed"
        qs = ops.deliveries(state)
        channel = _channel_filter(request)
        if channel is not None:
            qs = qs.filter(channel_id=channel)

        def fetch(*, cursor: str | None, size: int) -> ops.Page:
            page = ops.keyset_page(qs, ops.DELIVERY_ORDERS[state], cursor=cursor, size=size)
            page.rows = DeliverySerializer(page.rows, many=True).data
            return page

        return _page(request, fetch)

    @extend_schema(
        summary="One delivery",
        responses={200: DeliverySerializer, **errors(401, 403, 404)},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        delivery_id = parse_id(pk, what="delivery")
        delivery = ops.deliveries_any().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound(f"delivery {delivery_id} does not exist")
        return Response(DeliverySerializer(delivery).data)

    @extend_schema(
        summary="Send a dead letter again",
        description="Back to `queued` with its attempts reset; sent after commit through the "
        "ticket's channel. 409 unless the delivery is `failed`.",
        request=None,
        responses={200: DeliverySerializer, **errors(401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        delivery = ops.retry_delivery(parse_id(pk, what="delivery"), self.agent)
        return Response(DeliverySerializer(delivery).data)


# --------------------------------------------------------------------------- inbound events


class InboundEventSerializer(serializers.Serializer):
    """One stored platform delivery, without its body. Expects channel selected and
    `body_size` annotated (channels_in.ops.events_any)."""

    id = serializers.IntegerField(read_only=True)
    channel = ChannelRefSerializer(read_only=True)
    platform_id = serializers.CharField(read_only=True, help_text="The platform's own id.")
    status = EventStatusField(read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    error = serializers.CharField(read_only=True)
    result = serializers.JSONField(
        read_only=True, help_text="What processing produced: counts per kind of item."
    )
    content_type = serializers.SerializerMethodField()
    body_size = serializers.IntegerField(read_only=True)
    received_at = serializers.DateTimeField(read_only=True)
    next_attempt_at = serializers.DateTimeField(read_only=True)
    claimed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    processed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    stuck = serializers.SerializerMethodField(
        help_text="Processing, claimed minutes ago by a worker that never finished."
    )
    overdue = serializers.SerializerMethodField(
        help_text="Pending and due minutes ago, yet no worker took it."
    )

    def get_content_type(self, event: InboundEvent) -> str:
        return str((event.meta or {}).get("content_type", ""))

    def get_stuck(self, event: InboundEvent) -> bool:
        return ops.is_stuck(event)

    def get_overdue(self, event: InboundEvent) -> bool:
        return ops.is_overdue(event)


class InboundEventDetailSerializer(InboundEventSerializer):
    body = serializers.SerializerMethodField(
        help_text="The stored (redacted) body as UTF-8 text, exactly as received; invalid "
        "bytes become U+FFFD."
    )
    body_format = serializers.SerializerMethodField(help_text="json, form, email or text.")
    body_truncated = serializers.SerializerMethodField(
        help_text=f"The body is longer than the {API_BODY_BYTES} bytes returned."
    )

    def _raw(self, event: InboundEvent) -> ops.RawBody:
        cached = getattr(event, "_raw_body", None)
        if cached is None:
            cached = ops.raw_body(event, pretty=False, limit=API_BODY_BYTES)
            event._raw_body = cached  # type: ignore[attr-defined]
        return cached

    def get_body(self, event: InboundEvent) -> str:
        return self._raw(event).text

    def get_body_format(self, event: InboundEvent) -> str:
        return self._raw(event).format

    def get_body_truncated(self, event: InboundEvent) -> bool:
        return self._raw(event).truncated


@extend_schema(tags=["events"])
class InboundEventViewSet(StaffAPIMixin, viewsets.GenericViewSet):
    """The raw inbound event store, for supervisors and admins."""

    permission_classes = [IsStaffMember, IsSupervisor]
    serializer_class = InboundEventSerializer
    pagination_class = None
    filter_backends: list[Any] = []
    queryset = InboundEvent.objects.none()

    @extend_schema(
        summary="Inbound events by status",
        description="The raw platform deliveries: `failed` (the default; newest first), "
        "`pending` (most due first: retries, receipts waiting for their message, a "
        "backlog), `processing` (oldest claim first; `stuck` when its worker died) or "
        "`processed` (newest first). Bodies are left out; fetch one event for its body.",
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=list(ops.EVENT_STATUSES), default="failed"
            ),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: page_of("InboundEventPage", InboundEventSerializer),
            **errors(400, 401, 403),
        },
    )
    def list(self, request: Request) -> Response:
        status = request.query_params.get("status") or "failed"
        qs = ops.events(status)
        channel = _channel_filter(request)
        if channel is not None:
            qs = qs.filter(channel_id=channel)

        def fetch(*, cursor: str | None, size: int) -> ops.Page:
            page = ops.keyset_page(qs, ops.EVENT_ORDERS[status], cursor=cursor, size=size)
            page.rows = InboundEventSerializer(page.rows, many=True).data
            return page

        return _page(request, fetch)

    @extend_schema(
        summary="One inbound event, with its body",
        responses={200: InboundEventDetailSerializer, **errors(401, 403, 404)},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        event_id = parse_id(pk, what="event")
        event = ops.events_any().defer(None).filter(pk=event_id).first()
        if event is None:
            raise NotFound(f"event {event_id} does not exist")
        return Response(InboundEventDetailSerializer(event).data)

    @extend_schema(
        summary="Process an event again",
        description="Retry a failed or waiting event, take back a stuck one, or replay a "
        "processed one: processing is idempotent, so what was already done does not change. "
        "Answers with the event after the replay was handed to the workers (on the "
        "embedded default, after it was processed). 409 while a worker is processing it.",
        request=None,
        responses={200: InboundEventSerializer, **errors(401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str) -> Response:
        event = ops.replay_event(parse_id(pk, what="event"), self.agent)
        return Response(InboundEventSerializer(event).data)


# Included from tickets/api/urls.py with one line: `path("", include("channels_in.api"))`.
router = SimpleRouter()
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("events", InboundEventViewSet, basename="inbound-event")
urlpatterns = router.urls
