"""Inbound events that failed, wait or are stuck: listed for supervisors and admins (page
and API) with their raw bodies, retried, and replayed without changing what was done."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from channels_in.models import Channel, InboundEvent
from tests.channels_in.conftest import fixture_bytes, fixture_json
from tests.conftest import PASSWORD
from tests.e2e.conftest import browser, page, shoot  # noqa: F401  (Playwright fixtures)
from tickets.models import Agent, Contact, Identity, Message, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

TG_SECRET = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
SCRIPT = "<script>alert(1)</script>"


def tg_body(update_id: int = 9001, text: str = "Нет света", chat: int = 402871551) -> bytes:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": {"id": chat, "is_bot": False, "first_name": "Ольга"},
                "chat": {"id": chat, "type": "private"},
                "date": 1763790060,
                "text": text,
            },
        },
        ensure_ascii=False,
    ).encode()


def stored_event(
    channel: Channel,
    body: bytes,
    *,
    status: str = "failed",
    error: str = "OperationalError: server closed the connection unexpectedly",
    attempts: int = 8,
    content_type: str = "application/json",
    platform_id: str = "",
    **fields: Any,
) -> InboundEvent:
    """An event as the webhook stored it and the worker left it."""
    return InboundEvent.objects.create(
        channel=channel,
        platform_id=platform_id or f"update:{InboundEvent.objects.count() + 1}",
        body=body,
        meta={"content_type": content_type, "query": ""},
        status=status,
        error=error,
        attempts=attempts,
        **fields,
    )


def as_user(who: Any) -> Client:
    client = Client()
    if who is not None:
        client.force_login(who.user if isinstance(who, Agent) else who)
    return client


def snapshot() -> dict[str, Any]:
    """Everything processing an event could change."""
    return {
        "tickets": list(Ticket.objects.order_by("id").values_list("id", "version", "status")),
        "messages": Message.objects.count(),
        "contacts": Contact.objects.count(),
        "identities": Identity.objects.count(),
        "events": TicketEvent.objects.count(),
    }


@pytest.fixture
def failed(telegram) -> InboundEvent:
    return stored_event(telegram, tg_body(text=f"Нет света {SCRIPT}"), platform_id="update:9001")


@pytest.fixture
def processed(telegram, hook) -> InboundEvent:
    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **TG_SECRET)
    event = InboundEvent.objects.get()
    assert event.status == "processed"
    return event


# --------------------------------------------------------------------------- the page


def test_it_lists_failed_events_with_their_error(failed, carol):
    html = as_user(carol).get("/ops/events/").content.decode()
    assert f'id="event-{failed.pk}"' in html
    assert "update:9001" in html
    assert "Telegram bot" in html
    assert "server closed the connection unexpectedly" in html
    assert f'action="/ops/events/{failed.pk}/replay/"' in html
    assert f'href="/ops/events/{failed.pk}/"' in html


@pytest.mark.parametrize(
    ("who", "status"),
    [("carol", 200), ("ada", 200), ("alice", 403), ("bob", 403), ("mallory", 403)],
)
def test_it_shows_events_to_supervisors_and_admins_only(failed, request, who, status):
    client = as_user(request.getfixturevalue(who))
    for url in ("/ops/events/", f"/ops/events/{failed.pk}/"):
        response = client.get(url)
        assert response.status_code == status
        if status == 403:
            assert "update:9001" not in response.content.decode()


def test_it_sends_an_anonymous_visitor_to_sign_in(failed):
    response = as_user(None).get(f"/ops/events/{failed.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/ops/events/{failed.pk}/"
    response = as_user(None).post(f"/ops/events/{failed.pk}/replay/")
    assert response["Location"] == "/login/?next=/ops/events/"
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_it_lists_newest_failures_first_and_pages_them(telegram, carol):
    now = timezone.now()
    events = [
        stored_event(telegram, tg_body(n), received_at=now - timedelta(minutes=n)) for n in range(5)
    ]
    client = as_user(carol)
    seen: list[int] = []
    url = "/ops/events/?status=failed&page_size=2"
    while url:
        html = client.get(url).content.decode()
        seen += [int(pk) for pk in re.findall(r'id="event-(\d+)"', html)]
        found = re.search(r'href="(\?[^"]*)" rel="next"', html)
        url = "/ops/events/" + found.group(1).replace("&amp;", "&") if found else ""
    assert seen == [e.pk for e in events]  # received 0, 1, 2 ... minutes ago


def test_it_shows_waiting_and_stuck_events_on_their_tabs(telegram, carol):
    now = timezone.now()
    deferred = stored_event(
        telegram,
        tg_body(1),
        status="pending",
        error="deferred: 1 receipt(s)/edit(s) for messages not seen yet",
        attempts=1,
        next_attempt_at=now + timedelta(seconds=15),
    )
    overdue = stored_event(
        telegram,
        tg_body(2),
        status="pending",
        error="",
        attempts=0,
        next_attempt_at=now - timedelta(minutes=30),
    )
    stuck = stored_event(
        telegram,
        tg_body(3),
        status="processing",
        error="",
        attempts=0,
        claimed_at=now - timedelta(minutes=20),
    )
    busy = stored_event(
        telegram, tg_body(4), status="processing", error="", attempts=0, claimed_at=now
    )
    client = as_user(carol)
    pending = client.get("/ops/events/?status=pending").content.decode()
    assert pending.index(f"event-{overdue.pk}") < pending.index(f"event-{deferred.pk}")
    assert "deferred: 1 receipt(s)/edit(s)" in pending
    assert ">overdue<" in pending
    processing = client.get("/ops/events/?status=processing").content.decode()
    assert ">stuck<" in processing
    assert f'action="/ops/events/{stuck.pk}/replay/"' in processing
    assert f'action="/ops/events/{busy.pk}/replay/"' not in processing  # a worker has it
    assert f"event-{busy.pk}" in processing


def test_it_retries_a_failed_event_into_a_ticket(failed, carol):
    response = as_user(carol).post(f"/ops/events/{failed.pk}/replay/", follow=True)
    failed.refresh_from_db()
    assert failed.status == "processed"
    assert failed.result == {"message": 1}
    assert failed.error == ""
    message = Message.objects.get()
    assert message.text == f"Нет света {SCRIPT}"
    assert f"Retried event {failed.pk}: processed (1 message)." in response.content.decode()


def test_it_says_when_a_retried_event_fails_again(telegram, hook, carol):
    response = hook("telegram", "tg-main", b'{"update_id": "nine"}', **TG_SECRET)
    assert response.status_code == 400
    event = InboundEvent.objects.get()
    assert event.status == "failed"
    page_html = as_user(carol).post(f"/ops/events/{event.pk}/replay/", follow=True)
    event.refresh_from_db()
    assert event.status == "failed"
    assert event.error == "malformed: an Update needs an integer update_id"
    assert "it failed again: malformed: an Update needs an integer update_id" in (
        page_html.content.decode()
    )


def test_it_replays_a_processed_event_without_changing_anything(processed, carol):
    before = snapshot()
    response = as_user(carol).post(f"/ops/events/{processed.pk}/replay/", follow=True)
    processed.refresh_from_db()
    assert processed.status == "processed"
    assert processed.result == {"duplicate": 1}
    assert snapshot() == before
    assert f"Replayed event {processed.pk}: processed (1 duplicate)." in (response.content.decode())


def test_it_takes_back_a_stuck_event_but_never_one_a_worker_holds(telegram, carol):
    now = timezone.now()
    stuck = stored_event(
        telegram,
        tg_body(5),
        status="processing",
        error="",
        attempts=0,
        claimed_at=now - timedelta(minutes=20),
    )
    busy = stored_event(
        telegram, tg_body(6), status="processing", error="", attempts=0, claimed_at=now
    )
    client = as_user(carol)
    client.post(f"/ops/events/{stuck.pk}/replay/")
    stuck.refresh_from_db()
    assert stuck.status == "processed"
    response = client.post(f"/ops/events/{busy.pk}/replay/", follow=True)
    busy.refresh_from_db()
    assert busy.status == "processing"
    assert "is being processed by a worker right now" in response.content.decode()


@pytest.mark.parametrize("who", ["alice", "bob", "mallory"])
def test_it_lets_no_one_else_replay(failed, request, who):
    response = as_user(request.getfixturevalue(who)).post(f"/ops/events/{failed.pk}/replay/")
    assert response.status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"
    assert not Message.objects.exists()


def test_it_requires_the_csrf_token_to_replay(failed, carol):
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol.user)
    assert client.post(f"/ops/events/{failed.pk}/replay/").status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"


# --------------------------------------------------------------------------- raw bodies


def test_it_shows_a_json_body_pretty_printed_and_escaped(failed, carol):
    html = as_user(carol).get(f"/ops/events/{failed.pk}/").content.decode()
    raw = re.search(r'<pre class="ops-raw">(.*?)</pre>', html, re.S).group(1)
    assert "\n  &quot;update_id&quot;: 9001,\n" in raw
    assert "Нет света &lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert SCRIPT not in html
    assert "JSON, pretty-printed" in html


def test_it_shows_an_email_as_its_raw_text(email_channel, carol):
    raw = fixture_bytes("email", "reply_zh.eml")
    event = stored_event(email_channel, raw, content_type="message/rfc822", error="x")
    html = as_user(carol).get(f"/ops/events/{event.pk}/").content.decode()
    assert "Message-ID: &lt;tencent_3A2B1C0D9E8F@qq.example&gt;" in html
    assert "raw email" in html


def test_it_shows_a_form_body_one_field_per_line(sms, carol):
    body = fixture_bytes("sms", "inbound_portuguese_mms.form")
    event = stored_event(sms, body, content_type="application/x-www-form-urlencoded")
    html = as_user(carol).get(f"/ops/events/{event.pk}/").content.decode()
    assert "\nBody = Fotos do contador — leitura de hoje.\n" in html
    assert "form fields" in html


def test_it_never_shows_a_secret_the_platform_put_in_the_body(outages, hook, carol, ada, api):
    secret = "vk-community-secret-7f3a"
    vk = Channel.objects.create(
        kind="vk",
        key="vk-main",
        name="VK",
        default_team=outages,
        credentials={
            "access_token": "vk1.a.token",
            "secret": secret,
            "confirmation_code": "c0nf",
            "group_id": "218765432",
        },
    )
    body = fixture_json("vk", "message_new_text.json")
    body["secret"] = secret
    hook("vk", vk.key, body)
    event = InboundEvent.objects.get(channel=vk)
    page_html = as_user(carol).get(f"/ops/events/{event.pk}/").content.decode()
    assert "&quot;type&quot;: &quot;message_new&quot;" in page_html
    assert secret not in page_html
    assert secret not in api(ada).get(f"/api/v1/events/{event.pk}/").content.decode()


def test_it_answers_404_for_an_event_that_does_not_exist(carol):
    assert as_user(carol).get("/ops/events/999999/").status_code == 404


# --------------------------------------------------------------------------- the API


def test_it_lists_failed_events_in_the_api(failed, carol, api):
    response = api(carol).get("/api/v1/events/?status=failed")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["id"] == failed.pk
    assert row["channel"]["kind"] == "telegram"
    assert row["platform_id"] == "update:9001"
    assert row["status"] == "failed"
    assert row["error"] == "OperationalError: server closed the connection unexpectedly"
    assert row["attempts"] == 8
    assert row["body_size"] == len(bytes(failed.body))
    assert "body" not in row
    assert api(carol).get("/api/v1/events/").json()["results"] == [row]  # failed by default


@pytest.mark.parametrize(
    ("who", "status"),
    [("carol", 200), ("ada", 200), ("alice", 403), ("bob", 403), ("mallory", 403), (None, 401)],
)
def test_it_gives_the_events_api_to_supervisors_and_admins_only(failed, api, request, who, status):
    user = request.getfixturevalue(who) if who else None
    client = api(user)
    assert client.get("/api/v1/events/?status=failed").status_code == status
    assert client.get(f"/api/v1/events/{failed.pk}/").status_code == status
    replay = client.post(f"/api/v1/events/{failed.pk}/replay/")
    assert replay.status_code == status
    failed.refresh_from_db()
    assert failed.status == ("processed" if status == 200 else "failed")


def test_it_returns_one_event_with_its_body_as_text(failed, ada, api):
    response = api(ada).get(f"/api/v1/events/{failed.pk}/")
    assert response.status_code == 200
    data = response.json()
    assert data["body"] == bytes(failed.body).decode()
    assert data["body_format"] == "json"
    assert data["body_truncated"] is False
    assert data["content_type"] == "application/json"


def test_it_retries_a_failed_event_in_the_api(failed, carol, api):
    response = api(carol).post(f"/api/v1/events/{failed.pk}/replay/")
    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    assert response.json()["result"] == {"message": 1}
    assert Ticket.objects.count() == 1


def test_it_replays_a_processed_event_in_the_api_without_changing_anything(processed, carol, api):
    before = snapshot()
    for _ in range(2):
        response = api(carol).post(f"/api/v1/events/{processed.pk}/replay/")
        assert response.status_code == 200
        assert response.json()["result"] == {"duplicate": 1}
    assert snapshot() == before


def test_it_refuses_to_replay_an_event_a_worker_holds(telegram, carol, api):
    busy = stored_event(
        telegram,
        tg_body(7),
        status="processing",
        error="",
        attempts=0,
        claimed_at=timezone.now(),
    )
    response = api(carol).post(f"/api/v1/events/{busy.pk}/replay/")
    assert response.status_code == 409
    assert "being processed by a worker right now" in response.json()["error"]["message"]


def test_it_rejects_bad_filters_and_unknown_events_in_the_api(failed, carol, api):
    client = api(carol)
    bad = client.get("/api/v1/events/?status=lost")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["status"] == [
        "status must be one of pending, processing, processed, failed, not 'lost'"
    ]
    assert client.get("/api/v1/events/?cursor=%5B%5B%5B").status_code == 400
    assert client.get("/api/v1/events/999999/").status_code == 404
    assert client.post("/api/v1/events/999999/replay/").status_code == 404
    assert client.get(f"/api/v1/events/?channel={failed.channel_id}").json()["results"]
    assert client.get("/api/v1/events/?channel=999999").json()["results"] == []


def test_it_pages_pending_events_most_due_first_in_the_api(telegram, carol, api):
    now = timezone.now()
    events = [
        stored_event(
            telegram,
            tg_body(n),
            status="pending",
            attempts=1,
            error="x",
            next_attempt_at=now + timedelta(minutes=10 - n),
        )
        for n in range(3)
    ]
    client = api(carol)
    first = client.get("/api/v1/events/?status=pending&page_size=2").json()
    second = client.get(first["next"]).json()
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert ids == [e.pk for e in reversed(events)]


# --------------------------------------------------------------------------- admin


@pytest.fixture
def root(db: Any) -> Any:
    return get_user_model().objects.create_superuser("root", "root@utility.example", PASSWORD)


def test_it_shows_events_read_only_in_the_admin_and_replays_them(failed, root):
    client = as_user(root)
    listing = client.get("/admin/channels_in/inboundevent/")
    assert listing.status_code == 200
    assert "update:9001" in listing.content.decode()
    detail = client.get(f"/admin/channels_in/inboundevent/{failed.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT not in html
    assert 'name="_save"' not in html  # read-only
    assert client.get("/admin/channels_in/inboundevent/add/").status_code == 403
    response = client.post(
        "/admin/channels_in/inboundevent/",
        {"action": "replay", "_selected_action": [failed.pk]},
        follow=True,
    )
    assert "1 event(s) handed to the workers again." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == "processed"


# --------------------------------------------------------------------------- in a browser


@pytest.fixture
def live_events(telegram, email_channel, sms) -> Iterator[InboundEvent]:
    now = timezone.now()
    shown = stored_event(
        telegram,
        tg_body(10, text=f"Нет света на ул. Ленина 14 {SCRIPT}"),
        platform_id="update:785010",
        received_at=now - timedelta(minutes=3),
    )
    stored_event(
        telegram,
        b'{"update_id": "nine"',
        platform_id="invalid:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        error="malformed: body is not JSON: Expecting ',' delimiter: line 1 column 21 (char 20)",
        attempts=1,
        received_at=now - timedelta(minutes=9),
    )
    stored_event(
        email_channel,
        fixture_bytes("email", "reply_zh.eml"),
        content_type="message/rfc822",
        platform_id="<tencent_3A2B1C0D9E8F@qq.example>",
        error="IntegrityError: duplicate key value violates unique constraint",
        received_at=now - timedelta(hours=2),
    )
    stored_event(
        sms,
        fixture_bytes("sms", "inbound_portuguese_mms.form"),
        content_type="application/x-www-form-urlencoded",
        platform_id="MMf2e4a6c8b0d2f4a6c8e0b2d4f6a8c0e2",
        error="OperationalError: could not connect to server: Connection refused",
        received_at=now - timedelta(days=1),
    )
    stored_event(
        telegram,
        tg_body(11),
        status="pending",
        error="deferred: 1 receipt(s)/edit(s) for messages not seen yet",
        attempts=1,
        platform_id="update:785011",
        next_attempt_at=now + timedelta(seconds=15),
    )
    stored_event(
        telegram,
        tg_body(12),
        status="pending",
        error="",
        attempts=0,
        platform_id="update:785012",
        next_attempt_at=now - timedelta(minutes=12),
    )
    stored_event(
        telegram,
        tg_body(13),
        status="processing",
        error="",
        attempts=0,
        platform_id="update:785013",
        claimed_at=now - timedelta(minutes=25),
    )
    stored_event(
        telegram,
        tg_body(14),
        status="processing",
        error="",
        attempts=0,
        platform_id="update:785014",
        claimed_at=now,
    )
    yield shown


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_shows_failed_events_and_a_raw_body_in_a_browser(
    live_server,
    live_events,
    carol,
    page,  # noqa: F811
    shoot,  # noqa: F811
):
    page.goto(f"{live_server.url}/login/?next=/ops/events/")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("table[aria-label='Inbound events'] tbody tr")
    assert page.locator("tbody tr").count() == 4
    shoot(page, "ops-failed-events")

    page.click(f"#event-{live_events.pk} a.btn")
    page.wait_for_selector("pre.ops-raw")
    assert SCRIPT in page.inner_text("pre.ops-raw")  # shown as text, never run
    assert page.locator("pre.ops-raw script").count() == 0
    shoot(page, "ops-event-raw")

    page.click("form[action$='/replay/'] button")
    page.wait_for_selector(".toast-success")
    assert "processed (1 message)" in page.inner_text(".toast-success")
    shoot(page, "ops-event-retried")

    page.goto(f"{live_server.url}/ops/events/?status=pending")
    page.wait_for_selector("text=overdue")
    shoot(page, "ops-events-pending")
    page.goto(f"{live_server.url}/ops/events/?status=processing")
    page.wait_for_selector("text=stuck")
    assert page.locator("tbody form").count() == 1  # the busy one has no button
    shoot(page, "ops-events-processing")
