"""Ingest benchmark: signed platform webhooks of every kind over real HTTP, as production runs
them (gunicorn for the webhooks, a real Celery worker, PostgreSQL, Redis), until every event is
a message on a ticket.

    .venv/bin/python bench/ingest.py                 # all three runs, appended to RESULTS.md
    .venv/bin/python bench/ingest.py --messages 2000 --burst-seconds 10 --rate-seconds 5

Runs (each on a fresh database, so one does not slow the next):
1. end to end: `--messages` webhooks (mixed kinds, 5 % redelivered) posted as fast as the
   server accepts them; webhook latency, accepted/s, and messages/s from the first POST until
   the last event is a message on a ticket; lost and duplicated counted from the database.
2. latency at a fixed offered rate (`--rate`/s for `--rate-seconds`): webhook p50/p99.
3. burst: as many webhooks as accepted for `--burst-seconds`: accepted/s.
Targets (issue "Every channel in and out"): bursts ≥ 750 webhooks/s for 60 s, p99 < 25 ms at
300/s offered, ≥ 250 messages/s end to end, 0 lost, 0 duplicated.

Clients. A Python HTTP client on 2 cores cannot offer 750 requests/s and leave the server
its CPU, so runs 1 and 3 use wrk (`--client wrk`, the default when /usr/bin/wrk exists):
every request is built here beforehand (unique, signed by the platform's adapter exactly as
the simulator signs it) and replayed once by bench/wrk_replay.lua; wrk's latency runs from
writing the request to its response (gunicorn's sync workers close each connection, so the
TCP connect before it is not included). Run 2 needs an open loop at a fixed rate, which wrk
(not wrk2) cannot pace; it uses an asyncio client on raw sockets that starts request i at
start + i/rate whatever the earlier ones are doing, and measures from that scheduled time
(so a late client or a slow server both show), connect included; at 300/s it costs a few
percent of a core. `--client httpx` runs all three with the older threaded httpx client.
Lost and duplicated always come from the database, never from a client's counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
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
    load_average,
    machine_description,
    manage,
    markdown_table,
    percentile,
    pidof,
    post_open_loop,
    proc_cpu,
    project_env,
    raw_request,
    run_threads,
    terminate_on_sigterm,
    text_table,
    utc_now_label,
)

DB = "helpdesk_bench_ingest"
WRK = Path("/usr/bin/wrk")
REDIS_URL = "redis://127.0.0.1:6379/14"
QUEUE = "bench-ingest"
WORKER_LOG = Path("/tmp/helpdesk-bench-ingest-worker.log")  # noqa: S108


@dataclass
class Run:
    name: str
    sent: int = 0
    accepted: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    processed_s: float | None = None
    messages: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    redeliveries: int = 0
    client: str = "httpx threads"
    # wrk reports percentiles, not each latency.
    wrk_percentiles: dict[int, float] = field(default_factory=dict)
    wrk_raw: dict[str, Any] = field(default_factory=dict)
    # CPU seconds per process group over the run (end to end only).
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def accepted_rps(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, q: float) -> float:
        if self.wrk_percentiles:
            return self.wrk_percentiles.get(int(q), float("nan"))
        return percentile(self.latencies_ms, q)


def env_for() -> dict[str, str]:
    return project_env(
        DATABASE_URL=database_url(DB),
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-ingest-secret",  # noqa: S106
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CELERY_TASK_ALWAYS_EAGER="0",
        CELERY_QUEUE=QUEUE,
        DB_POOL_MAX="4",
        LOG_LEVEL="WARNING",
        DEBUG="0",
    )


def prepare(env: dict[str, str]) -> None:
    """A fresh database with the demo's channels (real credential shapes) and teams."""
    create_database(DB, drop_first=True)
    subprocess.run(["redis-cli", "-n", "14", "FLUSHDB"], check=True, capture_output=True)
    manage(["migrate", "--noinput", "-v", "0"], env)
    script = (
        "from channels_in.models import Channel\n"
        "from tickets.management import demo_data\n"
        "from tickets.models import Team\n"
        "team = Team.objects.create(name='Outages', slug='outages')\n"
        "for kind, key, name, _t, creds, cfg in demo_data.CHANNELS:\n"
        "    Channel.objects.create(kind=kind, key=key, name=name, credentials=creds,\n"
        "                           settings=cfg, default_team=team)\n"
    )
    subprocess.run([str(PYTHON), "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True)


def make_hooks(count: int, base_url: str, seed: int, duplicates: float) -> tuple[list, int]:
    """Signed webhooks built with the project's simulator (Django set up on the bench DB)."""
    import random

    import django

    os.environ.update(env_for())
    # No pool in this process: each run drops and recreates the database under it.
    os.environ["DB_POOL_MAX"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    django.setup()
    from channels_in.models import Channel
    from channels_in.simulate import Simulator

    channels = list(Channel.objects.exclude(kind="widget").order_by("pk"))
    sim = Simulator(channels, base_url=base_url, seed=seed, customers=2000)
    rng = random.Random(seed)
    hooks = []
    redeliveries = 0
    for _ in range(count):
        hook = sim.next(follow_up_rate=0.4)
        hooks.append(hook)
        if rng.random() < duplicates:
            hooks.append(hook)  # the platform's retry: must change nothing
            redeliveries += 1
    from django.db import connections

    connections.close_all()
    return hooks, redeliveries


def post_all(
    run: Run,
    base_url: str,
    hooks: list,
    *,
    concurrency: int,
    rate: float = 0.0,
    seconds: float = 0.0,
) -> None:
    """Post hooks from `concurrency` threads; at `rate`/s if given (open loop), for at most
    `seconds` if given (then stop), else until all are sent."""
    lock = threading.Lock()
    index = iter(range(len(hooks)))
    start = time.perf_counter()
    deadline = start + seconds if seconds else None

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while True:
                with lock:
                    i = next(index, None)
                if i is None:
                    return
                if rate:
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                if deadline and time.perf_counter() > deadline:
                    return
                hook = hooks[i]
                t0 = time.perf_counter()
                try:
                    response = client.post(hook.path, content=hook.body, headers=hook.headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                took = (time.perf_counter() - t0) * 1000
                with lock:
                    run.sent += 1
                    run.latencies_ms.append(took)
                    run.statuses[status] = run.statuses.get(status, 0) + 1
                    if 200 <= status < 300:
                        run.accepted += 1

    run_threads(worker, concurrency)
    run.elapsed_s = time.perf_counter() - start


def wrk_post(
    run: Run,
    base_url: str,
    hooks: list,
    *,
    connections: int,
    threads: int = 2,
    seconds: float = 0.0,
    all_stored: Any = None,
) -> None:
    """Replay every hook once with wrk (bench/wrk_replay.lua). With `seconds`, for that long
    (a burst); otherwise until `all_stored()` says the server has every event (wrk itself
    would sleep for its whole --duration after its threads ran out of requests)."""
    import json
    import shutil
    import signal
    import tempfile

    host = base_url.split("://", 1)[1]
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-bench-ingest-wrk-"))
    try:
        threads = max(1, min(threads, connections))
        for n in range(threads):
            with (tmp / f"requests.{n}").open("wb") as fh:
                for hook in hooks[n::threads]:
                    raw = raw_request(hook, host)
                    fh.write(f"{len(raw)}\n".encode() + raw)
        cmd = [
            str(WRK), f"--threads={threads}", f"--connections={connections}",
            f"--duration={max(1, round(seconds)) if seconds else 3600}s", "--timeout=30s",
            f"--script={ROOT / 'bench' / 'wrk_replay.lua'}", base_url, "--", str(tmp),
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not seconds:
            while proc.poll() is None and not all_stored():
                time.sleep(0.1)
            run.elapsed_s = time.perf_counter() - start
            # The last responses may still be on their way when the last row is committed.
            time.sleep(1.0)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if seconds:
            run.elapsed_s = time.perf_counter() - start
        line = next((x for x in out.splitlines() if x.startswith("WRK_REPLAY ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip() or out[-500:]}")
        data = json.loads(line.removeprefix("WRK_REPLAY "))
        if seconds:
            run.elapsed_s = data["duration_us"] / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.client = "wrk"
    run.wrk_raw = data
    run.sent = int(data["responses"])
    run.accepted = int(data["ok"])
    for part in filter(None, data["statuses"].split(",")):
        code, n = part.split(":")
        run.statuses[int(code)] = run.statuses.get(int(code), 0) + int(n)
    socket_errors = ("connect_errors", "read_errors", "write_errors", "timeouts")
    errors = sum(int(data[k]) for k in socket_errors)
    if errors:
        run.statuses[0] = errors
    run.wrk_percentiles = {50: data["p50_us"] / 1000, 99: data["p99_us"] / 1000}


def paced_post(run: Run, base_url: str, hooks: list, *, rate: float) -> None:
    """Open loop (bench/common.post_open_loop, nothing capped): latency from each request's
    scheduled time to the last byte of its response."""
    host_port = base_url.split("://", 1)[1]
    sent, start = post_open_loop(base_url, [raw_request(h, host_port) for h in hooks], rate)
    for post in sent:
        run.sent += 1
        run.latencies_ms.append((post.ended - post.due) * 1000)
        run.statuses[post.status] = run.statuses.get(post.status, 0) + 1
        if 200 <= post.status < 300:
            run.accepted += 1
    run.elapsed_s = max((p.ended for p in sent), default=start) - start
    run.client = "asyncio open loop"


def count_state() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE status = 'processed'), count(*) "
            "FROM channels_in_inboundevent"
        )
        processed, events = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM tickets_message WHERE direction = 'in'")
        (messages,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM (SELECT channel_id, platform_message_id FROM tickets_message "
            "WHERE direction = 'in' GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        (dups,) = cursor.fetchone()
    connection.close()
    return {"processed": processed, "events": events, "messages": messages, "dups": dups}


def warm_up(base_url: str, hooks: list) -> None:
    """Before measuring: every gunicorn worker imports the URLconf, the views and the adapters
    and opens its database connection on its first request (~2 s). GETs on webhook URLs go
    that whole way (the adapter answers 405, or its handshake) and store nothing."""
    paths = sorted({hook.path for hook in hooks})

    def get(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for path in paths:
                client.get(path)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def count_events() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_in_inboundevent")
        (events,) = cursor.fetchone()
    return int(events)


def wait_processed(expected: int, started: float, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = count_state()
        if state["processed"] >= expected:
            return time.perf_counter() - started
        time.sleep(0.25)
    return None


CLIENT_NOTE = {
    "wrk": "Clients: wrk replays the pre-signed webhooks of runs 1 and 3 (latency from writing "
    "the request to its response, connect excluded); run 2 is an asyncio open loop on raw "
    "sockets (latency from each request's scheduled start, connect included). Lost and "
    "duplicated are counted from the database.",
    "httpx": "Clients: httpx threads for every run (latency around the whole exchange). Lost "
    "and duplicated are counted from the database.",
}


def main() -> None:
    terminate_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    # As the README deploys it: 2 x cores. Sync workers wait on PostgreSQL and Redis round
    # trips; with 2 of them a burst accepted ~10 % less (784 against 865/s).
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk" if WRK.exists() else "httpx",
        help="wrk (runs 1 and 3) and an asyncio open loop (run 2), or httpx threads for all",
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    env = env_for()
    load_before = load_average()[0]
    runs: list[Run] = []

    # 1. End to end.
    prepare(env)
    with Gunicorn(env, workers=args.web_workers) as web:
        hooks, redeliveries = make_hooks(args.messages, web.base_url, args.seed, args.duplicates)
        worker = CeleryWorker(env, args.worker_concurrency, WORKER_LOG, nice=args.nice)
        worker.start()
        try:
            warm_up(web.base_url, hooks)
            time.sleep(3)  # the worker's processes are up
            run = Run("end to end", redeliveries=redeliveries)
            pids = {
                "gunicorn": web.worker_pids(),
                "celery": worker.pids(),
                "postgres": backend_pids(DB),
                "redis": pidof("redis-server"),
            }
            cpu_before = {k: proc_cpu(v) for k, v in pids.items()}
            started = time.perf_counter()
            if args.client == "wrk":
                wrk_post(
                    run,
                    web.base_url,
                    hooks,
                    connections=args.concurrency,
                    threads=args.wrk_threads,
                    all_stored=lambda: count_events() >= args.messages,
                )
            else:
                post_all(run, web.base_url, hooks, concurrency=args.concurrency)
            print(f"posted {run.sent} in {run.elapsed_s:.1f}s; waiting for processing ...")
            run.processed_s = wait_processed(args.messages, started, timeout=900)
            pids["postgres"] = sorted(set(pids["postgres"]) | set(backend_pids(DB)))
            run.cpu_s = {k: proc_cpu(v) - cpu_before.get(k, 0.0) for k, v in pids.items()}
            state = count_state()
            run.messages = state["messages"]
            run.lost = args.messages - state["messages"]
            run.duplicated = state["dups"] + max(0, state["messages"] - args.messages)
            runs.append(run)
        finally:
            worker.stop()

    # 2. Latency at a fixed offered rate, workers processing alongside.
    prepare(env)
    with Gunicorn(env, workers=args.web_workers) as web:
        count = int(args.rate * args.rate_seconds)
        hooks, _ = make_hooks(count, web.base_url, args.seed + 1, 0.0)
        worker = CeleryWorker(env, args.worker_concurrency, WORKER_LOG, nice=args.nice)
        worker.start()
        try:
            warm_up(web.base_url, hooks)
            time.sleep(3)
            run = Run(f"{args.rate:.0f}/s offered for {args.rate_seconds:.0f}s")
            if args.client == "wrk":
                paced_post(run, web.base_url, hooks, rate=args.rate)
            else:
                post_all(run, web.base_url, hooks, concurrency=args.concurrency, rate=args.rate)
            runs.append(run)
        finally:
            worker.stop()

    # 3. Burst acceptance.
    prepare(env)
    with Gunicorn(env, workers=args.web_workers) as web:
        # More than can be sent in the time (a wrk thread that runs out stops: see the output).
        count = int((1500 if args.client == "wrk" else 2000) * args.burst_seconds)
        hooks, _ = make_hooks(count, web.base_url, args.seed + 2, 0.0)
        worker = CeleryWorker(env, args.worker_concurrency, WORKER_LOG, nice=args.nice)
        worker.start()
        group_niced = worker.group_niced
        try:
            warm_up(web.base_url, hooks)
            time.sleep(3)
            run = Run(f"burst for {args.burst_seconds:.0f}s")
            if args.client == "wrk":
                wrk_post(
                    run,
                    web.base_url,
                    hooks,
                    connections=args.concurrency,
                    threads=args.wrk_threads,
                    seconds=args.burst_seconds,
                )
                if run.sent >= len(hooks):
                    print(f"burst: all {len(hooks)} pre-built webhooks were sent before the end")
            else:
                post_all(
                    run,
                    web.base_url,
                    hooks,
                    concurrency=args.concurrency,
                    seconds=args.burst_seconds,
                )
            runs.append(run)
        finally:
            worker.stop()

    headers = [
        "run",
        "client",
        "sent",
        "accepted/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "e2e msg/s",
        "lost",
        "duplicated",
    ]
    rows = []
    for run in runs:
        non_2xx = sum(n for s, n in run.statuses.items() if not 200 <= s < 300)
        e2e = (
            f"{args.messages / run.processed_s:.0f}"
            if run.processed_s
            else ("timed out" if run.name == "end to end" else "")
        )
        rows.append(
            [
                run.name,
                run.client,
                str(run.sent),
                f"{run.accepted_rps:.0f}",
                f"{run.p(50):.1f}",
                f"{run.p(99):.1f}",
                str(non_2xx),
                e2e,
                "" if run.lost is None else str(run.lost),
                "" if run.duplicated is None else str(run.duplicated),
            ]
        )
    print()
    print(text_table(headers, rows))
    print(CLIENT_NOTE[args.client])
    cpu_line = ""
    if runs[0].cpu_s:
        cpu_line = (
            "CPU ms per message in the end-to-end run: "
            + ", ".join(f"{k} {v * 1000 / args.messages:.2f}" for k, v in runs[0].cpu_s.items())
            + f" (sum {sum(runs[0].cpu_s.values()) * 1000 / args.messages:.2f})"
        )
        print(cpu_line)
    if args.no_record:
        return
    machine = machine_description()
    e2e_run = runs[0]
    section = "\n".join(
        [
            f"## Ingest — {utc_now_label()}",
            "",
            f"`.venv/bin/python bench/ingest.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
            "",
            f"Machine: {machine['cores']} cores ({machine['cpu']}), PostgreSQL "
            f"{machine['postgresql']}, Python {machine['python']}; load before {load_before:.2f}. "
            f"gunicorn {args.web_workers} sync workers; one Celery worker, prefork "
            f"×{args.worker_concurrency}, nice {args.nice}"
            f"{' (and its autogroup)' if group_niced else ''}; {args.concurrency} client "
            f"{'connections' if args.client == 'wrk' else 'threads'}; "
            f"{e2e_run.redeliveries} redeliveries in the end-to-end run.",
            "",
            CLIENT_NOTE[args.client],
            "",
            markdown_table(headers, rows),
            "",
            cpu_line,
            "",
            "Targets: bursts ≥ 750 accepted/s for 60 s; p99 < 25 ms at 300/s offered; "
            "≥ 250 messages/s end to end; 0 lost; 0 duplicated.",
        ]
    )
    append_results(section)


if __name__ == "__main__":
    main()
