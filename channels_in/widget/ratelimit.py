"""Rate limits for the public widget socket.

Across processes (many ASGI servers behind a proxy) the counts live in Django's cache (Redis
in production): one fixed-window counter per key, `add` then `incr`, both atomic in Redis,
so two servers never lose each other's counts. A window boundary can let a burst of twice
the limit through; for keeping a chat box from flooding the queue that is fine, and it needs
no read-modify-write. If the cache is down the limiter lets traffic through: the chat keeps
working while Redis blinks, the database is the real backstop.

Within one connection a small in-memory token bucket caps frames of any kind (pings, bad
JSON, pre-chat submissions) without touching the cache at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.core.cache import cache

log = logging.getLogger(__name__)


async def hit(key: str, limit: int, window: int) -> int | None:
    """Count one event under `key`; return the seconds to wait if that was over `limit` in
    the current `window`, else None."""
    now = time.time()
    slot = int(now // window)
    cache_key = f"widget:rl:{key}:{slot}"
    try:
        await cache.aadd(cache_key, 0, timeout=window + 1)
        try:
            count = await cache.aincr(cache_key)
        except ValueError:  # expired between add and incr
            await cache.aset(cache_key, 1, timeout=window + 1)
            count = 1
    except Exception:
        log.warning("widget rate limiter unavailable; letting %s through", key, exc_info=True)
        return None
    if count <= limit:
        return None
    return max(1, int((slot + 1) * window - now) + 1)


@dataclass
class TokenBucket:
    """`capacity` frames at once, refilled at `rate` per second."""

    capacity: float
    rate: float
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
