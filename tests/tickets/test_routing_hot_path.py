"""Routing's hot path on PostgreSQL: its statements are prepared once per connection and
logged like any other, and the tables it writes on every assignment carry no redundant
single-column foreign-key indexes (migration 0005)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_agent
from tickets import actions, routing
from tickets.models import Contact, Team, Ticket, TicketEvent

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
