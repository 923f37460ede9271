"""The queue over the API: visibility, every filter, cursor pagination, the query bound."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tickets import actions
from tickets.models import AccountNumber, Priority, Status, Ticket
from tickets.queue import QUEUE_ORDERING

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Every test creates its personas; the production password hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/tickets/"


@pytest.fixture
def as_(request: pytest.FixtureRequest, api: Any) -> Any:
    """as_("alice") -> an API client signed in as that persona; "anonymous" -> no one."""

    def _client(name: str) -> APIClient:
        return api(None if name == "anonymous" else request.getfixturevalue(name))

    return _client


def token_client(agent: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=agent.user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def queue(telegram, sms, receive) -> dict[str, Ticket]:
    """Two Outages tickets (telegram) and one Billing ticket (sms)."""
    return {
        "outage": receive(telegram, "Нет света на улице Ленина 5", sender="501").ticket,
        "wire": receive(telegram, "оборван провод, искрит", sender="502").ticket,
        "bill": receive(sms, "My bill is wrong", sender="+37060000001", name="Ana").ticket,
    }


def test_it_lists_the_queue_with_plain_fields(as_, queue, alice):
    actions.do_update_tags(queue["outage"], actor=alice, add=["storm"])
    actions.do_assign(queue["outage"], alice, actor=alice)

    response = as_("carol").get(URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    row = next(r for r in body["results"] if r["id"] == queue["outage"].pk)
    assert set(row) == {
        "id",
        "subject",
        "status",
        "priority",
        "priority_score",
        "priority_reasons",
        "topic",
        "language",
        "channel",
        "contact",
        "team",
        "assignee",
        "tags",
        "sla_due_at",
        "waiting_since",
        "first_response_at",
        "created_at",
        "updated_at",
        "last_message_at",
        "preview",
        "message_count",
        "version",
    }
    assert row["channel"] == {
        "id": queue["outage"].channel_id,
        "kind": "telegram",
        "name": "Telegram bot",
    }
    assert row["contact"] == {"id": queue["outage"].contact_id, "name": "Ivan Petrov"}
    assert row["team"]["name"] == "Outages"
    assert row["assignee"] == {"id": alice.pk, "name": "Alice"}
    assert row["tags"] == ["storm"]
    assert row["language"] == "ru"
    assert row["priority"] in {"urgent", "high", "normal", "low"}
    assert row["first_response_at"] is None
    bill = next(r for r in body["results"] if r["id"] == queue["bill"].pk)
    assert bill["assignee"] is None and bill["tags"] == []


def test_it_orders_the_list_by_the_queue_order(as_, queue):
    expected = list(Ticket.objects.order_by(*QUEUE_ORDERING).values_list("id", flat=True))
    assert ids(as_("carol").get(URL)) == expected
    # The wire down is the most urgent of all.
    assert expected[0] == queue["wire"].pk


@pytest.mark.parametrize(
    "persona,visible,status",
    [
        ("alice", {"outage", "wire"}, 200),
        ("bob", {"bill"}, 200),
        ("carol", {"outage", "wire", "bill"}, 200),
        ("ada", {"outage", "wire", "bill"}, 200),
        ("mallory", set(), 403),
        ("anonymous", set(), 401),
    ],
)
def test_it_lists_only_the_tickets_each_role_may_see(as_, queue, persona, visible, status):
    response = as_(persona).get(URL)
    assert response.status_code == status
    if status == 200:
        assert set(ids(response)) == {queue[name].pk for name in visible}
    else:
        assert "error" in response.json()


def test_it_lists_a_ticket_of_another_team_to_the_agent_it_is_assigned_to(as_, queue, bob, carol):
    actions.do_transfer(queue["outage"], actor=carol, agent=bob)  # moves to Billing, to bob
    ticket = queue["wire"]
    Ticket.objects.filter(pk=ticket.pk).update(assignee=bob)  # an Outages ticket held by bob
    assert ticket.pk in ids(as_("bob").get(URL))
    assert ticket.pk in ids(as_("alice").get(URL))


@pytest.mark.parametrize(
    "persona,ticket,status",
    [
        ("alice", "outage", 200),
        ("alice", "bill", 404),
        ("bob", "bill", 200),
        ("bob", "outage", 404),
        ("carol", "bill", 200),
        ("ada", "outage", 200),
        ("mallory", "outage", 403),
        ("anonymous", "outage", 401),
    ],
)
def test_it_shows_a_ticket_only_to_those_who_may_see_it(as_, queue, persona, ticket, status):
    response = as_(persona).get(f"{URL}{queue[ticket].pk}/")
    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert body["id"] == queue[ticket].pk
        assert "first_response_due" in body and "priority_locked" in body


def test_it_answers_a_hidden_ticket_exactly_like_a_missing_one(as_, queue):
    hidden = as_("alice").get(f"{URL}{queue['bill'].pk}/")
    missing_id = Ticket.objects.order_by("-id").first().pk + 1000
    missing = as_("alice").get(f"{URL}{missing_id}/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == f"ticket {queue['bill'].pk} does not exist"
    assert missing.json()["error"]["message"] == f"ticket {missing_id} does not exist"


def test_it_shows_resolved_tickets_in_detail_though_the_list_hides_them_by_default(
    as_, queue, carol
):
    actions.do_set_status(queue["bill"], "resolved", actor=carol)
    assert queue["bill"].pk not in ids(as_("carol").get(URL))
    assert as_("carol").get(f"{URL}{queue['bill'].pk}/").status_code == 200


# --------------------------------------------------------------------------- filters


def test_it_filters_by_status(as_, queue, carol):
    actions.do_set_status(queue["bill"], "pending", actor=carol)
    actions.do_set_status(queue["wire"], "resolved", actor=carol)
    client = as_("carol")
    assert set(ids(client.get(URL, {"status": "pending"}))) == {queue["bill"].pk}
    assert set(ids(client.get(URL, {"status": "new,resolved"}))) == {
        queue["outage"].pk,
        queue["wire"].pk,
    }
    assert set(ids(client.get(URL))) == {queue["outage"].pk, queue["bill"].pk}
    assert len(ids(client.get(URL, {"status": "all"}))) == 3


def test_it_filters_by_priority_name(as_, queue, carol):
    actions.do_set_priority(queue["outage"], "low", actor=carol)
    actions.do_set_priority(queue["bill"], "high", actor=carol)
    actions.do_set_priority(queue["wire"], "urgent", actor=carol)
    client = as_("carol")
    assert ids(client.get(URL, {"priority": "low"})) == [queue["outage"].pk]
    assert ids(client.get(URL, {"priority": "urgent,high"})) == [
        queue["wire"].pk,
        queue["bill"].pk,
    ]


def test_it_filters_by_channel_kind_key_or_id(as_, queue, telegram, sms):
    client = as_("carol")
    telegram_ids = {queue["outage"].pk, queue["wire"].pk}
    assert set(ids(client.get(URL, {"channel": "telegram"}))) == telegram_ids
    assert set(ids(client.get(URL, {"channel": "tg-main"}))) == telegram_ids
    assert set(ids(client.get(URL, {"channel": str(sms.pk)}))) == {queue["bill"].pk}
    assert ids(client.get(URL, {"channel": "viber"})) == []


def test_it_filters_by_team_id_slug_or_none(as_, queue, outages, billing, carol):
    Ticket.objects.filter(pk=queue["wire"].pk).update(team=None)
    client = as_("carol")
    assert ids(client.get(URL, {"team": str(outages.pk)})) == [queue["outage"].pk]
    assert ids(client.get(URL, {"team": "billing"})) == [queue["bill"].pk]
    assert ids(client.get(URL, {"team": "none"})) == [queue["wire"].pk]


def test_it_filters_by_assignee_me_none_or_id(as_, queue, alice, bob):
    actions.do_assign(queue["outage"], alice, actor=alice)
    actions.do_assign(queue["bill"], bob, actor=bob)
    assert ids(as_("alice").get(URL, {"assignee": "me"})) == [queue["outage"].pk]
    assert ids(as_("bob").get(URL, {"assignee": "me"})) == [queue["bill"].pk]
    assert ids(as_("carol").get(URL, {"assignee": "none"})) == [queue["wire"].pk]
    assert ids(as_("carol").get(URL, {"assignee": f"{alice.pk},{bob.pk}"})) == sorted(
        [queue["outage"].pk, queue["bill"].pk],
        key=[t.pk for t in Ticket.objects.order_by(*QUEUE_ORDERING)].index,
    )


def test_it_filters_by_tag(as_, queue, carol):
    actions.do_update_tags(queue["outage"], actor=carol, add=["storm", "vip"])
    actions.do_update_tags(queue["bill"], actor=carol, add=["vip"])
    client = as_("carol")
    assert ids(client.get(URL, {"tag": "storm"})) == [queue["outage"].pk]
    assert set(ids(client.get(URL, {"tag": "VIP"}))) == {queue["outage"].pk, queue["bill"].pk}
    assert ids(client.get(URL, {"tag": "no-such-tag"})) == []


def test_it_filters_by_language(as_, queue, telegram, receive):
    chinese = receive(telegram, "停电了，电线掉下来了", sender="503").ticket
    client = as_("carol")
    assert ids(client.get(URL, {"language": "zh"})) == [chinese.pk]
    assert set(ids(client.get(URL, {"language": "ru"}))) == {
        queue["outage"].pk,
        queue["wire"].pk,
    }


def test_it_filters_by_topic(as_, queue):
    client = as_("carol")
    outage_ids = set(ids(client.get(URL, {"topic": "outage"})))
    assert queue["outage"].pk in outage_ids
    assert queue["bill"].pk not in outage_ids
    assert ids(client.get(URL, {"topic": "tariff"})) == []


def test_it_filters_by_contact(as_, queue):
    response = as_("carol").get(URL, {"contact": str(queue["bill"].contact_id)})
    assert ids(response) == [queue["bill"].pk]


def test_it_filters_by_creation_time(as_, queue):
    Ticket.objects.filter(pk=queue["outage"].pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    client = as_("carol")
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(client.get(URL, {"created_before": cutoff})) == [queue["outage"].pk]
    assert set(ids(client.get(URL, {"created_after": cutoff}))) == {
        queue["wire"].pk,
        queue["bill"].pk,
    }
    # A date alone is midnight in the helpdesk's time zone.
    assert len(ids(client.get(URL, {"created_after": "2000-01-01"}))) == 3


@pytest.mark.parametrize(
    "q,expected",
    [
        ("ленина", {"outage"}),  # Cyrillic, case-insensitive
        ("ИСКРИТ", {"wire"}),
        ("bill is", {"bill"}),
        ("Ana", {"bill"}),  # the customer's name
        ("+37060000001", {"bill"}),  # an identity value
        ("nothing like this", set()),
    ],
)
def test_it_searches_subject_preview_customer_and_identities(as_, queue, q, expected):
    assert set(ids(as_("carol").get(URL, {"q": q}))) == {queue[name].pk for name in expected}


def test_it_searches_chinese_text(as_, queue, telegram, receive):
    chinese = receive(telegram, "停电了，电线掉下来了", sender="503").ticket
    assert ids(as_("carol").get(URL, {"q": "电线"})) == [chinese.pk]
    assert ids(as_("carol").get(URL, {"q": "电线掉下"})) == [chinese.pk]


def test_it_searches_by_ticket_number_and_account_number(as_, queue):
    AccountNumber.objects.create(contact=queue["bill"].contact, number="LT-000123")
    client = as_("carol")
    assert ids(client.get(URL, {"q": f"#{queue['wire'].pk}"})) == [queue["wire"].pk]
    assert ids(client.get(URL, {"q": "LT-000123"})) == [queue["bill"].pk]


def test_it_searches_only_within_what_the_agent_may_see(as_, queue):
    assert ids(as_("alice").get(URL, {"q": "bill"})) == []
    assert ids(as_("bob").get(URL, {"q": "bill"})) == [queue["bill"].pk]


@pytest.mark.parametrize(
    "params,field,message",
    [
        ({"status": "bogus"}, "status", "unknown value 'bogus'"),
        ({"priority": "extreme"}, "priority", "unknown value 'extreme'"),
        ({"topic": "weather"}, "topic", "unknown value 'weather'"),
        ({"language": "xx"}, "language", "unknown language 'xx'"),
        ({"assignee": "somebody"}, "assignee", "assignee must be an agent id"),
        ({"assignee": "²"}, "assignee", "assignee must be an agent id"),
        ({"contact": "abc"}, "contact", "Enter a number"),
        ({"contact": "1.5"}, "contact", "no more than 0 decimal places"),
        ({"contact": "1e400"}, "contact", "less than or equal to 9223372036854775807"),
        ({"contact": "99999999999999999999999"}, "contact", "less than or equal to"),
        ({"created_after": "yesterday"}, "created_after", "Enter a valid date/time"),
        ({"created_before": "2024-13-45T99:00"}, "created_before", "Enter a valid date/time"),
        ({"q": "x" * 201}, "q", "at most 200 characters"),
        ({"q": "a\x00b"}, "q", "Null characters are not allowed"),
        ({"page_size": "1000"}, "page_size", "between 1 and 100"),
        ({"page_size": "0"}, "page_size", "between 1 and 100"),
        ({"page_size": "ten"}, "page_size", "whole number"),
        ({"cursor": "garbage"}, "cursor", "the cursor is not valid"),
        ({"cursor": "W10"}, "cursor", "the cursor is not valid"),  # "[]"
        ({"cursor": "ё"}, "cursor", "the cursor is not valid"),
    ],
)
def test_it_rejects_bad_list_parameters_with_a_specific_400(as_, queue, params, field, message):
    response = as_("carol").get(URL, params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert message in error["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"team": "²"},
        {"team": "99999999999999999999999"},
        {"channel": "²,١"},
        {"channel": "99999999999999999999999"},
        {"q": "²"},
        {"q": "#99999999999999999999999"},
        {"created_after": "0001-01-01T00:00:00"},
        {"created_before": "9999-12-31T23:59:59+14:00"},
        {"tag": "x" * 500},
    ],
)
def test_it_answers_odd_but_valid_filter_values_without_an_error(as_, queue, params):
    response = as_("carol").get(URL, params)
    assert response.status_code in (200, 400), response.content
    assert response["Content-Type"] == "application/json"


# --------------------------------------------------------------------------- pagination


def _make_tickets(contact, channel, team, n: int) -> None:
    rng = random.Random(11)
    base = timezone.now().replace(microsecond=0)
    Ticket.objects.bulk_create(
        Ticket(
            contact=contact,
            channel=channel,
            team=team,
            subject=f"ticket {i}",
            status=Status.OPEN,
            priority=rng.choice(list(Priority.values)),
            # Few distinct deadlines and waits: ties everywhere, as in a storm.
            sla_due_at=base + timedelta(minutes=rng.randint(0, 3)),
            waiting_since=None
            if rng.random() < 0.3
            else base - timedelta(minutes=rng.randint(0, 3)),
        )
        for i in range(n)
    )


@pytest.mark.parametrize("size", [1, 7, 25])
def test_it_walks_the_queue_with_next_and_previous_links_without_gaps(as_, telegram, receive, size):
    first = receive(telegram, "x", sender="1").ticket
    _make_tickets(first.contact, telegram, telegram.default_team, 60)
    expected = list(Ticket.objects.order_by(*QUEUE_ORDERING).values_list("id", flat=True))
    client = as_("alice")

    pages = []
    url: str | None = f"http://testserver{URL}?page_size={size}&channel=telegram"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        pages.append(body)
        url = body["next"]
    assert [row["id"] for page in pages for row in page["results"]] == expected
    assert pages[0]["previous"] is None
    assert all(len(page["results"]) == size for page in pages[:-1])
    # Links are absolute and keep the filters and the page size.
    link = urlsplit(pages[0]["next"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"http://testserver{URL}"
    query = parse_qs(link.query)
    assert query["channel"] == ["telegram"] and query["page_size"] == [str(size)]

    back: list[int] = [row["id"] for row in pages[-1]["results"]]
    url = pages[-1]["previous"]
    while url:
        body = client.get(url).json()
        back = [row["id"] for row in body["results"]] + back
        url = body["previous"]
    assert back == expected


def test_it_pages_a_filtered_queue_and_ends_with_no_next_link(as_, telegram, receive):
    first = receive(telegram, "x", sender="1").ticket
    _make_tickets(first.contact, telegram, telegram.default_team, 30)
    response = as_("alice").get(URL, {"page_size": 100})
    assert len(ids(response)) == 31
    assert response.json()["next"] is None


def test_it_answers_an_empty_queue_with_no_links(as_, alice):
    response = as_("alice").get(URL)
    assert response.json() == {"results": [], "next": None, "previous": None}


# --------------------------------------------------------------------------- query bound


def test_it_lists_a_page_in_at_most_8_queries_with_token_auth(
    telegram, sms, receive, alice, django_assert_max_num_queries
):
    first = receive(telegram, "x", sender="1").ticket
    _make_tickets(first.contact, telegram, telegram.default_team, 60)
    for ticket in Ticket.objects.all()[:40]:
        actions.do_update_tags(ticket, actor=None, add=["storm", f"street-{ticket.pk % 5}"])
        actions.do_assign(ticket, alice, actor=None)
    client = token_client(alice)

    with django_assert_max_num_queries(8):
        response = client.get(URL, {"page_size": 100})
    assert len(response.json()["results"]) == 61

    # Every filter that needs a lookup, on every page: some pages span two priority levels,
    # which the keyset reads as two index ranges.
    params = {"channel": "tg-main", "team": "outages", "tag": "storm", "q": "ticket"}
    link: str | None = f"{URL}?page_size=3&" + "&".join(f"{k}={v}" for k, v in params.items())
    seen = 0
    while link:
        with django_assert_max_num_queries(8):
            response = client.get(link)
        assert response.status_code == 200
        seen += len(response.json()["results"])
        link = response.json()["next"]
    assert seen == Ticket.objects.filter(tags__name="storm", subject__startswith="ticket").count()


def test_it_lists_for_a_supervisor_in_at_most_8_queries(
    telegram, receive, carol, django_assert_max_num_queries
):
    first = receive(telegram, "x", sender="1").ticket
    _make_tickets(first.contact, telegram, telegram.default_team, 30)
    client = token_client(carol)
    with django_assert_max_num_queries(8):
        assert client.get(URL).status_code == 200


def test_it_never_counts_or_offsets_the_queue(telegram, receive, alice):
    first = receive(telegram, "x", sender="1").ticket
    _make_tickets(first.contact, telegram, telegram.default_team, 10)
    client = token_client(alice)
    with CaptureQueriesContext(connection) as captured:
        cursor = client.get(URL, {"page_size": 3}).json()["next"]
        client.get(cursor)
    statements = [q["sql"].upper() for q in captured.captured_queries]
    assert not any("COUNT(" in sql or "OFFSET" in sql for sql in statements)
