"""Garbage-collector settings for the long-running processes (ASGI, gunicorn, Celery).

Measured in bench/live.py (500 agent sockets, 100 messages/s): the ASGI process ran a full
(generation 2) collection every ~4 s, each 150-260 ms of a stalled event loop that freed
nothing — every socket's events waited behind it, the p99 latency was those pauses. Events
held for the live coalescing window outlive the young generations (collected every few
hundred allocations) and so pile into the old one, which Python scans in full once it has
grown by a quarter: all of Django, every model and socket, again and again.

So, once the process has imported what it will keep for its life: `gc.freeze()` moves those
objects out of every later scan (they are never garbage), and a young generation of
YOUNG_THRESHOLD allocations lets short-lived objects die young instead of being promoted.
Cycles are still collected; they just wait a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
