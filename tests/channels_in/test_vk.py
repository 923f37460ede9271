from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.utils import timezone

from channels_in import processing
from channels_in.base import Edit, Ignored, InboundMessage
from channels_in.models import Channel, InboundEvent
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes, fixture_json
from tickets import actions
from tickets.models import Agent, Delivery, Identity, Message, Team, Ticket

pytestmark = pytest.mark.django_db

KEY = "vk-main"
GROUP = 218765432
SECRET = "Zq7Nf3Lp9Xw2"  # the fixtures carry it in their body, as VK sends it
CONFIRMATION = "a1b2c3d4"
ACCESS_TOKEN = "vk1.a.community-token-for-tests"
OLGA = 402871551


@pytest.fixture
def vk(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="vk",
        key=KEY,
        name="Энергосбыт ВКонтакте",
        default_team=outages,
        credentials={
            "access_token": ACCESS_TOKEN,
            "secret": SECRET,
            "confirmation_code": CONFIRMATION,
            "group_id": str(GROUP),
        },
    )


@pytest.fixture
def post_vk(hook: Callable[..., Any], vk: Channel) -> Callable[..., Any]:
    """post_vk(fixture name, bytes or dict): VK signs nothing; the secret is in the body."""

    def _post(body: str | bytes | dict[str, Any]) -> Any:
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False).encode()
        elif isinstance(body, str):
            body = fixture_bytes("vk", body)
        return hook("vk", KEY, body, **adapter_for("vk").sign(vk, body, ""))

    return _post


def parse(channel: Channel, name: str) -> list[Any]:
    return adapter_for("vk").parse(channel, fixture_bytes("vk", name), {})


def reply(
    capture: Any, ticket: Ticket, agent: Agent, text: str, **kwargs: Any
) -> tuple[Message, processing.SendResult]:
    with capture(execute=False):
        message = actions.do_reply(ticket, agent, text, **kwargs)
    return message, processing.send_delivery_now(message.delivery.pk)


def form(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "vk").glob("*.json")))
def test_it_parses_every_fixture(vk, name):
    items = parse(vk, name)
    assert items
    assert all(isinstance(i, InboundMessage | Edit | Ignored) for i in items)


def test_it_reads_a_private_text_message(vk):
    [item] = parse(vk, "message_new_text.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == f"{OLGA}:311"
    assert item.sender.kind == "vk" and item.sender.value == str(OLGA)
    assert item.sender.language == "ru"
    assert "<script>alert(1)</script>" in item.text  # kept as text; escaped where shown
    assert item.thread_key == "" and "reply_to_address" not in item.payload


def test_it_reads_photos_documents_voice_and_stickers(vk):
    [photo] = parse(vk, "message_new_photo.json")
    assert photo.kind == "image"
    assert "size=960x1280" in photo.attachments[0].source_url  # the largest size
    [doc] = parse(vk, "message_new_doc.json")
    assert doc.kind == "document"
    assert doc.attachments[0].name == "sąskaita_lapkritis.pdf"
    assert doc.attachments[0].content_type == "application/pdf"
    assert doc.attachments[0].size == 184320
    [voice] = parse(vk, "message_new_audio_message.json")
    assert voice.kind == "audio" and voice.attachments[0].content_type == "audio/ogg"
    assert voice.payload["transcript"] == "алло у нас опять нет света во всём доме"
    [sticker] = parse(vk, "message_new_sticker.json")
    assert sticker.kind == "sticker"
    assert sticker.attachments[0].source_url == "https://vk.com/sticker/1-9012-512"


def test_it_reads_places_shared_posts_and_links(vk):
    [geo] = parse(vk, "message_new_geo.json")
    assert geo.kind == "location"
    assert geo.payload["location"]["latitude"] == pytest.approx(58.010455)
    assert geo.payload["location"]["title"] == "Пермь, улица Ленина, 14"
    [wall] = parse(vk, "message_new_wall.json")
    assert wall.payload["wall_post"]["url"] == f"https://vk.com/wall-{GROUP}_5512"
    [link] = parse(vk, "message_new_link.json")
    assert link.payload["link"]["title"] == "Карта отключений"
    assert link.sender.language == "uk"


@pytest.mark.parametrize(
    ("name", "button"),
    [("message_new_button.json", "reading"), ("message_new_start.json", "start")],
)
def test_it_turns_a_keyboard_press_into_a_postback(vk, name, button):
    [item] = parse(vk, name)
    assert item.kind == "postback" and item.payload["button"] == button


def test_it_turns_a_callback_button_into_a_postback(vk):
    [item] = parse(vk, "message_event.json")
    assert item.kind == "postback" and item.payload["button"] == "bill"
    assert item.platform_message_id == "event:3159dc190b1f"


def test_it_ignores_chats_unless_the_channel_wants_them(vk):
    [ignored] = parse(vk, "message_new_chat.json")
    assert isinstance(ignored, Ignored) and ignored.reason == "group message"
    vk.settings = {"groups": True}
    [item] = parse(vk, "message_new_chat.json")
    assert item.platform_message_id == "2000000001:57"  # id is 0 in chats
    assert item.thread_key == "chat:2000000001"
    assert item.payload["reply_to_address"] == "2000000001"


def test_it_links_a_reply_to_the_message_it_answers(vk):
    [item] = parse(vk, "message_new_reply.json")
    assert item.reply_to == (f"{OLGA}:311",)


def test_it_reads_an_edit_as_the_message_and_its_new_text(vk):
    message, edit = parse(vk, "message_edit.json")
    assert isinstance(message, InboundMessage) and isinstance(edit, Edit)
    assert message.platform_message_id == edit.platform_message_id == f"{OLGA}:311"
    assert edit.text.startswith("Нет света на ул. Ленина 14, подъезд 2")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("message_reply.json", "echo of our own message"),
        ("message_allow.json", "event message_allow"),
        ("message_deny.json", "event message_deny"),
        ("message_typing_state.json", "event message_typing_state"),
        ("confirmation.json", "event confirmation"),
    ],
)
def test_it_ignores_echoes_and_subscription_events(vk, name, reason):
    [item] = parse(vk, name)
    assert isinstance(item, Ignored) and item.reason == reason


# ------------------------------------------------------------------ the webhook


def test_it_confirms_the_server_with_the_confirmation_code(post_vk):
    response = post_vk("confirmation.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == CONFIRMATION
    assert not InboundEvent.objects.exists()


def test_it_does_not_confirm_for_another_community(post_vk):
    response = post_vk({"type": "confirmation", "group_id": 1})
    assert response.status_code == 403
    assert CONFIRMATION not in response.content.decode()
    assert not InboundEvent.objects.exists()


def test_it_answers_every_event_with_exactly_ok(post_vk):
    response = post_vk("message_new_text.json")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Content-Type"].startswith("text/plain")


def test_it_turns_a_message_into_a_ticket(post_vk):
    post_vk("message_new_text.json")
    event = InboundEvent.objects.get()
    assert event.platform_id == "event:" + fixture_json("vk", "message_new_text.json")["event_id"]
    assert event.status == "processed" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.language == "ru"
    assert Identity.objects.filter(kind="vk", value=str(OLGA)).exists()


def test_it_signs_with_no_headers_because_the_secret_is_in_the_body(vk):
    assert adapter_for("vk").sign(vk, fixture_bytes("vk", "message_new_text.json"), "") == {}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"secret": None}, 401),
        ({"secret": "wrong"}, 403),
        ({"group_id": 1}, 403),
    ],
)
def test_it_rejects_a_missing_or_wrong_secret_and_stores_nothing(post_vk, change, status):
    body = fixture_json("vk", "message_new_text.json")
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    response = post_vk(body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_cannot_authenticate_a_body_that_is_not_json(post_vk):
    response = post_vk(b"type=message_new&secret=" + SECRET.encode())
    assert response.status_code == 401
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body["object"].pop("message"),
        lambda body: body["object"]["message"].update(peer_id="402871551"),
        lambda body: body.pop("type"),
    ],
)
def test_it_stores_a_malformed_event_as_a_failed_event(post_vk, change):
    body = fixture_json("vk", "message_new_text.json")
    change(body)
    response = post_vk(body)
    assert response.status_code == 400
    event = InboundEvent.objects.get()
    assert event.status == "failed" and event.error.startswith("malformed:")


def test_it_ignores_a_duplicate_delivery(post_vk):
    post_vk("message_new_text.json")
    post_vk("message_new_text.json")
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "name",
    ["message_reply.json", "message_allow.json", "message_deny.json", "message_typing_state.json"],
)
def test_it_makes_no_ticket_of_echoes_and_subscription_events(post_vk, name):
    assert post_vk(name).status_code == 200
    assert InboundEvent.objects.get().status == "processed"
    assert not Ticket.objects.exists()


def test_it_applies_an_edit_that_arrives_after_the_message(post_vk):
    post_vk("message_new_text.json")
    post_vk("message_edit.json")
    message = Message.objects.get()
    assert message.text.startswith("Нет света на ул. Ленина 14, подъезд 2")
    assert message.payload["edits"][0]["text"].startswith("Здравствуйте!")


def test_it_keeps_the_edited_text_when_the_edit_arrives_first(post_vk):
    post_vk("message_edit.json")
    post_vk("message_new_text.json")
    message = Message.objects.get()
    assert message.text.startswith("Нет света на ул. Ленина 14, подъезд 2")
    # The edit created the message with its latest text; message_new then changed nothing.
    results = list(InboundEvent.objects.order_by("id").values_list("result", flat=True))
    assert results == [{"message": 1, "edit": 1}, {"duplicate": 1}]


def test_it_threads_a_reply_that_arrives_before_the_message_it_answers(post_vk):
    post_vk("message_new_reply.json")
    post_vk("message_new_text.json")
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


# ------------------------------------------------------------------ sending


def test_it_sends_a_reply_with_a_keyboard(
    post_vk, vk, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/vk/messages\.send$", 200, {"response": 1197})
    post_vk("message_new_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks,
        ticket,
        alice,
        "Ольга, бригада выехала, ориентировочно до 12:00.",
        payload={
            "buttons": [
                {"id": "ok", "label": "Спасибо"},
                {"id": "still_dark", "label": "Света всё ещё нет"},
            ]
        },
    )
    assert result.status == "sent"
    [request] = fake_platform.sent(r"messages\.send")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    sent = form(request)
    assert sent["access_token"] == ACCESS_TOKEN
    assert sent["v"] == "5.199"
    assert sent["peer_id"] == str(OLGA)
    assert sent["message"] == "Ольга, бригада выехала, ориентировочно до 12:00."
    assert 0 < int(sent["random_id"]) < 2**63
    assert "access_token" not in request.query  # the token stays out of the URL
    keyboard = json.loads(sent["keyboard"])
    assert keyboard["one_time"] is True
    cells = [cell for row in keyboard["buttons"] for cell in row]
    assert [(c["action"]["type"], c["action"]["label"]) for c in cells] == [
        ("text", "Спасибо"),
        ("text", "Света всё ещё нет"),
    ]
    assert [json.loads(c["action"]["payload"]) for c in cells] == [
        {"button": "ok"},
        {"button": "still_dark"},
    ]
    message.refresh_from_db()
    assert message.delivery_status == "sent" and message.platform_message_id == "1197"

    # The community's own message comes back as message_reply: an echo, nothing new.
    post_vk("message_reply.json")
    assert Message.objects.filter(direction="in").count() == 1


def test_it_resends_with_the_same_random_id_so_vk_never_doubles_a_message(
    post_vk, alice, fake_platform, django_capture_on_commit_callbacks
):
    # The newest rule answers first: one failure, then success.
    fake_platform.respond("POST", r"^/vk/messages\.send$", 200, {"response": 1198})
    fake_platform.respond(
        "POST",
        r"^/vk/messages\.send$",
        200,
        {"error": {"error_code": 10, "error_msg": "Internal server error"}},
        times=1,
    )
    post_vk("message_new_text.json")
    message, first = reply(django_capture_on_commit_callbacks, Ticket.objects.get(), alice, "Ок")
    assert first.status == "retry"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert "Internal server error" in delivery.last_error
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert processing.send_delivery_now(delivery.pk).status == "sent"
    attempts = fake_platform.sent(r"messages\.send")
    assert len(attempts) == 2
    assert form(attempts[0])["random_id"] == form(attempts[1])["random_id"]


def test_it_answers_a_chat_in_the_chat(
    post_vk, vk, alice, fake_platform, django_capture_on_commit_callbacks
):
    vk.settings = {"groups": True}
    vk.save()
    fake_platform.respond("POST", r"^/vk/messages\.send$", 200, {"response": 0})
    post_vk("message_new_chat.json")
    message, result = reply(
        django_capture_on_commit_callbacks, Ticket.objects.get(), alice, "Бригада выехала"
    )
    assert result.status == "sent"
    sent = form(fake_platform.sent(r"messages\.send")[0])
    assert sent["peer_id"] == "2000000001"
    message.refresh_from_db()
    assert message.platform_message_id == f"random:{sent['random_id']}"


def test_it_numbers_the_options_when_they_do_not_fit_a_keyboard(
    post_vk, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"^/vk/messages\.send$", 200, {"response": 1199})
    post_vk("message_new_text.json")
    buttons = [{"id": f"d{n}", "label": f"Район {n}"} for n in range(1, 42)]
    reply(
        django_capture_on_commit_callbacks,
        Ticket.objects.get(),
        alice,
        "Выберите район",
        payload={"buttons": buttons},
    )
    sent = form(fake_platform.sent(r"messages\.send")[0])
    assert "keyboard" not in sent
    assert sent["message"].startswith("Выберите район\n\n1. Район 1\n")
    assert sent["message"].endswith("41. Район 41")


def test_it_fails_for_good_when_the_user_does_not_allow_messages(
    post_vk, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond(
        "POST",
        r"^/vk/messages\.send$",
        200,
        {
            "error": {
                "error_code": 901,
                "error_msg": "Can't send messages for users without permission",
                "request_params": [{"key": "method", "value": "messages.send"}],
            }
        },
    )
    post_vk("message_new_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks, ticket, alice, "Света дали?", status="resolved"
    )
    assert result.status == "failed"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "failed"
    assert "without permission (901)" in delivery.last_error
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.messages.filter(is_internal=True, payload__delivery_failed=message.pk).exists()


@pytest.mark.parametrize("code", [6, 9, 10])
def test_it_retries_rate_flood_and_server_errors(
    post_vk, alice, fake_platform, django_capture_on_commit_callbacks, code
):
    fake_platform.respond(
        "POST",
        r"^/vk/messages\.send$",
        200,
        {"error": {"error_code": code, "error_msg": "Flood control"}},
    )
    post_vk("message_new_text.json")
    message, result = reply(django_capture_on_commit_callbacks, Ticket.objects.get(), alice, "Ок")
    assert result.status == "retry"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()


def test_it_never_stores_the_community_secret_in_the_event(post_vk, vk):
    body = fixture_bytes("vk", "message_new_text.json")
    assert vk.credentials["secret"].encode() in body  # the platform does send it
    post_vk("message_new_text.json")
    event = InboundEvent.objects.get()
    assert vk.credentials["secret"].encode() not in bytes(event.body)
    assert event.status == "processed"
