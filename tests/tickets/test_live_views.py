"""The endpoints behind the live pages: queue rows and counts, a ticket's new or changed
messages, who is online, setting one's status. Rendered by the pages' own fragments, escaped,
and only what the agent may see."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import make_agent
from tickets import actions, views
from tickets.models import Agent, CannedResponse, PresenceLog, Ticket
from tickets.views import TimelineItem

XSS = '<img src=x onerror=alert(1)> and <script>alert("x")</script>'


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def as_(alice: Agent, bob: Agent, carol: Agent, mallory: Any) -> Any:
    people = {"alice": alice.user, "bob": bob.user, "carol": carol.user, "mallory": mallory}

    def _client(who: str | None) -> Client:
        client = Client()
        if who is not None:
            client.force_login(people[who])
        return client

    return _client


@pytest.fixture
def outage(telegram: Any, receive: Any) -> Ticket:
    return receive(telegram, "Нет света на Лесной", sender="501", name="Ivan").ticket


def rows_url(*ids: int, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{reverse('live-queue-rows')}?ids={','.join(map(str, ids))}" + (
        f"&{params}" if params else ""
    )


# --------------------------------------------------------------------------- queue rows


@pytest.mark.parametrize(("who", "visible"), [("alice", True), ("bob", False), ("carol", True)])
def test_it_renders_a_queue_row_only_for_agents_who_may_see_the_ticket(
    who: str, visible: bool, as_: Any, outage: Ticket
) -> None:
    response = as_(who).get(rows_url(outage.pk))
    assert response.status_code == 200
    [row] = response.json()["rows"]
    assert row["id"] == outage.pk
    if visible:
        assert row["version"] == outage.version
        assert f'id="t{outage.pk}"' in row["html"]
        assert f'data-version="{outage.version}"' in row["html"]
        assert "Нет света на Лесной" in row["html"]
    else:
        assert row == {"id": outage.pk, "version": None, "html": None}


@pytest.mark.parametrize(("who", "status"), [("mallory", 403), (None, 401)])
def test_it_refuses_queue_rows_to_non_agents_with_json(
    who: str | None, status: int, as_: Any, outage: Ticket
) -> None:
    response = as_(who).get(rows_url(outage.pk))
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message"}


def test_it_renders_the_row_exactly_as_the_queue_page_does(as_: Any, outage: Ticket) -> None:
    client = as_("alice")
    page = client.get(reverse("queue")).content.decode()
    row = client.get(rows_url(outage.pk)).json()["rows"][0]["html"].strip()
    assert row in page


def test_it_applies_the_pages_filters_to_live_rows(as_: Any, outage: Ticket) -> None:
    client = as_("alice")
    for query, shown in [
        ({}, True),
        ({"status": "resolved"}, False),
        ({"status": "all"}, True),
        ({"priority": "low"}, outage.priority_name == "low"),
        ({"assignee": "me"}, False),
        ({"assignee": "none"}, True),
        ({"q": "Лесной"}, True),
        ({"q": "nothing-like-it"}, False),
    ]:
        [row] = client.get(rows_url(outage.pk, **query)).json()["rows"]
        assert (row["html"] is not None) == shown, query


def test_it_sends_the_tab_counts_with_the_rows(
    as_: Any, outage: Ticket, telegram: Any, receive: Any
) -> None:
    receive(telegram, "Счётчик не работает", sender="502")
    counts = as_("alice").get(rows_url(outage.pk)).json()["counts"]
    assert counts["active"] == "2" and counts["new"] == "2" and counts["resolved"] == "0"
    assert as_("bob").get(rows_url(outage.pk)).json()["counts"]["active"] == "0"


def test_it_escapes_customer_text_in_a_live_row(as_: Any, telegram: Any, receive: Any) -> None:
    ticket = receive(telegram, XSS, sender="503", name="<b>Mal</b>").ticket
    html = as_("alice").get(rows_url(ticket.pk)).json()["rows"][0]["html"]
    assert "<img" not in html and "<script" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("", "ids needs at least one id"),
        ("1,x", "ids must be comma-separated numbers"),
        (",".join(str(n) for n in range(1, 102)), "at most 100 ids in ids"),
    ],
)
def test_it_answers_bad_row_ids_with_a_specific_400(as_: Any, ids: str, message: str) -> None:
    response = as_("alice").get(f"{reverse('live-queue-rows')}?ids={ids}")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": message,
        "fields": {"ids": [message]},
    }


# --------------------------------------------------------------------------- ticket messages


def test_it_sends_the_messages_after_the_last_one_the_page_shows(
    as_: Any, alice: Agent, outage: Ticket, telegram: Any, receive: Any
) -> None:
    first = outage.messages.get()
    receive(telegram, XSS, sender="501")
    note = actions.do_add_note(outage, alice, "Бригада выехала")
    url = reverse("live-messages", args=[outage.pk])
    data = as_("alice").get(f"{url}?after={first.pk}").json()
    assert [m["id"] for m in data["messages"]] == sorted(
        outage.messages.exclude(pk=first.pk).values_list("pk", flat=True)
    )
    assert (
        data["messages"][-1]["id"] == note.pk and "Бригада выехала" in data["messages"][-1]["html"]
    )
    customer = data["messages"][0]["html"]
    assert "<img" not in customer and "<script" not in customer
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in customer
    assert data["ticket"]["version"] == Ticket.objects.get(pk=outage.pk).version
    assert data["more"] is False
    assert as_("alice").get(f"{url}?after={note.pk}").json()["messages"] == []


def test_it_renders_a_message_again_with_its_new_delivery_state(
    as_: Any, alice: Agent, outage: Ticket, settings: Any
) -> None:
    settings.HELPDESK_DELIVERY_DISPATCHER = "tests.tickets.test_live_views.no_dispatch"
    reply = actions.do_reply(outage, alice, "Уже едем")
    actions.do_mark_delivery_sent(reply.delivery.pk, "tg-1")
    url = reverse("live-messages", args=[outage.pk])
    [message] = as_("alice").get(f"{url}?ids={reply.pk}").json()["messages"]
    assert message["delivery_status"] == "sent"
    assert 'class="ticks ticks-sent"' in message["html"]


def no_dispatch(delivery_id: int) -> None:
    """Replies stay queued: these tests mark them sent themselves."""


@pytest.mark.parametrize(("who", "status"), [("bob", 404), ("mallory", 403), (None, 401)])
def test_it_refuses_messages_of_a_ticket_to_who_may_not_see_it(
    who: str | None, status: int, as_: Any, outage: Ticket
) -> None:
    response = as_(who).get(reverse("live-messages", args=[outage.pk]) + "?after=0")
    assert response.status_code == status
    if status == 404:
        # The same answer as for a ticket that does not exist.
        missing = as_(who).get(reverse("live-messages", args=[outage.pk + 999]))
        assert response.json()["error"]["message"] == f"ticket {outage.pk} does not exist"
        assert missing.json()["error"]["message"] == f"ticket {outage.pk + 999} does not exist"


def test_it_answers_a_bad_after_with_a_specific_400(as_: Any, outage: Ticket) -> None:
    response = as_("alice").get(reverse("live-messages", args=[outage.pk]) + "?after=-1")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "after must be a message id"


# --------------------------------------------------------------------------- who is online


def test_it_lists_teammates_for_agents_and_everyone_for_supervisors(
    as_: Any, alice: Agent, bob: Agent, carol: Agent, outages: Any
) -> None:
    dan = make_agent("dan", teams=(outages,))
    actions.do_set_presence(dan, "away")

    def names(who: str) -> dict[str, str]:
        data = as_(who).get(reverse("live-agents")).json()
        return {a["name"]: a["presence"] for a in data["agents"]}

    assert names("alice") == {"Alice": "online", "Dan": "away"}
    assert names("bob") == {"Bob": "online"}
    assert names("carol") == {"Alice": "online", "Bob": "online", "Carol": "online", "Dan": "away"}
    assert as_("mallory").get(reverse("live-agents")).status_code == 403
    assert as_(None).get(reverse("live-agents")).status_code == 401


# --------------------------------------------------------------------------- setting a status


def post_json(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def test_it_sets_the_agents_own_status(as_: Any, alice: Agent) -> None:
    response = post_json(as_("alice"), reverse("live-presence"), {"status": "away"})
    assert response.status_code == 200
    assert response.json() == {"agent": alice.pk, "status": "away", "changed": True}
    assert Agent.objects.get(pk=alice.pk).presence == "away"
    assert PresenceLog.objects.filter(agent=alice).last().reason == "manual"


def test_it_lets_a_supervisor_set_an_agents_status_but_not_an_agent(
    as_: Any, alice: Agent, bob: Agent
) -> None:
    refused = post_json(as_("alice"), reverse("live-presence"), {"status": "away", "agent": bob.pk})
    assert refused.status_code == 403
    assert Agent.objects.get(pk=bob.pk).presence == "online"
    done = post_json(as_("carol"), reverse("live-presence"), {"status": "away", "agent": bob.pk})
    assert done.status_code == 200
    assert PresenceLog.objects.filter(agent=bob).last().reason == "supervisor"


@pytest.mark.parametrize(("who", "status"), [("mallory", 403), (None, 401)])
def test_it_refuses_a_status_to_non_agents(who: str | None, status: int, as_: Any) -> None:
    response = post_json(as_(who), reverse("live-presence"), {"status": "away"})
    assert response.status_code == status


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"status": "busy"}, "status", "status must be one of online, away, offline"),
        ({}, "status", "status must be one of online, away, offline"),
        ({"status": "away", "agent": "x"}, "agent", "agent must be an agent id"),
    ],
)
def test_it_answers_a_bad_status_with_a_specific_400_and_changes_nothing(
    as_: Any, alice: Agent, body: dict[str, Any], field: str, message: str
) -> None:
    response = post_json(as_("alice"), reverse("live-presence"), body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": message,
        "fields": {field: [message]},
    }
    assert Agent.objects.get(pk=alice.pk).presence == "online"


def test_it_refuses_a_status_post_without_the_csrf_token(alice: Agent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    response = post_json(client, reverse("live-presence"), {"status": "away"})
    assert response.status_code == 403
    assert Agent.objects.get(pk=alice.pk).presence == "online"


# --------------------------------------------------------------------------- the pages


def test_it_gives_the_pages_what_the_live_client_needs(as_: Any, outage: Ticket) -> None:
    client = as_("alice")
    queue = client.get(reverse("queue")).content.decode()
    assert 'src="/static/js/live.js"' in queue
    assert 'id="queue-rows"' in queue and 'data-status="active"' in queue
    assert 'data-rows-url="/live/queue/rows/"' in queue
    ticket = client.get(reverse("ticket", args=[outage.pk])).content.decode()
    assert f'data-version="{Ticket.objects.get(pk=outage.pk).version}"' in ticket
    for part in ('id="ticket-meta"', 'id="status-buttons"', 'id="ticket-assignee"', 'id="viewers"'):
        assert part in ticket


def test_it_marks_the_agents_own_teams_templates_for_the_type_ahead(
    as_: Any, alice: Agent, outages: Any, outage: Ticket
) -> None:
    CannedResponse.objects.create(shortcut="crew", title="Crew", body="Crew is on the way")
    CannedResponse.objects.create(
        shortcut="crew-team", title="Crew (team)", body="Our crew: {{agent.name}}", team=outages
    )
    canned = views.canned_responses_for(alice, outage, {"agent.name": "Alice"})
    assert [(c["shortcut"], c["team"], c["body"]) for c in canned] == [
        ("crew", False, "Crew is on the way"),
        ("crew-team", True, "Our crew: Alice"),
    ]


def test_it_shows_other_kinds_of_history_on_the_timeline_through_the_hook(
    as_: Any, outage: Ticket, monkeypatch: Any
) -> None:
    def bot_sessions(me: Agent, contact: Any) -> list[TimelineItem]:
        return [
            TimelineItem(
                kind="bot",
                at=outage.created_at,
                title="Meter reading <b>menu</b>",
                text="handed to an agent",
            )
        ]

    monkeypatch.setattr(views, "TIMELINE_SOURCES", [bot_sessions])
    page = as_("alice").get(reverse("ticket", args=[outage.pk])).content.decode()
    assert 'class="tl tl-bot"' in page
    assert "Meter reading &lt;b&gt;menu&lt;/b&gt;" in page and "handed to an agent" in page
