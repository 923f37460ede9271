"""channels_in.processing._apply_event: an event's items are applied in one transaction
without a savepoint each; an item that fails (a message stored already, a routing error)
rolls that try back, and the event is applied again with savepoints, so the outcome is
what it always was and the failed try leaves nothing behind, not even a live event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_in import processing
from channels_in.models import Channel, InboundEvent
from tests.channels_in.test_failed_events import snapshot, stored_event, tg_body
from tests.conftest import make_agent
from tickets import actions, events, routing
from tickets.models import Agent, Message, Team, Ticket, TicketEvent

# Real transactions: inside a test's own transaction the event's would be a savepoint.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _rules() -> None:
    routing.clear_rules_cache()


@pytest.fixture
def published(monkeypatch: Any) -> list[tuple[str, str]]:
    """(type, op) of every live event handed to the layer."""
    seen: list[tuple[str, str]] = []
    real = events._publish_all

    def record(items: list[tuple[list[str], dict[str, Any]]]) -> None:
        seen.extend((event["type"], event["op"]) for _, event in items)
        real(items)

    monkeypatch.setattr(events, "_publish_all", record)
    return seen


def pending(channel: Channel, body: bytes, platform_id: str) -> InboundEvent:
    return stored_event(
        channel, body, status="pending", error="", attempts=0, platform_id=platform_id
    )


def resent(update_id: int, message_id: int) -> bytes:
    """The same Telegram message delivered again under another update id."""
    body = json.loads(tg_body(update_id))
    body["message"]["message_id"] = message_id
    return json.dumps(body, ensure_ascii=False).encode()


def run(event: InboundEvent, capture: Any) -> tuple[processing.Outcome, list[str]]:
    with CaptureQueriesContext(connection) as queries, capture(execute=True):
        outcome = processing.process_event(event.pk)
    return outcome, [q["sql"] or "" for q in queries.captured_queries]


def test_it_applies_a_new_message_in_one_transaction_without_savepoints(
    outages: Team,
    telegram: Channel,
    published: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice = make_agent("alice", teams=(outages,), languages=("ru",))
    event = pending(telegram, tg_body(9001), "update:9001")

    outcome, statements = run(event, django_capture_on_commit_callbacks)

    assert (outcome.status, outcome.counts) == ("processed", {"message": 1})
    assert not [q for q in statements if "SAVEPOINT" in q]
    ticket = Ticket.objects.get()
    assert ticket.assignee_id == alice.pk
    assert published.count(("ticket", "create")) == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)


def test_it_applies_an_event_again_with_savepoints_when_its_message_is_stored_already(
    outages: Team,
    telegram: Channel,
    published: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",))
    first = pending(telegram, resent(9001, 77), "update:9001")
    run(first, django_capture_on_commit_callbacks)
    before = snapshot()
    published.clear()
    again = pending(telegram, resent(9002, 77), "update:9002")

    outcome, statements = run(again, django_capture_on_commit_callbacks)

    # The first try hit the message's unique constraint and was rolled back (it had created
    # nothing that stayed); the second, with savepoints, found the duplicate.
    assert (outcome.status, outcome.counts) == ("processed", {"duplicate": 1})
    assert any(q.startswith("ROLLBACK") for q in statements)
    assert [q for q in statements if q.startswith("SAVEPOINT")]
    assert snapshot() == before
    assert published == []
    again.refresh_from_db()
    assert (again.status, again.attempts, again.result) == ("processed", 1, {"duplicate": 1})


def test_it_keeps_the_message_when_routing_fails_on_the_first_try_and_the_second(
    outages: Team,
    telegram: Channel,
    monkeypatch: Any,
    caplog: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice = make_agent("alice", teams=(outages,), languages=("ru",))
    real = actions._routing_event

    def broken(ticket: Ticket, verb: str, **kwargs: Any) -> TicketEvent:
        if verb == "ticket.assigned":  # after Alice was claimed
            raise RuntimeError("the history could not be written")
        return real(ticket, verb, **kwargs)

    monkeypatch.setattr(actions, "_routing_event", broken)
    event = pending(telegram, tg_body(9001), "update:9001")

    outcome, _ = run(event, django_capture_on_commit_callbacks)

    assert (outcome.status, outcome.counts) == ("processed", {"message": 1})
    ticket = Ticket.objects.get()
    assert (ticket.assignee_id, ticket.team_id) == (None, outages.pk)
    assert Message.objects.filter(ticket=ticket).count() == 1
    assert Agent.objects.get(pk=alice.pk).open_count == 0
    assert f"routing ticket {ticket.pk} failed" in caplog.text
