from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from channels_in import processing
from channels_in.base import Ignored, InboundMessage, StatusUpdate
from channels_in.models import Channel, InboundEvent
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes, fixture_json
from tickets import actions
from tickets.models import Agent, Contact, Delivery, Identity, Message, Team, Ticket

pytestmark = pytest.mark.django_db

KEY = "viber-main"
TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"  # the docs' example token
OLGA = "jc9HsWTZ2Yf2NkRZ8KcNug=="
SENT_TOKEN = 5741311803571722001  # what the fake Viber answers; delivered/seen.json name it


@pytest.fixture
def viber(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="viber",
        key=KEY,
        name="Энергосбыт — поддержка клиентов",
        default_team=outages,
        credentials={"auth_token": TOKEN},
    )


@pytest.fixture
def post_viber(hook: Callable[..., Any], viber: Channel) -> Callable[..., Any]:
    def _post(body: str | bytes | dict[str, Any], **headers: str) -> Any:
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False).encode()
        elif isinstance(body, str):
            body = fixture_bytes("viber", body)
        signed = headers or adapter_for("viber").sign(viber, body, "")
        return hook("viber", KEY, body, **signed)

    return _post


def parse(channel: Channel, name: str) -> list[Any]:
    return adapter_for("viber").parse(channel, fixture_bytes("viber", name), {})


def reply(
    capture: Any, ticket: Ticket, agent: Agent, text: str, **kwargs: Any
) -> tuple[Message, processing.SendResult]:
    with capture(execute=False):
        message = actions.do_reply(ticket, agent, text, **kwargs)
    return message, processing.send_delivery_now(message.delivery.pk)


def viber_ok(token: int = SENT_TOKEN) -> dict[str, Any]:
    return {
        "status": 0,
        "status_message": "ok",
        "message_token": token,
        "chat_hostname": "SN-CHAT-05_",
        "billing_status": 1,
    }


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "viber").glob("*.json")))
def test_it_parses_every_fixture(viber, name):
    items = parse(viber, name)
    assert len(items) == 1
    assert isinstance(items[0], InboundMessage | StatusUpdate | Ignored)


def test_it_reads_a_text_message(viber):
    [item] = parse(viber, "message_text.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == "5741311803571721087"
    assert item.sender.kind == "viber" and item.sender.value == OLGA
    assert item.sender.display_name == "Ольга Смирнова"
    assert item.sender.language == "ru"
    assert "<script>alert(1)</script>" in item.text  # kept as text; escaped where shown
    assert item.sent_at is not None and item.sent_at.year == 2025


def test_it_reads_pictures_videos_files_and_stickers(viber):
    [picture] = parse(viber, "message_picture.json")
    assert picture.kind == "image" and picture.text.startswith("Вот провод")
    assert picture.attachments[0].size == 348211
    assert picture.attachments[0].source_url.startswith("https://dl-media.viber.com/")
    [video] = parse(viber, "message_video.json")
    assert video.kind == "video" and video.attachments[0].content_type == "video/mp4"
    [document] = parse(viber, "message_file.json")
    assert document.kind == "document"
    assert document.attachments[0].name == "sąskaita_lapkritis.pdf"
    assert document.attachments[0].content_type == "application/pdf"
    [sticker] = parse(viber, "message_sticker.json")
    assert sticker.kind == "sticker" and sticker.payload["sticker_id"] == 46105


def test_it_reads_links_and_locations(viber):
    [url] = parse(viber, "message_url.json")
    assert url.text == "https://www.energyco.example/outages?area=centro&lang=pt"
    [location] = parse(viber, "message_location.json")
    assert location.kind == "location"
    assert location.payload["location"]["latitude"] == pytest.approx(54.687157)


def test_it_learns_the_phone_only_from_the_share_phone_button(viber):
    [own] = parse(viber, "message_contact_own.json")
    assert own.kind == "contact" and own.sender.phone == "+79121234567"
    [other] = parse(viber, "message_contact_other.json")
    assert other.kind == "contact" and other.sender.phone == ""
    assert other.payload["contact"]["phone"] == "+79127654321"


def test_it_turns_a_keyboard_press_into_a_postback(viber):
    [item] = parse(viber, "message_button.json")
    assert item.kind == "postback"
    assert item.payload["button"] == "reading"
    assert item.text == "Передать показания"


def test_it_keeps_a_typed_word_that_happens_to_be_a_button_id_as_text(viber):
    body = fixture_json("viber", "message_button.json")
    del body["message"]["tracking_data"]
    [item] = adapter_for("viber").parse(viber, json.dumps(body).encode(), {})
    assert item.kind == "text" and item.text == "reading"


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("delivered.json", "delivered", ""),
        ("seen.json", "read", ""),
        ("failed.json", "failed", "failure description"),
    ],
)
def test_it_turns_receipts_into_status_updates(viber, name, status, error):
    [item] = parse(viber, name)
    assert isinstance(item, StatusUpdate)
    assert item.status == status and item.error == error


@pytest.mark.parametrize(
    "name", ["subscribed.json", "unsubscribed.json", "conversation_started.json", "webhook.json"]
)
def test_it_ignores_subscription_events(viber, name):
    [item] = parse(viber, name)
    assert isinstance(item, Ignored)


# ------------------------------------------------------------------ the webhook


def test_it_answers_the_set_webhook_check_and_stores_nothing(post_viber):
    response = post_viber("webhook.json")
    assert response.status_code == 200
    assert not InboundEvent.objects.exists()


def test_it_rejects_an_unsigned_set_webhook_check(hook, viber):
    response = hook("viber", KEY, fixture_bytes("viber", "webhook.json"))
    assert response.status_code == 401


def test_it_signs_as_the_docs_describe(viber):
    body = fixture_bytes("viber", "message_text.json")
    expected = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    assert adapter_for("viber").sign(viber, body, "") == {"X-Viber-Content-Signature": expected}


def test_it_turns_a_signed_message_into_a_ticket(post_viber):
    response = post_viber("message_text.json")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.platform_id == "message:5741311803571721087"
    assert event.status == "processed" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.language == "ru"
    assert ticket.contact.display_name == "Ольга Смирнова"
    assert Identity.objects.filter(kind="viber", value=OLGA).exists()


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Viber-Content-Signature": "0" * 64}, 403)],
)
def test_it_rejects_a_missing_or_wrong_signature_and_stores_nothing(hook, viber, headers, status):
    response = hook("viber", KEY, fixture_bytes("viber", "message_text.json"), **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_ignores_a_duplicate_delivery(post_viber):
    post_viber("message_text.json")
    post_viber("message_text.json")
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"timestamp": 1763822100123}',
        b'{"event": "message", "message_token": 1, "message": {"type": "text"}}',
    ],
)
def test_it_stores_a_malformed_body_as_a_failed_event(post_viber, body):
    response = post_viber(body)
    assert response.status_code == 400
    event = InboundEvent.objects.get()
    assert event.status == "failed" and event.error.startswith("malformed:")


def test_it_ignores_an_event_it_does_not_know(post_viber):
    # Not in Viber's documented callbacks; whatever Viber adds is kept and ignored.
    post_viber({"event": "client_status", "timestamp": 1763822100000, "user_id": OLGA})
    event = InboundEvent.objects.get()
    assert event.status == "processed" and event.result == {"ignored:event client_status": 1}


@pytest.mark.parametrize(
    "name",
    [
        "delivered.json",
        "seen.json",
        "failed.json",
        "subscribed.json",
        "unsubscribed.json",
        "conversation_started.json",
    ],
)
def test_it_never_makes_a_ticket_of_receipts_or_subscriptions(post_viber, name):
    assert post_viber(name).status_code == 200
    # A receipt for a message we have no record of waits (deferred) for that record.
    assert InboundEvent.objects.get().status in ("processed", "pending")
    assert not Ticket.objects.exists()


def test_it_unifies_the_shared_phone_with_an_sms_sender(post_viber, sms, receive):
    earlier = receive(sms, "нет света", sender="+79121234567").ticket
    post_viber("message_text.json")
    post_viber("message_contact_own.json")
    assert Contact.objects.filter(merged_into__isnull=True).count() == 1
    contact = Ticket.objects.get(pk=earlier.pk).contact
    assert {i.kind for i in contact.identities.all()} == {"phone", "viber"}


def test_it_does_not_merge_on_a_forwarded_contact_card(post_viber, sms, receive):
    receive(sms, "нужен электрик", sender="+79127654321")
    post_viber("message_contact_other.json")
    assert Contact.objects.filter(merged_into__isnull=True).count() == 2


# ------------------------------------------------------------------ sending


def test_it_sends_a_reply_with_a_keyboard(
    post_viber, viber, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/viber/send_message$", 200, viber_ok())
    post_viber("message_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks,
        ticket,
        alice,
        "Бригада выехала, ориентировочно до 12:00.",
        payload={
            "buttons": [
                {"id": "ok", "label": "Спасибо"},
                {"id": "still_dark", "label": "Света всё ещё нет"},
            ]
        },
    )
    assert result.status == "sent"
    [request] = fake_platform.sent("send_message")
    assert request.headers["x-viber-auth-token"] == TOKEN
    body = request.json
    assert body["receiver"] == OLGA
    assert body["type"] == "text"
    assert body["text"] == "Бригада выехала, ориентировочно до 12:00."
    assert body["sender"] == {"name": "Энергосбыт — поддержка клиентов"[:28]}
    assert len(body["sender"]["name"]) <= 28
    buttons = body["keyboard"]["Buttons"]
    assert [(b["ActionType"], b["ActionBody"], b["Text"]) for b in buttons] == [
        ("reply", "ok", "Спасибо"),
        ("reply", "still_dark", "Света всё ещё нет"),
    ]
    assert json.loads(body["tracking_data"]) == {
        "hd": 1,
        "buttons": {"ok": "Спасибо", "still_dark": "Света всё ещё нет"},
    }
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert message.platform_message_id == str(SENT_TOKEN)


def test_it_drops_a_receipt_for_a_message_it_has_not_sent(post_viber):
    # Out of order: the receipt beats our own record of the send. Nothing to update and,
    # above all, nothing created.
    post_viber("message_text.json")
    post_viber("delivered.json")
    receipt = InboundEvent.objects.get(platform_id__startswith="delivered:")
    assert receipt.result == {"receipt_unmatched": 1}
    assert receipt.status == "pending" and receipt.error.startswith("deferred")
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 1


def test_it_never_moves_a_status_backwards(
    post_viber, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/viber/send_message$", 200, viber_ok())
    post_viber("message_text.json")
    message, _ = reply(django_capture_on_commit_callbacks, Ticket.objects.get(), alice, "Ок")
    post_viber("seen.json")
    message.refresh_from_db()
    assert message.delivery_status == "read"
    post_viber("delivered.json")  # "delivered" arrives after "seen"
    message.refresh_from_db()
    assert message.delivery_status == "read"
    assert InboundEvent.objects.get(platform_id__startswith="delivered:").result == {"receipt": 1}
    assert Ticket.objects.count() == 1


def test_it_asks_for_the_phone_with_a_share_phone_button(
    post_viber, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/viber/send_message$", 200, viber_ok())
    post_viber("message_text.json")
    reply(
        django_capture_on_commit_callbacks,
        Ticket.objects.get(),
        alice,
        "Поделитесь номером, чтобы мы нашли ваш договор",
        payload={"buttons": [{"id": "share_phone", "label": "Отправить мой номер"}]},
    )
    body = fake_platform.sent("send_message")[0].json
    assert body["min_api_version"] == 3
    assert body["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert json.loads(body["tracking_data"])["ask"] == "phone"


def test_it_numbers_the_options_when_there_are_too_many_buttons(
    post_viber, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/viber/send_message$", 200, viber_ok())
    post_viber("message_text.json")
    buttons = [{"id": f"district-{n}", "label": f"Район {n}"} for n in range(1, 26)]
    reply(
        django_capture_on_commit_callbacks,
        Ticket.objects.get(),
        alice,
        "Выберите район",
        payload={"buttons": buttons},
    )
    body = fake_platform.sent("send_message")[0].json
    assert "keyboard" not in body
    assert body["text"].startswith("Выберите район\n\n1. Район 1\n2. Район 2")
    assert body["text"].endswith("25. Район 25")


def test_it_fails_for_good_when_the_customer_unsubscribed(
    post_viber, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond(
        "POST",
        r"^/viber/send_message$",
        200,
        {"status": 6, "status_message": "notSubscribed", "chat_hostname": "SN-CHAT-05_"},
    )
    post_viber("message_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks, ticket, alice, "Света дали?", status="resolved"
    )
    assert result.status == "failed"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "failed"
    assert "receiverNotSubscribed (6)" in delivery.last_error
    ticket.refresh_from_db()
    assert ticket.status == "open"
    note = ticket.messages.get(is_internal=True, payload__delivery_failed=message.pk)
    assert "receiverNotSubscribed" in note.text


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, {"status": 12, "status_message": "tooManyRequests"}),
        (200, {"status": 99, "status_message": "generalError"}),
        (503, "Service Unavailable"),
    ],
)
def test_it_retries_a_transient_failure_later(
    post_viber, alice, fake_platform, django_capture_on_commit_callbacks, status, answer
):
    fake_platform.respond("POST", r"^/viber/send_message$", status, answer)
    post_viber("message_text.json")
    message, result = reply(
        django_capture_on_commit_callbacks, Ticket.objects.get(), alice, "Минуту"
    )
    assert result.status == "retry"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.last_error
    message.refresh_from_db()
    assert message.delivery_status == "queued"
