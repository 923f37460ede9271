"""`simulate --count 500 --rate 20`: post realistic, signed platform webhooks to a running
helpdesk, with a progress bar, so the queue moves in a demo (and load is real in benchmarks).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from channels_in.models import Channel
from channels_in.simulate import SIMULATED_KINDS, Hook, Simulator


class Command(BaseCommand):
    help = "Post realistic, correctly signed webhooks for every channel kind at a given rate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.SITE_URL, help="the helpdesk's base URL")
        parser.add_argument("--count", type=int, default=100, help="webhooks to post")
        parser.add_argument(
            "--rate", type=float, default=10.0, help="webhooks per second (0: as fast as possible)"
        )
        parser.add_argument(
            "--kinds", default="", help=f"comma-separated subset of {', '.join(SIMULATED_KINDS)}"
        )
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument(
            "--duplicates",
            type=float,
            default=0.0,
            help="share of webhooks delivered twice, as platforms retry",
        )
        parser.add_argument("--customers", type=int, default=300)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        if options["rate"] < 0 or not 0 <= options["duplicates"] <= 1:
            raise CommandError("--rate must be ≥ 0 and --duplicates between 0 and 1")
        kinds = [k.strip() for k in options["kinds"].split(",") if k.strip()] or list(
            SIMULATED_KINDS
        )
        unknown = sorted(set(kinds) - set(SIMULATED_KINDS))
        if unknown:
            raise CommandError(
                f"cannot simulate {', '.join(unknown)}; choose from {', '.join(SIMULATED_KINDS)}"
            )
        channels = list(Channel.objects.filter(kind__in=kinds, is_active=True).order_by("pk"))
        if not channels:
            raise CommandError(
                f"no active channel of kind {', '.join(kinds)}: run createdemo or createchannel"
            )
        simulator = Simulator(
            channels, base_url=options["url"], seed=options["seed"], customers=options["customers"]
        )
        missing = sorted(set(kinds) - {c.kind for c in channels})
        if missing:
            self.stderr.write(f"no active channel for {', '.join(missing)}; skipping those")

        statuses: Counter[str] = Counter()
        latencies: list[float] = []
        lock = threading.Lock()
        client = httpx.Client(base_url=options["url"], timeout=30)

        def post(hook: Hook) -> None:
            started = time.perf_counter()
            try:
                response = client.post(hook.path, content=hook.body, headers=hook.headers)
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            with lock:
                statuses[outcome] += 1
                latencies.append(time.perf_counter() - started)

        interval = 1 / options["rate"] if options["rate"] else 0
        bar = tqdm(total=options["count"], unit="hook", disable=options["no_progress"])
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=options["concurrency"]) as pool:
            for i in range(options["count"]):
                if interval:
                    delay = started + i * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                hook = simulator.next()
                future = pool.submit(post, hook)
                if simulator.rng.random() < options["duplicates"]:
                    pool.submit(post, hook)  # the platform's retry: must change nothing
                future.add_done_callback(lambda _: bar.update(1))
        bar.close()
        elapsed = time.perf_counter() - started
        ordered = sorted(latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        summary = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        self.stdout.write(
            f"posted {sum(statuses.values())} webhooks in {elapsed:.1f}s "
            f"({sum(statuses.values()) / elapsed:.0f}/s); {summary}; "
            f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        if any(not code.startswith("2") for code in statuses):
            raise CommandError("some webhooks were not accepted (see the counts above)")
