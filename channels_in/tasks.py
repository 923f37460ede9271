"""Celery tasks of the edge. Each takes an id (or nothing), is idempotent, and delegates to
processing: claims are compare-and-set, so a task run twice, or by two workers, does nothing
twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from tickets.models import Delivery

from . import processing

log = logging.getLogger(__name__)


def kick_key() -> str:
    from helpdesk.celery import app

    # Per queue: separate deployments (or test runs) on one Redis do not share kicks.
    return f"ingest:kick:{app.conf.task_default_queue}"


@shared_task(acks_late=True, ignore_result=True)
def process_pending_events() -> int:
    """Process every due pending event, in batches. Webhooks send one of these "kicks" at a
    time (coalesced), not one task per message: Celery's per-task cost is the first ceiling
    at storm rates (PERF-NOTES), and a batch claim is one query for fifty events."""
    # Cleared before claiming: an event committed after this line sends a new kick; one
    # committed before it is seen by the claim below.
    cache.delete(kick_key())
    return processing.process_pending()


@shared_task(acks_late=True, ignore_result=True)
def process_inbound_event(event_id: int) -> str:
    """Process one event now (operators' replays)."""
    return processing.process_event(event_id).status


@shared_task(acks_late=True, ignore_result=True)
def send_delivery(delivery_id: int) -> str:
    result = processing.send_delivery_now(delivery_id)
    if result.status == "retry" and result.retry_in is not None:
        send_delivery.apply_async((delivery_id,), countdown=result.retry_in.total_seconds())
    return result.status


@shared_task(ignore_result=True)
def sweep_inbound_events() -> int:
    """Give back events a dead worker left claimed, and process whatever is due (retries
    after a backoff, receipts waiting for their message, anything a lost kick left)."""
    released = processing.release_stuck_events()
    if released:
        log.warning("released %s inbound events left claimed by a dead worker", released)
    return processing.process_pending()


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
