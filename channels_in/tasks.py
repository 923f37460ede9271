"""Celery tasks of the edge. Each takes an id (or nothing), is idempotent, and delegates to
processing: claims are compare-and-set, so a task run twice, or by two workers, does nothing
twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from tickets.models import Delivery

from . import processing

log = logging.getLogger(__name__)


def kick_key() -> str:
    from helpdesk.celery import app

    # Per queue: separate deployments (or test runs) on one Redis do not share kicks.
    return f"ingest:kick:{app.conf.task_default_queue}"


KICK_SECONDS = 2


def _kick_redis() -> Any:
    """A redis-py client kept for the life of the process when the cache is Redis, else None.
    Every webhook sets the kick, and Django's RedisCache builds a new redis-py client (with
    its table of ~170 response callbacks) for each call: ~0.15 ms of CPU per request. The
    client shares the cache's connection pool (which reconnects after a fork)."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    servers = tuple(backend._servers)
    client = _KICK_CLIENTS.get(servers)
    if client is None:
        client = _KICK_CLIENTS[servers] = backend._cache.get_client(write=True)
    return client


_KICK_CLIENTS: dict[tuple[str, ...], Any] = {}


def _set_once(name: str, seconds: float) -> bool:
    """Set the key `name` for `seconds` unless it is set; True when this call set it."""
    client = _kick_redis()
    if client is None:
        return bool(cache.add(name, 1, timeout=max(1, round(seconds))))
    # The key and value cache.add would write, so either side may use either API.
    key = cache.make_and_validate_key(name)
    return bool(client.set(key, 1, nx=True, px=int(seconds * 1000)))


def set_kick() -> bool:
    """Mark that a kick is on its way; True when none was (the caller then sends one)."""
    return _set_once(kick_key(), KICK_SECONDS)


# A worker process with a backlog asks for another at most this often.
HELP_SECONDS = 0.25


def ask_for_help() -> None:
    """A claim found more than one event waiting: more than this process keeps up with, and
    the kick it holds keeps the webhooks from sending tasks. One more task (at most one per
    HELP_SECONDS) brings another worker process in."""
    if _set_once(kick_key() + ":help", HELP_SECONDS):
        process_pending_events.delay()


def clear_kick() -> None:
    client = _kick_redis()
    if client is None:
        cache.delete(kick_key())
    else:
        client.delete(cache.make_and_validate_key(kick_key()))


@shared_task(acks_late=True, ignore_result=True)
def process_pending_events() -> int:
    """Process every due pending event, in batches. Webhooks send one of these "kicks" at a
    time (coalesced), not one task per message: Celery's per-task cost is the first ceiling
    at storm rates (PERF-NOTES), and a batch claim is one query for fifty events.

    The kick stays set while this runs, so the webhooks meanwhile send no more (cleared
    when the task started, one webhook in three sent one at 100 a second: a Celery message
    published, delivered and acknowledged for every three events; bench/live.py at 100
    agents: 32 tasks a second → ~8, 7-8 s less CPU a minute for gunicorn and the worker
    together). It expires after KICK_SECONDS, and a backlog asks for help
    (ask_for_help), so a storm still gets every worker process. It is cleared when no event
    is left, and then the claim is tried once more: an event committed before the clear
    sent no kick of its own (the kick was set), one committed after it sends one."""
    done = processing.process_pending(on_backlog=ask_for_help)
    clear_kick()
    return done + processing.process_pending(on_backlog=ask_for_help)


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


# =========================================================================== attachments
#
# Media the platforms only referenced are fetched here, never in the webhook: one task per
# attachment, enqueued when its message is stored; transient errors retried with backoff (a
# countdown task, and the sweeper for whatever a dead worker or a lost task left); permanent
# errors recorded on the message by tickets.actions.do_fail_attachment.
# (Imported here rather than at the top, which other sections share.)

from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from tickets import actions  # noqa: E402
from tickets.models import Attachment  # noqa: E402

from .base import FetchError  # noqa: E402
from .media import fetch_seconds, human_size  # noqa: E402
from .registry import adapter_for  # noqa: E402

# The sweeper looks this far back; anything older has long used up its attempts.
FETCH_SWEEP_WINDOW = timedelta(days=1)
# The countdown task normally retries first; the sweeper waits this much longer.
FETCH_SWEEP_GRACE = timedelta(minutes=2)
FETCH_SWEEP_LIMIT = 500


@dataclass
class FetchResult:
    status: str  # stored, retry, failed, skipped
    retry_in: timedelta | None = None


def needs_fetch(attachment: Attachment) -> bool:
    return (
        not attachment.file
        and bool(attachment.source_url)
        # Email parts arrive with their bytes; "cid:" only names the part.
        and not attachment.source_url.startswith("cid:")
        and not actions.attachment_given_up(attachment)
    )


def enqueue_attachment_fetches(message_id: int) -> None:
    """After the message's transaction commits, one fetch task per attachment it references
    but does not carry (called by processing.apply_item for a new inbound message)."""

    def enqueue() -> None:
        candidates = Attachment.objects.filter(message_id=message_id, file="").exclude(
            source_url=""
        )
        for attachment in candidates:
            if needs_fetch(attachment):
                try:
                    fetch_attachment.delay(attachment.pk)
                except Exception:
                    # Committed and still unfetched: the sweeper finds it.
                    log.exception("attachment %s not enqueued; the sweeper will", attachment.pk)

    transaction.on_commit(enqueue, robust=True)


def fetch_attachment_now(attachment_id: int) -> FetchResult:
    """Fetch one attachment through its channel's adapter and store it (or record why not).
    Idempotent: a stored, given-up or currently leased attachment is skipped."""
    attachment = (
        Attachment.objects.select_related("message__channel").filter(pk=attachment_id).first()
    )
    if attachment is None or not needs_fetch(attachment):
        return FetchResult("skipped")
    lease = f"attachment-fetch:{attachment_id}"
    try:
        leased = cache.add(lease, 1, timeout=int(fetch_seconds()) + 60)
    except Exception:
        leased = True  # no cache: the row lock in the action still stores one file only
    if not leased:
        return FetchResult("skipped")  # another worker is downloading it right now
    try:
        return _fetch(attachment)
    finally:
        try:
            cache.delete(lease)
        except Exception:
            log.debug("lease %s not released; it expires", lease, exc_info=True)


def _fetch(attachment: Attachment) -> FetchResult:
    channel = attachment.message.channel
    adapter = adapter_for(channel.kind) if channel is not None else None
    if channel is None or adapter is None:
        return _fetch_failed(attachment, "no adapter can fetch media on this channel", True)
    try:
        content, content_type, filename = adapter.fetch_media(channel, attachment.source_url)
    except FetchError as exc:
        return _fetch_failed(attachment, str(exc), exc.permanent)
    except httpx.HTTPError as exc:
        # An adapter's own API call let a transport error through: the URL stays out of it.
        return _fetch_failed(attachment, f"{type(exc).__name__} talking to the platform", False)
    limit = settings.HELPDESK_MAX_ATTACHMENT_BYTES
    if len(content) > limit:
        too_big = f"the file is {human_size(len(content))}; the limit is {human_size(limit)}"
        return _fetch_failed(attachment, too_big, True)
    actions.do_store_attachment_file(attachment.pk, content, content_type, filename)
    return FetchResult("stored")


def _fetch_failed(attachment: Attachment, error: str, permanent: bool) -> FetchResult:
    attempt = attachment.fetch_attempts + 1
    if permanent or attempt >= actions.ATTACHMENT_FETCH_MAX_ATTEMPTS:
        reason = error if permanent else f"{error} (gave up after {attempt} attempts)"
        actions.do_fail_attachment(attachment.pk, reason)
        log.warning("attachment %s not downloaded: %s", attachment.pk, reason)
        return FetchResult("failed")
    actions.do_record_attachment_fetch_attempt(attachment.pk, error)
    return FetchResult("retry", processing.backoff(attempt))


def fetch_due_at(created_at: datetime, attempts: int) -> datetime:
    """The earliest the next attempt is due. Attachments have no next-attempt column, but
    every retry waits backoff(n) after attempt n, so this lower bound follows from the
    creation time and the count alone."""
    return created_at + sum((processing.backoff(n) for n in range(1, attempts + 1)), timedelta())


def due_attachment_ids(now: datetime | None = None) -> list[int]:
    """Attachments still to fetch whose retry is due (plus grace), within the sweep window."""
    now = now or timezone.now()
    cutoff = now - FETCH_SWEEP_WINDOW
    # Ids grow with time: the newest attachment older than the window bounds the scan to
    # the last day's rows (there is no index for unfetched attachments).
    boundary = (
        Attachment.objects.filter(created_at__lt=cutoff)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    rows = (
        Attachment.objects.filter(
            pk__gt=boundary or 0,
            created_at__gte=cutoff,
            file="",
            fetch_attempts__lt=actions.ATTACHMENT_FETCH_MAX_ATTEMPTS,
        )
        .exclude(source_url="")
        .exclude(source_url__startswith="cid:")
        .order_by("pk")
        .values_list("pk", "created_at", "fetch_attempts")[: FETCH_SWEEP_LIMIT * 4]
    )
    due = [
        pk
        for pk, created_at, attempts in rows
        if fetch_due_at(created_at, attempts) + FETCH_SWEEP_GRACE <= now
    ]
    return due[:FETCH_SWEEP_LIMIT]


@shared_task(acks_late=True, ignore_result=True)
def fetch_attachment(attachment_id: int) -> str:
    """Download one attachment's media and store it on its message (idempotent)."""
    result = fetch_attachment_now(attachment_id)
    # Eagerly (the embedded default) a countdown would run at once, in this call: there the
    # sweeper retries instead.
    if (
        result.status == "retry"
        and result.retry_in is not None
        and not fetch_attachment.app.conf.task_always_eager
    ):
        fetch_attachment.apply_async((attachment_id,), countdown=result.retry_in.total_seconds())
    return result.status


@shared_task(ignore_result=True)
def sweep_attachments() -> int:
    """Fetch attachments whose retry is due, or whose task was lost (a dead worker, a broker
    outage when the message was stored)."""
    ids = due_attachment_ids()
    for attachment_id in ids:
        fetch_attachment.delay(attachment_id)
    return len(ids)
