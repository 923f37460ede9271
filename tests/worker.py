"""A real Celery worker in a subprocess, on the test database and the test Redis.

Used by end-to-end tests: each run gets its own queue name and channel-layer prefix, so
parallel test processes (xdist) and other runs on the same Redis never take each other's tasks
or events. The test process stops running tasks eagerly for the duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from helpdesk.celery import app

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_URL_VARIABLES = (
    "TELEGRAM_API_BASE",
    "META_GRAPH_API_BASE",
    "X_API_BASE",
    "VIBER_API_BASE",
    "VK_API_BASE",
    "TWILIO_API_BASE",
)


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("end-to-end worker tests need PostgreSQL (run them with `make test`)")
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, process: subprocess.Popen[str], queue: str, prefix: str) -> None:
        self.process = process
        self.queue = queue
        self.prefix = prefix
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        if not self._ready.wait(timeout):
            raise RuntimeError("the Celery worker did not start:\n" + "\n".join(self.lines[-40:]))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def celery_worker(
    extra_env: dict[str, str] | None = None, *, pool: str = "solo"
) -> Iterator[Worker]:
    """Start a worker (solo pool unless told; prefork runs one process) on a private queue;
    stop it on exit."""
    redis_url = settings.REDIS_URL
    if not redis_url:
        raise RuntimeError("end-to-end worker tests need REDIS_URL (run them with `make test`)")
    queue = f"test-{uuid.uuid4().hex[:10]}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL or redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": queue,
        "CHANNEL_LAYER_PREFIX": prefix,
        # Web and worker processes coordinate through the cache (ingest kicks): one namespace.
        "CACHE_PREFIX": prefix,
        "SECRET_KEY": settings.SECRET_KEY,
        "DB_POOL_MAX": "0",
        # Platform APIs at a closed local port unless the test passes its fake platform.
        **dict.fromkeys(PLATFORM_URL_VARIABLES, "http://127.0.0.1:9"),
        **(extra_env or {}),
    }
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and app)
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "helpdesk",
            "worker",
            "-P",
            pool,
            *(["-c", "1"] if pool == "prefork" else []),
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = Worker(process, queue, prefix)
    saved: dict[str, Any] = {
        "task_always_eager": app.conf.task_always_eager,
        "task_default_queue": app.conf.task_default_queue,
    }
    try:
        worker.wait_ready()
        app.conf.task_always_eager = False
        app.conf.task_default_queue = queue
        yield worker
    finally:
        app.conf.update(saved)
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_for(predicate: Any, *, timeout: float = 20, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class LiveListener:
    """Subscribes to channel-layer groups from a thread with its own event loop (the Redis
    pub/sub layer is bound to the loop that created the channel) and collects the events."""

    def __init__(self, groups: list[str]) -> None:
        import asyncio
        import queue

        from channels.layers import get_channel_layer

        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._subscribed = threading.Event()
        self._layer = get_channel_layer()
        self._groups = groups
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("could not subscribe to the channel layer")

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        # Closed here, in its thread (channels_redis flushes the loop's layer on close): left
        # to the garbage collector, the flush ran at interpreter exit and could hang it.
        self._loop.close()

    async def _listen(self) -> None:
        import asyncio

        name = await self._layer.new_channel()
        for group in self._groups:
            await self._layer.group_add(group, name)
        self._subscribed.set()
        self._stop = asyncio.Event()
        while not self._stop.is_set():
            try:
                message = await asyncio.wait_for(self._layer.receive(name), 0.2)
            except TimeoutError:
                continue
            self.events.put(message)

    def get(self, timeout: float = 10) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
