"""Live benchmark: agents' WebSockets on a real ASGI server while webhooks arrive, measured from
the webhook POST to the frame on every socket that should show it.

    .venv/bin/python bench/live.py                                  # 100, then 500 agents
    .venv/bin/python bench/live.py --agents 20,50 --seconds 10 --no-results

Per agent count (each on a fresh database `helpdesk_bench_live`, Redis db 12):

1. Seed: `--teams` teams (4), one channel per kind (telegram, whatsapp, viber, sms), each
   channel's tickets going to one team; N agent accounts, one of them the supervisor (sees
   every ticket), the others in one team each, every fifth also in a second team; all
   online, as after logging in, and a session for each written through the session engine
   (what the login form does, without N password hashes). Then a month of history
   (`--history`, 20,000 closed tickets with their contacts, messages, events and inbound
   events: a storm does not arrive at an empty database) and ANALYZE, as autovacuum would
   have left the statistics (this machine's PostgreSQL runs without it).
2. Servers, as the README's production table runs them: `uvicorn helpdesk.asgi:application`
   (one process, uvloop/httptools, no per-message deflate) for `/ws/`,
   gunicorn (`--web-workers`, 2 sync) for the webhooks, one real Celery worker (prefork
   ×`--worker-concurrency`) processing the events, channels_redis's pub/sub layer on Redis,
   all with the channel-layer prefix `bench-live` (Redis pub/sub ignores db numbers: another
   prefix would mix our events with other runs' sockets).
3. Sockets: a separate client process (RFC 6455 by hand on one asyncio loop: `RawSocket`,
   per-message deflate offered as Chrome offers it, and declined) opens the N sockets
   with the agents' session cookies and same-origin headers, waits for each "hello", pings
   every `config.ping` seconds as the page does, and records the monotonic time of every
   ticket event it receives (batches unpacked) with its ticket id and the tag of the message
   the event's preview shows. Memory: the ASGI process's RSS (/proc) with one socket opened
   and closed (warm), then with the N sockets connected and idle; the difference / N.
4. Load: signed webhooks built by channels_in/simulate.py (customers threading follow-ups
   onto their tickets, as ingest does), each text starting with a unique tag (`LV0000123`),
   posted open-loop at `--rate`/s for `--seconds` from this process (asyncio on raw
   sockets, a connection per POST as gunicorn's sync workers close them); the start time of
   each POST is recorded (CLOCK_MONOTONIC is one clock for every process on Linux). A short
   warm-up (`--warmup` messages, not measured) goes first.
5. Drain: until every accepted event is processed, then until no ticket event has reached any
   socket for `--drain` (3) seconds, at most `--drain-max` (300): what is still queued in the
   ASGI process then counts as lost, marked "drain timed out" (late rather than dropped).
   Then the client closes its sockets and hands over its records.
6. Match, from the database: each tagged message's ticket and its place among the ticket's
   messages (message id order: the ticket's row lock orders them). The sockets that should
   get it are the supervisor's, those of the agents in the ticket's team, and its assignee's
   (routing assigns within the team, in the message's transaction). A socket got message k
   of a ticket at the first ticket event of that ticket whose preview shows message k or a
   later one: the consumer coalesces a ticket's events within HELPDESK_LIVE_COALESCE_MS
   (50) and sends only the newest, which carries every earlier message too. Latency = that
   frame's receive time - the POST's start; lost = expected (socket, message) pairs never
   shown. "first" is the fastest socket per message (the pipeline without the fan-out).
   CPU ms of the ASGI process per delivered socket-event, from /proc, is the figure to
   optimise; wall times on a shared 2-core machine move ±50 %.

Targets (issue 4): p99 ≤ 150 ms with 100 agents, ≤ 300 ms with 500; 0 lost.
Appends a section to bench/RESULTS.md unless `--no-results`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import pickle
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Run as a script, Python puts bench/ first on the path, where bench/queue.py would shadow the
# standard library's `queue`: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.common import (  # noqa: E402
    PYTHON,
    ROOT,
    CeleryWorker,
    Gunicorn,
    append_results,
    backend_pids,
    create_database,
    database_url,
    free_port,
    load_average,
    machine_description,
    manage,
    markdown_table,
    percentile,
    post_open_loop,
    proc_cpu,
    project_env,
    python_speed_s,
    raw_request,
    terminate_on_sigterm,
    text_table,
    utc_now_label,
)
from helpdesk import gctune  # noqa: E402

DB = "helpdesk_bench_live"
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "bench-live"
WORKER_LOG = Path("/tmp/helpdesk-bench-live-worker.log")  # noqa: S108
PREFIX = "bench-live"
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
KINDS = ("telegram", "whatsapp", "viber", "sms")
TAG = "LV"
TAG_RE = re.compile(r"^LV(\d{7})")


def target_ms(agents: int) -> float | None:
    """The issue's targets: 150 ms up to 100 agents, 300 ms up to 500."""
    if agents <= 100:
        return 150.0
    if agents <= 500:
        return 300.0
    return None


def env_for() -> dict[str, str]:
    return project_env(
        DATABASE_URL=database_url(DB),
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-live-secret",  # noqa: S106
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CELERY_TASK_ALWAYS_EAGER="0",
        CELERY_QUEUE=QUEUE,
        CHANNEL_LAYER_PREFIX=PREFIX,
        CACHE_PREFIX=PREFIX,
        DB_POOL_MAX="4",
        LOG_LEVEL="WARNING",
        DEBUG="0",
        SECURE_COOKIES="0",
    )


# --------------------------------------------------------------------------- processes


def proc_rss(pid: int) -> int:
    """Resident set size of `pid` in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Uvicorn:
    """`uvicorn helpdesk.asgi:application`, one process (the README's production command,
    on loopback), started in a session of its own and always stopped."""

    def __init__(self, env: dict[str, str], *, profile: str = "") -> None:
        self.port = free_port()
        self.profile = profile
        self.log_path = Path(f"/tmp/helpdesk-bench-live-uvicorn-{self.port}.log")  # noqa: S108
        log = self.log_path.open("wb")
        # --profile-asgi: cProfile of the event loop's thread (the consumers, the layer, the
        # WebSocket protocol), written when uvicorn exits on SIGTERM.
        start = (
            [str(PYTHON), "-m", "cProfile", "-o", profile, "-m", "uvicorn"]
            if profile
            else [str(UVICORN)]
        )
        self.proc = subprocess.Popen(
            [
                *start,
                "helpdesk.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--lifespan",
                "off",
                # As the README deploys it: frames go uncompressed (a third of the ASGI CPU
                # per delivery, 40 % of the memory per socket, with deflate).
                "--ws-per-message-deflate",
                "false",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code < 500:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer in 60 s; see {self.log_path}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        # uvicorn re-raises the signal after its graceful shutdown; SIGINT's default handler
        # raises KeyboardInterrupt, which lets cProfile write its file on the way out.
        self.proc.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
        try:
            self.proc.wait(60 if self.profile else 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------- seed


@dataclass(frozen=True)
class SocketSpec:
    agent_id: int
    session_key: str
    supervisor: bool
    teams: tuple[int, ...]


def setup_django() -> None:
    import django

    os.environ.update(env_for())
    # No pool in this process: each run drops and recreates the database under it.
    os.environ["DB_POOL_MAX"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    django.setup()


def prepare(env: dict[str, str], agents: int, teams: int, history: int) -> list[SocketSpec]:
    """A fresh database and Redis db, migrated and seeded; one socket spec per agent."""
    from django.db import connections

    connections.close_all()
    create_database(DB, drop_first=True)
    subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], check=True, capture_output=True)
    manage(["migrate", "--noinput", "-v", "0"], env)
    specs = seed(agents, teams)
    seed_history(history)
    connections.close_all()
    return specs


# A month of a regional utility's closed conversations (20,000 messages a day would be more):
# the database a storm arrives at is not empty.
HISTORY_TICKETS = 20_000

_HISTORY_SQL = (
    # Contacts, one identity each on one of the channels, one closed ticket each with two
    # messages, its history events and the inbound events that brought them; none of their
    # identities is one the simulator's customers use.
    """
    INSERT INTO tickets_contact (display_name, language, tier, value, notes, attributes,
        created_at, updated_at, last_seen_at)
    SELECT 'Past customer ' || g, (ARRAY['ru','pt','zh','lt','en'])[1 + g %% 5], 'standard',
        0, '', '{}', now() - make_interval(days => 31 - g %% 30),
        now() - make_interval(days => 31 - g %% 30), now() - make_interval(days => 31 - g %% 30)
    FROM generate_series(1, %(n)s) g
    """,
    """
    INSERT INTO tickets_identity (kind, value, label, created_at, contact_id)
    SELECT CASE ch.kind WHEN 'sms' THEN 'phone' ELSE ch.kind END, 'past-' || c.id,
        c.display_name, c.created_at, c.id
    FROM tickets_contact c
    JOIN channels_in_channel ch ON ch.id = (SELECT min(id) FROM channels_in_channel)
        + c.id %% (SELECT count(*) FROM channels_in_channel)
    """,
    """
    INSERT INTO tickets_ticket (contact_id, channel_id, thread_key, subject, status, priority,
        priority_score, priority_reasons, priority_locked, topic, language, team_id,
        assignee_id, is_public, sentiment, escalation_level, sla_due_at, first_response_at,
        resolved_at, closed_at, last_message_at, preview, message_count, created_at,
        updated_at, version)
    SELECT c.id, ch.id, '', '', 'closed', 1, 0, '[]', false, 'other', c.language,
        ch.default_team_id, NULL, false, 0, 0, c.created_at + interval '4 hours',
        c.created_at + interval '5 minutes', c.created_at + interval '1 hour',
        c.created_at + interval '2 days', c.created_at + interval '5 minutes',
        'Thank you, the power is back', 2, c.created_at, c.created_at + interval '2 days', 5
    FROM tickets_contact c
    JOIN tickets_identity i ON i.contact_id = c.id
    JOIN channels_in_channel ch ON ch.kind = CASE i.kind WHEN 'phone' THEN 'sms' ELSE i.kind END
    """,
    """
    INSERT INTO tickets_message (ticket_id, direction, author_kind, kind, text, html, payload,
        channel_id, platform_message_id, is_internal, delivery_status, delivery_error,
        created_at)
    SELECT t.id, d.direction, d.author_kind, 'text', d.text, '', '{}', t.channel_id,
        'past-' || t.id || '-' || d.direction, false, d.status, '', t.created_at + d.after
    FROM tickets_ticket t, (VALUES ('in', 'customer', 'No power on our street', 'received',
        interval '0'), ('out', 'agent', 'A crew is on the way', 'delivered',
        interval '5 minutes')) d(direction, author_kind, text, status, after)
    WHERE t.status = 'closed'
    """,
    """
    INSERT INTO tickets_ticketevent (ticket_id, contact_id, actor_kind, verb, from_value,
        to_value, data, created_at)
    SELECT t.id, t.contact_id, 'customer', v.verb, NULL, NULL, '{}', t.created_at
    FROM tickets_ticket t, (VALUES ('ticket.created'), ('message.received'),
        ('ticket.closed')) v(verb)
    WHERE t.status = 'closed'
    """,
    """
    INSERT INTO channels_in_inboundevent (channel_id, platform_id, body, meta, status,
        attempts, error, result, received_at, processed_at, next_attempt_at)
    SELECT t.channel_id, 'past:' || t.id, convert_to('{}', 'UTF8'), '{}', 'processed', 1, '',
        '{"message": 1}', t.created_at, t.created_at, t.created_at
    FROM tickets_ticket t WHERE t.status = 'closed'
    """,
)


def seed_history(tickets: int) -> None:
    """`tickets` closed conversations, then statistics on every table, as autovacuum keeps
    them on a production database. This machine's PostgreSQL runs without autovacuum (its
    CI configuration), and on an empty database the worker's prepared statements were
    planned for empty tables, for the whole run: its ticket and identity lookups scanned the
    tables (~150 buffers each, growing with every message), and a new ticket's candidates
    probed the team memberships once per agent (1,440 buffers at 500 agents, where a hash join
    reads 17)."""
    from django.db import connection, transaction

    from tickets.models import Agent

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _HISTORY_SQL:
            cursor.execute(statement, {"n": tickets})
    with connection.cursor() as cursor:
        if tickets:
            cursor.execute("ANALYZE")
        else:
            # Statistics of empty ticket tables would plan for empty tables all run long
            # (sequential scans for every foreign-key check): only the agents'.
            tables = [Agent._meta.db_table, Agent.teams.through._meta.db_table]
            cursor.execute("ANALYZE " + ", ".join(tables))


def seed(agents: int, team_count: int) -> list[SocketSpec]:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from channels_in.models import Channel
    from tickets.management import demo_data
    from tickets.models import Agent, Presence, Role, Team

    user_model = get_user_model()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    backend = settings.AUTHENTICATION_BACKENDS[0]
    with transaction.atomic():
        teams = [
            Team.objects.create(name=f"Team {i + 1}", slug=f"team-{i + 1}")
            for i in range(team_count)
        ]
        by_kind = {c[0]: c for c in demo_data.CHANNELS}
        for i, kind in enumerate(KINDS):
            _kind, key, name, _team, creds, cfg = by_kind[kind]
            Channel.objects.create(
                kind=kind,
                key=key,
                name=name,
                credentials=creds,
                settings=cfg,
                default_team=teams[i % team_count],
            )
        # An unusable password: nobody logs in with these, and N password hashes would
        # take minutes of CPU; the session below is what a login leaves behind.
        users = user_model.objects.bulk_create(
            user_model(
                username=f"bench-live-{i:04d}",
                first_name=f"Agent {i}",
                email=f"bench-live-{i:04d}@utility.example",
                password=make_password(None),
            )
            for i in range(agents)
        )
        languages = list(settings.HELPDESK_LANGUAGES)
        rows = Agent.objects.bulk_create(
            Agent(
                user=user,
                role=Role.SUPERVISOR if i == 0 else Role.AGENT,
                languages=languages,
                capacity=10,
                presence=Presence.ONLINE,
            )
            for i, user in enumerate(users)
        )
        membership: dict[int, tuple[int, ...]] = {}
        links = []
        for i, agent in enumerate(rows):
            if i == 0:
                membership[agent.pk] = ()
                continue
            mine = [teams[i % team_count].pk]
            if i % 5 == 0 and team_count > 1:
                mine.append(teams[(i + 1) % team_count].pk)
            membership[agent.pk] = tuple(mine)
            links += [Agent.teams.through(agent_id=agent.pk, team_id=t) for t in mine]
        Agent.teams.through.objects.bulk_create(links)
    specs = []
    for user, agent in zip(users, rows, strict=True):
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        specs.append(
            SocketSpec(
                agent.pk, session.session_key or "", agent.is_supervisor, membership[agent.pk]
            )
        )
    return specs


# --------------------------------------------------------------------------- webhooks


def make_hooks(count: int, base_url: str, seed: int) -> list[tuple[int, Any]]:
    """(tag, signed webhook) pairs; each message's text starts with its tag, which the
    ticket's preview (and so every ticket event) then shows."""
    from channels_in.models import Channel
    from channels_in.simulate import Persona, Simulator

    class TaggedSimulator(Simulator):
        def _text(self, persona: Persona, follow_up: bool) -> str:
            # hook_for() counts the message before asking for its text.
            return f"{TAG}{self.counter:07d} {super()._text(persona, follow_up)}"

    channels = list(Channel.objects.filter(kind__in=KINDS).order_by("pk"))
    sim = TaggedSimulator(channels, base_url=base_url, seed=seed, customers=2000)
    hooks = []
    for _ in range(count):
        hook = sim.next(follow_up_rate=0.4)
        hooks.append((sim.counter, hook))
    return hooks


@dataclass
class Posted:
    started: dict[int, float] = field(default_factory=dict)  # tag -> monotonic POST start
    statuses: dict[int, int] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    late: int = 0  # POSTs that started > 50 ms after their due time (the client fell behind)


def post_at_rate(
    base_url: str, hooks: list[tuple[int, Any]], rate: float, posted: Posted, concurrency: int
) -> None:
    """Open loop (bench/common.post_open_loop), at most `concurrency` POSTs in flight. httpx
    from 32 threads took 2.3 ms of this process's CPU per POST — a tenth of the two cores at
    100/s, taken from the servers being measured."""
    host_port = base_url.split("://", 1)[1]
    requests = [raw_request(hook, host_port) for _, hook in hooks]
    sent, start = post_open_loop(base_url, requests, rate, in_flight=concurrency)
    for post in sent:
        posted.statuses[post.status] = posted.statuses.get(post.status, 0) + 1
        posted.post_ms.append((post.ended - post.started) * 1000)
        if post.started - post.due > 0.05:
            posted.late += 1
        if 200 <= post.status < 300:
            posted.started[hooks[post.index][0]] = post.started
    posted.elapsed_s = time.monotonic() - start


def wait_processed(expected: int, timeout: float) -> bool:
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM channels_in_inboundevent "
                "WHERE status IN ('processed', 'failed')"
            )
            (done,) = cursor.fetchone()
        if done >= expected:
            return True
        time.sleep(0.25)
    return False


# --------------------------------------------------------------------------- the client


class Client:
    """The socket process (this script with `--client <config>`), driven over its stdin and
    stdout: it prints "ready <connected> <failed>" once every socket said hello; on
    "drain <quiet> <max>" it waits until no ticket event has come for `quiet` seconds (at most
    `max`: the server may still be sending a backlog) and prints "drained"; on "stop" it
    closes the sockets and pickles its records to the config's `out` path."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [str(PYTHON), str(Path(__file__).resolve()), "--client", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.out = Path(config["out"])

    def wait_ready(self, timeout: float) -> tuple[int, int]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"the socket client did not get ready: {line!r}")
        _, connected, failed = line.split()
        return int(connected), int(failed)

    def drain(self, quiet: float, most: float) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"drain {quiet} {most}\n".encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], most + 60)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("drained"):
            self.kill()
            raise RuntimeError(f"the socket client did not drain: {line!r}")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        self.proc.stdin.flush()
        self.proc.wait(120)
        with self.out.open("rb") as fh:
            result: dict[str, Any] = pickle.load(fh)  # noqa: S301  (our own file)
        self.out.unlink()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def client_main(config: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    # 500 browsers are 500 processes; this one process must not add collector pauses of its
    # own to what it measures (they reached 100 ms): the server's settings, helpdesk.gctune.
    gctune.tune()
    asyncio.run(_client(config))


class RawSocket(asyncio.Protocol):
    """The client end of one agent socket, RFC 6455 by hand: the handshake a browser sends
    (cookie, origin, permessage-deflate offered as Chrome offers it), server frames parsed in
    data_received and handed to `on_text` at once, masked client frames for pings and the
    close. The `websockets` library cost ~33 µs of this process's CPU per frame at 500
    sockets, a sixth of a core taken from the server it measures; this costs a few µs."""

    def __init__(self, on_text: Any) -> None:
        loop = asyncio.get_running_loop()
        self.on_text = on_text
        self.buf = bytearray()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: Any = None
        self.inflater: Any = None
        self.reset_inflater = False
        self.parts: list[bytes] = []
        self.compressed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    def handshake(self, host: str, path: str, headers: dict[str, str]) -> None:
        import base64

        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
            "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]  # fmt: skip
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.opened.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").lower()
            del self.buf[: end + 4]
            if not head.startswith("http/1.1 101"):
                self.opened.set_exception(ConnectionError(head.split("\r\n", 1)[0]))
                self.transport.close()
                return
            if "permessage-deflate" in head:
                import zlib

                self.inflater = zlib.decompressobj(-15)
                self.reset_inflater = "server_no_context_takeover" in head
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf, pos, size = self.buf, 0, len(self.buf)
        while size - pos >= 2:
            first, length, at = buf[pos], buf[pos + 1] & 0x7F, pos + 2
            if length == 126:
                if size - at < 2:
                    break
                length, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
            elif length == 127:
                if size - at < 8:
                    break
                length, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
            if size - at < length:
                break
            payload, pos = bytes(buf[at : at + length]), at + length
            opcode = first & 0x0F
            if opcode in (0, 1, 2):
                if opcode:
                    self.parts, self.compressed = [], bool(first & 0x40)
                self.parts.append(payload)
                if first & 0x80:
                    message = b"".join(self.parts)
                    if self.compressed:
                        message = self.inflater.decompress(message + b"\x00\x00\xff\xff")
                        if self.reset_inflater:
                            import zlib

                            self.inflater = zlib.decompressobj(-15)
                    self.on_text(message.decode())
            elif opcode == 9:
                self._send(0xA, payload)  # pong
            elif opcode == 8:
                self.transport.close()
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        header = (
            bytes([0x80 | opcode, 0x80 | size])
            if size < 126
            else (bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big"))
        )
        masked = (
            int.from_bytes(payload, "big") ^ int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        ).to_bytes(size, "big")
        self.transport.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        if not self.transport.is_closing():
            self._send(0x1, text.encode())

    async def close(self) -> None:
        if not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()
        await self.lost


async def _client(config: dict[str, Any]) -> None:
    url: str = config["url"]
    origin: str = config["origin"]
    keys: list[str] = config["keys"]
    # Per socket: (ticket id, message tag, receive time); tag -1 when the preview shows none.
    records: list[list[tuple[int, int, float]]] = [[] for _ in keys]
    counts: dict[str, int] = defaultdict(int)
    sockets: list[RawSocket | None] = [None] * len(keys)
    gate = asyncio.Semaphore(config["connect_concurrency"])
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    last_event = [0.0]

    # What a frame's text says, by text: the server sends the same frame to every socket of a
    # group that saw the same changes, so most frames are parsed once, not once per socket
    # (json.loads per frame was a third of this process's CPU).
    parsed: dict[str, tuple[tuple[str, ...], tuple[tuple[int, int], ...]]] = {}

    def parse(text: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
        frame = json.loads(text)
        kind = frame.get("type")
        events = frame.get("events", ()) if kind == "batch" else (frame,)
        others: list[str] = []
        shown: list[tuple[int, int]] = []
        for event in events:
            if event.get("type") != "ticket":
                others.append(f"other:{event.get('type')}")
            elif event.get("op") == "remove":
                others.append("removes")
            else:
                row = event["ticket"]
                match = TAG_RE.match(row.get("preview") or "")
                shown.append((row["id"], int(match.group(1)) if match else -1))
        return tuple(others), tuple(shown)

    def handle(i: int, text: str, at: float) -> None:
        counts["frames"] += 1
        counts["bytes"] += len(text)
        hit = parsed.get(text)
        if hit is None:
            if len(parsed) >= 4096:
                parsed.clear()
            hit = parsed[text] = parse(text)
        others, shown = hit
        for name in others:
            counts[name] += 1
        if shown:
            last_event[0] = at
            mine = records[i]
            for ticket_id, tag in shown:
                mine.append((ticket_id, tag, at))

    async def ping(ws: RawSocket, every: float) -> None:
        # Staggered, as N browsers are: not N pings in the same millisecond.
        await asyncio.sleep(random.uniform(0, every))
        while not ws.lost.done():
            ws.send_text('{"type":"ping"}')
            await asyncio.sleep(every)

    def watch(i: int, ws: RawSocket) -> None:
        def lost(_: Any) -> None:
            if not stopping.is_set():
                counts["closed_early"] += 1

        ws.lost.add_done_callback(lost)

    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]

    async def open_one(i: int) -> bool:
        async with gate:
            hello: asyncio.Future[str] = loop.create_future()

            def on_text(text: str) -> None:
                if hello.done():
                    handle(i, text, time.monotonic())
                else:
                    hello.set_result(text)

            try:
                _, ws = await loop.create_connection(lambda: RawSocket(on_text), host, int(port))
                ws.handshake(host_port, path, {"Origin": origin, "Cookie": f"sessionid={keys[i]}"})
                await asyncio.wait_for(ws.opened, 60)
                first = json.loads(await asyncio.wait_for(hello, 60))
            except Exception as exc:
                counts[f"connect:{type(exc).__name__}"] += 1
                return False
            if first.get("type") != "hello":
                counts["no_hello"] += 1
                await ws.close()
                return False
            sockets[i] = ws
            watch(i, ws)
            every = float((first.get("config") or {}).get("ping") or 25)
            tasks.append(asyncio.create_task(ping(ws, every)))
            return True

    stopping = asyncio.Event()
    opened = await asyncio.gather(*(open_one(i) for i in range(len(keys))))
    connected = sum(opened)
    cpu_connected = time.process_time()
    print(f"ready {connected} {len(keys) - connected}", flush=True)
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    if command and command[0] == "drain":
        quiet, most = float(command[1]), float(command[2])
        asked = time.monotonic()
        while time.monotonic() - last_event[0] < quiet:
            if time.monotonic() - asked > most:
                counts["drain_timed_out"] += 1
                break
            await asyncio.sleep(0.1)
        counts["drain_ms"] = int((time.monotonic() - asked) * 1000)
        print("drained", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    stopping.set()
    cpu_run = time.process_time() - cpu_connected
    await asyncio.gather(*(ws.close() for ws in sockets if ws is not None), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with open(config["out"], "wb") as fh:
        pickle.dump(
            {"records": records, "counts": dict(counts), "cpu_s": cpu_run, "connected": connected},
            fh,
        )


# --------------------------------------------------------------------------- analysis


@dataclass
class Result:
    agents: int
    sockets: int = 0
    posted: int = 0
    accepted: int = 0
    stored: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    # (POST start, first-socket latency ms) per message: where in the run the tail was.
    first_at: list[tuple[float, float]] = field(default_factory=list)
    rss_before: int = 0
    rss_idle: int = 0
    rss_after: int = 0
    asgi_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    web_cpu_s: float = 0.0  # gunicorn's workers
    pg_cpu_s: float = 0.0  # the database's backends
    poster_cpu_s: float = 0.0  # this process: the webhooks' open-loop POSTs
    machine_busy: float = 0.0  # share of both cores busy over the window (/proc/stat)
    window_s: float = 0.0
    socket_events: int = 0
    frames: int = 0
    late_posts: int = 0
    posted_rate: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    post_p99_ms: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    lost_examples: list[str] = field(default_factory=list)

    @property
    def rss_per_socket(self) -> float:
        return (self.rss_idle - self.rss_before) / self.sockets if self.sockets else 0.0

    def p(self, q: float, values: list[float] | None = None) -> float:
        return percentile(self.latencies_ms if values is None else values, q)


def analyse(
    result: Result, specs: list[SocketSpec], posted: Posted, client: dict[str, Any]
) -> None:
    """Expected (socket, message) pairs from the database, matched against what each socket
    received (see the module docstring)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.ticket_id, m.text, t.team_id, t.assignee_id FROM tickets_message m "
            "JOIN tickets_ticket t ON t.id = m.ticket_id "
            "WHERE m.direction = 'in' ORDER BY m.ticket_id, m.id"
        )
        rows = cursor.fetchall()
    connection.close()

    socket_of_agent = {s.agent_id: i for i, s in enumerate(specs)}
    supervisors = [i for i, s in enumerate(specs) if s.supervisor]
    members: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(specs):
        for team in s.teams:
            members[team].append(i)

    # Each tagged message: its ticket, its place among the ticket's messages.
    place: dict[int, tuple[int, int]] = {}
    tickets: dict[int, tuple[int | None, int | None]] = {}
    position: dict[int, int] = defaultdict(int)
    for ticket_id, text, team_id, assignee_id in rows:
        match = TAG_RE.match(text or "")
        position[ticket_id] += 1
        tickets[ticket_id] = (team_id, assignee_id)
        if match:
            place[int(match.group(1))] = (ticket_id, position[ticket_id])

    # Per (socket, ticket): receive times, and the furthest message shown so far.
    records: list[list[tuple[int, int, float]]] = client["records"]
    shown: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
    for i, socket_records in enumerate(records):
        for ticket_id, tag, at in socket_records:
            times, furthest = shown.setdefault((i, ticket_id), ([], []))
            pos = place[tag][1] if tag in place and place[tag][0] == ticket_id else 0
            times.append(at)
            furthest.append(max(pos, furthest[-1] if furthest else 0))
            result.socket_events += 1

    result.accepted = len(posted.started)
    for tag, t0 in posted.started.items():
        if tag not in place:
            continue  # accepted but not stored: counted apart (result.stored)
        result.stored += 1
        ticket_id, pos = place[tag]
        team_id, assignee_id = tickets[ticket_id]
        recipients = set(supervisors)
        if team_id is not None:
            recipients.update(members.get(team_id, ()))
        if assignee_id is not None and assignee_id in socket_of_agent:
            recipients.add(socket_of_agent[assignee_id])
        first = None
        for i in recipients:
            result.expected += 1
            got = shown.get((i, ticket_id))
            k = bisect.bisect_left(got[1], pos) if got else 0
            if got is None or k == len(got[1]):
                result.lost += 1
                if len(result.lost_examples) < 5:
                    result.lost_examples.append(f"LV{tag:07d} ticket {ticket_id} socket {i}")
                continue
            latency = (got[0][k] - t0) * 1000
            result.received += 1
            result.latencies_ms.append(latency)
            first = latency if first is None else min(first, latency)
        if first is not None:
            result.first_ms.append(first)
            result.first_at.append((t0, first))


# --------------------------------------------------------------------------- one run


def run_one(agents: int, args: argparse.Namespace, env: dict[str, str]) -> Result:
    result = Result(agents=agents)
    print(f"\n== {agents} agents: seeding ...", flush=True)
    specs = prepare(env, agents, args.teams, args.history)
    result.sockets = len(specs)
    scratch = Path(tempfile.mkdtemp(prefix="bench-live-"))
    server = Uvicorn(env, profile=f"{args.profile_asgi}.{agents}" if args.profile_asgi else "")
    worker: CeleryWorker | None = None
    client: Client | None = None
    try:
        with Gunicorn(env, workers=args.web_workers) as web:
            worker = CeleryWorker(env, args.worker_concurrency, WORKER_LOG, nice=args.worker_nice)
            worker.start()
            count = int(args.rate * args.seconds)
            hooks = make_hooks(args.warmup + count, web.base_url, args.seed)
            ws_url = server.base_url.replace("http://", "ws://") + "/ws/agent/"
            # Warm: the first socket loads the session, the layer's Redis connections, the
            # thread pool, the database pool; the baseline RSS is taken after it closes.
            warm = Client(
                {
                    "url": ws_url,
                    "origin": server.base_url,
                    "keys": [specs[-1].session_key],
                    "connect_concurrency": 1,
                    "out": str(scratch / "warm.pickle"),
                }
            )
            warm.wait_ready(60)
            warm.stop()
            time.sleep(1.0)
            result.rss_before = proc_rss(server.proc.pid)

            print(f"   connecting {len(specs)} sockets ...", flush=True)
            client = Client(
                {
                    "url": ws_url,
                    "origin": server.base_url,
                    "keys": [s.session_key for s in specs],
                    "connect_concurrency": args.connect_concurrency,
                    "out": str(scratch / "sockets.pickle"),
                }
            )
            connected, failed = client.wait_ready(300)
            if failed:
                raise RuntimeError(f"{failed} sockets failed to connect; see {server.log_path}")
            time.sleep(args.settle)
            result.rss_idle = proc_rss(server.proc.pid)

            # Warm-up messages (gunicorn's and the worker's first requests), not measured.
            warmup = Posted()
            post_at_rate(
                web.base_url, hooks[: args.warmup], args.rate, warmup, args.post_concurrency
            )
            wait_processed(len(warmup.started), timeout=60)
            time.sleep(1.0)

            print(
                f"   {connected} sockets; posting {count} webhooks at {args.rate:.0f}/s ...",
                flush=True,
            )
            posted = Posted()
            pids = {
                "asgi": [server.proc.pid],
                "worker": worker.pids(),
                "web": web.worker_pids(),
                "pg": backend_pids(DB),
                "poster": [os.getpid()],
            }
            cpu0 = {k: proc_cpu(v) for k, v in pids.items()}
            busy0 = machine_ticks()
            started = time.monotonic()
            post_at_rate(
                web.base_url, hooks[args.warmup :], args.rate, posted, args.post_concurrency
            )
            done = wait_processed(len(warmup.started) + len(posted.started), timeout=600)
            if not done:
                print("   not every event was processed in 10 minutes", flush=True)
            # The sockets' drain: until no ticket event has come for --drain seconds.
            client.drain(args.drain, args.drain_max)
            result.window_s = time.monotonic() - started
            result.machine_busy = busy_share(busy0, machine_ticks())
            # Backends opened during the load (the pools grow) count too; closed ones are lost.
            pids["pg"] = sorted(set(pids["pg"]) | set(backend_pids(DB)))
            cpu = {k: proc_cpu(v) - cpu0.get(k, 0.0) for k, v in pids.items()}
            result.asgi_cpu_s, result.worker_cpu_s = cpu["asgi"], cpu["worker"]
            result.web_cpu_s, result.pg_cpu_s = cpu["web"], cpu["pg"]
            result.poster_cpu_s = cpu["poster"]
            result.rss_after = proc_rss(server.proc.pid)
            records = client.stop()
            client = None
    finally:
        if client is not None:
            client.kill()
        if worker is not None:
            worker.stop()
        server.stop()
        with contextlib.suppress(OSError):
            for leftover in scratch.iterdir():
                leftover.unlink()
            scratch.rmdir()

    result.posted = sum(posted.statuses.values())
    result.late_posts = posted.late
    result.posted_rate = len(posted.post_ms) / posted.elapsed_s if posted.elapsed_s else 0.0
    result.statuses = dict(sorted(posted.statuses.items()))
    result.post_p99_ms = percentile(posted.post_ms, 99)
    result.client_cpu_s = records["cpu_s"]
    result.counts = records["counts"]
    result.frames = records["counts"].get("frames", 0)
    analyse(result, specs, posted, records)
    return result


def report_rows(results: list[Result]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "agents",
        "messages",
        "expected",
        "received",
        "lost",
        "p50 ms",
        "p99 ms",
        "first p50/p99 ms",
        "RSS/socket",
        "ASGI CPU µs/event",
        "target p99",
        "result",
    ]
    rows = []
    for r in results:
        target = target_ms(r.agents)
        p99 = r.p(99)
        ok = r.lost == 0 and r.stored == r.accepted and (target is None or p99 <= target)
        rows.append(
            [
                str(r.agents),
                f"{r.stored}/{r.posted}",
                str(r.expected),
                str(r.received),
                # Still queued in the ASGI process when the drain gave up: late, maybe not lost.
                f"{r.lost} (drain timed out)" if r.counts.get("drain_timed_out") else str(r.lost),
                f"{r.p(50):.0f}",
                f"{p99:.0f}",
                f"{r.p(50, r.first_ms):.0f} / {r.p(99, r.first_ms):.0f}",
                f"{r.rss_per_socket / 1024:.0f} kB",
                f"{r.asgi_cpu_s * 1e6 / r.socket_events:.0f}" if r.socket_events else "-",
                f"≤ {target:.0f} ms, 0 lost" if target else "0 lost",
                "pass" if ok else "FAIL",
            ]
        )
    return headers, rows


def details(r: Result) -> str:
    window = r.window_s or 1.0
    other = ", ".join(
        f"{k} {v}" for k, v in sorted(r.counts.items()) if k not in {"frames", "bytes"}
    )
    return (
        f"{r.agents} agents: {r.sockets} sockets, {r.frames} frames / {r.socket_events} ticket "
        f"events received; RSS {r.rss_before / 2**20:.0f} MB warm → {r.rss_idle / 2**20:.0f} MB "
        f"with the sockets → {r.rss_after / 2**20:.0f} MB after the load; CPU over the "
        f"{window:.0f} s window: ASGI {r.asgi_cpu_s:.1f} s ({r.asgi_cpu_s / window:.0%} of a "
        f"core), worker {r.worker_cpu_s:.1f} s, gunicorn {r.web_cpu_s:.1f} s, PostgreSQL "
        f"{r.pg_cpu_s:.1f} s, socket client {r.client_cpu_s:.1f} s, poster {r.poster_cpu_s:.1f} s "
        f"(machine {r.machine_busy:.0%} busy); webhook "
        f"POSTs at {r.posted_rate:.0f}/s, p99 {r.post_p99_ms:.0f} ms, {r.late_posts} started "
        "> 50 ms late, statuses "
        + " ".join(f"{code}×{n}" for code, n in r.statuses.items())
        + (f"; {other}" if other else "")
        + (f"; lost e.g. {', '.join(r.lost_examples)}" if r.lost_examples else "")
        + f"; first-socket p50/p99 ms by second of the load: {by_second(r.first_at)}"
    )


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def by_second(first_at: list[tuple[float, float]], seconds: int = 10) -> str:
    """The pipeline's latency second by second: the onset of the load (every customer new,
    every ticket routed) apart from the rest, which a whole-run p99 cannot tell."""
    if not first_at:
        return "-"
    start = min(t for t, _ in first_at)
    buckets: dict[int, list[float]] = defaultdict(list)
    for t, ms in first_at:
        buckets[min(int(t - start), seconds)].append(ms)
    return " ".join(
        f"{k}{'+' if k == seconds else ''}: {percentile(v, 50):.0f}/{percentile(v, 99):.0f}"
        for k, v in sorted(buckets.items())
    )


def commit_measured() -> str:
    """The commit, and whether the shared working tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or "?") + (
        " + uncommitted changes" if dirty else ""
    )


def coalesce_ms() -> int:
    """The window the server runs with (the same settings and environment as this process)."""
    from django.conf import settings

    return int(settings.HELPDESK_LIVE_COALESCE_MS)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(json.loads(sys.argv[2]))
        return
    terminate_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="100,500", help="comma-separated agent counts")
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--teams", type=int, default=4)
    parser.add_argument(
        "--history", type=int, default=HISTORY_TICKETS, help="closed tickets seeded first"
    )
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured messages first")
    parser.add_argument(
        "--drain", type=float, default=3.0, help="stop when no event came for this long"
    )
    parser.add_argument(
        "--drain-max", type=float, default=300.0, help="give up on the backlog after this long"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before RSS")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--worker-nice", type=int, default=0)
    parser.add_argument("--post-concurrency", type=int, default=64, help="POSTs in flight at most")
    parser.add_argument("--connect-concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--profile-asgi", default="", help="cProfile the ASGI process into PATH.<agents>"
    )
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    counts = [int(n) for n in args.agents.split(",") if n.strip()]
    env = env_for()
    setup_django()
    gctune.tune()  # the poster too (full collections of 100-350 ms were seen)
    load_before = load_average()
    speed_before = python_speed_s()
    results = [run_one(n, args, env) for n in counts]
    load_after = load_average()
    speed_after = python_speed_s()

    headers, rows = report_rows(results)
    print()
    print(text_table(headers, rows))
    for r in results:
        print(details(r))
    print(
        f"load before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}; "
        f"10 M Python additions in {speed_before:.2f} s before, {speed_after:.2f} s after"
    )
    if args.no_results:
        return
    machine = machine_description()
    section = "\n".join(
        [
            f"## Live sockets — {utc_now_label()}",
            "",
            f"`.venv/bin/python bench/live.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
            "",
            f"Machine: {machine['cores']} cores ({machine['cpu']}), PostgreSQL "
            f"{machine['postgresql']}, Python {machine['python']}; load before "
            f"{load_before[0]:.2f}, after {load_after[0]:.2f}; 10 M Python additions in "
            f"{speed_before:.2f} s before, {speed_after:.2f} s after (bench/common."
            "python_speed_s). uvicorn (1 process), gunicorn "
            f"{args.web_workers} sync workers, one Celery worker ×{args.worker_concurrency} "
            f"(nice {args.worker_nice}), channels_redis pub/sub layer; {args.rate:.0f} "
            f"webhooks/s for {args.seconds:.0f} s, {args.teams} teams, one supervisor, "
            f"{args.history:,} closed tickets of history. Commit "
            f"{commit_measured()}.",
            "",
            markdown_table(headers, rows),
            "",
            *(f"- {details(r)}" for r in results),
            "",
            "Latency: webhook POST start → the ticket event showing the message on each socket "
            "that may see the ticket (supervisor, the ticket's team, its assignee); includes "
            f"the consumer's {coalesce_ms()} ms coalescing window (HELPDESK_LIVE_COALESCE_MS; "
            "widened up to HELPDESK_LIVE_COALESCE_MAX_MS when the ASGI process is busy). "
            "first: the fastest socket per message.",
        ]
    )
    append_results(section)


if __name__ == "__main__":
    main()
