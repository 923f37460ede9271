"""Routing benchmark: concurrent workers assigning a backlog to online agents.

    .venv/bin/python bench/routing.py               # seed helpdesk_bench_routing, measure, append
    .venv/bin/python bench/routing.py --profile     # ... and cProfile one worker
    .venv/bin/python bench/routing.py --workers 8 --tickets 20000

1. Creates (or reuses) the PostgreSQL database `helpdesk_bench_routing`, migrates it, empties
   it and seeds, with the ORM's bulk inserts: 10 teams (two with a parent), 6 skills,
   200 online agents (1-2 teams, 2-3 languages, 0-3 skills, capacities 40-80, rolling
   response times and CSAT), 2,000 contacts (some VIP), 10,000 new unassigned tickets
   (languages, topics, priorities, ~10 % negative, ~20 % needing a skill) and a handful
   of routing rules.
2. Routes in a few tickets in this process, counting SQL statements per routing.
3. Forks `--workers` (4) processes, each with its own database connection, which route
   their share of the tickets as production routes a backlog: `--mode batch` (default)
   calls `tickets.actions.do_route_batch` (what the periodic `route_waiting_tickets` task
   runs, through `do_route_backlog`) on chunks of `--batch` tickets, then once more on the
   tickets it had to leave because another worker held their agents ("busy"), until none
   is left; `--mode ticket` calls `do_route_ticket` on each (the post-receive path). One
   ticket in ten is also handed to a second worker (a redelivered task), so workers race
   for the same tickets as well as for the same agents.
4. Checks the invariants (a ticket assigned twice, an agent over capacity, an open_count
   that differs from the agent's real active tickets), prints the figures and appends
   them to bench/RESULTS.md.

Live events go to Redis (`--redis-url`, the routing tests' database 3 by default), as in
production; nobody listens.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path; put the project root there instead
# (so `bench.common` and the project import, and nothing in bench/ shadows a module).
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)
elif str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

from bench import common  # noqa: E402

DB_NAME = "helpdesk_bench_routing"
SECRET_KEY = "bench-only-secret-key-" + "r" * 40
# PERF-NOTES: one INSERT + commit per transaction, 1 connection, on the reference machine.
REFERENCE_INSERTS = 2834
UNUSABLE = "!"  # Django's mark for "no password": bench agents never sign in
LANGUAGES = ["pt", "ru", "zh", "lt", "en"]
# How often each language turns up in the backlog.
LANGUAGE_WEIGHTS = [30, 30, 10, 15, 15]
TEAMS = [
    ("Field operations", "field", None),
    ("Outages", "outages", "field"),
    ("Billing", "billing", None),
    ("Meters", "meters", None),
    ("Tariffs", "tariffs", None),
    ("Contracts", "contracts", None),
    ("Maintenance", "maintenance", "field"),
    ("Debt", "debt", None),
    ("Social media", "social", None),
    ("Email desk", "email-desk", None),
]
SKILLS = ["hv", "crane", "disputes", "legal", "smart-meters", "press"]
# Agents per team follow the tickets each team gets (topics, and the rules' moves).
TEAM_WEIGHTS = {
    "outages": 30,
    "billing": 23,
    "meters": 15,
    "tariffs": 8,
    "contracts": 7,
    "maintenance": 5,
    "email-desk": 12,
    "field": 3,
    "debt": 2,
    "social": 2,
}
TOPIC_TEAM = {
    "outage": "outages",
    "billing": "billing",
    "meter_reading": "meters",
    "tariff": "tariffs",
    "contract": "contracts",
    "maintenance": "maintenance",
    "other": "email-desk",
}


def bench_env(redis_url: str) -> dict[str, str]:
    return common.project_env(
        DATABASE_URL=common.database_url(DB_NAME),
        REDIS_URL=redis_url,
        SECRET_KEY=SECRET_KEY,
        DB_POOL_MAX="0",
        CELERY_TASK_ALWAYS_EAGER="1",
        DEBUG="0",
        DJANGO_SETTINGS_MODULE="helpdesk.settings",
    )


# --------------------------------------------------------------------------- seeding


def empty_database() -> None:
    """Empty every project table (the schema stays): each run starts from the same seed."""
    from django.db import connection

    keep = {"django_migrations", "django_content_type", "auth_permission"}
    tables = [t for t in connection.introspection.table_names() if t not in keep]
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
        )


def seed(args: argparse.Namespace) -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from channels_in.models import Channel
    from tickets import routing
    from tickets.models import (
        Agent,
        AgentSkill,
        Contact,
        Priority,
        RoutingRule,
        Skill,
        Team,
        Ticket,
    )

    rng = random.Random(args.seed)
    now = timezone.now()
    with transaction.atomic():
        teams: dict[str, Team] = {}
        for name, slug, parent in TEAMS:
            teams[slug] = Team.objects.create(
                name=name, slug=slug, parent=teams[parent] if parent else None
            )
        skills = {s: Skill.objects.create(name=s.upper(), slug=s) for s in SKILLS}
        channels = [
            Channel.objects.create(kind=kind, key=f"bench-{kind}", name=kind.title())
            for kind in ("whatsapp", "telegram", "viber", "sms", "email", "widget")
        ]

        users = get_user_model().objects.bulk_create(
            [
                get_user_model()(username=f"bench-router-{i:03d}", password=UNUSABLE)
                for i in range(args.agents)
            ]
        )
        agents = Agent.objects.bulk_create(
            [
                Agent(
                    user=user,
                    languages=rng.sample(LANGUAGES, rng.choice((2, 3))),
                    capacity=rng.randint(40, 80),
                    presence="online",
                    auto_assign=True,
                    avg_first_response_seconds=rng.uniform(30, 1800),
                    csat_score=round(rng.uniform(3.0, 4.9), 2),
                    csat_count=rng.randint(0, 200),
                    last_assigned_at=now - timedelta(minutes=rng.randint(1, 600)),
                )
                for user in users
            ]
        )
        slugs = [slug for _, slug, _ in TEAMS]
        weights = [TEAM_WEIGHTS[slug] for slug in slugs]
        memberships = []
        agent_skills = []
        for i, agent in enumerate(agents):
            # Every team gets agents, busy teams more; most agents work one team, some two.
            own = {slugs[i] if i < len(slugs) else rng.choices(slugs, weights=weights)[0]}
            if rng.random() < 0.3:
                own.add(rng.choice(slugs))
            memberships += [
                Agent.teams.through(agent_id=agent.pk, team_id=teams[s].pk) for s in own
            ]
            agent_skills += [
                AgentSkill(agent=agent, skill=skills[skill], proficiency=rng.randint(1, 5))
                for skill in rng.sample(SKILLS, rng.choice((0, 1, 1, 2, 3)))
            ]
        Agent.teams.through.objects.bulk_create(memberships)
        AgentSkill.objects.bulk_create(agent_skills)

        contacts = Contact.objects.bulk_create(
            [
                Contact(
                    display_name=f"Customer {i}",
                    tier="vip" if rng.random() < 0.05 else "standard",
                )
                for i in range(args.contacts)
            ]
        )
        topics = list(TOPIC_TEAM)
        tickets = []
        for i in range(args.tickets):
            topic = rng.choices(topics, weights=[30, 25, 15, 8, 7, 5, 10])[0]
            tickets.append(
                Ticket(
                    contact=contacts[i % len(contacts)],
                    channel=rng.choice(channels),
                    subject=f"Bench ticket {i}",
                    status="new",
                    priority=rng.choices(list(Priority.values), weights=[30, 45, 20, 5])[0],
                    topic=topic,
                    language=rng.choices(LANGUAGES, weights=LANGUAGE_WEIGHTS)[0],
                    team=teams[TOPIC_TEAM[topic]],
                    sentiment=rng.choice((3, 6, 9)) if rng.random() < 0.1 else 0,
                    sla_due_at=now + timedelta(minutes=rng.randint(5, 600)),
                    waiting_since=now - timedelta(minutes=rng.randint(0, 120)),
                    created_at=now - timedelta(minutes=rng.randint(0, 120)),
                )
            )
        tickets = Ticket.objects.bulk_create(tickets, batch_size=2000)
        needs = [
            Ticket.required_skills.through(ticket_id=t.pk, skill_id=skills[rng.choice(SKILLS)].pk)
            for t in tickets
            if rng.random() < 0.2
        ]
        Ticket.required_skills.through.objects.bulk_create(needs, batch_size=2000)

        specs = [
            ("VIP first", {"tier": ["vip"]}, {"priority": "+1", "tags": ["vip"]}),
            (
                "Wires down need high voltage",
                {"topic": ["outage"], "priority": ["urgent", "high"]},
                {"skills": ["hv"], "optional_skills": ["crane"]},
            ),
            (
                "Upset customers on public channels",
                {"sentiment": "negative", "channel": ["widget", "email"]},
                {"tags": ["upset"]},
            ),
            (
                "Chinese billing goes to the email desk",
                {"all": [{"language": ["zh"]}, {"topic": ["billing", "tariff"]}]},
                {"team": "email-desk"},
            ),
            ("Disputes", {"any": [{"tag": ["dispute"]}, {"tier": ["business"]}]}, {"team": "debt"}),
        ]
        for position, (name, conditions, acts) in enumerate(specs):
            RoutingRule.objects.create(
                name=name,
                position=position,
                conditions=routing.validate_conditions(conditions),
                actions=routing.validate_actions(acts),
            )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    capacity = sum(a.capacity for a in agents)
    return {
        "teams": len(teams),
        "agents": len(agents),
        "capacity": capacity,
        "contacts": len(contacts),
        "tickets": len(tickets),
        "needing a skill": len(needs),
        "rules": len(specs),
    }


# --------------------------------------------------------------------------- workers


def route_share(ids: list[int], mode: str, batch: int, outcomes: Counter[str]) -> None:
    """Route a worker's share: one by one, or in batches with the busy ones retried."""
    from tickets import actions

    if mode == "ticket":
        for pk in ids:
            outcomes[actions.do_route_ticket(pk).outcome] += 1
        return
    todo = ids
    while todo:
        busy: list[int] = []
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            results = actions.do_route_batch(chunk)
            # Already assigned (a redelivery) or held by another worker's batch: not routed.
            outcomes["skipped"] += len(chunk) - len(results)
            for result in results:
                if result.outcome == "busy":
                    busy.append(result.ticket_id)
                else:
                    outcomes[result.outcome] += 1
        if len(busy) == len(todo):
            outcomes["busy"] += len(busy)  # no progress: the next periodic pass takes them
            break
        todo = busy


def worker_main(
    index: int,
    ids: list[int],
    barrier: Any,
    results: Any,
    profile: bool,
    live_events: bool = True,
    mode: str = "batch",
    batch: int = 50,
) -> None:
    """One worker process: its own connection, routing its tickets (route_share)."""
    from django.db import connections

    from tickets import events

    if not live_events:
        # --no-live-events: what routing costs without publishing to Redis (to size that
        # share); the events are still built and scheduled on commit.
        events._publish = lambda groups, event: None  # type: ignore[assignment]

    outcomes: Counter[str] = Counter()
    error = ""
    profiler = cProfile.Profile() if profile else None
    try:
        connections.close_all()
        # Connect before the start line, as a running Celery worker already is.
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        barrier.wait()
        started = time.perf_counter()
        cpu_before, backend_before = time.process_time(), process_cpu(backend)
        if profiler:
            profiler.enable()
        route_share(ids, mode, batch, outcomes)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        backend_cpu = process_cpu(backend) - backend_before
    except Exception:
        error = traceback.format_exc()
        elapsed = cpu = backend_cpu = 0.0
    stats = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        stats = out.getvalue()
    connections.close_all()
    results.put(
        {"index": index, "outcomes": dict(outcomes), "elapsed": elapsed, "error": error,
         "profile": stats, "cpu": cpu, "backend_cpu": backend_cpu}
    )  # fmt: skip


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process on this machine has used: here, the PostgreSQL
    backend serving a worker, whose work the worker's own clock does not see."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shares(ids: list[int], workers: int, duplicate: float, seed: int) -> list[list[int]]:
    """Split the tickets among the workers; `duplicate` of them also go to a second worker."""
    rng = random.Random(seed)
    order = ids[:]
    rng.shuffle(order)
    out: list[list[int]] = [order[i::workers] for i in range(workers)]
    if workers > 1:
        owner = {pk: i % workers for i, pk in enumerate(order)}
        for pk in rng.sample(order, int(len(order) * duplicate)):
            other = (owner[pk] + rng.randint(1, workers - 1)) % workers
            out[other].insert(rng.randint(0, len(out[other])), pk)
    return out


# --------------------------------------------------------------------------- checks


def invariants() -> dict[str, Any]:
    from django.db.models import Count

    from tickets.models import ACTIVE_STATUSES, Agent, Ticket, TicketEvent

    twice = (
        TicketEvent.objects.filter(verb="routing.assigned")
        .values("ticket_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    real = dict(
        Ticket.objects.filter(status__in=ACTIVE_STATUSES, assignee__isnull=False)
        .values("assignee")
        .annotate(n=Count("id"))
        .values_list("assignee", "n")
    )
    over = drift = 0
    full = 0
    for pk, capacity, open_count in Agent.objects.values_list("pk", "capacity", "open_count"):
        count = real.get(pk, 0)
        over += count > capacity
        drift += open_count != count
        full += count >= capacity
    return {
        "double assignments": twice,
        "agents over capacity": over,
        "open_count drift": drift,
        "agents at capacity": full,
        "assigned": sum(real.values()),
        "unassigned": Ticket.objects.filter(assignee__isnull=True).count(),
    }


def calibrate(n: int = 1000) -> float:
    """Single-connection INSERT + COMMIT transactions per second right now: the yardstick
    PERF-NOTES measured at 2,834/s on the reference machine, to read this run's figures
    against (the machine's speed varies with what else runs on it)."""
    with common.connect(DB_NAME) as conn:
        # A logged table: a temporary one would skip the WAL flush each commit pays.
        conn.execute("DROP TABLE IF EXISTS bench_calibration")
        conn.execute("CREATE TABLE bench_calibration (id serial PRIMARY KEY, v int)")
        started = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO bench_calibration (v) VALUES (%s)", [i])
        rate = n / (time.perf_counter() - started)
        conn.execute("DROP TABLE bench_calibration")
    return rate


def queries_per_routing(ids: Sequence[int]) -> tuple[float, float]:
    """Route a few tickets here, counting statements (and time): the cost of one routing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tickets import actions

    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        for pk in ids:
            actions.do_route_ticket(pk)
        elapsed = time.perf_counter() - started
    return len(ctx.captured_queries) / len(ids), elapsed * 1000 / len(ids)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4, help="routing processes")
    parser.add_argument("--duplicate", type=float, default=0.1, help="share sent twice")
    parser.add_argument("--sample", type=int, default=50, help="tickets routed in-process first")
    parser.add_argument("--mode", choices=("batch", "ticket"), default="batch")
    parser.add_argument("--batch", type=int, default=50, help="tickets per do_route_batch")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--profile", action="store_true", help="cProfile worker 0")
    parser.add_argument(
        "--no-live-events", action="store_true", help="do not publish to Redis (measure its share)"
    )
    parser.add_argument("--quiet-load", type=float, default=0.0, help="wait for this load")
    parser.add_argument("--quiet-wait", type=float, default=300.0)
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.terminate_on_sigterm()
    env = bench_env(args.redis_url)
    common.create_database(DB_NAME)
    common.manage(["migrate", "--noinput", "-v", "0"], env)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connections

    from tickets.models import Ticket

    machine = common.machine_description()
    print(f"machine: {machine}")
    with common.stopwatch() as took:
        empty_database()
        sizes = seed(args)
    print(f"seeded in {took():.1f}s: {sizes}")

    ids = list(Ticket.objects.order_by("id").values_list("id", flat=True))
    sample, ids = ids[: args.sample], ids[args.sample :]
    per_routing, ms_per_routing = queries_per_routing(sample) if sample else (0.0, 0.0)
    print(f"in-process: {per_routing:.1f} SQL statements and {ms_per_routing:.2f} ms per routing")

    work = shares(ids, args.workers, args.duplicate, args.seed)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.workers + 1)
    results = context.Queue()
    # No connection may cross the fork: each worker opens its own.
    connections.close_all()
    if args.quiet_load:
        load = common.wait_for_quiet(args.quiet_load, max_wait_s=args.quiet_wait)
        print(f"load average {load:.2f} (waited for < {args.quiet_load})")
    calibration = calibrate()
    print(f"calibration: {calibration:,.0f} INSERT+COMMIT/s on one connection "
          f"(PERF-NOTES reference machine: {REFERENCE_INSERTS:,}/s)")  # fmt: skip
    load_before = common.load_average()
    processes = [
        context.Process(
            target=worker_main,
            args=(
                i,
                work[i],
                barrier,
                results,
                args.profile and i == 0,
                not args.no_live_events,
                args.mode,
                args.batch,
            ),
        )
        for i in range(args.workers)
    ]
    for p in processes:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    reports = [results.get(timeout=1800) for _ in processes]
    elapsed = time.perf_counter() - started
    for p in processes:
        p.join(60)
    load_after = common.load_average()

    errors = [r["error"] for r in reports if r["error"]]
    for error in errors:
        print(error)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["outcomes"])
    checks = invariants()
    routed = outcomes["assigned"] + outcomes["queued"]
    worker_cpu = sum(r["cpu"] for r in reports)
    backend_cpu = sum(r["backend_cpu"] for r in reports)
    calls = sum(outcomes.values()) or 1
    # CPU per call in the workers and their PostgreSQL backends: what the machine's load
    # does not change much, unlike the wall-clock rate; 2 idle cores would do about
    # 2 / (CPU per call) calls per second.
    cpu_ms = {
        "worker": worker_cpu * 1000 / calls,
        "postgres": backend_cpu * 1000 / calls,
    }
    ceiling = (os.cpu_count() or 1) * 1000 / (cpu_ms["worker"] + cpu_ms["postgres"])
    figures = {
        "assignments/s": outcomes["assigned"] / elapsed,
        "routing decisions/s": routed / elapsed,
        "calls/s": sum(outcomes.values()) / elapsed,
    }
    redelivered = int(len(ids) * args.duplicate)
    print(
        f"\n{args.workers} workers, {len(ids)} tickets (+{redelivered} redelivered) in "
        f"{elapsed:.2f}s, load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    for name, value in figures.items():
        print(f"  {name:<24} {value:,.0f}")
    print(f"  CPU per call             {cpu_ms['worker']:.2f} ms in the worker, "
          f"{cpu_ms['postgres']:.2f} ms in PostgreSQL; {os.cpu_count()} idle cores: "
          f"~{ceiling:,.0f} calls/s")  # fmt: skip
    per_assignment = (worker_cpu + backend_cpu) * 1000 / max(outcomes["assigned"], 1)
    print(f"  CPU per assignment       {per_assignment:.2f} ms (worker + PostgreSQL)")
    print(f"  outcomes                 {dict(outcomes)}")
    for name, value in checks.items():
        print(f"  {name:<24} {value}")
    for report in reports:
        if report["profile"]:
            print(report["profile"])

    ok = (
        not errors
        and checks["double assignments"] == 0
        and checks["agents over capacity"] == 0
        and checks["open_count drift"] == 0
    )
    if not args.no_results:
        decisions = f"{figures['routing decisions/s']:,.0f}"
        rows = [
            ["assignments/s", f"{figures['assignments/s']:,.0f}", "≥ 500"],
            ["routing decisions/s (assigned + queued)", decisions, ""],
            ["tickets handled/s (incl. redeliveries)", f"{figures['calls/s']:,.0f}", ""],
            ["double assignments", str(checks["double assignments"]), "0"],
            ["agents over capacity", str(checks["agents over capacity"]), "0"],
            ["agents whose open_count drifted", str(checks["open_count drift"]), "0"],
            ["SQL statements per routing (in-process sample)", f"{per_routing:.1f}", ""],
            ["CPU per assignment, worker + PostgreSQL (ms)", f"{per_assignment:.2f}", ""],
            ["CPU per call in the worker (ms)", f"{cpu_ms['worker']:.2f}", ""],
            ["CPU per call in its PostgreSQL backend (ms)", f"{cpu_ms['postgres']:.2f}", ""],
            [f"calls/s {os.cpu_count()} idle cores would do (from the CPU)", f"{ceiling:,.0f}", ""],
            ["ms per routing, one process alone", f"{ms_per_routing:.2f}", ""],
            ["calibration: INSERT+COMMIT/s, one connection", f"{calibration:,.0f}",
             f"{REFERENCE_INSERTS:,} on the reference machine"],
        ]  # fmt: skip
        section = [
            f"## Routing — {common.utc_now_label()}",
            "",
            "`" + " ".join([".venv/bin/python bench/routing.py", *(argv or sys.argv[1:])]) + "`",
            "",
            f"{sizes['agents']} online agents in {sizes['teams']} teams (total capacity "
            f"{sizes['capacity']:,}), {sizes['tickets']:,} new unassigned tickets "
            f"({sizes['needing a skill']:,} needing a skill), {sizes['rules']} routing rules; "
            f"{args.workers} worker processes with their own connections calling "
            + (
                f"`do_route_batch` ({args.batch} tickets a call)"
                if args.mode == "batch"
                else "`do_route_ticket`"
            )
            + f", {args.duplicate:.0%} of the tickets handed to two workers; "
            + ("live events NOT published (--no-live-events); " if args.no_live_events else "")
            + f"{len(ids):,} tickets in {elapsed:.2f} s.",
            "",
            common.markdown_table(["figure", "value", "target"], rows),
            "",
            f"Outcomes: {dict(outcomes)}. After the run: {checks}.",
            "",
            f"- Machine: {machine['cores']} cores, {machine['cpu']}, {machine['memory']}, "
            f"PostgreSQL {machine['postgresql']}, Python {machine['python']}.",
            f"- Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
            "(other engineers share the machine).",
        ]
        if errors:
            section.append(f"- {len(errors)} workers failed: {errors[0].splitlines()[-1]}")
        common.append_results("\n".join(section))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
