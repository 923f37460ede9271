"""`manage.py createdemo`: a living, multilingual utility helpdesk for a newcomer to explore.

Teams, skills, tags, agents with known passwords, one channel of every kind with fake
credentials, canned responses in five languages, and a few hundred conversations made through
the same actions a real channel and real agents use (see tickets/management/demo.py).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.test.utils import override_settings

from channels_in.models import Channel
from tickets.management import demo_data
from tickets.management.demo import DEMO_PASSWORD, Demo, demo_summary
from tickets.models import Agent, CannedResponse, Contact, Message


def keep_in_outbox(delivery_id: int) -> None:
    """The delivery dispatcher while seeding: demo replies are history, never to be sent
    through a platform (their credentials are fake); `Demo.backdate` marks them sent."""


def reply_always_possible(
    channel_id: int, last_customer_message_at: datetime | None, **context: Any
) -> None:
    """The reply check while seeding: the demo's replies were written when they could be
    sent (the edge may have no adapter for a kind yet, and nothing is sent anyway)."""


class Command(BaseCommand):
    help = (
        "Create demo data: teams, agents (password 'demo'), one channel of each kind, canned "
        "responses and a few hundred multilingual tickets worked through the real actions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tickets",
            type=int,
            default=300,
            help="about how many tickets to create (default 300; the scripted showcase "
            "conversations are always included)",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed: the same seed gives the same demo"
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing (successfully) when any agent exists, e.g. on every start",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tickets"] < 0:
            raise CommandError("--tickets must be zero or more")
        if Agent.objects.exists():
            if options["if_empty"]:
                self.stdout.write("Demo data not created: the database already has agents.")
                if Agent.objects.filter(user__username="alice").exists():
                    self.logins()
                return
            raise CommandError(
                "The database already has agents; createdemo fills an empty database. "
                "Use --if-empty to skip quietly, or start from an empty database "
                "(manage.py flush) to recreate the demo."
            )
        clashing = Channel.objects.filter(key__in=[c[1] for c in demo_data.CHANNELS])
        if clashing.exists():
            keys = ", ".join(clashing.values_list("key", flat=True))
            raise CommandError(f"channels with the demo's keys already exist: {keys}")

        started = time.monotonic()
        demo = Demo(seed=options["seed"], tickets=options["tickets"])
        # Replies stay out of the real outbox sender, and the few thousand live events of the
        # seeding would only flood the channel layer (nobody watches a demo being built).
        with (
            override_settings(
                HELPDESK_DELIVERY_DISPATCHER=f"{__name__}.keep_in_outbox",
                HELPDESK_REPLY_CHECK=f"{__name__}.reply_always_possible",
                CHANNEL_LAYERS={},
            ),
            transaction.atomic(),
        ):
            demo.run()
        elapsed = time.monotonic() - started
        self.report(elapsed)

    def report(self, elapsed: float) -> None:
        summary = demo_summary()
        total = sum(summary["status"].values())
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo created in {elapsed:.1f} s: {total} tickets, "
                f"{Contact.objects.filter(merged_into__isnull=True).count()} contacts, "
                f"{Message.objects.count()} messages, "
                f"{CannedResponse.objects.count()} canned responses, "
                f"{Channel.objects.count()} channels."
            )
        )
        for name in ("status", "priority", "language", "channel", "queue"):
            counts = ", ".join(
                f"{key or '?'} {value}" for key, value in sorted(summary[name].items())
            )
            self.stdout.write(f"  {name + ':':<10}{counts}")
        self.logins()

    def logins(self) -> None:
        self.stdout.write("")
        self.stdout.write(f"  Logins (password for everyone: {DEMO_PASSWORD})")
        self.stdout.write(f"  {'user':<8}{'role':<20}{'languages':<12}teams")
        for agent in Agent.objects.select_related("user").prefetch_related("teams"):
            teams = ", ".join(t.name for t in agent.teams.all()) or "(all)"
            role = agent.role + (" + /admin/" if agent.user.is_superuser else "")
            self.stdout.write(
                f"  {agent.user.username:<8}{role:<20}{','.join(agent.languages):<12}{teams}"
            )
