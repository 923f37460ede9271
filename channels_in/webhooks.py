"""`GET|POST /hooks/<kind>/<channel_key>/` — the one webhook view for every platform.

It verifies, stores the raw delivery as an InboundEvent, enqueues it and answers — nothing
else happens inside the request, so the platform gets its 200 in milliseconds and a slow or
dead worker never makes it retry. One INSERT ... ON CONFLICT DO NOTHING both stores and
dedupes: a redelivery is a 200 that does nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from tickets.actions import _prepared_cursor
from tickets.rawrows import Columns

from .base import PayloadError, SignatureError, body_hash
from .models import Channel, InboundEvent
from .registry import adapter_for

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO channels_in_inboundevent "
    "(channel_id, platform_id, body, meta, status, attempts, error, result, received_at, "
    "next_attempt_at) VALUES (%s, %s, %s, %s, %s, 0, %s, %s, %s, %s) "
    "ON CONFLICT (channel_id, platform_id) DO NOTHING RETURNING id"
)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _body_limit(kind: str) -> int:
    return (
        settings.HELPDESK_EMAIL_MAX_BYTES
        if kind == "email"
        else settings.HELPDESK_WEBHOOK_MAX_BYTES
    )


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` (without reading more than that)."""
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _meta(request: HttpRequest) -> dict[str, Any]:
    # Only what parsing needs; signatures, tokens and cookies are deliberately left out.
    return {
        "content_type": request.META.get("CONTENT_TYPE", ""),
        "query": request.META.get("QUERY_STRING", ""),
    }


def count_rejection(channel: Channel, reason: str) -> None:
    key = f"hooks:rejected:{channel.pk}"
    try:
        cache.add(key, 0, timeout=None)
        cache.incr(key)
    except Exception:  # a counter must never turn a rejection into a 500
        log.debug("rejection counter unavailable", exc_info=True)


def store_malformed(channel: Channel, body: bytes, meta: dict[str, Any], exc: Exception) -> None:
    """A body no adapter can read is kept as a failed event, never dropped silently: an
    operator can read and replay it (webhooks, IMAP polling and mail imports alike)."""
    store_event(
        channel,
        "invalid:" + body_hash(body),
        body,
        meta,
        status=InboundEvent.Status.FAILED,
        error=f"malformed: {exc}",
    )


def store_event(
    channel: Channel,
    platform_id: str,
    body: bytes,
    meta: dict[str, Any],
    *,
    status: str = InboundEvent.Status.PENDING,
    error: str = "",
) -> int | None:
    """Insert the event; return its id, or None if this delivery was already stored."""
    now = timezone.now()
    # Prepared on the server, the body a bound parameter: no parsing per request, and no
    # escaping of the body into the statement's text (client-side binding did both).
    with _prepared_cursor() as cursor:
        cursor.execute(
            _INSERT,
            [
                channel.pk,
                platform_id[:255],
                body,
                json.dumps(meta),
                status,
                error,
                "{}",
                now,
                now,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def enqueue(event_id: int) -> None:
    """Get a stored event processed. In-process (embedded default), right now; with a broker,
    one coalesced "kick" at a time: the worker then claims every due event in batches."""
    from helpdesk.celery import app

    from .processing import process_event
    from .tasks import process_pending_events, set_kick

    if app.conf.task_always_eager:
        process_event(event_id)
        return
    try:
        if set_kick():
            process_pending_events.delay()
    except Exception:
        # The event is committed; the sweeper processes it when the broker is back.
        log.exception(
            "event %s stored but no worker was told; the sweeper will pick it up", event_id
        )


# The channel of a webhook, read on every delivery: a hand-written SELECT (no ORM query to
# compile, no ordering) costs a third of `Channel.objects.filter(...).first()` in CPU, and the
# row is always fresh: a deactivated channel or rotated secret counts from the next request.
_CHANNEL = Columns(Channel, "c")
_CHANNEL_SQL = (
    f"SELECT {_CHANNEL.sql} FROM channels_in_channel c "  # noqa: S608 -- column names only
    'WHERE c.kind = %s AND c."key" = %s AND c.is_active'
)


def active_channel(kind: str, key: str) -> Channel | None:
    with _prepared_cursor() as cursor:
        cursor.execute(_CHANNEL_SQL, [kind, key])
        row = cursor.fetchone()
    return _CHANNEL.build(row) if row is not None else None


@csrf_exempt
def webhook(request: HttpRequest, kind: str, channel_key: str) -> HttpResponse:
    adapter = adapter_for(kind)
    if adapter is None:
        return _error(404, "unknown_kind", f"no channel kind {kind!r}")
    channel = active_channel(kind, channel_key)
    if channel is None:
        return _error(404, "unknown_channel", f"no active {kind} channel {channel_key!r}")
    if request.method not in ("GET", "POST"):
        return _error(405, "method_not_allowed", "use GET for handshakes and POST for events")

    body = _read_body(request, _body_limit(kind))
    if body is None:
        return _error(413, "too_large", f"the body is over the {_body_limit(kind)}-byte limit")

    try:
        answer = adapter.handshake(channel, request, body)
        if answer is not None:
            return answer
        if request.method == "GET":
            return _error(405, "method_not_allowed", "this endpoint takes events by POST")
        adapter.verify(channel, request, body)
    except SignatureError as exc:
        count_rejection(channel, str(exc))
        log.warning("rejected %s webhook for channel %s: %s", kind, channel.key, exc)
        return _error(exc.status, "bad_signature", str(exc))

    meta = _meta(request)
    body = adapter.redact(channel, body)
    try:
        platform_id = adapter.event_id(channel, body, meta)
    except PayloadError as exc:
        store_malformed(channel, body, meta, exc)
        return _error(400, "malformed", str(exc))

    # One INSERT commits on its own (autocommit): no BEGIN/COMMIT round trips. on_commit runs
    # the kick at once then, or after the commit when a caller wraps this in a transaction.
    event_id = store_event(channel, platform_id, body, meta)
    if event_id is not None:
        transaction.on_commit(lambda: enqueue(event_id))
    return adapter.ack(channel)
