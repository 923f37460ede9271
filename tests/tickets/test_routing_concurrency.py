"""Routing under concurrency, on PostgreSQL: several workers, each with its own connection,
routing the same pool of tickets at once never assign a ticket twice, never push an agent
past capacity, and leave every open_count equal to the agent's real active tickets."""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Count

from tests.conftest import make_agent
from tickets import actions, routing
from tickets.errors import Conflict
from tickets.models import ACTIVE_STATUSES, Agent, Team, Ticket, TicketEvent

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 6


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SELECT ... FOR UPDATE SKIP LOCKED needs PostgreSQL")
    routing.clear_rules_cache()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run_workers(work: Callable[[int], None], n: int = WORKERS) -> list[BaseException]:
    """Run work(i) in n threads released at once; each thread has its own connection."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def check_invariants(agents: list[Agent]) -> dict[int, int]:
    """Zero double assignments, zero agents over capacity, open_count == real count."""
    per_ticket = Counter(
        TicketEvent.objects.filter(verb="routing.assigned").values_list("ticket_id", flat=True)
    )
    twice = {t: n for t, n in per_ticket.items() if n > 1}
    assert not twice, f"tickets assigned more than once: {twice}"
    real = dict(
        Ticket.objects.filter(status__in=ACTIVE_STATUSES, assignee__isnull=False)
        .values("assignee")
        .annotate(n=Count("id"))
        .values_list("assignee", "n")
    )
    for agent in agents:
        fresh = Agent.objects.get(pk=agent.pk)
        assert real.get(agent.pk, 0) <= fresh.capacity, f"{fresh} over capacity"
        assert fresh.open_count == real.get(agent.pk, 0), f"{fresh}: open_count drifted"
    return real


def test_it_never_assigns_twice_nor_beyond_capacity_with_concurrent_workers(
    telegram: Any, receive: Any, outages: Team
) -> None:
    # 10 agents x 4 = 40 places for 64 tickets: the workers compete for tickets and agents.
    agents = [
        make_agent(f"agent{i}", teams=(outages,), languages=("ru",), capacity=4) for i in range(10)
    ]
    ids = [receive(telegram, f"нет света {i}", sender=str(5000 + i)).ticket.pk for i in range(64)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(i: int) -> None:
        order = ids[:]
        random.Random(i).shuffle(order)
        for pk in order:
            result = actions.do_route_ticket(pk)
            with lock:
                outcomes[result.outcome] += 1

    assert run_workers(work) == []

    real = check_invariants(agents)
    assert sum(real.values()) == 40
    assert sorted(real.values()) == [4] * 10
    assert Ticket.objects.filter(pk__in=ids, assignee__isnull=True).count() == 24
    assert outcomes["assigned"] == 40
    # Every ticket was routed by exactly one worker; the others found it taken or busy.
    assert outcomes["assigned"] + outcomes["queued"] >= 64
    assert outcomes["unchanged"] + outcomes["busy"] > 0, "the workers did not overlap"


def test_it_stays_within_capacity_when_routing_and_take_next_race(
    telegram: Any, receive: Any, outages: Team
) -> None:
    agents = [
        make_agent(f"agent{i}", teams=(outages,), languages=("ru",), capacity=3) for i in range(4)
    ]
    ids = [receive(telegram, f"нет света {i}", sender=str(6000 + i)).ticket.pk for i in range(30)]

    def work(i: int) -> None:
        if i < 2:
            for pk in ids[i::2]:
                actions.do_route_ticket(pk)
        elif i < 4:
            for pk in ids:
                actions.do_route_ticket(pk, wait=True)
        else:
            # Agents pulling work and the periodic sweep at the same time.
            me = agents[i - 4]
            for _ in range(5):
                with contextlib.suppress(Conflict):  # at capacity
                    actions.do_take_next(Agent.objects.get(pk=me.pk))
                actions.do_route_waiting_for(me.pk)

    assert run_workers(work) == []
    real = check_invariants(agents)
    assert sum(real.values()) == 12


def test_it_reroutes_concurrently_without_losing_or_doubling_tickets(
    telegram: Any, receive: Any, outages: Team
) -> None:
    leaving = [
        make_agent(f"leaving{i}", teams=(outages,), languages=("ru",), capacity=10)
        for i in range(3)
    ]
    ids = [receive(telegram, f"нет света {i}", sender=str(7000 + i)).ticket.pk for i in range(24)]
    for pk in ids:
        assert actions.do_route_ticket(pk).outcome == "assigned"
    staying = [
        make_agent(f"staying{i}", teams=(outages,), languages=("ru",), capacity=5) for i in range(3)
    ]
    Agent.objects.filter(pk__in=[a.pk for a in leaving]).update(presence="offline")

    def work(i: int) -> None:
        actions.do_reroute_stale()

    assert run_workers(work, n=4) == []

    everyone = leaving + staying
    real = check_invariants_after_reroute(everyone)
    assert sum(real.get(a.pk, 0) for a in staying) == 15
    assert sum(real.get(a.pk, 0) for a in leaving) == 0
    assert Ticket.objects.filter(pk__in=ids, assignee__isnull=True).count() == 9


def check_invariants_after_reroute(agents: list[Agent]) -> dict[int, int]:
    # A re-route writes a second routing.assigned for the same ticket on purpose; what must
    # hold is one owner per ticket, capacities, and counters.
    real = dict(
        Ticket.objects.filter(status__in=ACTIVE_STATUSES, assignee__isnull=False)
        .values("assignee")
        .annotate(n=Count("id"))
        .values_list("assignee", "n")
    )
    for agent in agents:
        fresh = Agent.objects.get(pk=agent.pk)
        assert real.get(agent.pk, 0) <= fresh.capacity, f"{fresh} over capacity"
        assert fresh.open_count == real.get(agent.pk, 0), f"{fresh}: open_count drifted"
    moved = Counter(
        TicketEvent.objects.filter(
            verb="ticket.assigned", data__reason="the agent went offline"
        ).values_list("ticket_id", flat=True)
    )
    assert all(n == 1 for n in moved.values()), "a ticket was re-routed twice"
    return real
