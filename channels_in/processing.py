"""Turning stored inbound events into tickets, and queued deliveries into sent messages.

Both run on Celery workers (in-process on the embedded default). Both are idempotent, and
both claim work by a compare-and-set, healthchecks style: an event goes pending -> processing
(`claim_events` takes a batch with `FOR UPDATE SKIP LOCKED`, in one statement), then each
event is applied in its own short transaction, so two workers never process one event and a
batch never holds locks across many customers' tickets; a delivery goes queued -> sending.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.db import connection, transaction
from django.utils import timezone

from tickets import actions
from tickets import events as live
from tickets.file_links import public_url
from tickets.inbound import InboundMessage
from tickets.models import Delivery, Direction, Message, Ticket
from tickets.rawrows import Columns
from tickets.rawwrites import Update

from .base import (
    Button,
    Edit,
    Ignored,
    Outbound,
    OutboundAttachment,
    PayloadError,
    SendError,
    StatusUpdate,
)
from .listening import should_ticket
from .models import Channel, InboundEvent
from .registry import adapter_for

log = logging.getLogger(__name__)

# How long receipts and edits for a message we have not seen yet wait for it, and how often
# they look again.
DEFER_UNMATCHED_FOR = timedelta(minutes=10)
DEFER_STEP = timedelta(seconds=15)
EVENT_MAX_ATTEMPTS = 8
# A claim older than this belonged to a worker that died: the sweeper gives it back.
STUCK_AFTER = timedelta(minutes=5)

Status = InboundEvent.Status


@dataclass
class Outcome:
    status: str  # processed, deferred, failed, retry, skipped
    counts: dict[str, int]


# What processing reads of an event (the rest it only writes).
_EVENT_FIELDS = ("id", "channel_id", "body", "meta", "attempts", "received_at")
_EVENT = Columns(InboundEvent, "e", _EVENT_FIELDS)
_CHANNEL = Columns(Channel, "c")
# Claim, read and join the channel in one statement: pending -> processing for up to %s due
# events that no other worker holds (SKIP LOCKED), oldest first. One statement commits on its
# own in autocommit, so no BEGIN/COMMIT round trips either. At 100 messages/s a kick finds one
# or two events, and the ORM's claim (a transaction, SELECT ... FOR UPDATE, UPDATE) plus a
# read of the events and one of their channels was half of each event's processing CPU.
# Which events are due comes from channels_in_due_events (migration 0005): the same SELECT
# ... ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED, kept on a plain index
# scan, which lets each claim skip the entries of events claimed before it.
_CLAIMED = f"SELECT {_EVENT.sql}, {_CHANNEL.sql} FROM claimed e"  # noqa: S608 -- columns only
_CLAIM_SQL = (
    "WITH claimed AS ("  # noqa: S608 -- column names only, values are bound
    " UPDATE channels_in_inboundevent u SET status = %s, claimed_at = %s"
    # = ANY(ARRAY(...)): the ids by the primary key; with IN (SELECT ...) the planner,
    # expecting a function's thousand rows, hash-joined them against the whole table.
    " WHERE u.id = ANY(ARRAY(SELECT channels_in_due_events(%s::integer, %s::timestamptz)))"
    " RETURNING u.*) "
    + _CLAIMED
    + " JOIN channels_in_channel c ON c.id = e.channel_id ORDER BY e.next_attempt_at, e.id"
)
# Events claimed (and so held in memory, bodies and all: an email may be megabytes) at once.
CLAIM_BATCH = 10


def claim_events(limit: int) -> list[InboundEvent]:
    """Take up to `limit` due pending events, oldest first, for this worker: each with the
    fields processing reads and its channel."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _claim_events_orm(limit, now)
    with actions._prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [Status.PROCESSING, now, limit, now])
        rows = cursor.fetchall()
    channels: dict[int, Channel] = {}
    events = []
    for row in rows:
        event = _EVENT.build(row)
        channel = channels.get(event.channel_id)
        if channel is None:
            channel = channels[event.channel_id] = _CHANNEL.build(row, _EVENT.width)
        event.channel = channel
        events.append(event)
    return events


def _claim_events_orm(limit: int, now: datetime) -> list[InboundEvent]:
    """The same on SQLite (the embedded default), where writes are serialized anyway."""
    with transaction.atomic():
        ids = list(
            InboundEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Status.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        InboundEvent.objects.filter(pk__in=ids).update(status=Status.PROCESSING, claimed_at=now)
        events = InboundEvent.objects.filter(pk__in=ids).select_related("channel")
        return list(events.order_by("next_attempt_at", "id"))


def process_pending(
    *,
    batch: int = CLAIM_BATCH,
    budget_seconds: float = 20.0,
    on_backlog: Callable[[], object] | None = None,
) -> int:
    """Claim and process due events until none are left (or the time budget is spent; the
    next kick or sweep continues). Returns how many events were processed.

    The per-event fixed costs are paid per batch (one claiming statement for up to `batch`
    events with their channels); each event is still applied in a transaction of its own.
    `on_backlog` is called when a claim finds more than one event waiting."""
    deadline = timezone.now() + timedelta(seconds=budget_seconds)
    done = 0
    while timezone.now() < deadline:
        events = claim_events(batch)
        if not events:
            break
        if on_backlog is not None and len(events) > 1:
            on_backlog()
        for event in events:
            run_claimed(event.pk, event)
        done += len(events)
    return done


def process_event(event_id: int) -> Outcome:
    """Process one event now, whatever its backoff says (a replay, an import, a test).
    Skipped when it is not pending (done already, or another worker has it)."""
    claimed = InboundEvent.objects.filter(pk=event_id, status=Status.PENDING).update(
        status=Status.PROCESSING, claimed_at=timezone.now()
    )
    if not claimed:
        return Outcome("skipped", {})
    return run_claimed(event_id)


def run_claimed(event_id: int, event: InboundEvent | None = None) -> Outcome:
    """Apply a claimed event (read here unless the caller has read it, with its channel);
    on an unexpected error, put it back with a backoff (or park it as failed after
    EVENT_MAX_ATTEMPTS): nothing accepted is dropped on an exception."""
    try:
        if event is None:
            event = InboundEvent.objects.select_related("channel").get(pk=event_id)
        return _apply_event(event)
    except Exception as exc:
        # _apply_event's own transaction (or savepoint) is rolled back: record the attempt.
        row = InboundEvent.objects.filter(pk=event_id).only("attempts").first()
        attempt = (row.attempts if row else 0) + 1
        give_up = attempt >= EVENT_MAX_ATTEMPTS
        InboundEvent.objects.filter(pk=event_id, status=Status.PROCESSING).update(
            status=Status.FAILED if give_up else Status.PENDING,
            attempts=attempt,
            error=f"{type(exc).__name__}: {exc}"[:4000],
            next_attempt_at=timezone.now() + backoff(attempt),
            claimed_at=None,
        )
        log.exception(
            "inbound event %s failed (attempt %s%s)",
            event_id,
            attempt,
            ", giving up" if give_up else "",
        )
        return Outcome("failed" if give_up else "retry", {})


def _apply_event(event: InboundEvent) -> Outcome:
    """Apply the event's items in one transaction, first without a savepoint per item: almost
    every item succeeds, and the savepoints' SAVEPOINT and RELEASE round trips were two of a
    new message's twelve statements (four before it was routed before its INSERT). An item
    that fails (a message stored twice, which only its unique constraint can tell; a routing
    error) needs its savepoint to keep the rest: the transaction is rolled back, and the
    event applied again with them, as if the first try had not happened."""
    attempts = event.attempts
    try:
        return _apply_items(event, savepoints=False)
    except Exception:
        event.attempts = attempts
        return _apply_items(event, savepoints=True)


def _apply_items(event: InboundEvent, *, savepoints: bool) -> Outcome:
    # The event's live events (ticket created, message added, assigned) go out together,
    # after the commit; those of a rolled-back try never go out.
    with live.batched(), transaction.atomic():
        adapter = adapter_for(event.channel.kind)
        if adapter is None:
            return _fail(event, f"no adapter for channel kind {event.channel.kind!r}")
        try:
            items = adapter.parse(event.channel, bytes(event.body), event.meta)
        except PayloadError as exc:
            return _fail(event, f"malformed: {exc}")
        counts: Counter[str] = Counter()
        for item in items:
            counts[apply_item(event.channel, item, savepoints=savepoints)] += 1
        now = timezone.now()
        event.attempts += 1
        event.result = dict(counts)
        event.claimed_at = None
        unmatched = counts["receipt_unmatched"] + counts["edit_unmatched"]
        if unmatched and now - event.received_at < DEFER_UNMATCHED_FOR:
            # A receipt can beat our own record of the send, an edit can beat the message it
            # edits. Everything else in the event is applied (and idempotent); look again
            # shortly for what is missing.
            event.status = Status.PENDING
            event.next_attempt_at = now + DEFER_STEP
            event.error = f"deferred: {unmatched} receipt(s)/edit(s) for messages not seen yet"
            _write(
                event, ("status", "next_attempt_at", "error", "attempts", "result", "claimed_at")
            )
            return Outcome("deferred", dict(counts))
        event.status = Status.PROCESSED
        event.processed_at = now
        event.error = ""
        _write(event, ("status", "processed_at", "attempts", "error", "result", "claimed_at"))
        return Outcome("processed", dict(counts))


def _write(event: InboundEvent, fields: tuple[str, ...]) -> None:
    """event.save(update_fields=fields), without compiling the same UPDATE for every event."""
    _event_update().save(event, fields)


@functools.cache
def _event_update() -> Update[InboundEvent]:
    return Update(InboundEvent, cursor=actions._prepared_cursor)


def apply_item(channel: Channel, item: object, *, savepoints: bool = True) -> str:
    """Hand one parsed item to the core; return what happened, for the event's record.
    Without `savepoints` (inside the caller's transaction) an inbound message is received
    without one: any error then aborts the caller's transaction (see _apply_event)."""
    if isinstance(item, InboundMessage):
        if (
            item.is_public
            and not continues_ticket(channel, item)
            and not should_ticket(channel, item)
        ):
            return "mention_not_ticketed"
        received = actions.do_receive_inbound(
            item, channel=channel, route=True, savepoint=savepoints
        )
        # A new or reopened ticket without an agent is routed here, on the worker.
        actions.route_after_receive(received)
        if item.attachments and not received.duplicate and received.message is not None:
            from .tasks import enqueue_attachment_fetches  # late: tasks imports this module

            enqueue_attachment_fetches(received.message.pk)
        return "duplicate" if received.duplicate else "message"
    if isinstance(item, StatusUpdate):
        updated = actions.do_update_delivery_status(
            item.channel_id, item.platform_message_id, item.status, error=item.error
        )
        return "receipt" if updated is not None else "receipt_unmatched"
    if isinstance(item, Edit):
        edited = actions.do_edit_inbound_message(
            item.channel_id, item.platform_message_id, item.text
        )
        return "edit" if edited is not None else "edit_unmatched"
    if isinstance(item, Ignored):
        return f"ignored:{item.reason}"
    raise TypeError(f"an adapter produced {type(item).__name__}, which the core cannot apply")


def continues_ticket(channel: Channel, item: InboundMessage) -> bool:
    """A public post that answers a conversation we already have a ticket for ("thanks, still
    dark") belongs on that ticket, whether or not it repeats a trigger word."""
    if (
        item.reply_to
        and Message.objects.filter(channel=channel, platform_message_id__in=list(item.reply_to))
        .exclude(ticket__status="closed")
        .exists()
    ):
        return True
    return (
        bool(item.thread_key)
        and Ticket.objects.filter(channel=channel, thread_key=item.thread_key)
        .exclude(status="closed")
        .exists()
    )


def _fail(event: InboundEvent, error: str) -> Outcome:
    event.status = Status.FAILED
    event.error = error[:4000]
    event.attempts += 1
    event.claimed_at = None
    event.save(update_fields=["status", "error", "attempts", "claimed_at"])
    log.warning("inbound event %s failed: %s", event.pk, error)
    return Outcome("failed", {})


def release_stuck_events() -> int:
    """Give back events claimed by a worker that died mid-way (at-least-once: processing is
    idempotent, so doing part of one again changes nothing)."""
    cutoff = timezone.now() - STUCK_AFTER
    return InboundEvent.objects.filter(status=Status.PROCESSING, claimed_at__lt=cutoff).update(
        status=Status.PENDING, claimed_at=None, next_attempt_at=timezone.now()
    )


def replay_event(event: InboundEvent) -> None:
    """Put a failed (or processed) event back to pending, for an operator's retry or replay.
    Processing is idempotent: replaying a processed event changes nothing already done."""
    InboundEvent.objects.filter(pk=event.pk).exclude(status=Status.PROCESSING).update(
        status=Status.PENDING,
        error="",
        processed_at=None,
        next_attempt_at=timezone.now(),
        attempts=0,
    )


# --------------------------------------------------------------------------- outbound

SEND_MAX_ATTEMPTS = 8


def backoff(attempt: int) -> timedelta:
    """Exponential backoff for retries: 10 s, 20 s, 40 s ... capped at one hour."""
    return timedelta(seconds=min(3600, 10 * 2 ** max(0, attempt - 1)))


def build_outbound(delivery: Delivery) -> Outbound:
    message = delivery.message
    ticket = message.ticket
    last_in = (
        Message.objects.filter(
            ticket=ticket, direction=Direction.IN, channel_id=delivery.channel_id
        )
        .order_by("-id")
        .only("payload", "platform_message_id")
        .first()
    )
    payload = last_in.payload if last_in is not None else {}
    recipient = str(payload.get("reply_to_address") or payload.get("from") or "")
    if not recipient:
        identity = ticket.contact.identities.filter(
            kind=_identity_kind(delivery.channel.kind)
        ).first()
        recipient = identity.value if identity is not None else ""
    references = tuple(
        Message.objects.filter(
            ticket=ticket, platform_message_id__isnull=False, channel_id=delivery.channel_id
        )
        .order_by("id")
        .values_list("platform_message_id", flat=True)[:50]
    )
    buttons = tuple(message.payload.get("buttons", []))
    return Outbound(
        channel_id=delivery.channel_id or 0,
        recipient=recipient,
        text=message.text,
        message_id=message.pk,
        ticket_id=ticket.pk,
        buttons=tuple(_button(b) for b in buttons),
        attachments=tuple(
            OutboundAttachment(
                name=a.name,
                content_type=a.content_type,
                url=public_url(a) if a.file else a.source_url,
                path=a.file.path if a.file else "",
            )
            for a in message.attachments.all()
        ),
        reply_to=(last_in.platform_message_id or "") if last_in is not None else "",
        subject=ticket.subject,
        references=references,
        extra={"last_inbound": payload},
    )


def _button(raw: object) -> Button:
    if isinstance(raw, dict):
        return Button(id=str(raw.get("id", "")), label=str(raw.get("label", "")))
    return Button(id=str(raw), label=str(raw))


def _identity_kind(channel_kind: str) -> str:
    return {"sms": "phone"}.get(channel_kind, channel_kind)


@dataclass
class SendResult:
    status: str  # sent, retry, failed, skipped
    retry_in: timedelta | None = None


def send_delivery_now(delivery_id: int) -> SendResult:
    """Claim a queued delivery and send it through its channel's adapter."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, state=Delivery.State.QUEUED, next_attempt_at__lte=now
    ).update(state=Delivery.State.SENDING, updated_at=now)
    if not claimed:
        return SendResult("skipped")
    delivery = Delivery.objects.select_related("message__ticket__contact", "channel").get(
        pk=delivery_id
    )
    channel = delivery.channel
    adapter = adapter_for(channel.kind) if channel is not None else None
    if channel is None or adapter is None:
        actions.do_mark_delivery_failed(delivery_id, "this channel cannot send messages")
        return SendResult("failed")
    try:
        out = build_outbound(delivery)
        if not out.recipient:
            raise SendError("the customer has no address on this channel", permanent=True)
        platform_id = adapter.send(channel, out)
    except SendError as exc:
        return _send_failed(delivery, str(exc), permanent=exc.permanent)
    except httpx.HTTPError as exc:
        return _send_failed(delivery, f"{type(exc).__name__}: {exc}", permanent=False)
    actions.do_mark_delivery_sent(delivery_id, platform_id)
    return SendResult("sent")


def _send_failed(delivery: Delivery, error: str, *, permanent: bool) -> SendResult:
    attempt = delivery.attempts + 1
    if permanent or attempt >= SEND_MAX_ATTEMPTS:
        reason = error if permanent else f"{error} (gave up after {attempt} attempts)"
        actions.do_mark_delivery_failed(delivery.pk, reason)
        return SendResult("failed")
    wait = backoff(attempt)
    actions.do_record_send_attempt(delivery.pk, error, timezone.now() + wait)
    return SendResult("retry", wait)
