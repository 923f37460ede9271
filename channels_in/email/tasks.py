"""Celery tasks of the email channel: IMAP polling.

Beat runs `poll_imap_channels` (say every minute); it fans out one `poll_imap_channel` task
per mailbox, so a slow or broken mailbox never holds up the others, and a lock keeps two
polls of one mailbox from running at once when a poll outlasts the interval.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from ..models import Channel

log = logging.getLogger(__name__)

POLL_LOCK_SECONDS = 15 * 60


@shared_task(ignore_result=True)
def poll_imap_channels() -> int:
    """Enqueue a poll of every active email channel that has an IMAP host."""
    ids = [
        channel.pk
        for channel in Channel.objects.filter(kind="email", is_active=True).only("credentials")
        if channel.credentials.get("imap_host")
    ]
    for channel_id in ids:
        poll_imap_channel.delay(channel_id)
    return len(ids)


@shared_task(ignore_result=True)
def poll_imap_channel(channel_id: int) -> dict[str, int] | None:
    """Import one mailbox's new messages. Errors are logged, never raised: the next beat
    tick tries again, and nothing is flagged that was not stored."""
    from . import imap  # imaplib and ssl only on the workers that poll

    channel = Channel.objects.filter(pk=channel_id, kind="email", is_active=True).first()
    if channel is None or not channel.credentials.get("imap_host"):
        return None
    lock = f"email:imap-poll:{channel_id}"
    try:
        locked = cache.add(lock, 1, timeout=POLL_LOCK_SECONDS)
    except Exception:  # no cache: polling twice is harmless (dedupe), just wasteful
        locked = True
    if not locked:
        log.info("IMAP poll of channel %s is still running; skipped", channel.key)
        return None
    try:
        result = imap.poll_mailbox(channel, connect=imap.open_connection)
    except Exception as exc:
        log.error("IMAP poll of channel %s failed: %s: %s", channel.key, type(exc).__name__, exc)
        return None
    finally:
        try:
            cache.delete(lock)
        except Exception:
            log.debug("could not release %s", lock, exc_info=True)
    if result.errors:
        log.warning("IMAP poll of channel %s: %s", channel.key, "; ".join(result.errors[:5]))
    log.info(
        "IMAP poll of channel %s: %s new, %s duplicates, %s malformed, %s left for next time",
        channel.key,
        result.stored,
        result.duplicates,
        result.failed,
        max(0, result.found - result.flagged),
    )
    return {
        "found": result.found,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "failed": result.failed,
    }
