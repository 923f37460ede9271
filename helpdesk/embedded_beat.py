"""Celery beat for the embedded default: there is no broker and no beat process there, so the
ASGI process runs the periodic jobs of CELERY_BEAT_SCHEDULE itself, in a daemon thread.
Production runs `celery -A helpdesk beat` instead and never starts this."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)
_started = threading.Lock()
_thread: threading.Thread | None = None


def start() -> None:
    global _thread
    with _started:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_loop, name="embedded-beat", daemon=True)
        _thread.start()


def _loop() -> None:
    from helpdesk.celery import app

    # A worker imports every app's tasks at start; this process is not a worker.
    app.loader.import_default_modules()
    schedule = {
        name: entry
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if isinstance(entry.get("schedule"), timedelta)
    }
    next_run = {name: time.monotonic() + 5 for name in schedule}
    while True:
        time.sleep(1)
        now = time.monotonic()
        for name, entry in schedule.items():
            if now < next_run[name]:
                continue
            next_run[name] = now + entry["schedule"].total_seconds()  # type: ignore[union-attr]
            try:
                app.tasks[str(entry["task"])].apply()
            except Exception:
                log.exception("periodic job %s failed", name)
            finally:
                close_old_connections()
