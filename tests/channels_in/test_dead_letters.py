"""Dead letters: replies that could not be delivered, listed for supervisors (page and API)
newest first, with a retry that sends them through the platform again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from channels_in.models import Channel
from tests.conftest import PASSWORD
from tests.e2e.conftest import browser, page, shoot  # noqa: F401  (Playwright fixtures)
from tests.fakeplatform import FakePlatform
from tickets import actions
from tickets.models import Agent, Delivery, TicketEvent

pytestmark = pytest.mark.django_db

XSS = '<img src=x onerror="alert(1)">'
BLOCKED = "Telegram sendMessage: HTTP 403: Forbidden: bot was blocked by the user"
SEND = r"/telegram/bot123:ABC/sendMessage$"


def dead_letter(
    channel: Channel,
    agent: Agent,
    receive: Any,
    *,
    text: str = "Бригада выехала, свет будет к 18:00",
    error: str = BLOCKED,
    customer: str = "Ольга Смирнова",
    sender: str = "402871551",
) -> Delivery:
    """A reply the platform refused: the way every dead letter comes to be."""
    ticket = receive(channel, "Нет света на Ленина 14", sender=sender, name=customer).ticket
    message = actions.do_reply(ticket, agent, text)
    actions.do_mark_delivery_failed(message.delivery.pk, error)
    return Delivery.objects.get(pk=message.delivery.pk)


def as_user(who: Any) -> Client:
    client = Client()
    if who is not None:
        client.force_login(who.user if isinstance(who, Agent) else who)
    return client


@pytest.fixture
def letter(telegram, alice, receive) -> Delivery:
    return dead_letter(telegram, alice, receive)


@pytest.fixture
def sends(fake_platform: FakePlatform) -> FakePlatform:
    """Telegram accepts every message now (the customer unblocked the bot)."""
    fake_platform.respond(
        "POST",
        SEND,
        body=lambda request: {"ok": True, "result": {"message_id": fake_platform.next_id()}},
    )
    return fake_platform


# --------------------------------------------------------------------------- the page


def test_it_lists_a_dead_letter_with_everything_a_supervisor_needs(letter, carol):
    response = as_user(carol).get("/ops/dead-letters/")
    assert response.status_code == 200
    html = response.content.decode()
    ticket = letter.message.ticket
    assert f'href="/tickets/{ticket.pk}/"' in html
    assert "Telegram bot" in html  # the channel
    assert "Ольга Смирнова" in html  # the customer
    assert "Бригада выехала, свет будет к 18:00" in html
    assert "bot was blocked by the user" in html
    assert f'action="/ops/dead-letters/{letter.pk}/retry/"' in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.parametrize(
    ("who", "status"),
    [("carol", 200), ("ada", 200), ("alice", 403), ("bob", 403), ("mallory", 403)],
)
def test_it_shows_the_page_to_supervisors_and_admins_only(letter, request, who, status):
    response = as_user(request.getfixturevalue(who)).get("/ops/dead-letters/")
    assert response.status_code == status
    if status == 403:
        assert "Bot was blocked" not in response.content.decode()


def test_it_sends_an_anonymous_visitor_to_sign_in(letter):
    response = as_user(None).get("/ops/dead-letters/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/ops/dead-letters/"


def test_it_escapes_customer_text_and_platform_errors(telegram, alice, carol, receive):
    dead_letter(
        telegram, alice, receive, text=f"Ответ {XSS}", error=f"Bad Request: {XSS}", customer=XSS
    )
    html = as_user(carol).get("/ops/dead-letters/").content.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_it_lists_only_failed_deliveries_newest_first(telegram, alice, carol, receive):
    older = dead_letter(telegram, alice, receive, text="older one", sender="1")
    newer = dead_letter(telegram, alice, receive, text="newer one", sender="2")
    Delivery.objects.filter(pk=older.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    ticket = receive(telegram, "ещё вопрос", sender="3").ticket
    actions.do_reply(ticket, alice, "still queued")  # not a dead letter
    html = as_user(carol).get("/ops/dead-letters/").content.decode()
    assert html.index("newer one") < html.index("older one")
    assert "still queued" not in html
    assert f"delivery-{newer.pk}" in html


def test_it_pages_through_many_dead_letters_by_keyset(telegram, alice, carol, receive):
    letters = [
        dead_letter(telegram, alice, receive, text=f"reply {n}", sender=str(100 + n))
        for n in range(5)
    ]
    # Three share one timestamp: the id breaks the tie, so none is skipped or repeated.
    same = timezone.now() - timedelta(minutes=1)
    Delivery.objects.filter(pk__in=[d.pk for d in letters[1:4]]).update(updated_at=same)
    client = as_user(carol)
    pages: list[list[int]] = []
    links: list[dict[str, str]] = []
    url = "/ops/dead-letters/?page_size=2"
    while url:
        html = client.get(url).content.decode()
        pages.append([int(pk) for pk in re.findall(r'id="delivery-(\d+)"', html)])
        found = {
            rel: "/ops/dead-letters/" + href.replace("&amp;", "&")
            for href, rel in re.findall(r'href="(\?[^"]*)" rel="(next|prev)"', html)
        }
        links.append(found)
        url = found.get("next", "")
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [pk for p in pages for pk in p]
    by_time = sorted(letters, key=lambda d: (Delivery.objects.get(pk=d.pk).updated_at, d.pk))
    assert seen == [d.pk for d in reversed(by_time)]  # newest first, every one exactly once
    # And back: the previous page of the last page is the middle one.
    back = client.get(links[2]["prev"]).content.decode()
    assert [int(pk) for pk in re.findall(r'id="delivery-(\d+)"', back)] == pages[1]


def test_it_says_so_when_a_cursor_is_broken(letter, carol):
    client = as_user(carol)
    response = client.get("/ops/dead-letters/?cursor=not-a-cursor")
    assert response.status_code == 200
    assert f"delivery-{letter.pk}" in response.content.decode()
    [note] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "the cursor is not valid" in note


def test_it_retries_a_dead_letter_through_the_platform(
    letter, carol, sends, django_capture_on_commit_callbacks
):
    client = as_user(carol)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/ops/dead-letters/{letter.pk}/retry/", {"next": "/ops/dead-letters/?page_size=2"}
        )
    assert response.status_code == 302
    assert response["Location"] == "/ops/dead-letters/?page_size=2"
    letter.refresh_from_db()
    assert letter.state == "sent"
    [request] = sends.sent(SEND)
    assert request.json == {"chat_id": "402871551", "text": "Бригада выехала, свет будет к 18:00"}
    assert TicketEvent.objects.filter(verb="message.retried", actor=carol).exists()
    assert f"delivery-{letter.pk}" not in client.get("/ops/dead-letters/").content.decode()


def test_it_never_redirects_a_retry_off_the_ops_pages(letter, carol, sends):
    response = as_user(carol).post(
        f"/ops/dead-letters/{letter.pk}/retry/", {"next": "https://evil.example/phish"}
    )
    assert response["Location"] == "/ops/dead-letters/"


@pytest.mark.parametrize("who", ["alice", "bob", "mallory"])
def test_it_lets_no_one_else_retry(letter, request, who, sends, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(request.getfixturevalue(who)).post(
            f"/ops/dead-letters/{letter.pk}/retry/"
        )
    assert response.status_code == 403
    letter.refresh_from_db()
    assert letter.state == "failed"
    assert sends.sent(SEND) == []


def test_it_sends_an_anonymous_retry_to_sign_in_and_does_nothing(letter, sends):
    response = as_user(None).post(f"/ops/dead-letters/{letter.pk}/retry/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/ops/dead-letters/"
    letter.refresh_from_db()
    assert letter.state == "failed"


def test_it_requires_the_csrf_token_to_retry(letter, carol):
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol.user)
    assert client.post(f"/ops/dead-letters/{letter.pk}/retry/").status_code == 403
    letter.refresh_from_db()
    assert letter.state == "failed"


def test_it_reports_a_retry_of_something_not_failed(letter, carol, sends):
    client = as_user(carol)
    client.post(f"/ops/dead-letters/{letter.pk}/retry/")  # now queued again
    response = client.post(f"/ops/dead-letters/{letter.pk}/retry/", follow=True)
    assert f"delivery {letter.pk} is queued, not failed" in response.content.decode()
    response = client.post("/ops/dead-letters/999999/retry/", follow=True)
    assert "delivery 999999 does not exist" in response.content.decode()


# --------------------------------------------------------------------------- the API


def test_it_lists_dead_letters_in_the_api(letter, carol, api):
    response = api(carol).get("/api/v1/deliveries/?state=failed")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["id"] == letter.pk
    assert row["state"] == "failed"
    assert row["ticket"] == letter.message.ticket_id
    assert row["channel"] == {"id": letter.channel_id, "kind": "telegram", "name": "Telegram bot"}
    assert row["customer"]["name"] == "Ольга Смирнова"
    assert row["message"]["text"] == "Бригада выехала, свет будет к 18:00"
    assert row["message"]["author"]["name"] == "Alice"
    assert row["last_error"] == BLOCKED
    assert row["attempts"] == 1
    assert response.json()["next"] is None
    # failed is the default
    assert api(carol).get("/api/v1/deliveries/").json()["results"][0]["id"] == letter.pk


@pytest.mark.parametrize(
    ("who", "status"),
    [("carol", 200), ("ada", 200), ("alice", 403), ("bob", 403), ("mallory", 403), (None, 401)],
)
def test_it_shows_the_api_list_to_supervisors_and_admins_only(letter, api, request, who, status):
    user = request.getfixturevalue(who) if who else None
    response = api(user).get("/api/v1/deliveries/?state=failed")
    assert response.status_code == status
    if status != 200:
        assert "error" in response.json()


def test_it_rejects_an_unknown_state_or_cursor_in_the_api(letter, carol, api):
    response = api(carol).get("/api/v1/deliveries/?state=sent")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "state": [
            "state must be one of failed, queued, sending, not 'sent' "
            "(sent messages are on their tickets)"
        ]
    }
    assert api(carol).get("/api/v1/deliveries/?cursor=zzz").status_code == 400
    assert api(carol).get("/api/v1/deliveries/?page_size=0").status_code == 400
    assert api(carol).get("/api/v1/deliveries/?channel=x").status_code == 400


def test_it_pages_the_api_list(telegram, alice, carol, receive, api):
    letters = [
        dead_letter(telegram, alice, receive, text=f"reply {n}", sender=str(200 + n))
        for n in range(3)
    ]
    client = api(carol)
    first = client.get("/api/v1/deliveries/?page_size=2").json()
    second = client.get(first["next"]).json()
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert ids == [d.pk for d in reversed(letters)]
    assert second["next"] is None
    assert client.get(second["previous"]).json()["results"] == first["results"]


def test_it_retries_in_the_api_back_to_queued_then_sent(
    letter, carol, api, sends, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(carol).post(f"/api/v1/deliveries/{letter.pk}/retry/")
        # What the request saw, before its commit hands the delivery to the sender.
        assert response.status_code == 200
        assert response.json()["state"] == "queued"
        assert response.json()["attempts"] == 0
        assert response.json()["last_error"] == BLOCKED  # kept until it is sent
    letter.refresh_from_db()
    assert letter.state == "sent"
    assert letter.message.delivery_status == "sent"
    assert len(sends.sent(SEND)) == 1
    again = api(carol).post(f"/api/v1/deliveries/{letter.pk}/retry/")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"delivery {letter.pk} is sent, not failed"


@pytest.mark.parametrize(
    ("who", "status"), [("alice", 403), ("bob", 403), ("mallory", 403), (None, 401)]
)
def test_it_lets_only_supervisors_retry_in_the_api(letter, api, request, who, status, sends):
    user = request.getfixturevalue(who) if who else None
    assert api(user).post(f"/api/v1/deliveries/{letter.pk}/retry/").status_code == status
    letter.refresh_from_db()
    assert letter.state == "failed"


def test_it_answers_404_for_a_delivery_that_does_not_exist(carol, api):
    assert api(carol).post("/api/v1/deliveries/999999/retry/").status_code == 404
    assert api(carol).get("/api/v1/deliveries/999999/").status_code == 404
    assert api(carol).get("/api/v1/deliveries/abc/").status_code == 404


def test_it_shows_one_delivery(letter, ada, api):
    response = api(ada).get(f"/api/v1/deliveries/{letter.pk}/")
    assert response.status_code == 200
    assert response.json()["last_error"] == BLOCKED


# --------------------------------------------------------------------------- in a browser


@pytest.fixture
def live_dead_letters(telegram, alice, carol, receive, sends) -> Iterator[Delivery]:
    """Real failures: with a live server every commit dispatches at once, so the platform
    refuses the first sends (and accepts the retry later). The newest rule answers first."""
    sends.respond(
        "POST",
        SEND,
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
        times=1,
    )
    sends.respond(
        "POST",
        SEND,
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
        times=1,
    )
    sends.respond(
        "POST",
        r"/whatsapp/\d+/messages$",
        400,
        {"error": {"message": "Re-engagement message", "code": 131047}},
    )
    blocked = dead_letter(
        telegram, alice, receive, text="Свет дадут к 18:00, бригада на месте", sender="1"
    )
    dead_letter(
        telegram,
        alice,
        receive,
        text=f"Ваш счёт пересчитан {XSS}",
        customer=f"Павел {XSS}",
        sender="2",
    )
    whatsapp = Channel.objects.create(
        kind="whatsapp",
        key="wa",
        name="WhatsApp",
        default_team=alice.teams.first(),
        credentials={"access_token": "t", "phone_number_id": "106540352242922"},
    )
    dead_letter(
        whatsapp,
        alice,
        receive,
        text="Olá! A leitura foi registada.",
        customer="João Silva",
        sender="351912345678",
    )
    assert Delivery.objects.filter(state="failed").count() == 3
    yield blocked


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_shows_the_dead_letters_page_in_a_browser(
    live_server,
    live_dead_letters,
    page,  # noqa: F811
    shoot,  # noqa: F811
):
    page.goto(f"{live_server.url}/login/?next=/ops/dead-letters/")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("table[aria-label='Dead letters'] tbody tr")
    assert page.locator("tbody tr").count() == 3
    assert page.locator("tbody img").count() == 0  # the customer's markup stayed text
    assert XSS in page.inner_text("tbody")
    shoot(page, "ops-dead-letters")
    page.click(f"#delivery-{live_dead_letters.pk} button")
    page.wait_for_selector(".toast-success")
    assert page.locator("tbody tr").count() == 2  # sent: no longer a dead letter
    shoot(page, "ops-dead-letters-retried")
