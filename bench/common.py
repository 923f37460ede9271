"""Helpers shared by the benchmarks: the bench database, gunicorn, a concurrent HTTP load
generator, percentiles, the machine's description and bench/RESULTS.md.

Benchmarks run the project as production does (gunicorn, PostgreSQL, pooled connections) and
talk to it over real HTTP; nothing here imports the project, so a benchmark may set up the
environment before Django is configured.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_FILE = BENCH_DIR / "RESULTS.md"
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CELERY = ROOT / ".venv" / "bin" / "celery"

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


# --------------------------------------------------------------------------- PostgreSQL


def database_url(dbname: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def connect(dbname: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=autocommit
    )


def database_exists(dbname: str) -> bool:
    with connect("postgres") as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
    return row is not None


def create_database(dbname: str, *, drop_first: bool = False) -> None:
    """Create `dbname` (dropping it first if asked). Only ever called with a bench database:
    the other engineers' databases are never named here."""
    if not dbname.startswith("helpdesk_bench"):
        raise ValueError(f"refusing to create or drop {dbname!r}: not a bench database")
    ident = psycopg.sql.Identifier(dbname)
    with connect("postgres") as conn:
        if drop_first:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        if not database_exists(dbname):
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident))


def postgres_version() -> str:
    with connect("postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# --------------------------------------------------------------------------- processes


def project_env(**overrides: str) -> dict[str, str]:
    """The environment for a project process: the caller's, minus anything that would point
    it at another engineer's database or Redis, plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(overrides)
    return env


def manage(args: Sequence[str], env: dict[str, str]) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, check=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """`gunicorn helpdesk.wsgi:application` on 127.0.0.1 and a free port, as a context
    manager that always stops it (also on Ctrl-C and errors)."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 2,
        port: int | None = None,
        log_path: Path | None = None,
        access_log: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.workers = workers
        self.port = port or free_port()
        self.log_path = log_path or Path(f"/tmp/helpdesk-bench-gunicorn-{self.port}.log")  # noqa: S108
        # With access_log, each request's `X-Bench` header, time in the worker (µs) and status
        # go to access_log_path: the server's share of each latency, without the queueing.
        self.access_log_path = self.log_path.with_suffix(".access.log") if access_log else None
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_path: str = "/healthz", timeout: float = 60.0) -> None:
        log = self.log_path.open("wb")
        cmd = [
            str(GUNICORN),
            "helpdesk.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            # Long enough for the first request of a worker (imports, pool warm-up).
            "--timeout",
            "60",
            "--graceful-timeout",
            "10",
            *self.extra_args,
        ]
        if self.access_log_path is not None:
            self.access_log_path.unlink(missing_ok=True)
            cmd += [
                "--access-logfile",
                str(self.access_log_path),
                "--access-logformat",
                "%({x-bench}i)s %(D)s %(s)s",
            ]
        # A session of its own: a Ctrl-C in the terminal reaches only us, and we stop
        # gunicorn in order (TERM, then KILL if it does not go).
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.tail_log()
                )
            try:
                response = httpx.get(self.base_url + ready_path, timeout=2.0)
                if response.status_code < 500:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = str(exc)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer {ready_path} in {timeout:.0f}s: {last_error}")

    def tail_log(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def server_times_ms(self) -> dict[str, list[float]]:
        """Time spent in the worker per request (ms), grouped by the `X-Bench` header."""
        out: dict[str, list[float]] = {}
        if self.access_log_path is None or not self.access_log_path.exists():
            return out
        for row in self.access_log_path.read_text().splitlines():
            parts = row.split()
            if len(parts) == 3 and parts[1].isdigit():
                out.setdefault(parts[0], []).append(int(parts[1]) / 1000)
        return out

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        # TERM to the arbiter: it stops its workers gracefully and exits.
        proc, self.proc = self.proc, None
        stop_process(proc, grace=15)

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace: float) -> None:
    """TERM a server started in a session of its own, then KILL its whole group if it has not
    gone after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def children(pid: int) -> list[int]:
    """The direct children of a process (a Celery worker's pool)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def proc_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (those still alive)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command may contain spaces: fields counted after its closing parenthesis.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pidof(name: str) -> list[int]:
    out = subprocess.run(["pidof", name], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def backend_pids(dbname: str) -> list[int]:
    """PostgreSQL backends serving `dbname` (other than the one asking)."""
    with connect(dbname) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        ).fetchall()
    return [int(r[0]) for r in rows]


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Set the nice value of the autogroup `pid` leads (a process started in a new session):
    False where the kernel has no autogroups (then the process's own nice is what counts)."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        path.write_text(f"{nice}\n")
    except OSError:
        return False
    return True


class CeleryWorker:
    """A real `celery worker` (prefork, `concurrency` processes) on the queue the benchmark's
    environment names (CELERY_QUEUE), started in a session of its own and always stopped.
    `nice` > 0 lowers its priority so the webhook tier keeps the CPU in a burst: accepting is
    the promise, processing may trail. With the kernel's autogroups on (this machine's kernel:
    /proc/sys/kernel/sched_autogroup_enabled), a process's own nice only ranks it within its
    session's group, and the groups share the CPU equally: the worker, in a session of its
    own, took 0.63 of a core in a burst at nice 10 and at 19 alike. So its group's nice is set
    too (`/proc/<pid>/autogroup`, sched(7)). BENCH_CELERY_LOGLEVEL=INFO logs every task's run
    time (at some cost)."""

    def __init__(
        self, env: dict[str, str], concurrency: int, log_path: Path, *, nice: int = 0
    ) -> None:
        self.env = env
        self.concurrency = concurrency
        self.log_path = log_path
        self.nice = nice
        self.group_niced = False
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start, and return once the pool's processes are up."""
        cmd = [
            str(CELERY), "-A", "helpdesk", "worker", "-c", str(self.concurrency),
            "-Q", self.env["CELERY_QUEUE"],
            f"--loglevel={self.env.get('BENCH_CELERY_LOGLEVEL', 'WARNING')}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"bench-{os.getpid()}@%h",
        ]  # fmt: skip
        if self.nice:
            cmd = ["nice", "-n", str(self.nice), *cmd]  # nice execs celery in place
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.group_niced = bool(self.nice) and set_autogroup_nice(self.proc.pid, self.nice)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery exited; see {self.log_path}")
            if len(children(self.proc.pid)) >= self.concurrency:
                return
            time.sleep(0.3)
        raise RuntimeError(f"celery did not start its pool; see {self.log_path}")

    def pids(self) -> list[int]:
        """The main process and its pool (for CPU accounting)."""
        return [self.proc.pid, *children(self.proc.pid)] if self.proc else []

    def stop(self) -> None:
        # TERM is Celery's warm shutdown: it finishes the tasks in hand.
        proc, self.proc = self.proc, None
        stop_process(proc, grace=20)


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks and context managers (which stop
    gunicorn) run when the benchmark itself is terminated."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (p / 100) * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LoadResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    query_counts: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    concurrency: int = 0
    response_bytes: int = 0
    # Time inside the gunicorn worker (from its access log), when the server records it.
    server_ms: list[float] = field(default_factory=list)
    # Who sent the requests: "httpx" (every latency in latencies_ms) or "wrk" (its request
    # count in `requests` and its percentiles in percentiles_ms).
    client: str = "httpx"
    requests: int = 0
    percentiles_ms: dict[float, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.requests or len(self.latencies_ms)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s else math.nan

    def p(self, q: float) -> float:
        if q in self.percentiles_ms:
            return self.percentiles_ms[q]
        return percentile(self.latencies_ms, q)

    @property
    def max_queries(self) -> int | None:
        return max(self.query_counts) if self.query_counts else None


@dataclass(frozen=True)
class Request:
    """One request of a load run; cookies go in a `Cookie` header (httpx's cookie jar would
    not send a Secure cookie over plain HTTP)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def run_load(
    name: str,
    make_request: Callable[[int], Request],
    *,
    total: int,
    concurrency: int,
    warmup: int = 0,
    timeout: float = 30.0,
) -> LoadResult:
    """Send `warmup` unmeasured requests, then `total` measured ones, from `concurrency`
    threads, each with its own HTTP client. Latency is taken around the whole exchange
    (connect, send, read the body), as an agent's browser or an API client sees it."""
    if warmup:
        _drive(LoadResult(name=name), make_request, warmup, concurrency, timeout)
    result = LoadResult(name=name, concurrency=concurrency)
    start = time.perf_counter()
    _drive(result, make_request, total, concurrency, timeout)
    result.elapsed_s = time.perf_counter() - start
    return result


def raw_request(hook: Any, host: str) -> bytes:
    """The HTTP/1.1 request of one webhook, byte for byte."""
    headers = {k: v for k, v in hook.headers.items() if k.lower() not in {"host", "content-length"}}
    lines = [f"POST {hook.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(hook.body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + hook.body


@dataclass
class Sent:
    """One POST of an open loop: when it was due, when it started and ended (monotonic), and
    its status (0 when it failed)."""

    index: int
    due: float
    started: float
    ended: float
    status: int


def post_open_loop(
    base_url: str, requests: Sequence[bytes], rate: float, *, in_flight: int | None = None
) -> tuple[list[Sent], float]:
    """Open loop on raw sockets, one asyncio loop (uvloop when installed): request i is due
    at start + i / rate, whatever earlier ones are doing, each on a connection of its own
    (gunicorn's sync workers close every one) and read to the end of the response.
    `in_flight` caps the POSTs under way: a stalled server then makes later ones start late
    rather than open thousands of sockets. Returns every POST, in completion order, and the
    start (monotonic).

    A bare asyncio.Protocol per POST, started by one scheduling coroutine: asyncio's streams
    and a sleeping task per request cost ~1 ms of this process's CPU per POST on a slow
    2-core machine, a twentieth of what the servers it measures had for the whole message."""
    import asyncio

    host, port_text = base_url.split("://", 1)[1].rsplit(":", 1)
    port = int(port_text)
    sent: list[Sent] = []

    class Post(asyncio.Protocol):
        def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
            self.request = request
            self.done = done
            self.head = b""

        def connection_made(self, transport: Any) -> None:
            transport.write(self.request)

        def data_received(self, data: bytes) -> None:
            if len(self.head) < 16:
                self.head += data[:16]

        def connection_lost(self, exc: Exception | None) -> None:
            # The server closes the connection after its response: that is the end of it.
            parts = self.head.split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if not self.done.done():
                self.done.set_result(status)

    async def post(loop: Any, i: int, due: float, slots: asyncio.Semaphore | None) -> None:
        started = time.monotonic()
        done: asyncio.Future[int] = loop.create_future()
        try:
            await loop.create_connection(lambda: Post(requests[i], done), host, port)
            status = await done
        except OSError:
            status = 0
        sent.append(Sent(i, due, started, time.monotonic(), status))
        if slots is not None:
            slots.release()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(in_flight) if in_flight else None
        start = time.monotonic() + 0.2
        tasks = set()
        for i in range(len(requests)):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if slots is not None:
                await slots.acquire()
            task = loop.create_task(post(loop, i, due, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        return start

    with contextlib.suppress(ImportError):
        import uvloop

        return sent, uvloop.run(main())
    return sent, asyncio.run(main())


def run_threads(target: Callable[[], None], count: int) -> None:
    """Run `target` in `count` threads at once; return when every one has."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _drive(
    result: LoadResult,
    make_request: Callable[[int], Request],
    total: int,
    concurrency: int,
    timeout: float,
) -> None:
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                req = make_request(i)
                start = time.perf_counter()
                try:
                    response = client.request(req.method, req.url, headers=req.headers)
                    body = response.content
                except httpx.HTTPError as exc:
                    with lock:
                        result.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed_ms = (time.perf_counter() - start) * 1000
                queries = response.headers.get("x-query-count")
                with lock:
                    result.latencies_ms.append(elapsed_ms)
                    result.statuses[response.status_code] = (
                        result.statuses.get(response.status_code, 0) + 1
                    )
                    result.response_bytes += len(body)
                    if queries is not None and queries.isdigit():
                        result.query_counts.append(int(queries))
                    if response.status_code >= 400 and len(result.errors) < 5:
                        result.errors.append(f"HTTP {response.status_code}: {body[:200]!r}")

    run_threads(worker, concurrency)


# --------------------------------------------------------------------------- wrk

WRK = Path("/usr/bin/wrk")
WRK_SCRIPT = BENCH_DIR / "wrk_report.lua"


def wrk_path() -> Path | None:
    """wrk, if installed (`apt-get install wrk`): a client in C that costs the 2 cores far
    less than Python threads, so the figures are the server's rather than the client's."""
    found = WRK if WRK.exists() else None
    if found is None:
        import shutil

        which = shutil.which("wrk")
        found = Path(which) if which else None
    return found


def run_wrk(
    name: str,
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    concurrency: int,
    threads: int = 1,
    timeout_s: float = 30.0,
) -> LoadResult:
    """`seconds` of GET `url` from `concurrency` connections (wrk, `threads` threads).
    Latency percentiles over every request, and every response that is not a 200 counted
    (bench/wrk_report.lua). wrk reads no X-Query-Count: see sample_queries."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    cmd = [
        str(wrk),
        f"--threads={max(1, min(threads, concurrency))}",
        f"--connections={concurrency}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        f"--script={WRK_SCRIPT}",
    ]
    for key, value in headers.items():
        cmd += ["--header", f"{key}: {value}"]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}"
        )
    data = json.loads(line.removeprefix("WRK_RESULT "))
    result = LoadResult(name=name, concurrency=concurrency, client="wrk")
    result.requests = int(data["requests"])
    result.elapsed_s = data["duration_us"] / 1e6
    result.response_bytes = int(data["bytes"])
    result.percentiles_ms = {
        50: data["p50_us"] / 1000,
        90: data["p90_us"] / 1000,
        95: data["p95_us"] / 1000,
        99: data["p99_us"] / 1000,
        100: data["max_us"] / 1000,
    }
    ok = int(data["responses"]) - int(data["not_ok"])
    result.statuses = {200: ok}
    if data["not_ok"]:
        result.statuses[int(data["first_not_ok"]) or 599] = int(data["not_ok"])
        result.errors.append(
            f"{data['not_ok']} responses not 200 (the first: HTTP {data['first_not_ok']})"
        )
    socket_errors = {
        k: int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    }
    if any(socket_errors.values()):
        result.errors.append(
            "socket errors: " + ", ".join(f"{k} {v}" for k, v in socket_errors.items() if v)
        )
    # Requests wrk sent but whose response it never got count as failures too.
    lost = result.requests - int(data["responses"])
    if lost > 0:
        result.statuses[0] = lost
    return result


def sample_queries(url: str, headers: dict[str, str], *, samples: int) -> list[int]:
    """`X-Query-Count` of `samples` sequential requests (the pass wrk cannot make)."""
    counts: list[int] = []
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        for _ in range(samples):
            response = client.get(url, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code} in the query pass")
            value = response.headers.get("x-query-count")
            if value is not None and value.isdigit():
                counts.append(int(value))
    return counts


# --------------------------------------------------------------------------- reporting


def machine_description() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GB"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "postgresql": postgres_version(),
        "python": sys.version.split()[0],
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def python_speed_s() -> float:
    """Seconds for 10 M Python additions in a loop, the best of three: how fast this machine
    runs the interpreter now. Machines of one kind here differ by 3x and one machine moves by
    a third within minutes (other tenants), so a result means little without it."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def wait_for_quiet(max_load: float, *, max_wait_s: float, poll_s: float = 15.0) -> float:
    """Wait (up to `max_wait_s`) until the 1-minute load average is below `max_load`, so the
    measurement shares the machine with as little else as possible. Returns the load seen."""
    deadline = time.monotonic() + max_wait_s
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        time.sleep(poll_s)
        load = os.getloadavg()[0]
    return load


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


def append_results(section: str, path: Path = RESULTS_FILE) -> None:
    """Append a dated section (markdown) to bench/RESULTS.md, creating it with a title."""
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\nEach run appends a dated section; see bench/README.md for "
            "how to run each benchmark.\n"
        )
    with path.open("a") as fh:
        fh.write("\n" + section.rstrip() + "\n")


def utc_now_label() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
