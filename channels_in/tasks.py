"""Celery tasks of the edge. Each takes an id, is idempotent, and delegates to processing."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from tickets.models import Delivery

from . import processing
from .models import InboundEvent

log = logging.getLogger(__name__)

EVENT_MAX_ATTEMPTS = 8
DEFER_COUNTDOWN = 15
# Errors worth another try: the database or broker blinked. Anything else is a bug in parsing
# or the core and is retried too (it may be a race), but only EVENT_MAX_ATTEMPTS times.
TRANSIENT = (DatabaseError, InterfaceError)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=EVENT_MAX_ATTEMPTS)
def process_inbound_event(self, event_id: int) -> str:  # type: ignore[no-untyped-def]
    try:
        outcome = processing.process_event(event_id)
    except Exception as exc:
        attempt = self.request.retries + 1
        give_up = attempt >= EVENT_MAX_ATTEMPTS
        processing.record_event_error(event_id, f"{type(exc).__name__}: {exc}", give_up=give_up)
        if give_up:
            log.exception("inbound event %s failed for good after %s attempts", event_id, attempt)
            return "failed"
        log.warning("inbound event %s failed (attempt %s), retrying: %s", event_id, attempt, exc)
        raise self.retry(exc=exc, countdown=processing.backoff(attempt).total_seconds()) from exc
    if outcome.status == "deferred" and not self.request.is_eager:
        # Not an error: try again shortly. (In-process, the periodic sweeper retries instead:
        # an eager re-run would find the same thing missing at once.)
        process_inbound_event.apply_async((event_id,), countdown=DEFER_COUNTDOWN)
    return outcome.status


@shared_task(acks_late=True, ignore_result=True)
def send_delivery(delivery_id: int) -> str:
    result = processing.send_delivery_now(delivery_id)
    if result.status == "retry" and result.retry_in is not None:
        send_delivery.apply_async((delivery_id,), countdown=result.retry_in.total_seconds())
    return result.status


@shared_task(ignore_result=True)
def sweep_inbound_events(older_than_seconds: int = 60) -> int:
    """Re-enqueue events left pending (a lost task, a dead worker, the broker was down)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        InboundEvent.objects.filter(status=InboundEvent.Status.PENDING, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("id", flat=True)[:5000]
    )
    for event_id in ids:
        process_inbound_event.delay(event_id)
    return len(ids)


@shared_task(ignore_result=True)
def sweep_deliveries(stuck_after_seconds: int = 300) -> int:
    """Send deliveries whose retry is due, and free those stuck in "sending" (the worker died
    mid-send: at-least-once, the platform may see the message twice)."""
    now = timezone.now()
    Delivery.objects.filter(
        state=Delivery.State.SENDING, updated_at__lt=now - timedelta(seconds=stuck_after_seconds)
    ).update(state=Delivery.State.QUEUED, updated_at=now)
    ids = list(
        Delivery.objects.filter(state=Delivery.State.QUEUED, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:5000]
    )
    for delivery_id in ids:
        send_delivery.delay(delivery_id)
    return len(ids)
