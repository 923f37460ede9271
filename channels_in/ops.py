"""Operations on the edge for supervisors: dead letters (failed deliveries) and inbound events
that failed, wait, or are stuck, with retry and replay. Shared by the pages (ops_views) and
the REST API (api); both only read here and write through tickets.actions (deliveries) or
channels_in.processing (events).

Lists are keyset-paginated on the partial indexes the models already have (failed deliveries
by `updated_at`, failed events by `received_at`, pending ones by `next_attempt_at`), newest or
most due first; no COUNT(*) and no OFFSET, so a storm's thousands of dead letters page as
cheaply as ten.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tickets import actions
from tickets.api.pagination import bad_cursor, decode_cursor, encode_cursor
from tickets.errors import Conflict, InvalidInput, NotFound
from tickets.models import Agent, Delivery

from . import processing
from .models import InboundEvent
from .webhooks import enqueue

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)

EventStatus = InboundEvent.Status


# --------------------------------------------------------------------------- keyset pages


@dataclass(frozen=True)
class Order:
    """A list order: one column (a timestamp, or "id" itself) then id as the tie-break."""

    field: str
    descending: bool

    def ordering(self, *, reverse: bool = False) -> list[str]:
        down = self.descending != reverse
        fields = [self.field] if self.field == "id" else [self.field, "id"]
        return [f"-{f}" if down else f for f in fields]


@dataclass
class Page:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def _cursor(direction: str, order: Order, row: Model) -> str:
    if order.field == "id":
        return encode_cursor([direction, row.pk])
    value = getattr(row, order.field)
    return encode_cursor([direction, value.isoformat(), row.pk])


def _decode(cursor: str, order: Order) -> tuple[str, datetime | None, int]:
    value = decode_cursor(cursor)
    size = 2 if order.field == "id" else 3
    if not isinstance(value, list) or len(value) != size or value[0] not in ("n", "p"):
        raise bad_cursor()
    pk = value[-1]
    if not isinstance(pk, int) or isinstance(pk, bool) or not 0 <= pk < 2**63:
        raise bad_cursor()
    if order.field == "id":
        return value[0], None, pk
    at = parse_datetime(value[1]) if isinstance(value[1], str) else None
    if at is None:
        raise bad_cursor()
    return value[0], at, pk


def keyset_page(qs: QuerySet[M], order: Order, *, cursor: str | None, size: int) -> Page:
    """One page of `qs` in `order`. `next` continues in the list's direction."""
    if not cursor:
        rows = list(qs.order_by(*order.ordering())[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return Page(rows, _cursor("n", order, rows[-1]) if more else None, None)
    direction, at, pk = _decode(cursor, order)
    forward = direction == "n"
    # Going forward in a descending list (or back in an ascending one) means smaller keys.
    smaller = order.descending == forward
    if order.field == "id":
        after = Q(id__lt=pk) if smaller else Q(id__gt=pk)
    else:
        # A range on the indexed column (an index range scan), minus the ties up to the
        # cursor's row: never an OR that would make PostgreSQL give up the index order.
        name = order.field
        if smaller:
            after = Q(**{f"{name}__lte": at}) & ~Q(**{name: at, "id__gte": pk})
        else:
            after = Q(**{f"{name}__gte": at}) & ~Q(**{name: at, "id__lte": pk})
    rows = list(qs.filter(after).order_by(*order.ordering(reverse=not forward))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    return Page(
        rows,
        _cursor("n", order, rows[-1]) if rows and (more or not forward) else None,
        _cursor("p", order, rows[0]) if rows and (more or forward) else None,
    )


# --------------------------------------------------------------------------- dead letters

DELIVERY_STATES = ("failed", "queued", "sending")
DELIVERY_ORDERS = {
    # Dead letters newest first (delivery_failed_idx); the outbox most due first
    # (delivery_pending_idx).
    "failed": Order("updated_at", descending=True),
    "queued": Order("next_attempt_at", descending=False),
    "sending": Order("next_attempt_at", descending=False),
}


def deliveries(state: str) -> QuerySet[Delivery]:
    if state not in DELIVERY_STATES:
        raise InvalidInput(
            f"state must be one of {', '.join(DELIVERY_STATES)}, not {state!r} "
            "(sent messages are on their tickets)",
            field="state",
        )
    return Delivery.objects.filter(state=state).select_related(
        "channel", "message__ticket__contact", "message__author__user"
    )


def delivery_page(state: str, *, cursor: str | None, size: int) -> Page:
    return keyset_page(deliveries(state), DELIVERY_ORDERS[state], cursor=cursor, size=size)


def retry_delivery(delivery_id: int, agent: Agent) -> Delivery:
    """Send a dead letter again (tickets.actions checks the role and the state)."""
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    actions.do_retry_delivery(delivery, actor=agent)
    log.info("delivery %s retried by agent %s", delivery_id, agent.pk)
    return deliveries_any().get(pk=delivery_id)


def deliveries_any() -> QuerySet[Delivery]:
    return Delivery.objects.select_related(
        "channel", "message__ticket__contact", "message__author__user"
    )


# --------------------------------------------------------------------------- inbound events

EVENT_STATUSES = tuple(EventStatus.values)
EVENT_ORDERS = {
    # Failed: newest first (event_failed_idx). Pending: most due first (event_due_idx), so
    # a backlog or an overdue event is at the top. Processing: oldest claim first (a
    # handful of rows). Processed: newest first, by id.
    EventStatus.FAILED: Order("received_at", descending=True),
    EventStatus.PENDING: Order("next_attempt_at", descending=False),
    EventStatus.PROCESSING: Order("id", descending=False),
    EventStatus.PROCESSED: Order("id", descending=True),
}


def events(status: str) -> QuerySet[InboundEvent]:
    if status not in EVENT_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(EVENT_STATUSES)}, not {status!r}", field="status"
        )
    return events_any().filter(status=status)


def events_any() -> QuerySet[InboundEvent]:
    """Events without their bodies (up to megabytes each), with the body's size."""
    return (
        InboundEvent.objects.select_related("channel")
        .defer("body")
        .annotate(body_size=Length("body"))
    )


def event_page(status: str, *, cursor: str | None, size: int) -> Page:
    return keyset_page(events(status), EVENT_ORDERS[status], cursor=cursor, size=size)


def is_stuck(event: InboundEvent, now: datetime | None = None) -> bool:
    """Claimed by a worker longer ago than any batch takes: the worker died."""
    now = now or timezone.now()
    return event.status == EventStatus.PROCESSING and (
        event.claimed_at is None or event.claimed_at < now - processing.STUCK_AFTER
    )


def is_overdue(event: InboundEvent, now: datetime | None = None) -> bool:
    """Pending and due for a while, yet nobody took it: no worker, or a lost kick."""
    now = now or timezone.now()
    return event.status == EventStatus.PENDING and event.next_attempt_at < now - (
        processing.STUCK_AFTER
    )


def replay_event(event_id: int, agent: Agent | None) -> InboundEvent:
    """Process an event again: a failed one (retry), a waiting or overdue one (now), a stuck
    one (taken back from the dead worker), a processed one (replay: processing is idempotent,
    so nothing already done changes). Then the workers are kicked (in-process on the
    embedded default, where this returns after processing)."""
    event = events_any().filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"event {event_id} does not exist")
    if event.status == EventStatus.PROCESSING:
        now = timezone.now()
        released = (
            InboundEvent.objects.filter(pk=event_id, status=EventStatus.PROCESSING)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - processing.STUCK_AFTER))
            .update(status=EventStatus.PENDING, claimed_at=None, next_attempt_at=now)
        )
        if not released:
            raise Conflict(
                f"event {event_id} is being processed by a worker right now; "
                "if it is still processing in a few minutes, retry it then"
            )
    else:
        processing.replay_event(event)
    log.info(
        "inbound event %s (%s) replayed by agent %s",
        event_id,
        event.status,
        agent.pk if agent is not None else "-",
    )
    enqueue(event_id)
    return events_any().get(pk=event_id)


# --------------------------------------------------------------------------- raw bodies

SHOW_BYTES = 256 * 1024


@dataclass(frozen=True)
class RawBody:
    text: str
    format: str  # json, form, email, text
    size: int
    truncated: bool


def raw_body(event: InboundEvent, *, pretty: bool = True, limit: int = SHOW_BYTES) -> RawBody:
    """The stored body for a person to read: JSON pretty-printed, a form as one field per
    line, an email as its raw text (`pretty=False`: the text as received). Bodies are stored
    redacted (adapters drop secrets before the row is written); the caller escapes the text
    for HTML."""
    body = bytes(event.body)
    content_type = str((event.meta or {}).get("content_type", "")).split(";", 1)[0]
    content_type = content_type.strip().lower()
    truncated = len(body) > limit
    # A cut may split a UTF-8 sequence: "replace" shows one replacement character there.
    text = body[:limit].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if event.channel.kind == "email" or content_type == "message/rfc822":
        return RawBody(text, "email", len(body), truncated)
    looks_json = content_type.endswith("json") or text.lstrip()[:1] in ("{", "[")
    if looks_json and not truncated:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            if pretty:
                text = json.dumps(data, indent=2, ensure_ascii=False)
            return RawBody(text, "json", len(body), truncated)
    if content_type == "application/x-www-form-urlencoded" and not truncated:
        if not pretty:
            return RawBody(text, "form", len(body), truncated)
        pairs = parse_qsl(text, keep_blank_values=True)
        lines = "\n".join(f"{key} = {value}" for key, value in pairs)
        return RawBody(lines, "form", len(body), truncated)
    return RawBody(text, "text", len(body), truncated)
