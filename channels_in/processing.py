"""Turning stored inbound events into tickets, and queued deliveries into sent messages.

Both run on Celery workers (in-process on the embedded default). Both are idempotent: an
event is claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and processed in one transaction
with its effects; a delivery is claimed by a compare-and-set from queued to sending.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tickets import actions
from tickets.inbound import InboundMessage
from tickets.models import Delivery, Direction, Message, Ticket

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


# How long receipts and edits for a message we have not seen yet wait for it.
DEFER_UNMATCHED_FOR = timedelta(minutes=10)


@dataclass
class Outcome:
    status: str  # processed, deferred, failed, skipped
    counts: dict[str, int]


def process_event(event_id: int) -> Outcome:
    """Parse one stored event and apply what it says. Raises on transient errors (the caller
    retries); a malformed body marks the event failed for good."""
    with transaction.atomic():
        event = (
            # of=self: the join must not lock the channel row, or every event of a channel
            # would skip the others being processed (and collide with inserts' key locks).
            InboundEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel")
            .filter(pk=event_id, status=InboundEvent.Status.PENDING)
            .first()
        )
        if event is None:
            return Outcome("skipped", {})  # done already, or another worker holds it
        adapter = adapter_for(event.channel.kind)
        if adapter is None:
            return _fail(event, f"no adapter for channel kind {event.channel.kind!r}")
        try:
            items = adapter.parse(event.channel, bytes(event.body), event.meta)
        except PayloadError as exc:
            return _fail(event, f"malformed: {exc}")
        counts: Counter[str] = Counter()
        for item in items:
            counts[apply_item(event.channel, item)] += 1
        unmatched = counts["receipt_unmatched"] + counts["edit_unmatched"]
        if unmatched and timezone.now() - event.received_at < DEFER_UNMATCHED_FOR:
            # A receipt can beat our own record of the send, an edit can beat the message it
            # edits. Everything else in the event is applied (and idempotent); keep the event
            # pending so a later attempt finds what is missing.
            event.attempts += 1
            event.error = f"deferred: {unmatched} receipt(s)/edit(s) for messages not seen yet"
            event.result = dict(counts)
            event.save(update_fields=["attempts", "error", "result"])
            return Outcome("deferred", dict(counts))
        event.status = InboundEvent.Status.PROCESSED
        event.processed_at = timezone.now()
        event.attempts += 1
        event.error = ""
        event.result = dict(counts)
        event.save(update_fields=["status", "processed_at", "attempts", "error", "result"])
        return Outcome("processed", dict(counts))


def apply_item(channel: Channel, item: object) -> str:
    """Hand one parsed item to the core; return what happened, for the event's record."""
    if isinstance(item, InboundMessage):
        if (
            item.is_public
            and not continues_ticket(channel, item)
            and not should_ticket(channel, item)
        ):
            return "mention_not_ticketed"
        received = actions.do_receive_inbound(item)
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
    event.status = InboundEvent.Status.FAILED
    event.error = error[:4000]
    event.attempts += 1
    event.save(update_fields=["status", "error", "attempts"])
    log.warning("inbound event %s failed: %s", event.pk, error)
    return Outcome("failed", {})


def record_event_error(event_id: int, error: str, *, give_up: bool) -> None:
    """A transient error: count the attempt; after too many, park the event as failed."""
    updates: dict[str, object] = {"error": error[:4000]}
    if give_up:
        updates["status"] = InboundEvent.Status.FAILED
    InboundEvent.objects.filter(pk=event_id, status=InboundEvent.Status.PENDING).update(**updates)
    InboundEvent.objects.filter(pk=event_id).update(attempts=F("attempts") + 1)


def replay_event(event: InboundEvent) -> None:
    """Put a failed (or processed) event back to pending, for an operator's retry or replay.
    Processing is idempotent: replaying a processed event changes nothing already done."""
    InboundEvent.objects.filter(pk=event.pk).update(
        status=InboundEvent.Status.PENDING, error="", processed_at=None
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
                url=f"{settings.SITE_URL}{a.file.url}" if a.file else a.source_url,
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
