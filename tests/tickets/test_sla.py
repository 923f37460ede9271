"""SLA clocks: which policy applies, business-time arithmetic across nights, weekends,
holidays and DST changes, the pause while pending, the cache of policies and calendars, and
how the pages show a ticket's clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.template import Context, Template
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels_in.models import Channel
from tickets import actions, sla
from tickets.models import (
    Agent,
    BusinessHours,
    Holiday,
    Priority,
    SlaPolicy,
    Status,
    Team,
    Ticket,
    TicketEvent,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_sla_configuration() -> Any:
    # Some tests write policies without signals (as another process would): leave no cached
    # policies behind for the next test in this process.
    yield
    sla.invalidate()


VILNIUS = ZoneInfo("Europe/Vilnius")
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
OFFICE_WEEK = {day: [["08:00", "17:00"]] for day in WORKDAYS}


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: ZoneInfo = VILNIUS) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def calendar(name: str, week: dict[str, Any], tz: str = "Europe/Vilnius") -> BusinessHours:
    return BusinessHours.objects.create(name=name, timezone=tz, week=week)


@pytest.fixture
def office(outages: Team) -> BusinessHours:
    """Mon–Fri 08:00–17:00 in Vilnius, closed over Christmas 2025; the Outages team's hours."""
    hours = calendar("Vilnius office", OFFICE_WEEK)
    for day, name in [
        (date(2025, 12, 24), "Kūčios"),
        (date(2025, 12, 25), "Kalėdos"),
        (date(2025, 12, 26), "Antra Kalėdų diena"),
    ]:
        Holiday.objects.create(calendar=hours, date=day, name=name)
    outages.business_hours = hours
    outages.save()
    return hours


@pytest.fixture
def office_policy(office: BusinessHours) -> SlaPolicy:
    return SlaPolicy.objects.create(
        name="Office hours",
        first_response_minutes=60,
        resolution_minutes=8 * 60,
        business_hours_only=True,
    )


def defaults(level: int) -> tuple[timedelta, timedelta]:
    from django.conf import settings

    first, resolve = settings.HELPDESK_SLA_MINUTES[Priority(level).label]
    return minutes(first), minutes(resolve)


# --------------------------------------------------------------------------- policies


def test_it_uses_the_settings_defaults_when_no_policy_matches(telegram: Channel) -> None:
    SlaPolicy.objects.create(
        name="WhatsApp only",
        channel_kind="whatsapp",
        first_response_minutes=5,
        resolution_minutes=50,
    )
    for level in Priority.values:
        assert sla.targets(level, channel_kind="telegram") == defaults(level)
        assert sla.select_policy(level, "telegram").pk is None


def test_it_applies_the_first_active_matching_policy_by_position(
    outages: Team, billing: Team
) -> None:
    def policy(name: str, position: int, **conditions: Any) -> SlaPolicy:
        return SlaPolicy.objects.create(
            name=name,
            position=position,
            first_response_minutes=position + 1,
            resolution_minutes=100 + position,
            **conditions,
        )

    policy("inactive", 0, is_active=False)
    urgent_outages = policy("urgent outages", 1, priority=Priority.URGENT, team=outages)
    whatsapp = policy("whatsapp", 2, channel_kind="whatsapp")
    urgent = policy("urgent anywhere", 3, priority=Priority.URGENT)
    catch_all = policy("everything else", 9)

    def chosen(level: int, kind: str, team: Team | None) -> str:
        return sla.select_policy(level, kind, team.pk if team else None).name

    assert chosen(Priority.URGENT, "telegram", outages) == urgent_outages.name
    assert chosen(Priority.URGENT, "whatsapp", outages) == urgent_outages.name
    assert chosen(Priority.URGENT, "whatsapp", billing) == whatsapp.name
    assert chosen(Priority.URGENT, "sms", billing) == urgent.name
    assert chosen(Priority.URGENT, "sms", None) == urgent.name
    assert chosen(Priority.LOW, "sms", outages) == catch_all.name
    assert sla.targets(Priority.LOW, channel_kind="whatsapp") == (minutes(3), minutes(102))


def test_it_gives_a_new_ticket_the_due_times_of_its_policy(
    telegram: Channel, receive: Callable[..., Any]
) -> None:
    SlaPolicy.objects.create(
        name="Telegram",
        channel_kind="telegram",
        first_response_minutes=7,
        resolution_minutes=70,
    )
    ticket = receive(telegram, "Hello, a question about my contract").ticket
    assert ticket.first_response_due == ticket.created_at + minutes(7)
    assert ticket.resolution_due == ticket.created_at + minutes(70)
    assert ticket.sla_due_at == ticket.first_response_due


def test_it_counts_a_business_hours_policy_in_the_team_calendar(
    telegram: Channel, receive: Callable[..., Any], office_policy: SlaPolicy, outages: Team
) -> None:
    ticket = receive(telegram, "Hello, a question about my contract").ticket
    assert ticket.team_id == outages.pk
    first = sla.add_business_time(outages, ticket.created_at, minutes(60))
    assert ticket.first_response_due == first == ticket.sla_due_at
    assert ticket.resolution_due == sla.add_business_time(outages, ticket.created_at, minutes(480))
    assert sla.business_time_between(outages, ticket.created_at, ticket.resolution_due) == minutes(
        480
    )


def test_it_swaps_the_targets_when_the_priority_changes(
    telegram: Channel, receive: Callable[..., Any], carol: Agent
) -> None:
    ticket = receive(telegram, "Hello, a question about my contract").ticket
    assert ticket.priority != Priority.URGENT
    actions.do_set_priority(ticket, "urgent", actor=carol)
    ticket.refresh_from_db()
    first, resolve = defaults(Priority.URGENT)
    assert ticket.first_response_due == ticket.created_at + first
    assert ticket.resolution_due == ticket.created_at + resolve
    assert ticket.sla_due_at == ticket.waiting_since + first


# --------------------------------------------------------------------------- business time


def test_it_adds_business_minutes_within_a_day_and_across_the_night(office: BusinessHours) -> None:
    team = office.teams.get()
    assert sla.add_business_time(team, local(2025, 3, 3, 9), minutes(60)) == local(2025, 3, 3, 10)
    # 30 minutes on Monday, 30 on Tuesday morning.
    assert sla.add_business_time(team, local(2025, 3, 3, 16, 30), minutes(60)) == local(
        2025, 3, 4, 8, 30
    )
    # Before opening, the clock starts at 08:00.
    assert sla.add_business_time(team, local(2025, 3, 4, 6), minutes(15)) == local(
        2025, 3, 4, 8, 15
    )
    # Exactly the rest of the day ends at closing time, not the next morning.
    assert sla.add_business_time(team, local(2025, 3, 3, 16), minutes(60)) == local(2025, 3, 3, 17)


def test_it_skips_the_weekend(office: BusinessHours) -> None:
    team = office.teams.get()
    friday_4pm = local(2025, 3, 7, 16)
    assert sla.add_business_time(team, friday_4pm, minutes(120)) == local(2025, 3, 10, 9)
    assert sla.add_business_time(team, local(2025, 3, 8, 12), minutes(1)) == local(
        2025, 3, 10, 8, 1
    )


def test_it_skips_holidays(office: BusinessHours) -> None:
    team = office.teams.get()
    # Tuesday 23 December 16:00 + 2 h: one hour on Tuesday; Wed–Fri are holidays, then the
    # weekend; the second hour is Monday the 29th.
    assert sla.add_business_time(team, local(2025, 12, 23, 16), minutes(120)) == local(
        2025, 12, 29, 9
    )
    assert not sla.in_business_hours(team, local(2025, 12, 24, 10))
    assert sla.in_business_hours(team, local(2025, 12, 23, 10))


def test_it_starts_the_clock_of_a_friday_evening_ticket_on_monday_morning(
    office_policy: SlaPolicy, outages: Team, telegram: Channel
) -> None:
    friday_evening = local(2025, 3, 7, 18, 30)
    ticket = Ticket(
        channel=telegram,
        team=outages,
        priority=Priority.NORMAL,
        created_at=friday_evening,
        waiting_since=friday_evening,
    )
    sla.apply_due_times(ticket, since=friday_evening)
    assert ticket.first_response_due == local(2025, 3, 10, 9)
    assert ticket.resolution_due == local(2025, 3, 10, 16)
    assert ticket.sla_due_at == local(2025, 3, 10, 9)
    # The same ticket of a team without business hours runs around the clock.
    ticket.team = None
    sla.apply_due_times(ticket, since=friday_evening)
    assert ticket.first_response_due == friday_evening + minutes(60)


def test_it_allows_several_ranges_a_day(outages: Team) -> None:
    outages.business_hours = calendar(
        "With lunch", {"mon": [["13:00", "17:00"], ["08:00", "12:00"]]}
    )
    outages.save()
    assert sla.add_business_time(outages, local(2025, 3, 3, 11, 30), minutes(60)) == local(
        2025, 3, 3, 13, 30
    )
    assert not sla.in_business_hours(outages, local(2025, 3, 3, 12, 30))
    assert sla.business_time_between(
        outages, local(2025, 3, 3, 7), local(2025, 3, 3, 18)
    ) == timedelta(hours=8)


def test_it_joins_a_night_shift_written_as_two_ranges(outages: Team) -> None:
    outages.business_hours = calendar(
        "Night desk", {"mon": [["22:00", "24:00"]], "tue": [["00:00", "06:00"]]}
    )
    outages.save()
    assert sla.add_business_time(outages, local(2025, 3, 3, 23), minutes(120)) == local(
        2025, 3, 4, 1
    )
    assert sla.in_business_hours(outages, local(2025, 3, 4, 0))
    assert sla.in_business_hours(outages, local(2025, 3, 3, 23, 59))
    assert not sla.in_business_hours(outages, local(2025, 3, 4, 6))


def test_it_counts_real_minutes_across_the_spring_dst_change(outages: Team) -> None:
    # Europe/Vilnius jumps from 03:00 to 04:00 on Sunday 30 March 2025.
    outages.business_hours = calendar("Always", {day: [["00:00", "24:00"]] for day in sla.WEEKDAYS})
    outages.save()
    saturday_noon, sunday_noon = local(2025, 3, 29, 12), local(2025, 3, 30, 12)
    assert sla.business_time_between(outages, saturday_noon, sunday_noon) == timedelta(hours=23)
    due = sla.add_business_time(outages, saturday_noon, timedelta(hours=24))
    assert due.astimezone(VILNIUS) == local(2025, 3, 30, 13)
    assert due - saturday_noon == timedelta(hours=24)


def test_it_counts_real_minutes_across_the_autumn_dst_change(outages: Team) -> None:
    # ... and from 04:00 back to 03:00 on Sunday 26 October 2025.
    outages.business_hours = calendar("Always", {day: [["00:00", "24:00"]] for day in sla.WEEKDAYS})
    outages.save()
    assert sla.business_time_between(
        outages, local(2025, 10, 25, 12), local(2025, 10, 26, 12)
    ) == timedelta(hours=25)


def test_it_keeps_office_hours_on_local_time_across_a_dst_change(office: BusinessHours) -> None:
    team = office.teams.get()
    # Friday before the change (UTC+2) to Monday after it (UTC+3): opening is still 08:00.
    due = sla.add_business_time(team, local(2025, 3, 28, 16), minutes(120))
    assert due == local(2025, 3, 31, 9)
    assert due.astimezone(VILNIUS).utcoffset() == timedelta(hours=3)
    assert due.astimezone(ZoneInfo("UTC")).hour == 6


def test_it_measures_elapsed_business_time(office: BusinessHours) -> None:
    team = office.teams.get()
    friday_4pm, monday_10am = local(2025, 3, 7, 16), local(2025, 3, 10, 10)
    assert sla.business_time_between(team, friday_4pm, monday_10am) == timedelta(hours=3)
    assert sla.business_time_between(team, monday_10am, friday_4pm) == -timedelta(hours=3)
    assert sla.business_time_between(None, friday_4pm, monday_10am) == monday_10am - friday_4pm
    # Subtracting walks back over the weekend.
    assert sla.add_business_time(team, local(2025, 3, 10, 8, 30), -minutes(60)) == local(
        2025, 3, 7, 16, 30
    )


def test_it_answers_whether_a_team_is_open(office: BusinessHours, billing: Team) -> None:
    outages = office.teams.get()
    monday_10am, monday_6pm = local(2025, 3, 3, 10), local(2025, 3, 3, 18)
    assert sla.in_business_hours(outages, monday_10am)
    assert sla.in_business_hours(outages.pk, monday_10am)
    assert not sla.in_business_hours(outages, monday_6pm)
    assert not sla.in_business_hours(outages, local(2025, 3, 8, 10))  # Saturday
    assert sla.in_business_hours(billing, monday_6pm)  # no calendar: always open
    assert sla.in_business_hours(None, monday_6pm)
    assert sla.next_business_moment(outages, monday_6pm) == local(2025, 3, 4, 8)
    assert sla.next_business_moment(outages, monday_10am) == monday_10am
    # In the calendar's own time zone, whatever the caller's.
    assert sla.in_business_hours(outages, datetime(2025, 3, 3, 7, 30, tzinfo=ZoneInfo("UTC")))
    assert not sla.in_business_hours(outages, datetime(2025, 3, 3, 5, 30, tzinfo=ZoneInfo("UTC")))


def test_it_reads_calendars_in_their_own_time_zone(outages: Team) -> None:
    outages.business_hours = calendar(
        "São Paulo", {"mon": [["09:00", "18:00"]]}, tz="America/Sao_Paulo"
    )
    outages.save()
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    assert sla.add_business_time(outages, local(2025, 3, 3, 8, tz=sao_paulo), minutes(30)) == (
        local(2025, 3, 3, 9, 30, tz=sao_paulo)
    )


# --------------------------------------------------------------------------- pending


def _backdate_pause(ticket: Ticket, by: timedelta) -> None:
    # The pause began `by` ago (events are append-only; this is test setup).
    TicketEvent.objects.filter(ticket=ticket, verb="ticket.status", to_value="pending").update(
        created_at=F("created_at") - by
    )


def test_it_pauses_the_resolution_clock_while_pending(
    telegram: Channel, receive: Callable[..., Any], alice: Agent
) -> None:
    ticket = receive(telegram, "Нет света, дом 5").ticket
    actions.do_reply(ticket, alice, "Пришлите, пожалуйста, фото счётчика", status="pending")
    ticket.refresh_from_db()
    due = ticket.resolution_due
    assert ticket.status == Status.PENDING
    assert sla.sla_state(ticket) == "paused"
    assert sla.escalation_stage(ticket, ticket.sla_due_at + timedelta(days=1)) == 0

    _backdate_pause(ticket, timedelta(hours=2))
    ticket = receive(telegram, "Вот фото").ticket  # the customer answers: the clock runs again
    assert ticket.status == Status.OPEN
    assert abs(ticket.resolution_due - (due + timedelta(hours=2))) < timedelta(seconds=5)
    assert sla.sla_state(ticket) in ("ok", "risk")


def test_it_resumes_the_clock_when_an_agent_reopens_a_pending_ticket(
    telegram: Channel, receive: Callable[..., Any], alice: Agent
) -> None:
    ticket = receive(telegram, "Нет света, дом 5").ticket
    actions.do_set_status(ticket, Status.PENDING, actor=alice)
    ticket.refresh_from_db()
    due = ticket.resolution_due
    _backdate_pause(ticket, timedelta(minutes=45))
    actions.do_set_status(ticket, Status.OPEN, actor=alice)
    ticket.refresh_from_db()
    assert abs(ticket.resolution_due - (due + timedelta(minutes=45))) < timedelta(seconds=5)


def test_it_keeps_the_clock_running_while_pending_when_told_to(
    telegram: Channel, receive: Callable[..., Any], alice: Agent, settings: Any
) -> None:
    settings.HELPDESK_SLA_PAUSE_PENDING = False
    ticket = receive(telegram, "Нет света, дом 5").ticket
    actions.do_set_status(ticket, Status.PENDING, actor=alice)
    ticket.refresh_from_db()
    due = ticket.resolution_due
    assert sla.sla_state(ticket) == "ok"
    assert sla.escalation_stage(ticket, due + minutes(1)) == sla.BREACHED
    _backdate_pause(ticket, timedelta(hours=2))
    actions.do_set_status(ticket, Status.OPEN, actor=alice)
    ticket.refresh_from_db()
    assert ticket.resolution_due == due


def test_it_carries_over_only_the_business_time_left_when_resuming(
    office: BusinessHours, telegram: Channel, receive: Callable[..., Any]
) -> None:
    SlaPolicy.objects.create(
        name="Office", first_response_minutes=60, resolution_minutes=480, business_hours_only=True
    )
    ticket = receive(telegram, "Нет света, дом 5").ticket
    TicketEvent.objects.create(
        ticket=ticket,
        contact=ticket.contact,
        actor_kind="agent",
        verb="ticket.status",
        from_value="open",
        to_value="pending",
        created_at=local(2025, 3, 7, 16),  # paused Friday 16:00
    )
    # Due Monday 12:00: one business hour left on Friday, four on Monday morning.
    ticket.resolution_due = local(2025, 3, 10, 12)
    sla.resume_paused(ticket, local(2025, 3, 10, 9))  # the customer answers Monday 09:00
    assert ticket.resolution_due == local(2025, 3, 10, 14)


# --------------------------------------------------------------------------- the cache


def test_it_reads_no_sla_tables_for_a_follow_up_message(
    office_policy: SlaPolicy, telegram: Channel, receive: Callable[..., Any]
) -> None:
    receive(telegram, "Нет света, дом 5")
    with CaptureQueriesContext(connection) as captured:
        receive(telegram, "Всё ещё нет света")
    tables = ("tickets_slapolicy", "tickets_businesshours", "tickets_holiday")
    assert not [q["sql"] for q in captured if any(t in q["sql"] for t in tables)]


def test_it_computes_due_times_without_a_query_in_the_steady_state(
    office_policy: SlaPolicy, outages: Team, telegram: Channel, django_assert_num_queries: Any
) -> None:
    ticket = Ticket(
        channel_id=telegram.pk,
        team_id=outages.pk,
        priority=Priority.HIGH,
        status=Status.OPEN,
        created_at=local(2025, 3, 7, 18),
        waiting_since=local(2025, 3, 7, 18),
    )
    sla.apply_due_times(ticket)
    with django_assert_num_queries(0):
        sla.apply_due_times(ticket)
        sla.refresh_next_due(ticket)
        sla.reprioritize_due_times(ticket, Priority.NORMAL)
        assert sla.in_business_hours(outages.pk, local(2025, 3, 10, 9))
        assert sla.sla_state(ticket, local(2025, 3, 10, 10)) == "breached"


def test_it_sees_a_policy_saved_in_this_process_at_once(
    telegram: Channel, receive: Callable[..., Any]
) -> None:
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)
    policy = SlaPolicy.objects.create(name="All", first_response_minutes=3, resolution_minutes=9)
    assert sla.targets(Priority.NORMAL) == (minutes(3), minutes(9))
    policy.is_active = False
    policy.save()
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)


def test_it_rereads_policies_when_another_process_changed_them(settings: Any) -> None:
    settings.HELPDESK_SLA_CACHE_SECONDS = 60
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)
    # Written without signals, as another process's write looks from here.
    SlaPolicy.objects.bulk_create(
        [SlaPolicy(name="Elsewhere", first_response_minutes=4, resolution_minutes=8)]
    )
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)
    cache.set(sla.VERSION_KEY, uuid.uuid4().hex)  # that process's commit bumped the version
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)  # not checked yet
    settings.HELPDESK_SLA_CACHE_SECONDS = 0  # the check interval has passed
    assert sla.targets(Priority.NORMAL) == (minutes(4), minutes(8))


@pytest.mark.django_db(transaction=True)
def test_it_forgets_a_policy_whose_transaction_rolled_back_and_announces_a_committed_one() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        SlaPolicy.objects.create(name="Draft", first_response_minutes=5, resolution_minutes=10)
        assert sla.targets(Priority.NORMAL) == (minutes(5), minutes(10))
        raise RuntimeError("the admin's save failed")
    assert sla.targets(Priority.NORMAL) == defaults(Priority.NORMAL)

    before = cache.get(sla.VERSION_KEY)
    SlaPolicy.objects.create(name="Real", first_response_minutes=6, resolution_minutes=12)
    assert cache.get(sla.VERSION_KEY) != before
    assert sla.targets(Priority.NORMAL) == (minutes(6), minutes(12))


# --------------------------------------------------------------------------- state and pages


def _ticket(status: str, due_in: timedelta, telegram: Channel, now: datetime) -> Ticket:
    return Ticket(
        channel=telegram,
        status=status,
        priority=Priority.NORMAL,
        sla_due_at=now + due_in,
        resolution_due=now + due_in,
    )


def test_it_names_the_state_of_the_clock(telegram: Channel) -> None:
    now = timezone.now()
    assert sla.sla_state(_ticket(Status.OPEN, minutes(16), telegram, now), now) == "ok"
    assert sla.sla_state(_ticket(Status.OPEN, minutes(15), telegram, now), now) == "risk"
    assert sla.sla_state(_ticket(Status.NEW, minutes(1), telegram, now), now) == "risk"
    assert sla.sla_state(_ticket(Status.OPEN, minutes(0), telegram, now), now) == "breached"
    assert sla.sla_state(_ticket(Status.OPEN, -minutes(90), telegram, now), now) == "breached"
    assert sla.sla_state(_ticket(Status.PENDING, -minutes(90), telegram, now), now) == "paused"
    assert sla.sla_state(_ticket(Status.RESOLVED, -minutes(90), telegram, now), now) == ""
    assert sla.sla_state(_ticket(Status.CLOSED, minutes(90), telegram, now), now) == ""


def test_it_warns_as_early_as_the_policy_says(telegram: Channel) -> None:
    SlaPolicy.objects.create(
        name="Early warning",
        first_response_minutes=60,
        resolution_minutes=600,
        escalation={"at_risk_minutes": 45},
    )
    now = timezone.now()
    ticket = _ticket(Status.OPEN, minutes(40), telegram, now)
    assert sla.sla_state(ticket, now) == "risk"
    assert sla.risk_at(ticket) == ticket.sla_due_at - minutes(45)


def _render(source: str, **context: Any) -> str:
    return Template("{% load sla %}" + source).render(Context(context))


def test_it_renders_a_badge_the_live_client_can_re_evaluate(telegram: Channel) -> None:
    now = timezone.now()
    breached = _ticket(Status.OPEN, -minutes(5), telegram, now)
    html = _render("{% sla_badge t now %}", t=breached, now=now)
    assert 'class="sla sla-breached sla-overdue"' in html
    assert 'data-sla-state="breached"' in html
    assert f'data-sla-due="{breached.sla_due_at.isoformat()}"' in html
    assert f'data-sla-risk-at="{(breached.sla_due_at - minutes(15)).isoformat()}"' in html
    assert ">\u22125 min</span>" in html
    assert ">SLA overdue 5 min</span>" in _render(
        "{% sla_badge t now long=True %}", t=breached, now=now
    )

    def badge(status: str, due_in: timedelta) -> str:
        return _render("{% sla_badge t now %}", t=_ticket(status, due_in, telegram, now), now=now)

    risk = badge(Status.OPEN, minutes(12))
    assert "sla-risk sla-soon" in risk and ">in 12 min<" in risk
    paused = badge(Status.PENDING, minutes(9))
    assert "sla-paused" in paused and ">Paused<" in paused
    assert badge(Status.CLOSED, minutes(9)) == ""
    assert _render("{{ t|sla_clock }}", t=_ticket(Status.OPEN, minutes(60), telegram, now)) == "ok"


def test_it_highlights_at_risk_and_breached_tickets_on_the_queue_and_ticket_pages(
    client: Client,
    carol: Agent,
    telegram: Channel,
    whatsapp: Channel,
    receive: Callable[..., Any],
) -> None:
    SlaPolicy.objects.create(
        name="WhatsApp fast",
        channel_kind="whatsapp",
        first_response_minutes=10,
        resolution_minutes=600,
    )
    at_risk = receive(whatsapp, "Нет света", sender="+37060000001").ticket
    late = receive(telegram, "<b>Нет света</b> третий день", sender="42").ticket
    fine = receive(telegram, "Вопрос о тарифе", sender="43").ticket
    # Test setup: a deadline already past (no policy makes one).
    Ticket.objects.filter(pk=late.pk).update(sla_due_at=timezone.now() - minutes(5))
    client.force_login(carol.user)

    html = client.get(reverse("queue")).content.decode()
    for ticket, state in ((at_risk, "risk"), (late, "breached"), (fine, "ok")):
        row = html[html.index(f'id="t{ticket.pk}"') :]
        row = row[: row.index("</tr>")]
        assert f'data-sla-state="{state}"' in row, (state, row)
    leaked = html.find("<b>Нет света</b>")
    assert leaked == -1, html[max(0, leaked - 400) : leaked + 100]

    page = client.get(reverse("ticket", args=[late.pk])).content.decode()
    assert 'class="sla sla-breached sla-overdue"' in page
    assert "SLA overdue 5 min" in page


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("week", "message"),
    [
        ({"monday": [["08:00", "17:00"]]}, "unknown weekday 'monday'"),
        ({"mon": [["08:00", "25:00"]]}, "'25:00' is not a time of day"),
        ({"mon": [["8am", "17:00"]]}, "'8am' is not a time"),
        ({"mon": [["17:00", "08:00"]]}, "ends at 08:00, not after it starts at 17:00"),
        ({"mon": [["08:00", "12:00"], ["11:00", "17:00"]]}, "08:00–12:00 overlaps 11:00–17:00"),
        ({"mon": [["08:00"]]}, "expected a range"),
        ({"mon": "08:00-17:00"}, "expected a list of ranges"),
        ({"mon": [], "sat": []}, "the week has no open hours"),
        ([["08:00", "17:00"]], "the week must be an object"),
    ],
)
def test_it_explains_what_is_wrong_with_a_week(week: Any, message: str) -> None:
    with pytest.raises(sla.ValidationError) as error:
        sla.validate_week(week)
    assert any(message in m for m in error.value.messages), error.value.messages


def test_it_normalizes_a_valid_week() -> None:
    week = sla.validate_week({"fri": [["13:00", "17:00"], ["08:00", "12:00"]], "sat": []})
    assert week["fri"] == [["08:00", "12:00"], ["13:00", "17:00"]]
    assert week["mon"] == [] and set(week) == set(sla.WEEKDAYS)
    assert sla.validate_week({"sun": [["00:00", "24:00"]]})["sun"] == [["00:00", "24:00"]]


@pytest.mark.parametrize(
    ("escalation", "message"),
    [
        ({"on_breach": ["page_the_ceo"]}, "unknown escalation step 'page_the_ceo' in on_breach"),
        ({"at_risk_minutes": -5}, "at_risk_minutes cannot be negative"),
        ({"at_risk_minutes": "15"}, "whole number of minutes"),
        ({"at_risk_minutes": True}, "whole number of minutes"),
        ({"on_risk": []}, "unknown key 'on_risk'"),
        ({"on_at_risk": "notify_supervisor"}, "on_at_risk must be a list"),
        (["notify_supervisor"], "escalation must be an object"),
    ],
)
def test_it_explains_what_is_wrong_with_an_escalation(escalation: Any, message: str) -> None:
    with pytest.raises(sla.ValidationError) as error:
        sla.validate_escalation(escalation)
    assert any(message in m for m in error.value.messages), error.value.messages


def test_it_rejects_unknown_time_zones() -> None:
    assert sla.validate_timezone("America/Sao_Paulo") == "America/Sao_Paulo"
    for name in ("Mars/Olympus_Mons", "", "../../etc/passwd", None):
        with pytest.raises(sla.ValidationError):
            sla.validate_timezone(name)


def test_it_runs_a_team_around_the_clock_when_its_stored_week_is_invalid(outages: Team) -> None:
    # Written around the validation (a shell, a raw UPDATE): clocks keep running, never crash.
    outages.business_hours = calendar("Broken", {"mon": [["17:00", "08:00"]]})
    outages.save()
    start = local(2025, 3, 8, 12)
    assert sla.add_business_time(outages, start, minutes(30)) == start + minutes(30)
    assert sla.in_business_hours(outages, start)
