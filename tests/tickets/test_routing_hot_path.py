"""Routing's hot path on PostgreSQL: its statements are prepared once per connection and
logged like any other, a ticket an inbound message creates is routed before it is written
(one INSERT with its agent, no UPDATE), and the tables it writes on every assignment carry
no redundant single-column foreign-key indexes (migration 0005)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_in.models import Channel
from tests.conftest import inbound, make_agent
from tickets import actions, routing
from tickets.events import QUEUE_GROUP, agent_group
from tickets.models import (
    Agent,
    AgentSkill,
    Contact,
    Message,
    RoutingRule,
    Skill,
    Team,
    Ticket,
    TicketEvent,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements and pg_index are PostgreSQL's")
    routing.clear_rules_cache()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def waiting_tickets(team: Team, n: int) -> list[Ticket]:
    contact = Contact.objects.create(display_name="Customer")
    return [
        Ticket.objects.create(contact=contact, team=team, subject=f"no power {i}", language="ru")
        for i in range(n)
    ]


def prepared(fragment: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return int(cursor.fetchone()[0])


def test_it_prepares_each_routing_statement_once_per_connection(outages: Team) -> None:
    make_agent("alice", teams=(outages,), languages=("ru", "en"))
    make_agent("boris", teams=(outages,), languages=("ru",))
    tickets = waiting_tickets(outages, 6)

    with CaptureQueriesContext(connection) as captured:
        outcomes = [actions.do_route_ticket(t.pk).outcome for t in tickets]

    assert outcomes == ["assigned"] * 6
    # The lock, the agent claim and the ticket update with its events: one prepared
    # statement each, reused by all six routings.
    assert prepared("FOR UPDATE OF t SKIP LOCKED") == 1
    assert prepared("SET open_count = open_count + 1") == 1
    assert prepared("WITH saved AS (UPDATE") == 1
    # Still logged with their text, as Django's own queries are.
    assert all(q["sql"] for q in captured.captured_queries)
    assert sum("WITH saved AS" in q["sql"] for q in captured.captured_queries) == 6
    for ticket in tickets:
        ticket.refresh_from_db()
        assert ticket.assignee_id is not None and ticket.version == 2
        verbs = TicketEvent.objects.filter(ticket=ticket).values_list("verb", flat=True)
        assert sorted(verbs) == ["routing.assigned", "ticket.assigned"]


def single_column_indexes(table: str) -> set[str]:
    """Columns of `table` with a (non-unique) index on that column alone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s::regclass AND i.indnatts = 1 AND NOT i.indisunique",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


def leading_columns(table: str) -> set[str]:
    """Columns some composite index of `table` starts with."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s::regclass AND i.indnatts > 1",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("tickets_ticket", {"contact_id", "team_id", "assignee_id"}),
        ("tickets_ticketevent", {"ticket_id", "contact_id", "actor_id"}),
    ],
)
def test_it_indexes_each_foreign_key_once(table: str, columns: set[str]) -> None:
    assert not single_column_indexes(table) & columns
    assert columns <= leading_columns(table)


# --------------------------------------------------------------------------- new tickets


def published(groups: tuple[str, ...], work: Any, capture: Any) -> list[list[dict[str, Any]]]:
    """What `work()` publishes to each of these groups once its transaction commits (one
    listener per group, on the in-memory layer)."""
    layer = get_channel_layer()
    names = [async_to_sync(layer.new_channel)() for _ in groups]
    for group, name in zip(groups, names, strict=True):
        async_to_sync(layer.group_add)(group, name)
    with capture(execute=True):
        work()

    async def read(name: str) -> list[dict[str, Any]]:
        got = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(name), 0.05)
            except TimeoutError:
                return got
            got.append(message["event"])

    return [async_to_sync(read)(name) for name in names]


def history(ticket: Ticket) -> list[str]:
    return list(
        TicketEvent.objects.filter(ticket=ticket).order_by("id").values_list("verb", flat=True)
    )


def test_it_writes_a_new_ticket_once_with_its_agent_when_the_caller_routes_it(
    outages: Team, telegram: Channel, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    alice = make_agent("alice", teams=(outages,), languages=("ru",))
    bob = make_agent("bob", teams=(outages,), languages=("pt",))
    received: list[actions.Received] = []
    results: list[actions.RouteResult | None] = []

    def work() -> None:
        with CaptureQueriesContext(connection) as captured:
            got = actions.do_receive_inbound(
                inbound(telegram, "Нет света на улице Ленина"), channel=telegram, route=True
            )
            results.append(actions.route_after_receive(got))
        received.append(got)
        statements.extend(q["sql"] for q in captured.captured_queries)

    statements: list[str] = []
    events, queue = published(
        (agent_group(alice.pk), QUEUE_GROUP), work, django_capture_on_commit_callbacks
    )

    ticket = Ticket.objects.get(pk=received[0].ticket.pk)  # type: ignore[union-attr]
    result = results[0]
    assert result is not None and (result.outcome, result.agent_id) == ("assigned", alice.pk)
    assert (ticket.assignee_id, ticket.team_id, ticket.version) == (alice.pk, outages.pk, 1)
    assert ticket.assigned_at is not None
    # Written once: one INSERT of the ticket, with its id and agent, and no UPDATE of it.
    assert sum(q.startswith('INSERT INTO "tickets_ticket" ("id"') for q in statements) == 1
    assert not [
        q for q in statements if "UPDATE tickets_ticket" in q or 'UPDATE "tickets_ticket"' in q
    ]
    assert history(ticket) == [
        "ticket.created",
        "message.received",
        "ticket.assigned",
        "routing.assigned",
    ]
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert (alice.open_count, bob.open_count) == (1, 0)
    # Announced once, already assigned (no "update" before or after it), and Alice is told.
    tickets = [e for e in events if e["type"] == "ticket"]
    assert [(e["op"], e["ticket"]["id"], e["ticket"]["assignee_id"]) for e in tickets] == [
        ("create", ticket.pk, alice.pk)
    ]
    assert [e["op"] for e in events if e["type"] == "notice"] == ["assigned"]
    assert [(e["type"], e["op"]) for e in queue] == [("ticket", "create")]
    assert queue[0]["ticket"]["assignee_id"] == alice.pk


def test_it_routes_a_new_ticket_as_routing_after_its_insert_would(
    outages: Team, telegram: Channel
) -> None:
    alice = make_agent("alice", teams=(outages,), languages=("ru",))
    make_agent("bob", teams=(outages,), languages=("pt",))
    # Routed after its INSERT (no `route`), then before it: the same agent, history and
    # explanation; the ids the sequence hands out do not collide.
    after = actions.do_receive_inbound(inbound(telegram, "Нет света", sender="1"))
    after_result = actions.route_after_receive(after)
    before = actions.do_receive_inbound(inbound(telegram, "Нет света", sender="2"), route=True)
    before_result = actions.route_after_receive(before)
    later = actions.do_receive_inbound(inbound(telegram, "Нет света", sender="3"))

    assert after.ticket is not None and before.ticket is not None and later.ticket is not None
    assert after.ticket.pk < before.ticket.pk < later.ticket.pk
    assert after_result is not None and before_result is not None
    assert (before_result.outcome, before_result.agent_id, before_result.step) == (
        after_result.outcome,
        after_result.agent_id,
        after_result.step,
    )
    assert history(before.ticket) == history(after.ticket)
    # The score differs only by Alice's load: she had one ticket more the second time.
    reasons = [
        TicketEvent.objects.get(ticket=t, verb="routing.assigned").data
        for t in (after.ticket, before.ticket)
    ]
    assert reasons[0]["score"] > reasons[1]["score"]
    for reason in reasons:
        del reason["score"]
    assert reasons[0] == reasons[1] and reasons[0]["why"]
    alice.refresh_from_db()
    assert alice.open_count == 2


def test_it_queues_a_new_ticket_nobody_can_take_before_writing_it(
    outages: Team, telegram: Channel
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",), capacity=0)
    received = actions.do_receive_inbound(inbound(telegram, "Нет света"), route=True)
    result = actions.route_after_receive(received)

    assert result is not None and result.outcome == "queued" and result.agent_id is None
    ticket = Ticket.objects.get(pk=received.ticket.pk)  # type: ignore[union-attr]
    assert (ticket.assignee_id, ticket.team_id) == (None, outages.pk)
    assert history(ticket)[:2] == ["ticket.created", "message.received"]
    assert history(ticket)[-1] == "routing.queued"


def test_it_keeps_the_message_when_routing_its_new_ticket_fails(
    outages: Team, telegram: Channel, monkeypatch: Any, caplog: Any
) -> None:
    alice = make_agent("alice", teams=(outages,), languages=("ru",))
    real = actions._routing_event

    def broken(ticket: Ticket, verb: str, **kwargs: Any) -> TicketEvent:
        if verb == "ticket.assigned":  # after the agent was claimed
            raise RuntimeError("the history could not be written")
        return real(ticket, verb, **kwargs)

    monkeypatch.setattr(actions, "_routing_event", broken)
    received = actions.do_receive_inbound(inbound(telegram, "Нет света"), route=True)

    assert actions.route_after_receive(received) is None
    ticket = Ticket.objects.get(pk=received.ticket.pk)  # type: ignore[union-attr]
    assert ticket.assignee_id is None and ticket.team_id == outages.pk
    assert Message.objects.filter(ticket=ticket).count() == 1
    assert history(ticket) == ["ticket.created", "message.received"]
    # Both tries claimed Alice and were rolled back with what they wrote.
    assert Agent.objects.get(pk=alice.pk).open_count == 0
    assert "routing the new ticket of message" in caplog.text
    assert f"routing ticket {ticket.pk} failed" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_it_applies_the_rules_to_a_new_ticket_before_writing_it(
    outages: Team, billing: Team, telegram: Channel
) -> None:
    """A rule's skills and tags are written before the ticket row (their foreign keys are
    checked at the commit, which this test makes real)."""
    disputes = Skill.objects.create(name="Billing disputes", slug="disputes")
    RoutingRule.objects.create(
        name="Bills to billing",
        conditions=routing.validate_conditions({"language": ["ru"]}),
        actions=routing.validate_actions(
            {"team": "billing", "skills": ["disputes"], "priority": "+1", "tags": ["Moved"]}
        ),
    )
    routing.clear_rules_cache()
    bill = make_agent("bill", teams=(billing,), languages=("ru",))
    AgentSkill.objects.create(agent=bill, skill=disputes)

    with transaction.atomic():
        received = actions.do_receive_inbound(
            inbound(telegram, "Почему счёт за электричество такой большой?"), route=True
        )
    result = actions.route_after_receive(received)

    assert result is not None and (result.outcome, result.agent_id) == ("assigned", bill.pk)
    ticket = Ticket.objects.get(pk=received.ticket.pk)  # type: ignore[union-attr]
    assert (ticket.team_id, ticket.assignee_id, ticket.version) == (billing.pk, bill.pk, 1)
    assert ticket.priority_reasons[-1]["signal"] == "routing"
    assert list(ticket.required_skills.values_list("slug", flat=True)) == ["disputes"]
    assert list(ticket.tags.values_list("name", flat=True)) == ["moved"]
    assert history(ticket)[:2] == ["ticket.created", "message.received"]
    assert {"ticket.transferred", "ticket.priority", "ticket.tags", "routing.rules"} <= set(
        history(ticket)
    )


def spread_agents(team: Team, n: int, seed: int) -> list[Agent]:
    """Agents with every combination rank() orders on: loads, first-response times (one
    below zero) and ratings (0 and out of range), some missing, some never assigned, some at
    capacity, some not speaking Russian; every third a copy of the one before but for when
    it was last assigned (ties broken by that, then by the id)."""
    rng = random.Random(seed)
    base = timezone.now() - timedelta(hours=2)
    agents: list[Agent] = []
    for i in range(n):
        languages = rng.choice([("ru",), ("ru", "lt"), ("lt",), ()])
        agent = make_agent(f"agent{seed}-{i}", teams=(team,), languages=languages)
        if i % 3 == 2:
            model = agents[-1]
            agent.languages = model.languages
            agent.capacity, agent.open_count = model.capacity, model.open_count
            agent.avg_first_response_seconds = model.avg_first_response_seconds
            agent.csat_score = model.csat_score
            agent.last_assigned_at = rng.choice([None, model.last_assigned_at])
        else:
            agent.capacity = rng.choice([4, 5, 10])
            agent.open_count = rng.randint(0, agent.capacity)
            agent.avg_first_response_seconds = rng.choice([None, -1.0, 0.0, 300.0, 5000.0])
            agent.csat_score = rng.choice([None, 0.0, 1.5, 2.5, 3.0, 4.0, 7.0])
            agent.last_assigned_at = rng.choice([None, base, base + timedelta(minutes=i)])
        agent.save()
        agents.append(agent)
    return agents


def best_in_sql(team: Team, *, negative: bool, previous: int | None, best: int) -> list[int]:
    order = routing.rank_sql(negative=negative, previous="t.previous")
    candidates = routing.candidates_sql(
        "m.team_id = t.team_id", ticket="t", required_skills=False, best=best, order=order
    )
    sql = (
        "WITH t AS (SELECT %s::bigint AS team_id, %s::varchar AS language,"  # noqa: S608
        f" %s::bigint AS previous) SELECT {candidates} FROM t"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [team.pk, "ru", previous])
        (value,) = cursor.fetchone()
    return [c.id for c in routing.parse_candidates(value, skills=frozenset())]


@pytest.mark.parametrize("weights", [{}, {"capacity": 0.1, "speed": 0.7, "csat": 0.2}])
def test_it_reads_the_agents_ranking_them_all_would_put_first(
    outages: Team, settings: Any, weights: dict[str, float]
) -> None:
    settings.HELPDESK_ROUTING_WEIGHTS = weights
    agents = spread_agents(outages, 45, seed=len(weights))
    everyone = routing.load_candidates(frozenset({outages.pk}))
    for negative in (False, True):
        for previous in (None, agents[-1].pk, agents[0].pk):
            need = routing.Need(
                team_ids=frozenset({outages.pk}),
                language="ru",
                negative=negative,
                previous_agent=previous,
            )
            ranked = [c.id for c, _, _ in routing.rank(everyone, need)]
            assert len(ranked) > 12

            # The first k in SQL are rank()'s first k, for every k: the same order, ties and all.
            for k in range(1, len(ranked) + 1):
                first = best_in_sql(outages, negative=negative, previous=previous, best=k)
                assert sorted(first) == sorted(ranked[:k]), (negative, previous, k)
