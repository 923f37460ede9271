from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from tests.conftest import make_agent
from tickets import actions, rows
from tickets.errors import Conflict, InvalidInput
from tickets.keyset import orm_fetch, paginate
from tickets.models import Agent, Priority, Skill, Status, Ticket
from tickets.queue import QUEUE_ORDERING, visible_filter


def _queue_key(t: Ticket) -> tuple:
    # The documented order, computed in Python: priority desc, SLA due, waiting (NULLs last), id.
    return (
        -t.priority,
        t.sla_due_at,
        t.waiting_since is None,
        t.waiting_since or t.sla_due_at,
        t.pk,
    )


def _make_tickets(contact, channel, team, n: int, *, seed: int = 7) -> list[Ticket]:
    rng = random.Random(seed)
    base = timezone.now().replace(microsecond=0)
    tickets = []
    for _ in range(n):
        waiting = None if rng.random() < 0.3 else base - timedelta(minutes=rng.randint(0, 5))
        tickets.append(
            Ticket(
                contact=contact,
                channel=channel,
                team=team,
                status=Status.OPEN,
                priority=rng.choice(list(Priority.values)),
                # Few distinct deadlines, so ties on sla_due_at and waiting_since are common.
                sla_due_at=base + timedelta(minutes=rng.randint(0, 4)),
                waiting_since=waiting,
            )
        )
    return Ticket.objects.bulk_create(tickets)


@pytest.mark.django_db
def test_it_orders_the_queue_by_priority_then_sla_then_waiting(telegram, receive):
    contact = receive(telegram, "x", sender="1").ticket.contact
    Ticket.objects.all().delete()
    _make_tickets(contact, telegram, telegram.default_team, 60)
    ordered = list(Ticket.objects.order_by(*QUEUE_ORDERING))
    assert ordered == sorted(ordered, key=_queue_key)


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 7, 25])
def test_it_pages_through_the_whole_queue_forwards_and_back_without_gaps(telegram, receive, size):
    contact = receive(telegram, "x", sender="1").ticket.contact
    Ticket.objects.all().delete()
    _make_tickets(contact, telegram, telegram.default_team, 83)
    expected = [t.pk for t in sorted(Ticket.objects.all(), key=_queue_key)]

    seen: list[int] = []
    pages = []
    cursor = None
    while True:
        page = paginate(Ticket.objects.all(), cursor=cursor, size=size)
        pages.append(page)
        seen += [t.pk for t in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected

    # Walk back from the last page with the previous cursors.
    back: list[int] = [t.pk for t in pages[-1].rows]
    cursor = pages[-1].previous_cursor
    while cursor:
        page = paginate(Ticket.objects.all(), cursor=cursor, size=size)
        back = [t.pk for t in page.rows] + back
        cursor = page.previous_cursor
    assert back == expected


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 4, 25])
def test_it_reads_the_same_queue_rows_with_its_sql_as_with_the_orm(
    telegram, sms, receive, alice, size
):
    # tickets.rows.fetch writes the page query by hand; keyset.orm_fetch is the reference.
    contact = receive(telegram, "x", sender="1").ticket.contact
    Ticket.objects.all().delete()
    _make_tickets(contact, telegram, telegram.default_team, 40, seed=3)
    _make_tickets(contact, sms, sms.default_team, 20, seed=4)
    Ticket.objects.filter(pk__in=list(Ticket.objects.values_list("pk", flat=True)[:15])).update(
        assignee=alice, team=sms.default_team
    )
    Ticket.objects.filter(pk__in=list(Ticket.objects.values_list("pk", flat=True)[15:18])).update(
        status=Status.CLOSED, priority_reasons=[{"signal": "s", "detail": "d", "points": 3}]
    )
    querysets = [
        Ticket.objects.all(),
        Ticket.objects.filter(visible_filter(alice)),
        Ticket.objects.filter(visible_filter(alice), status__in=["open"], language__in=[""]),
        Ticket.objects.filter(channel_id__in=[]),  # matches nothing
        Ticket.objects.filter(contact__display_name__icontains="a"),  # a join: the ORM's way
    ]
    fields = ["pk", "priority", "sla_due_at", "waiting_since", "priority_reasons", "status",
              "team_id", "assignee_id", "contact_id", "version"]  # fmt: skip

    def walk(qs, fetch):
        pages, cursor = [], None
        while True:
            page = paginate(qs, cursor=cursor, size=size, fetch=fetch)
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        back, cursor = [], pages[-1].previous_cursor
        while cursor:
            page = paginate(qs, cursor=cursor, size=size, fetch=fetch)
            back.append(page)
            cursor = page.previous_cursor
        return [
            ([(*(getattr(t, f) for f in fields), str(t.contact)) for t in p.rows],
             p.next_cursor, p.previous_cursor)
            for p in pages + back
        ]  # fmt: skip

    for qs in querysets:
        assert walk(qs, rows.fetch) == walk(rows.row_queryset(qs), orm_fetch)
    assert walk(querysets[0], rows.fetch)[0][0]  # not all empty


@pytest.mark.django_db
def test_it_rejects_a_forged_cursor_with_a_clear_error(telegram):
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        paginate(Ticket.objects.all(), cursor="not-a-cursor", size=10)


@pytest.mark.django_db
def test_it_takes_the_most_urgent_ticket_the_agent_may_work(telegram, sms, receive, alice):
    receive(telegram, "вопрос по тарифу", sender="1")
    urgent = receive(telegram, "оборван провод, искрит", sender="2").ticket
    receive(sms, "fire! wire down", sender="+37060000009")  # Billing's queue, not alice's

    taken = actions.do_take_next(alice)

    assert taken.pk == urgent.pk
    assert taken.assignee_id == alice.pk and taken.status == Status.OPEN
    assert Agent.objects.get(pk=alice.pk).open_count == 1


@pytest.mark.django_db
def test_it_skips_tickets_in_languages_or_skills_the_agent_lacks(telegram, receive, alice):
    chinese = receive(telegram, "停电了，电线掉下来了", sender="1").ticket
    needs_skill = receive(telegram, "нет света", sender="2").ticket
    hv = Skill.objects.create(name="High voltage", slug="hv")
    needs_skill.required_skills.add(hv)

    assert chinese.language == "zh"
    assert actions.do_take_next(alice) is None

    alice.skills.add(hv)
    alice = Agent.objects.get(pk=alice.pk)
    assert actions.do_take_next(alice).pk == needs_skill.pk


@pytest.mark.django_db
def test_it_refuses_take_next_at_capacity(telegram, receive, outages):
    dan = make_agent("dan", teams=(outages,), capacity=1)
    receive(telegram, "нет света", sender="1")
    receive(telegram, "нет света", sender="2")
    actions.do_take_next(dan)
    with pytest.raises(Conflict, match="capacity"):
        actions.do_take_next(Agent.objects.get(pk=dan.pk))


@pytest.mark.django_db(transaction=True)
def test_it_never_gives_one_ticket_to_two_agents_pressing_take_next_at_once(
    telegram, receive, outages
):
    if connection.vendor != "postgresql":
        pytest.skip("SELECT ... FOR UPDATE SKIP LOCKED needs PostgreSQL")
    agents = [make_agent(f"agent{i}", teams=(outages,), capacity=50) for i in range(8)]
    for i in range(40):
        receive(telegram, f"нет света {i}", sender=str(1000 + i))

    claimed: dict[int, list[int]] = {a.pk: [] for a in agents}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(agents))

    def press(agent: Agent) -> None:
        try:
            barrier.wait()
            while True:
                ticket = actions.do_take_next(Agent.objects.get(pk=agent.pk))
                if ticket is None:
                    break
                claimed[agent.pk].append(ticket.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors
    all_claims = [pk for pks in claimed.values() for pk in pks]
    assert len(all_claims) == 40
    assert len(set(all_claims)) == 40, "a ticket was claimed twice"
    assert sum(1 for pks in claimed.values() if pks) > 1, "the claims did not actually overlap"
    for agent in agents:
        fresh = Agent.objects.get(pk=agent.pk)
        assert fresh.open_count == len(claimed[agent.pk])
        assert Ticket.objects.filter(assignee=agent).count() == len(claimed[agent.pk])
