"""The agent pages: who may open what, what every form post does, and what the HTML shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from channels_in.models import Channel
from tests.conftest import PASSWORD, make_agent
from tickets import actions, rows
from tickets.models import (
    Agent,
    Call,
    CannedResponse,
    Contact,
    ContactMerge,
    DeliveryStatus,
    Message,
    Priority,
    Status,
    Team,
    Ticket,
    TicketEvent,
)
from tickets.queue import visible_filter, visible_parts
from tickets.templatetags.desk import humanize_seconds, initials, sla_label, sla_state
from tickets.views import capped_counts, fill_variables

pytestmark = pytest.mark.django_db

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert(2)</script>"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def outage(telegram: Channel, receive: Callable[..., Any]) -> Ticket:
    """A Russian outage report in the Outages team (alice's)."""
    return receive(
        telegram,
        "Добрый день, нет света на улице Ленина 5 уже два часа",
        sender="700",
        name="Иван Петров",
    ).ticket


@pytest.fixture
def bill(sms: Channel, receive: Callable[..., Any]) -> Ticket:
    """A Portuguese billing question in the Billing team (bob's)."""
    return receive(
        sms,
        "Olá, a minha fatura deste mês está muito alta",
        sender="+351912345678",
        name="Ana Silva",
    ).ticket


def login(client: Client, who: Any) -> Client:
    if who is not None:
        client.force_login(who.user if isinstance(who, Agent) else who)
    return client


def flash(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def personas(alice: Agent, bob: Agent, carol: Agent, mallory: Any) -> dict[str, Any]:
    return {"alice": alice, "bob": bob, "carol": carol, "mallory": mallory, "anonymous": None}


# --------------------------------------------------------------------------- sign in


def test_it_shows_a_styled_login_page(client: Client) -> None:
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "css/app.css" in html


def test_it_signs_an_agent_in_to_the_queue(client: Client, alice: Agent) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("queue")
    assert client.get(reverse("queue")).status_code == 200


def test_it_rejects_a_wrong_password_with_a_message(client: Client, alice: Agent) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_it_shows_mallory_a_403_page_after_login_never_the_queue(
    client: Client, mallory: Any
) -> None:
    response = client.post(
        reverse("login"), {"username": "mallory", "password": PASSWORD}, follow=True
    )
    assert response.status_code == 403
    html = response.content.decode()
    assert "not a helpdesk agent" in html
    assert 'class="qtable"' not in html


def test_it_logs_out_on_post_only(client: Client, alice: Agent) -> None:
    login(client, alice)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("queue")).status_code == 302


# --------------------------------------------------------------------------- queue


@pytest.mark.parametrize(
    ("who", "status", "sees_outage", "sees_bill"),
    [
        ("alice", 200, True, False),
        ("bob", 200, False, True),
        ("carol", 200, True, True),
        ("mallory", 403, False, False),
        ("anonymous", 302, False, False),
    ],
)
def test_it_shows_each_persona_the_queue_they_may_see(
    client: Client,
    personas: dict[str, Any],
    outage: Ticket,
    bill: Ticket,
    who: str,
    status: int,
    sees_outage: bool,
    sees_bill: bool,
) -> None:
    response = login(client, personas[who]).get(reverse("queue"))
    assert response.status_code == status
    html = response.content.decode()
    assert (reverse("ticket", args=[outage.pk]) in html) is sees_outage
    assert (reverse("ticket", args=[bill.pk]) in html) is sees_bill
    if who == "anonymous":
        assert response["Location"] == f"{reverse('login')}?next=/"


def test_it_renders_a_queue_row_with_everything_an_agent_needs(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    actions.do_update_tags(outage, actor=alice, add=["storm"])
    html = login(client, alice).get(reverse("queue")).content.decode()
    assert f"#{outage.pk}" in html
    assert "Добрый день, нет света" in html  # subject and preview
    assert "Иван Петров" in html
    assert 'class="ch ch-telegram"' in html
    assert ">ru<" in html
    assert "storm" in html
    assert "Outages" in html
    # The priority badge and the reasons behind it.
    assert f"prio prio-{outage.priority_name}" in html
    assert "outage" in html and "нет света" in html
    assert 'role="tooltip"' in html


def test_it_counts_tickets_per_status_and_caps_the_count_at_1000(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    Ticket.objects.bulk_create(
        [
            Ticket(
                contact=outage.contact, channel=outage.channel, team=outage.team, status="pending"
            )
            for _ in range(1001)
        ]
    )
    Ticket.objects.bulk_create(
        [
            Ticket(
                contact=outage.contact, channel=outage.channel, team=outage.team, status="closed"
            )
            for _ in range(3)
        ]
    )
    counts = capped_counts(Ticket.objects.all(), tuple(Status.values), 1000)
    assert counts == {"new": 1, "open": 0, "pending": 1001, "resolved": 0, "closed": 3}
    nothing = capped_counts(Ticket.objects.filter(channel_id__in=[]), ("new", "closed"), 1000)
    assert nothing == {"new": 0, "closed": 0}

    html = login(client, alice).get(reverse("queue")).content.decode()
    assert '<span class="count">1000+</span>' in html
    assert '<span class="count">3</span>' in html


def test_it_counts_an_agents_tabs_part_by_part_exactly_as_one_count_would(
    client: Client, alice: Agent, bob: Agent, outage: Ticket, bill: Ticket
) -> None:
    # alice sees her team's tickets and those assigned to her elsewhere or in no team; the
    # page counts those parts separately (index-only scans), the sums capped the same way.
    def make(n: int, status: str, team: Team | None, assignee: Agent | None) -> None:
        Ticket.objects.bulk_create(
            Ticket(contact=outage.contact, channel=outage.channel, team=team, status=status,
                   assignee=assignee)
            for _ in range(n)
        )  # fmt: skip

    make(3, "open", outage.team, None)
    make(2, "open", bill.team, alice)  # assigned to her outside her team
    make(2, "open", None, alice)  # and in no team
    make(4, "open", bill.team, bob)  # not hers to see
    make(1, "pending", outage.team, alice)  # in her team and hers: counted once
    make(2, "pending", bill.team, alice)
    make(5, "closed", None, alice)
    statuses = tuple(Status.values)
    visible = Ticket.objects.filter(visible_filter(alice))
    parts = [Ticket.objects.filter(p) for p in visible_parts(alice) or []]
    for cap in (1, 2, 4, 5, 6, 1000):
        assert capped_counts(visible, statuses, cap, parts=parts) == capped_counts(
            visible, statuses, cap
        ), cap
    assert capped_counts(visible, statuses, 1000, parts=parts) == {
        "new": 1,  # the outage fixture
        "open": 7,
        "pending": 3,
        "resolved": 0,
        "closed": 5,
    }
    assert capped_counts(visible, statuses, 4, parts=parts)["open"] == 5  # cap + 1: "4+"

    html = login(client, alice).get(reverse("queue") + "?status=all").content.decode()
    assert '<span class="count">7</span>' in html and '<span class="count">5</span>' in html
    assert visible_parts(Agent.objects.get(pk=alice.pk)) is not None
    carol = make_agent("carol-sup", role="supervisor")
    assert visible_parts(carol) is None


def test_it_serves_the_queue_in_a_bounded_number_of_queries(
    client: Client,
    alice: Agent,
    telegram: Channel,
    whatsapp: Channel,
    receive: Callable[..., Any],
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(30):
        channel = telegram if i % 2 else whatsapp
        ticket = receive(
            channel, f"нет света, дом {i}", sender=f"+37061{i:06d}", name=f"Клиент {i}"
        ).ticket
        actions.do_update_tags(ticket, actor=alice, add=[f"street-{i % 4}", "storm"])
        if i % 3 == 0:
            actions.do_assign(ticket, alice, actor=alice)
    login(client, alice)
    rows.REFS.invalidate()
    # Cold: the process also loads its copy of channels, teams and agents (3 small queries).
    with django_assert_max_num_queries(8):
        response = client.get(reverse("queue"))
    assert response.status_code == 200
    # A page is 25 rows; the rest are on the next one.
    assert response.content.decode().count('class="qrow') == 25
    assert "cursor=" in response.content.decode()
    # Warm: user and agent, the agent's teams, tab counts, rows, tags.
    with django_assert_max_num_queries(5):
        client.get(reverse("queue"))
    with django_assert_max_num_queries(8):
        response = client.get(
            reverse("queue"),
            {
                "channel": "telegram",
                "tag": "storm",
                "assignee": "me",
                "priority": "high",
                "q": "свет",
            },
        )
    assert response.status_code == 200


def test_it_filters_the_queue(
    client: Client, carol: Agent, outage: Ticket, bill: Ticket, billing: Team
) -> None:
    login(client, carol)

    def shown(**params: str) -> set[int]:
        html = client.get(reverse("queue"), params).content.decode()
        return {t for t in (outage.pk, bill.pk) if reverse("ticket", args=[t]) in html}

    assert shown() == {outage.pk, bill.pk}
    assert shown(channel="sms") == {bill.pk}
    assert shown(team=str(billing.pk)) == {bill.pk}
    assert shown(language="ru") == {outage.pk}
    assert shown(topic="outage") == {outage.pk}
    assert shown(q="Ana") == {bill.pk}
    assert shown(q=f"#{outage.pk}") == {outage.pk}
    assert shown(assignee="none") == {outage.pk, bill.pk}
    assert shown(assignee="me") == set()
    assert shown(status="closed") == set()
    actions.do_set_status(bill, "resolved", actor=carol)
    assert shown() == {outage.pk}
    assert shown(status="resolved") == {bill.pk}
    assert shown(status="all") == {outage.pk, bill.pk}


def test_it_explains_a_bad_filter_value(client: Client, alice: Agent, outage: Ticket) -> None:
    login(client, alice)
    html = client.get(reverse("queue"), {"language": "xx"}).content.decode()
    assert "unknown language &#x27;xx&#x27;" in html
    html = client.get(reverse("queue"), {"status": "sleeping"}).content.decode()
    assert "unknown status &#x27;sleeping&#x27;" in html
    html = client.get(reverse("queue"), {"priority": "extreme"}).content.decode()
    assert "unknown value &#x27;extreme&#x27;" in html
    # The other filters still apply.
    response = client.get(reverse("queue"), {"language": "xx", "channel": "sms"})
    assert "unknown language" in response.content.decode()
    assert response.context["page"].rows == []
    html = client.get(reverse("queue"), {"cursor": "garbage"}).content.decode()
    assert "the cursor is not valid" in html
    assert reverse("ticket", args=[outage.pk]) in html  # the first page instead


def test_it_pages_the_queue_with_keyset_cursors(
    client: Client, alice: Agent, telegram: Channel, receive: Callable[..., Any]
) -> None:
    ids = [receive(telegram, f"вопрос {i}", sender=f"5{i}").ticket.pk for i in range(5)]
    login(client, alice)
    first = client.get(reverse("queue"), {"size": "2"})
    html = first.content.decode()
    assert html.count('class="qrow') == 2
    assert 'rel="next"' in html and 'rel="prev"' not in html
    seen = []
    response = first
    while True:
        html = response.content.decode()
        seen += [pk for pk in ids if f'data-href="{reverse("ticket", args=[pk])}"' in html]
        cursor = response.context["page"].next_cursor
        if cursor is None:
            break
        response = client.get(reverse("queue"), {"size": "2", "cursor": cursor})
        assert 'rel="prev"' in response.content.decode()
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 5


# --------------------------------------------------------------------------- take next


def test_it_takes_the_next_ticket_and_opens_it(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    response = login(client, alice).post(reverse("take-next"))
    assert response.status_code == 302
    assert response["Location"] == reverse("ticket", args=[outage.pk])
    outage.refresh_from_db()
    assert outage.assignee == alice
    assert outage.status == Status.OPEN


def test_it_says_when_there_is_nothing_to_take(client: Client, bob: Agent, outage: Ticket) -> None:
    response = login(client, bob).post(reverse("take-next"))
    assert response["Location"] == reverse("queue")
    assert flash(response) == ["Nothing to take: no unassigned ticket you can work is waiting."]
    outage.refresh_from_db()
    assert outage.assignee is None


def test_it_refuses_to_take_beyond_capacity_with_a_message(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    Agent.objects.filter(pk=alice.pk).update(capacity=0)
    response = login(client, alice).post(reverse("take-next"))
    assert response["Location"] == reverse("queue")
    assert "your capacity is 0" in flash(response)[0]
    outage.refresh_from_db()
    assert outage.assignee is None


@pytest.mark.parametrize(("who", "status"), [("mallory", 403), ("anonymous", 302)])
def test_it_lets_only_agents_take_next(
    client: Client, personas: dict[str, Any], outage: Ticket, who: str, status: int
) -> None:
    response = login(client, personas[who]).post(reverse("take-next"))
    assert response.status_code == status
    outage.refresh_from_db()
    assert outage.assignee is None


# --------------------------------------------------------------------------- ticket page


@pytest.mark.parametrize(
    ("who", "status"),
    [("alice", 200), ("bob", 404), ("carol", 200), ("mallory", 403), ("anonymous", 302)],
)
def test_it_shows_the_ticket_page_only_to_who_may_see_it(
    client: Client, personas: dict[str, Any], outage: Ticket, who: str, status: int
) -> None:
    response = login(client, personas[who]).get(reverse("ticket", args=[outage.pk]))
    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert "нет света на улице Ленина 5" in html
        assert 'id="composer"' in html
    if who == "anonymous":
        assert response["Location"] == f"{reverse('login')}?next=/tickets/{outage.pk}/"


def test_it_answers_404_for_a_ticket_that_does_not_exist(client: Client, carol: Agent) -> None:
    assert login(client, carol).get(reverse("ticket", args=[999999])).status_code == 404


def test_it_escapes_customer_text_everywhere(
    client: Client, carol: Agent, telegram: Channel, receive: Callable[..., Any]
) -> None:
    ticket = receive(telegram, f"{XSS_IMG} {XSS_SCRIPT}", sender="666", name=XSS_SCRIPT).ticket
    login(client, carol)
    for url in (reverse("ticket", args=[ticket.pk]), reverse("queue")):
        html = client.get(url).content.decode()
        assert "<img src=x" not in html
        assert "<script>alert(2)" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_it_renders_sanitized_email_html_and_nothing_more(
    client: Client, carol: Agent, email_channel: Channel, receive: Callable[..., Any]
) -> None:
    ticket = receive(
        email_channel,
        "Hello, my bill is wrong",
        sender="ana@example.pt",
        html="<p>Hello, my <b>bill</b> is wrong</p><script>alert(3)</script>"
        '<img src="https://tracker.example/p.gif" onerror="alert(4)">',
        subject="Bill",
    ).ticket
    html = login(client, carol).get(reverse("ticket", args=[ticket.pk])).content.decode()
    assert "<b>bill</b>" in html
    assert "alert(3)" not in html
    assert "alert(4)" not in html
    assert "tracker.example" not in html


def test_it_marks_notes_calls_and_delivery_states_in_the_thread(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    reply = actions.do_reply(outage, alice, "Бригада выехала")
    failed = actions.do_reply(outage, alice, "Ожидаемое время — 18:00")
    actions.do_add_note(outage, alice, "Проверить линию 10 кВ")
    actions.do_log_call(
        outage.contact, actor=alice, duration_seconds=245, summary="Перезвонил", ticket=outage
    )
    Message.objects.filter(pk=reply.pk).update(delivery_status=DeliveryStatus.READ)
    Message.objects.filter(pk=failed.pk).update(
        delivery_status=DeliveryStatus.FAILED, delivery_error="chat not found"
    )
    html = login(client, alice).get(reverse("ticket", args=[outage.pk])).content.decode()
    assert "msg-note" in html and "Internal note" in html
    assert "Phone call" in html and "4:05" in html
    assert "ticks-read" in html
    assert "Failed: chat not found" in html


# --------------------------------------------------------------------------- canned responses


def test_it_offers_canned_responses_of_the_language_and_teams_with_variables_filled(
    client: Client, alice: Agent, outage: Ticket, outages: Team, billing: Team
) -> None:
    actions.do_update_contact(outage.contact, actor=alice, accounts=["LT-1234567"])
    CannedResponse.objects.create(
        shortcut="outage",
        title="Авария",
        language="ru",
        body="{{contact.name}}, по заявке #{{ticket.id}} бригада выехала. {{agent.name}}",
    )
    CannedResponse.objects.create(
        shortcut="outage", title="Outage", language="en", body="Crew on the way"
    )
    CannedResponse.objects.create(
        shortcut="acc", title="Account", body="Счёт {{ contact.account }}", team=outages
    )
    CannedResponse.objects.create(
        shortcut="bill", title="Billing only", body="billing team", team=billing
    )
    CannedResponse.objects.create(
        shortcut="evil", title="Evil", body="</script><script>alert(5)</script>"
    )
    response = login(client, alice).get(reverse("ticket", args=[outage.pk]))
    html = response.content.decode()
    assert 'id="canned-data" type="application/json"' in html
    assert "<script>alert(5)" not in html
    canned = {c["shortcut"]: c for c in response.context["canned"]}
    assert set(canned) == {"outage", "acc", "evil"}
    assert canned["outage"]["body"] == (
        f"Иван Петров, по заявке #{outage.pk} бригада выехала. Alice"
    )
    assert canned["acc"]["body"] == "Счёт LT-1234567"


def test_it_fills_only_known_variables() -> None:
    values = {"contact.name": "Ana", "ticket.id": "7"}
    assert fill_variables("{{contact.name}} #{{ ticket.id }} {{x.y}}", values) == "Ana #7 {{x.y}}"


# --------------------------------------------------------------------------- timeline


def test_it_shows_the_whole_cross_channel_timeline_hiding_other_teams_text(
    client: Client,
    alice: Agent,
    carol: Agent,
    telegram: Channel,
    sms: Channel,
    receive: Callable[..., Any],
) -> None:
    # The same phone on Telegram and SMS is one person with two tickets in two teams.
    first = receive(telegram, "нет света", sender="42", phone="+37061234567").ticket
    second = receive(sms, "Sąskaita per didelė, prašau patikrinti", sender="+37061234567").ticket
    assert first.contact_id == second.contact_id
    actions.do_log_call(first.contact, actor=alice, duration_seconds=60, summary="Звонок про счёт")

    html = login(client, alice).get(reverse("ticket", args=[first.pk])).content.decode()
    assert f"#{second.pk} Sąskaita per didelė" in html  # id and subject
    assert "another team's ticket" in html
    assert f'href="{reverse("ticket", args=[second.pk])}"' not in html
    assert "Звонок про счёт" in html

    client.logout()
    html = login(client, carol).get(reverse("ticket", args=[first.pk])).content.decode()
    assert f'href="{reverse("ticket", args=[second.pk])}"' in html


# --------------------------------------------------------------------------- form posts


def _posts(other_contact: Contact, billing: Team) -> dict[str, tuple[dict[str, str], Any]]:
    """Each form on the ticket page: what it posts, and how to tell it did its work."""

    def changed_contact(ticket: Ticket) -> bool:
        return Contact.objects.get(pk=ticket.contact_id).tier == "vip"

    return {
        "ticket-reply": (
            {"mode": "reply", "text": "Здравствуйте! Бригада уже выехала."},
            lambda t: t.messages.filter(direction="out", is_internal=False).exists(),
        ),
        "ticket-reply-note": (
            {"mode": "note", "text": "Проверить фидер 12"},
            lambda t: t.messages.filter(is_internal=True).exists(),
        ),
        "ticket-status": ({"status": "pending"}, lambda t: t.status == Status.PENDING),
        "ticket-assign": ({"assignee": "me"}, lambda t: t.assignee_id is not None),
        "ticket-transfer": (
            {"team": str(billing.pk), "note": "Вопрос по счёту"},
            lambda t: t.team_id == billing.pk,
        ),
        "ticket-priority": (
            {"priority": "urgent", "reason": "hospital on the street"},
            lambda t: t.priority == Priority.URGENT and t.priority_locked,
        ),
        "ticket-tags": ({"add": "storm, line-12"}, lambda t: t.tags.count() == 2),
        "ticket-call": (
            {"direction": "inbound", "duration": "4:30", "summary": "Called about the outage"},
            lambda t: Call.objects.filter(ticket=t, duration_seconds=270).exists(),
        ),
        "ticket-contact": (
            {"display_name": "Иван Петров", "tier": "vip", "language": "ru", "accounts": "123"},
            changed_contact,
        ),
        "ticket-merge": (
            {"contact": str(other_contact.pk), "reason": "same person"},
            lambda t: ContactMerge.objects.filter(source=other_contact).exists(),
        ),
    }


POSTS = [
    "ticket-reply",
    "ticket-reply-note",
    "ticket-status",
    "ticket-assign",
    "ticket-transfer",
    "ticket-priority",
    "ticket-tags",
    "ticket-call",
    "ticket-contact",
    "ticket-merge",
]


@pytest.mark.parametrize("name", POSTS)
@pytest.mark.parametrize(
    ("who", "status", "works"),
    [
        ("alice", 302, True),
        ("bob", 404, False),
        ("carol", 302, True),
        ("mallory", 403, False),
        ("anonymous", 302, False),
    ],
)
def test_it_runs_each_ticket_form_only_for_who_may_work_the_ticket(
    client: Client,
    personas: dict[str, Any],
    outage: Ticket,
    billing: Team,
    whatsapp: Channel,
    receive: Callable[..., Any],
    name: str,
    who: str,
    status: int,
    works: bool,
) -> None:
    other = receive(whatsapp, "ещё один номер", sender="+37069999999", name="Иван П.").ticket
    data, did = _posts(other.contact, billing)[name]
    url = reverse(name.removesuffix("-note"), args=[outage.pk])
    events_before = TicketEvent.objects.count()

    response = login(client, personas[who]).post(url, data)

    assert response.status_code == status
    outage.refresh_from_db()
    assert did(outage) is works
    if works:
        assert response["Location"] == reverse("ticket", args=[outage.pk])
        assert all("error" not in m.tags for m in get_messages(response.wsgi_request))
    else:
        assert TicketEvent.objects.count() == events_before
    if who == "anonymous":
        assert response["Location"] == f"{reverse('login')}?next=/tickets/{outage.pk}/"


@pytest.mark.parametrize(
    ("who", "status", "works"),
    [
        ("alice", 302, True),
        ("bob", 404, False),
        ("carol", 302, True),
        ("mallory", 403, False),
        ("anonymous", 302, False),
    ],
)
def test_it_undoes_a_merge_only_for_who_may_work_the_ticket(
    client: Client,
    personas: dict[str, Any],
    alice: Agent,
    outage: Ticket,
    whatsapp: Channel,
    receive: Callable[..., Any],
    who: str,
    status: int,
    works: bool,
) -> None:
    other = receive(whatsapp, "второй номер", sender="+37068888888").ticket
    merge = actions.do_merge_contacts(outage.contact, other.contact, actor=alice)
    html = login(client, alice).get(reverse("ticket", args=[outage.pk])).content.decode()
    undo = reverse("ticket-unmerge", args=[outage.pk, merge.pk])
    assert f'action="{undo}"' in html
    client.logout()

    response = login(client, personas[who]).post(undo)

    assert response.status_code == status
    merge.refresh_from_db()
    assert (merge.undone_at is not None) is works
    assert (Ticket.objects.get(pk=other.pk).contact_id == other.contact_id) is works


def test_it_does_not_undo_a_merge_of_another_customer(
    client: Client, alice: Agent, outage: Ticket, whatsapp: Channel, receive: Callable[..., Any]
) -> None:
    a = receive(whatsapp, "раз", sender="+37061111111").ticket
    b = receive(whatsapp, "два", sender="+37062222222").ticket
    merge = actions.do_merge_contacts(a.contact, b.contact, actor=alice)
    response = login(client, alice).post(reverse("ticket-unmerge", args=[outage.pk, merge.pk]))
    assert response.status_code == 404
    merge.refresh_from_db()
    assert merge.undone_at is None


def test_it_sends_a_reply_and_sets_the_status_in_one_go(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    response = login(client, alice).post(
        reverse("ticket-reply", args=[outage.pk]),
        {"mode": "reply", "text": "Свет восстановлен.", "status": "resolved"},
    )
    assert flash(response) == ["Reply sent and set to resolved."]
    outage.refresh_from_db()
    assert outage.status == Status.RESOLVED
    message = outage.messages.get(direction="out")
    assert message.delivery_status == DeliveryStatus.QUEUED
    assert message.delivery.state == "queued"


def test_it_assigns_to_an_agent_of_the_team(
    client: Client, alice: Agent, outage: Ticket, outages: Team
) -> None:
    dave = make_agent("dave", teams=(outages,))
    login(client, alice).post(
        reverse("ticket-assign", args=[outage.pk]), {"assignee": str(dave.pk)}
    )
    outage.refresh_from_db()
    assert outage.assignee == dave


def test_it_removes_a_tag(client: Client, alice: Agent, outage: Ticket) -> None:
    actions.do_update_tags(outage, actor=alice, add=["storm", "line-12"])
    login(client, alice).post(reverse("ticket-tags", args=[outage.pk]), {"remove": "storm"})
    assert list(outage.tags.values_list("name", flat=True)) == ["line-12"]


BAD_INPUT = [
    (
        "ticket-status",
        {"status": "sleeping"},
        "status must be one of open, pending, resolved, closed; got 'sleeping'",
    ),
    ("ticket-status", {}, "Status: This field is required."),
    (
        "ticket-priority",
        {"priority": "extreme"},
        "priority must be one of low, normal, high, urgent; got 'extreme'",
    ),
    ("ticket-reply", {"mode": "reply", "text": "   "}, "reply is empty"),
    (
        "ticket-reply",
        {"mode": "reply", "text": "x", "status": "closed"},
        "a reply can leave the ticket open, pending or resolved, not 'closed'",
    ),
    (
        "ticket-reply",
        {"mode": "shout", "text": "x"},
        "Mode: Select a valid choice. shout is not one of the available choices.",
    ),
    ("ticket-reply", {"mode": "note", "text": ""}, "note is empty"),
    (
        "ticket-call",
        {"direction": "inbound", "duration": "abc"},
        "Duration: duration 'abc' is not minutes (12) or minutes:seconds (4:30)",
    ),
    (
        "ticket-call",
        {"direction": "inbound", "duration": "4:75"},
        "Duration: duration '4:75': seconds must be below 60",
    ),
    (
        "ticket-call",
        {"direction": "sideways"},
        "Direction: Select a valid choice. sideways is not one of the available choices.",
    ),
    ("ticket-transfer", {"note": "who knows"}, "a transfer needs a team or an agent"),
    ("ticket-transfer", {"team": "999999"}, "team 999999 does not exist"),
    ("ticket-assign", {"assignee": "someone"}, "Assignee: pick an agent; 'someone' is not one"),
    ("ticket-assign", {"assignee": "999999"}, "agent 999999 does not exist"),
    ("ticket-tags", {"add": "x" * 60}, "is longer than 50 characters"),
    ("ticket-tags", {"add": " , "}, "type a tag to add"),
    ("ticket-merge", {"contact": "abc"}, "Contact: type the number of the other contact"),
    ("ticket-merge", {"contact": "999999"}, "contact does not exist"),
    (
        "ticket-contact",
        {"tier": "royal", "language": "ru"},
        "Tier: Select a valid choice. royal is not one of the available choices.",
    ),
    (
        "ticket-contact",
        {"tier": "vip", "language": "xx"},
        "Language: Select a valid choice. xx is not one of the available choices.",
    ),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_INPUT)
def test_it_explains_bad_form_input_and_changes_nothing(
    client: Client, alice: Agent, outage: Ticket, name: str, data: dict[str, str], message: str
) -> None:
    before = Ticket.objects.filter(pk=outage.pk).values().get()
    contact_before = Contact.objects.filter(pk=outage.contact_id).values().get()
    events_before = TicketEvent.objects.count()
    messages_before = Message.objects.count()

    response = login(client, alice).post(reverse(name, args=[outage.pk]), data)

    assert response.status_code == 302
    assert response["Location"] == reverse("ticket", args=[outage.pk])
    shown = flash(response)
    assert len(shown) == 1 and message in shown[0], shown
    assert Ticket.objects.filter(pk=outage.pk).values().get() == before
    assert Contact.objects.filter(pk=outage.contact_id).values().get() == contact_before
    assert TicketEvent.objects.count() == events_before
    assert Message.objects.count() == messages_before
    assert not Call.objects.exists()


def test_it_explains_why_an_agent_cannot_assign_outside_the_team(
    client: Client, alice: Agent, bob: Agent, outage: Ticket
) -> None:
    response = login(client, alice).post(
        reverse("ticket-assign", args=[outage.pk]), {"assignee": str(bob.pk)}
    )
    assert flash(response) == ["Bob is not in the ticket's team; transfer the ticket instead"]
    outage.refresh_from_db()
    assert outage.assignee is None


def test_it_refuses_to_merge_a_customer_into_itself(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    response = login(client, alice).post(
        reverse("ticket-merge", args=[outage.pk]), {"contact": str(outage.contact_id)}
    )
    assert flash(response) == ["a contact cannot be merged into itself"]
    assert not ContactMerge.objects.exists()


def test_it_refuses_a_reply_on_a_closed_ticket(
    client: Client, alice: Agent, outage: Ticket
) -> None:
    actions.do_set_status(outage, "closed", actor=alice)
    response = login(client, alice).post(
        reverse("ticket-reply", args=[outage.pk]), {"mode": "reply", "text": "Добрый день"}
    )
    assert "is closed" in flash(response)[0]
    assert not outage.messages.filter(direction="out").exists()


def test_it_rejects_get_on_form_endpoints(client: Client, alice: Agent, outage: Ticket) -> None:
    assert login(client, alice).get(reverse("ticket-status", args=[outage.pk])).status_code == 405


def test_it_requires_csrf_on_every_form(alice: Agent, outage: Ticket) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    response = strict.post(reverse("ticket-status", args=[outage.pk]), {"status": "pending"})
    assert response.status_code == 403
    outage.refresh_from_db()
    assert outage.status == Status.NEW


def test_it_renders_the_ticket_page_in_a_bounded_number_of_queries(
    client: Client,
    alice: Agent,
    outage: Ticket,
    telegram: Channel,
    receive: Callable[..., Any],
    django_assert_max_num_queries: Any,
) -> None:
    # One earlier ticket of the same customer, so the timeline already reads its messages.
    receive(telegram, "вчерашняя тема", sender="700", thread_key="thread-0")
    login(client, alice)
    url = reverse("ticket", args=[outage.pk])
    client.get(url)
    with django_assert_max_num_queries(22) as small:
        client.get(url)
    # More messages, calls, tickets and templates cost no more queries.
    for i in range(10):
        receive(telegram, f"сообщение {i}", sender="700")
        actions.do_add_note(outage, alice, f"заметка {i}")
        actions.do_log_call(outage.contact, actor=alice, duration_seconds=i, ticket=outage)
        CannedResponse.objects.create(shortcut=f"t{i}", title="t", body="b")
    for i in range(1, 6):
        receive(telegram, f"новая тема {i}", sender="700", thread_key=f"thread-{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        client.get(url)


# --------------------------------------------------------------------------- admin


def test_it_never_shows_channel_credentials_in_the_admin(
    admin_client: Client, telegram: Channel
) -> None:
    url = reverse("admin:channels_in_channel_change", args=[telegram.pk])
    html = admin_client.get(url).content.decode()
    assert "bot_token" in html and "secret_token" in html
    assert "123:ABC" not in html and "s3cret" not in html
    assert 'name="replace_credentials"' in html
    assert 'name="credentials"' not in html
    listing = admin_client.get(reverse("admin:channels_in_channel_changelist")).content.decode()
    assert "123:ABC" not in listing and "s3cret" not in listing


def _channel_post(channel: Channel, replace: str) -> dict[str, str]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "key": channel.key,
        "default_team": str(channel.default_team_id or ""),
        "is_active": "on",
        "settings": json.dumps(channel.settings),
        "replace_credentials": replace,
    }


def test_it_keeps_credentials_when_the_replacement_is_empty(
    admin_client: Client, telegram: Channel
) -> None:
    url = reverse("admin:channels_in_channel_change", args=[telegram.pk])
    response = admin_client.post(url, {**_channel_post(telegram, ""), "name": "Main bot"})
    assert response.status_code == 302
    telegram.refresh_from_db()
    assert telegram.name == "Main bot"
    assert telegram.credentials == {"bot_token": "123:ABC", "secret_token": "s3cret"}


def test_it_replaces_credentials_with_a_json_object(
    admin_client: Client, telegram: Channel
) -> None:
    url = reverse("admin:channels_in_channel_change", args=[telegram.pk])
    new = {"bot_token": "999:XYZ", "secret_token": "n3w"}
    response = admin_client.post(url, _channel_post(telegram, json.dumps(new)))
    assert response.status_code == 302
    telegram.refresh_from_db()
    assert telegram.credentials == new


@pytest.mark.parametrize(
    ("replace", "error"),
    [
        ('{"bot_token": "leaked-secret",', "not valid JSON"),
        ('["leaked-secret"]', "must be a JSON object"),
        ('"leaked-secret"', "must be a JSON object"),
    ],
)
def test_it_rejects_credentials_that_are_not_a_json_object(
    admin_client: Client, telegram: Channel, replace: str, error: str
) -> None:
    url = reverse("admin:channels_in_channel_change", args=[telegram.pk])
    response = admin_client.post(url, _channel_post(telegram, replace))
    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert "leaked-secret" not in html  # what was typed is not echoed back
    telegram.refresh_from_db()
    assert telegram.credentials == {"bot_token": "123:ABC", "secret_token": "s3cret"}


@pytest.mark.parametrize(
    "model",
    [
        "tickets.team",
        "tickets.skill",
        "tickets.agent",
        "tickets.tag",
        "tickets.contact",
        "tickets.identity",
        "tickets.accountnumber",
        "tickets.ticket",
        "tickets.message",
        "tickets.attachment",
        "tickets.cannedresponse",
        "tickets.call",
        "tickets.ticketevent",
        "tickets.delivery",
        "tickets.contactmerge",
        "channels_in.channel",
    ],
)
def test_it_lists_every_model_in_the_admin(
    admin_client: Client, alice: Agent, outage: Ticket, model: str
) -> None:
    actions.do_reply(outage, alice, "ok")
    app, name = model.split(".")
    response = admin_client.get(reverse(f"admin:{app}_{name}_changelist"))
    assert response.status_code == 200


def test_it_keeps_history_read_only_in_the_admin(admin_client: Client, outage: Ticket) -> None:
    event = TicketEvent.objects.filter(ticket=outage).first()
    assert admin_client.get(reverse("admin:tickets_ticketevent_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:tickets_ticketevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert TicketEvent.objects.filter(pk=event.pk).exists()
    assert admin_client.get(reverse("admin:tickets_ticket_add")).status_code == 403
    assert admin_client.get(reverse("admin:tickets_message_add")).status_code == 403


def test_it_resolves_tickets_from_the_admin_through_the_actions(
    admin_client: Client, outage: Ticket
) -> None:
    response = admin_client.post(
        reverse("admin:tickets_ticket_changelist"),
        {"action": "resolve_tickets", "_selected_action": [str(outage.pk)]},
    )
    assert response.status_code == 302
    outage.refresh_from_db()
    assert outage.status == Status.RESOLVED
    assert TicketEvent.objects.filter(ticket=outage, verb="ticket.status").exists()


# --------------------------------------------------------------------------- display helpers


def test_it_humanizes_waiting_times() -> None:
    assert humanize_seconds(20) == "<1 min"
    assert humanize_seconds(12 * 60 + 5) == "12 min"
    assert humanize_seconds(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert humanize_seconds(2 * 86400 + 4 * 3600) == "2 d 4 h"


def test_it_colors_the_sla_by_time_left() -> None:
    now = timezone.now()
    assert sla_state(now - timedelta(minutes=1), now) == "overdue"
    assert sla_state(now + timedelta(minutes=14), now) == "soon"
    assert sla_state(now + timedelta(minutes=16), now) == "ok"


def test_it_makes_initials_from_letters_only() -> None:
    assert initials("Rūta Kazlauskienė") == "RK"
    assert initials("<b>Mallory</b> <script>") == "BS"
    assert initials("王伟") == "王"
    assert initials("") == "?"


def test_it_offers_assign_to_me_only_when_the_agent_may_take_the_ticket(
    client: Client, alice: Agent, carol: Agent, outages: Team, outage: Ticket
) -> None:
    url = reverse("ticket", args=[outage.pk])
    take = 'name="assignee" value="me"'
    assert take in login(client, alice).get(url).content.decode()
    dave = make_agent("dave", teams=(outages,))
    actions.do_assign(outage, dave, actor=carol)
    assert take not in client.get(url).content.decode()
    client.logout()
    assert take in login(client, carol).get(url).content.decode()


def test_it_labels_the_sla_deadline() -> None:
    now = timezone.now()
    assert sla_label(now + timedelta(minutes=12, seconds=5), now) == "in 12 min"
    assert sla_label(now - timedelta(seconds=20), now) == "due now"
    assert sla_label(now - timedelta(minutes=46, seconds=5), now) == "\u221246 min"
