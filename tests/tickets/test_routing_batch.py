"""Set-based routing (do_route_batch, do_route_backlog), on PostgreSQL: the same decisions as
routing the tickets one by one, and under concurrency no ticket assigned twice, no agent
past capacity, no open_count drift."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from channels_in.models import Channel
from tests.tickets.test_routing import agent, rule
from tests.tickets.test_routing_concurrency import check_invariants, run_workers
from tickets import actions, routing
from tickets.models import Agent, Skill, Team, Ticket, TicketEvent


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("do_route_batch is PostgreSQL's (elsewhere it routes one by one)")
    routing.clear_rules_cache()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def backlog(
    receive: Callable[..., Any], telegram: Channel, outages: Team, billing: Team
) -> tuple[list[int], list[Agent]]:
    """Tickets received while nobody was online (so never assigned), then a mixed team:
    languages, capacities, ratings, skills, a parent team to widen to, a few returning
    contacts, negative sentiment and rules that move, tag and require skills."""
    rng = random.Random(7)
    field = Team.objects.create(name="Field operations", slug="field")
    Team.objects.filter(pk=outages.pk).update(parent=field)
    Team.objects.filter(pk=billing.pk).update(parent=field)
    texts = ["нет света", "no power here", "nėra elektros", "счёт неверный", "wires down"]
    ids = []
    for i in range(40):
        sender = str(8000 + i % 28)  # some contacts write twice
        ids.append(receive(telegram, f"{rng.choice(texts)} {i}", sender=sender).ticket.pk)
    ids = list(dict.fromkeys(ids))  # a contact writing again adds to their ticket
    for made in Ticket.objects.filter(pk__in=ids[:8]):
        # A second conversation of the same contact: its first one's agent is its previous.
        ids.append(
            Ticket.objects.create(
                contact_id=made.contact_id,
                channel_id=made.channel_id,
                team_id=made.team_id,
                language=made.language,
                topic=made.topic,
                subject=f"again {made.pk}",
                status="new",
            ).pk
        )
    # Received in a storm, routing never ran for them: no agent, no routing events.
    Ticket.objects.filter(assignee__isnull=False).update(assignee=None)
    TicketEvent.objects.filter(ticket_id__in=ids, verb__startswith="routing.").delete()
    for i, pk in enumerate(ids):
        Ticket.objects.filter(pk=pk).update(
            sentiment=9 if i % 7 == 0 else 0,
            team=billing if i % 5 == 0 else outages,
        )
    for slug in ("hv", "crane"):
        Skill.objects.create(name=slug.upper(), slug=slug)
    rule("Wires", {"topic": ["outage"], "sentiment": "negative"}, {"tags": ["upset"]})
    rule("Skills", {"any": [{"tag": ["upset"]}]}, {"skills": ["hv"], "optional_skills": ["crane"]})
    agents = [
        agent(
            f"a{i}",
            *([outages] if i % 3 else [billing, field]),
            languages=(("ru", "lt"), ("en",), ("ru", "en", "lt"))[i % 3],
            capacity=rng.randint(2, 5),
            skills=(("hv",), (), ("hv", "crane"))[i % 3],
            csat_score=round(rng.uniform(3, 5), 2),
            avg_first_response_seconds=rng.uniform(30, 1800),
        )
        for i in range(9)
    ]
    routing.clear_rules_cache()
    return ids, agents


def decisions(ids: list[int]) -> dict[int, Any]:
    """Who got each ticket, in which team, and the routing events' meaning."""
    out: dict[int, Any] = {
        t.pk: [t.assignee_id, t.team_id, t.priority, sorted(t.tags.values_list("name", flat=True))]
        for t in Ticket.objects.filter(pk__in=ids)
    }
    found = TicketEvent.objects.filter(ticket_id__in=ids, verb__regex=r"^(routing|ticket)\.")
    for e in found.exclude(verb="ticket.created").order_by("id"):
        out[e.ticket_id].append((e.verb, e.from_value, e.to_value, e.data))
    return out


@pytest.mark.django_db
def test_it_decides_as_routing_one_by_one(
    receive: Any, telegram: Channel, outages: Team, billing: Team
) -> None:
    ids, agents = backlog(receive, telegram, outages, billing)
    before = set(TicketEvent.objects.values_list("pk", flat=True))
    with transaction.atomic():
        for pk in ids:
            actions.do_route_ticket(pk)
        one_by_one = decisions(ids)
        loads = dict(Agent.objects.values_list("pk", "open_count"))
        transaction.set_rollback(True)
    assert set(TicketEvent.objects.values_list("pk", flat=True)) == before

    results = actions.do_route_batch(ids)

    assert [r.ticket_id for r in results] == ids
    batch = decisions(ids)
    assert [(pk, batch[pk], one_by_one[pk]) for pk in ids if batch[pk] != one_by_one[pk]] == []
    assert dict(Agent.objects.values_list("pk", "open_count")) == loads
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["assigned"] > 10 and outcomes["queued"] > 0, outcomes
    assert any(e[0] == "routing.step" for d in one_by_one.values() for e in d[4:])
    check_invariants(agents)


@pytest.mark.django_db
def test_it_leaves_assigned_and_closed_tickets_alone(
    receive: Any, telegram: Channel, outages: Team, billing: Team
) -> None:
    ids, agents = backlog(receive, telegram, outages, billing)
    first = actions.do_route_ticket(ids[0])
    Ticket.objects.filter(pk=ids[1]).update(status="closed")
    results = actions.do_route_batch(ids[:4])
    assert [r.ticket_id for r in results] == ids[2:4]
    assert Ticket.objects.get(pk=ids[0]).assignee_id == first.agent_id
    assert actions.do_route_batch(ids[:1]) == []
    check_invariants(agents)


@pytest.mark.django_db(transaction=True)
def test_it_never_assigns_twice_nor_beyond_capacity_with_concurrent_batches(
    receive: Any, telegram: Channel, outages: Team, billing: Team
) -> None:
    ids, agents = backlog(receive, telegram, outages, billing)
    ids += [receive(telegram, f"нет света {i}", sender=str(9000 + i)).ticket.pk for i in range(60)]
    capacity = sum(a.capacity for a in agents)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(i: int) -> None:
        order = ids[:]
        random.Random(i).shuffle(order)
        for start in range(0, len(order), 9):
            # Workers racing for the same tickets and agents, and each ticket also sent to
            # the per-ticket path by some worker.
            got = actions.do_route_batch(order[start : start + 9])
            if i == 0:
                got += [actions.do_route_ticket(pk) for pk in order[start : start + 3]]
            with lock:
                outcomes.update(r.outcome for r in got)
        with lock:
            outcomes.update(r.outcome for r in actions.do_route_backlog(limit=200))

    assert run_workers(work, n=5) == []

    real = check_invariants(agents)
    assert outcomes["assigned"] == sum(real.values())
    assert 0 < sum(real.values()) <= capacity
    assert outcomes["unchanged"] + outcomes["busy"] > 0, "the workers did not overlap"


@pytest.mark.django_db
def test_it_sweeps_a_backlog_team_by_team(
    receive: Any, telegram: Channel, outages: Team, billing: Team
) -> None:
    ids, agents = backlog(receive, telegram, outages, billing)
    capacity = sum(a.capacity for a in agents)
    assigned = actions.do_route_waiting()
    real = check_invariants(agents)
    assert assigned == sum(real.values()) > 0
    # Every ticket was looked at: assigned, or queued with its reason.
    queued = TicketEvent.objects.filter(verb="routing.queued").values_list("ticket_id")
    waiting = Ticket.objects.filter(pk__in=ids, assignee__isnull=True).values_list("pk")
    assert set(waiting) <= set(queued)
    assert sum(real.values()) <= capacity
    # Nothing new to look at: a second sweep logs nothing.
    count = TicketEvent.objects.count()
    actions.do_route_waiting()
    assert TicketEvent.objects.count() == count
