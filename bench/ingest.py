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

import httpx

# Run as a script, Python puts bench/ first on the path, where bench/queue.py would shadow the
# standard library's `queue`: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.common import (  # noqa: E402
    PYTHON,
    ROOT,
    Gunicorn,
    append_results,
    create_database,
    database_url,
    load_average,
    machine_description,
    manage,
    markdown_table,
    percentile,
    project_env,
    terminate_on_sigterm,
    text_table,
    utc_now_label,
)

DB = "helpdesk_bench_ingest"
REDIS_URL = "redis://127.0.0.1:6379/14"
QUEUE = "bench-ingest"


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

    @property
    def accepted_rps(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, q: float) -> float:
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


class Worker:
    """A real Celery worker (prefork, `concurrency` processes), niced so that the webhook
    tier keeps its CPU during a burst: accepting is the promise, processing can trail."""

    def __init__(self, env: dict[str, str], concurrency: int, nice: int) -> None:
        self.log = Path("/tmp/helpdesk-bench-ingest-worker.log")  # noqa: S108
        cmd = [
            "nice",
            "-n",
            str(nice),
            str(PYTHON),
            "-m",
            "celery",
            "-A",
            "helpdesk",
            "worker",
            "-c",
            str(concurrency),
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.elapsed_s = time.perf_counter() - start


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


def wait_processed(expected: int, started: float, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = count_state()
        if state["processed"] >= expected:
            return time.perf_counter() - started
        time.sleep(0.25)
    return None


def main() -> None:
    terminate_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    env = env_for()
    load_before = load_average()[0]
    runs: list[Run] = []

    # 1. End to end.
    prepare(env)
    with Gunicorn(env, workers=args.web_workers) as web:
        hooks, redeliveries = make_hooks(args.messages, web.base_url, args.seed, args.duplicates)
        worker = Worker(env, args.worker_concurrency, args.nice)
        try:
            time.sleep(3)  # the worker's processes are up
            run = Run("end to end", redeliveries=redeliveries)
            started = time.perf_counter()
            post_all(run, web.base_url, hooks, concurrency=args.concurrency)
            print(f"posted {run.sent} in {run.elapsed_s:.1f}s; waiting for processing ...")
            run.processed_s = wait_processed(args.messages, started, timeout=900)
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
        worker = Worker(env, args.worker_concurrency, args.nice)
        try:
            time.sleep(3)
            run = Run(f"{args.rate:.0f}/s offered for {args.rate_seconds:.0f}s")
            post_all(run, web.base_url, hooks, concurrency=args.concurrency, rate=args.rate)
            runs.append(run)
        finally:
            worker.stop()

    # 3. Burst acceptance.
    prepare(env)
    with Gunicorn(env, workers=args.web_workers) as web:
        count = int(2000 * args.burst_seconds)  # more than can be sent in the time
        hooks, _ = make_hooks(count, web.base_url, args.seed + 2, 0.0)
        worker = Worker(env, args.worker_concurrency, args.nice)
        try:
            time.sleep(3)
            run = Run(f"burst for {args.burst_seconds:.0f}s")
            post_all(
                run, web.base_url, hooks, concurrency=args.concurrency, seconds=args.burst_seconds
            )
            runs.append(run)
        finally:
            worker.stop()

    headers = [
        "run",
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
            f"×{args.worker_concurrency}, nice {args.nice}; {args.concurrency} client threads; "
            f"{e2e_run.redeliveries} redeliveries in the end-to-end run.",
            "",
            markdown_table(headers, rows),
            "",
            "Targets: bursts ≥ 750 accepted/s for 60 s; p99 < 25 ms at 300/s offered; "
            "≥ 250 messages/s end to end; 0 lost; 0 duplicated.",
        ]
    )
    append_results(section)


if __name__ == "__main__":
    main()
