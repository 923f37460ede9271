"""SLA escalation: the periodic job finds tickets at risk or past their deadline and applies
their policy's steps once per stage, re-armed when the deadline moves later; its query is a
range scan of the queue's index."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from channels_in.models import Channel
from tests.conftest import inbound, make_agent
from tests.worker import LiveListener, celery_worker
from tickets import actions, sla, tasks
from tickets.events import QUEUE_GROUP
from tickets.models import Agent, Priority, SlaPolicy, Status, Team, Ticket, TicketEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_sla_configuration() -> Any:
    yield
    sla.invalidate()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def policy(
    *,
    on_at_risk: list[str] | None = None,
    on_breach: list[str] | None = None,
    at_risk: int = 15,
    **fields: Any,
) -> SlaPolicy:
    escalation: dict[str, Any] = {"at_risk_minutes": at_risk}
    if on_at_risk is not None:
        escalation["on_at_risk"] = on_at_risk
    if on_breach is not None:
        escalation["on_breach"] = on_breach
    values = {"first_response_minutes": 60, "resolution_minutes": 600, **fields}
    return SlaPolicy.objects.create(name="Escalating", escalation=escalation, **values)


def sla_events(ticket: Ticket) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(ticket=ticket, verb__startswith="sla.").order_by("id"))


@pytest.fixture
def ticket(telegram: Channel, receive: Callable[..., Any]) -> Ticket:
    return receive(telegram, "Вопрос о договоре на подключение").ticket


def fresh(ticket: Ticket) -> Ticket:
    return Ticket.objects.get(pk=ticket.pk)


# --------------------------------------------------------------------------- stages


def test_it_handles_the_at_risk_stage_once_then_the_breach_once(ticket: Ticket) -> None:
    policy(on_at_risk=["notify_supervisor"], on_breach=["notify_supervisor"])
    ticket = fresh(ticket)
    due = ticket.sla_due_at

    assert actions.do_escalate_sla(now=due - minutes(20)) == {"at_risk": 0, "breached": 0}
    assert actions.do_escalate_sla(now=due - minutes(10)) == {"at_risk": 1, "breached": 0}
    assert fresh(ticket).escalation_level == sla.AT_RISK
    assert actions.do_escalate_sla(now=due - minutes(5)) == {"at_risk": 0, "breached": 0}

    assert actions.do_escalate_sla(now=due + minutes(1)) == {"at_risk": 0, "breached": 1}
    assert fresh(ticket).escalation_level == sla.BREACHED
    assert actions.do_escalate_sla(now=due + minutes(30)) == {"at_risk": 0, "breached": 0}

    at_risk, breached = sla_events(ticket)
    assert (at_risk.verb, at_risk.from_value, at_risk.to_value) == ("sla.at_risk", 0, 1)
    assert at_risk.data["deadline"] == "first_response"
    assert at_risk.data["reason"] == "first response due within 10 min"
    assert at_risk.data["steps"] == ["notify_supervisor"]
    assert (breached.verb, breached.to_value) == ("sla.breached", 2)
    assert breached.data["reason"] == "first response overdue"
    assert breached.data["due"] == due.isoformat()
    assert breached.actor_kind == "system"


def test_it_goes_straight_to_the_breach_steps_when_the_risk_window_was_missed(
    ticket: Ticket, alice: Agent
) -> None:
    policy(on_at_risk=["reassign"], on_breach=["notify_supervisor"])
    actions.do_assign(ticket, alice, actor=alice)
    due = fresh(ticket).sla_due_at
    assert actions.do_escalate_sla(now=due + minutes(90)) == {"at_risk": 0, "breached": 1}
    [event] = sla_events(ticket)
    assert event.verb == "sla.breached" and event.data["steps"] == ["notify_supervisor"]
    assert fresh(ticket).assignee_id == alice.pk  # the at-risk step was not run late


def test_it_raises_the_priority_one_level_with_the_reason_escalation(
    ticket: Ticket, carol: Agent, settings: Any
) -> None:
    # No policy: the settings' defaults, with a breach that raises the priority.
    settings.HELPDESK_SLA_ESCALATION = {"on_breach": ["raise_priority"]}
    actions.do_set_priority(ticket, "normal", actor=carol)
    ticket = fresh(ticket)
    due = ticket.sla_due_at
    assert due == ticket.waiting_since + minutes(settings.HELPDESK_SLA_MINUTES["normal"][0])

    actions.do_escalate_sla(now=due + minutes(1))
    ticket = fresh(ticket)
    assert ticket.priority == Priority.HIGH
    assert ticket.priority_reasons[-1]["signal"] == "escalation"
    assert "first response overdue" in ticket.priority_reasons[-1]["detail"]
    # The high level's shorter first-response target, from the same start.
    assert ticket.sla_due_at == ticket.waiting_since + minutes(
        settings.HELPDESK_SLA_MINUTES["high"][0]
    )
    change = TicketEvent.objects.get(ticket=ticket, verb="ticket.priority", actor__isnull=True)
    assert (change.from_value, change.to_value, change.data["reason"]) == (
        "normal",
        "high",
        "escalation",
    )
    assert ticket.escalation_level == sla.BREACHED
    assert sla_events(ticket)[0].data["steps"] == ["raise_priority"]


def test_it_leaves_an_urgent_ticket_urgent(ticket: Ticket, carol: Agent) -> None:
    policy(on_breach=["raise_priority"])
    actions.do_set_priority(ticket, "urgent", actor=carol)
    due = fresh(ticket).sla_due_at
    actions.do_escalate_sla(now=due + minutes(1))
    assert fresh(ticket).priority == Priority.URGENT
    assert sla_events(ticket)[0].data["steps"] == []


def test_it_sends_the_ticket_back_to_the_pool_with_the_reason_without_routing(
    ticket: Ticket, alice: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(actions, "do_route_ticket", raising=False)
    policy(on_breach=["reassign"])
    actions.do_assign(ticket, alice, actor=alice)
    assert Agent.objects.get(pk=alice.pk).open_count == 1
    due = fresh(ticket).sla_due_at

    actions.do_escalate_sla(now=due + minutes(1))
    ticket = fresh(ticket)
    assert ticket.assignee_id is None and ticket.assigned_at is None
    assert Agent.objects.get(pk=alice.pk).open_count == 0
    unassigned = TicketEvent.objects.get(ticket=ticket, verb="ticket.unassigned")
    assert unassigned.from_value == alice.pk
    assert unassigned.data == {"reason": "SLA first response overdue", "via": "escalation"}
    assert sla_events(ticket)[0].data["steps"] == ["reassign"]


def test_it_asks_routing_to_move_the_ticket_to_someone_else(
    ticket: Ticket, alice: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        actions, "do_route_ticket", lambda *a, **kw: calls.append((a, kw)), raising=False
    )
    policy(on_breach=["reassign"])
    actions.do_assign(ticket, alice, actor=alice)
    actions.do_escalate_sla(now=fresh(ticket).sla_due_at + minutes(1))
    assert calls == [((ticket.pk,), {"reassign": True, "reason": "SLA first response overdue"})]


def test_it_unassigns_the_ticket_when_routing_fails(
    ticket: Ticket, alice: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("routing is down")

    monkeypatch.setattr(actions, "do_route_ticket", broken, raising=False)
    policy(on_breach=["reassign"])
    actions.do_assign(ticket, alice, actor=alice)
    actions.do_escalate_sla(now=fresh(ticket).sla_due_at + minutes(1))
    assert fresh(ticket).assignee_id is None
    assert fresh(ticket).escalation_level == sla.BREACHED


def test_it_reassigns_to_another_eligible_agent_through_routing(
    ticket: Ticket, alice: Agent, outages: Team
) -> None:
    if not hasattr(actions, "do_route_ticket"):
        pytest.skip("routing is not in tickets.actions yet")
    dan = make_agent("dan", teams=(outages,), languages=("ru", "lt", "en"))
    policy(on_breach=["reassign"])
    actions.do_assign(ticket, alice, actor=alice)
    actions.do_escalate_sla(now=fresh(ticket).sla_due_at + minutes(1))
    ticket = fresh(ticket)
    assert ticket.assignee_id == dan.pk
    assert Agent.objects.get(pk=alice.pk).open_count == 0
    assert Agent.objects.get(pk=dan.pk).open_count == 1


def test_it_notifies_supervisors_live_with_the_ticket_and_the_reason(
    ticket: Ticket, alice: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    policy(on_breach=["notify_supervisor", "raise_priority"])
    actions.do_assign(ticket, alice, actor=alice)
    ticket = fresh(ticket)
    listener = LiveListener([QUEUE_GROUP])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            actions.do_escalate_sla(now=ticket.sla_due_at + minutes(1))
        notices = []
        while not notices:
            event = listener.get(timeout=10)["event"]
            if event["type"] == "notice":
                notices.append(event)
    finally:
        listener.close()
    [notice] = notices
    assert notice["op"] == "sla_breached"
    assert notice["ticket"] == ticket.pk and notice["subject"] == ticket.subject
    assert notice["reason"] == "first response overdue"
    assert notice["deadline"] == "first_response"
    assert notice["sla_due_at"] == ticket.sla_due_at.isoformat()
    assert notice["assignee_id"] == alice.pk
    assert notice["steps"] == ["notify_supervisor", "raise_priority"]
    assert notice["version"] == fresh(ticket).version


def test_it_records_a_breach_even_when_the_policy_takes_no_steps(ticket: Ticket) -> None:
    policy(on_at_risk=[], on_breach=[])
    due = fresh(ticket).sla_due_at
    actions.do_escalate_sla(now=due + minutes(1))
    [event] = sla_events(ticket)
    assert event.verb == "sla.breached" and event.data["steps"] == []
    assert event.data["policy"] is not None and event.data["policy_name"] == "Escalating"


def test_it_re_arms_when_a_reply_moves_the_deadline_later(ticket: Ticket, alice: Agent) -> None:
    policy(on_breach=["notify_supervisor"])
    ticket = fresh(ticket)
    actions.do_escalate_sla(now=ticket.sla_due_at + minutes(1))
    assert fresh(ticket).escalation_level == sla.BREACHED

    actions.do_reply(ticket, alice, "Проверяем ваш договор, ответим сегодня.")
    ticket = fresh(ticket)
    assert ticket.escalation_level == sla.NOT_ESCALATED
    assert ticket.sla_due_at == ticket.resolution_due  # the next deadline is the resolution

    assert actions.do_escalate_sla(now=ticket.resolution_due - minutes(5))["at_risk"] == 1
    assert actions.do_escalate_sla(now=ticket.resolution_due + minutes(5))["breached"] == 1
    verbs = [(e.verb, e.data["deadline"]) for e in sla_events(ticket)]
    assert verbs == [
        ("sla.breached", "first_response"),
        ("sla.at_risk", "resolution"),
        ("sla.breached", "resolution"),
    ]


def test_it_does_not_re_arm_when_the_deadline_moves_earlier(ticket: Ticket, carol: Agent) -> None:
    policy(on_at_risk=["notify_supervisor"])
    actions.do_set_priority(ticket, "low", actor=carol)
    ticket = fresh(ticket)
    actions.do_escalate_sla(now=ticket.sla_due_at - minutes(5))
    actions.do_set_priority(ticket, "urgent", actor=carol)  # same policy: same deadline
    assert fresh(ticket).escalation_level == sla.AT_RISK


def test_it_leaves_pending_resolved_and_closed_tickets_alone(
    telegram: Channel, receive: Callable[..., Any], alice: Agent
) -> None:
    policy(on_breach=["notify_supervisor"])
    tickets = [receive(telegram, f"вопрос {i}", sender=f"50{i}").ticket for i in range(3)]
    for ticket, status in zip(
        tickets, (Status.PENDING, Status.RESOLVED, Status.CLOSED), strict=True
    ):
        actions.do_set_status(ticket, status, actor=alice)
    later = timezone.now() + timedelta(days=30)
    assert actions.do_escalate_sla(now=later) == {"at_risk": 0, "breached": 0}
    assert not TicketEvent.objects.filter(verb__startswith="sla.").exists()


def test_it_runs_as_a_task(telegram: Channel, receive: Callable[..., Any]) -> None:
    policy(on_at_risk=["notify_supervisor"], first_response_minutes=5)
    receive(telegram, "Нет света")  # due in 5 minutes: at risk at once
    assert tasks.escalate_sla() == {"at_risk": 1, "breached": 0}
    assert tasks.escalate_sla() == {"at_risk": 0, "breached": 0}


# --------------------------------------------------------------------------- concurrency


@pytest.mark.django_db(transaction=True)
def test_it_escalates_each_ticket_once_when_two_jobs_overlap(
    telegram: Channel, receive: Callable[..., Any]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    policy(on_breach=["notify_supervisor", "raise_priority"])
    tickets = [receive(telegram, f"нет света {i}", sender=f"70{i}").ticket for i in range(30)]
    later = max(t.sla_due_at for t in Ticket.objects.all()) + minutes(1)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def job() -> None:
        try:
            start.wait()
            actions.do_escalate_sla(now=later)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert TicketEvent.objects.filter(verb="sla.breached").count() == len(tickets)
    raised = TicketEvent.objects.filter(verb="ticket.priority", data__reason="escalation")
    assert raised.count() == len(tickets)
    assert set(Ticket.objects.values_list("escalation_level", flat=True)) == {sla.BREACHED}
    SlaPolicy.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_it_escalates_through_a_real_worker_and_notifies_over_redis(
    outages: Team, settings: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the worker needs the PostgreSQL test database")
    channel = Channel.objects.create(
        kind="telegram", key="tg-sla", name="Telegram", default_team=outages
    )
    policy(on_at_risk=["notify_supervisor"], first_response_minutes=5)
    ticket = actions.do_receive_inbound(inbound(channel, "Нет света", sender="900")).ticket
    with celery_worker() as worker:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": worker.prefix},
            }
        }
        listener = LiveListener([QUEUE_GROUP])
        try:
            tasks.escalate_sla.delay()
            notice = None
            while notice is None:
                event = listener.get(timeout=20)["event"]
                if event["type"] == "notice":
                    notice = event
        finally:
            listener.close()
    assert notice["op"] == "sla_at_risk" and notice["ticket"] == ticket.pk
    assert fresh(ticket).escalation_level == sla.AT_RISK
    assert "escalate_sla" in worker.log
    SlaPolicy.objects.all().delete()


# --------------------------------------------------------------------------- the query plan

TICKETS = int(os.environ.get("SLA_EXPLAIN_TICKETS", "100000"))


def test_it_finds_candidates_with_a_range_scan_of_the_queue_index(
    telegram: Channel, receive: Callable[..., Any]
) -> None:
    """At scale (SLA_EXPLAIN_TICKETS, default 100k; measured at 1M for the report): 3 % of
    tickets active, the rest resolved or closed, deadlines spread over ±17 hours."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    contact_id = receive(telegram, "x").ticket.contact_id
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tickets_ticket (thread_key, subject, status, priority, priority_score,
                priority_reasons, priority_locked, topic, language, is_public, sla_due_at,
                last_message_at, preview, message_count, created_at, updated_at, version,
                contact_id, escalation_level, sentiment)
            SELECT '', 'ticket ' || g,
                CASE WHEN g %% 100 < 3 THEN (ARRAY['new', 'open', 'pending'])[1 + g %% 3]
                     WHEN g %% 100 < 10 THEN 'resolved' ELSE 'closed' END,
                (g / 100) %% 4, 0, '[]', false, 'other', '', false,
                now() + ((g %% 2000) - 1000) * interval '1 minute', now(), '', 1, now(), now(),
                1, %s, CASE WHEN g %% 5 = 0 THEN 2 ELSE 0 END, 0
            FROM generate_series(1, %s) g
            """,
            [contact_id, TICKETS],
        )
        cursor.execute("ANALYZE tickets_ticket")
        now = timezone.now()
        for level in Priority.values:
            query = sla.escalation_candidates(now, level, 1000).query
            sql, params = query.sql_with_params()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            print(f"priority {level}, {TICKETS} tickets:\n{plan}")
            # A range of the partial index: this level, deadlines up to the horizon (an
            # ordered Index Scan, or a Bitmap Index Scan with a top-N sort when the planner
            # expects few rows); never a scan of the table.
            assert "Index Scan on queue_active_idx" in plan or (
                "Index Scan using queue_active_idx" in plan
            ), plan
            assert f"Index Cond: ((priority = {level}) AND (sla_due_at <= " in plan, plan
            assert "Seq Scan" not in plan, plan
