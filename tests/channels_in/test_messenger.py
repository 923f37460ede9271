from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels_in.base import Edit, Ignored, InboundMessage, StatusUpdate
from channels_in.models import Channel, InboundEvent
from channels_in.processing import send_delivery_now
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes
from tickets import actions
from tickets.errors import Conflict
from tickets.models import Delivery, Direction, Identity, Message, Team, Ticket

pytestmark = pytest.mark.django_db

PAGE = "1067280970047460"
IG = "17841405309211844"
PSID_PT = "7012458839265104"
IGSID_RU = "1245893307745902"
MID_OUT = "m_Aa3t9Kq2bJxH0vR5sZ1mYQ7cWfLp8nE4gT6uI2oP0dV9kX3jB1hN5yM7rC8eG0aS"
MID_PT = "m_pT8wq2LxF0kq3vH9cJ2sN5bR1mZ7yA4eU6iO0pD3gK8jX1hV5nM9tC2rB7wE4fG"
IG_MID_OUT = (
    "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1MzA5MjExODQ0OjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1"
    "OTQ1NjgxNTQ4MDc4MzQ0MDozMjE0NTY3ODkwMTIzNDU2Nzg5"
)
FB_SEND = r"/messenger/me/messages"
IG_SEND = r"/instagram/me/messages"

EXPECTED = {
    "messenger": {
        "audio_attachment.json": ["InboundMessage"],
        "batch_multi_entry.json": ["InboundMessage", "InboundMessage", "StatusUpdate"],
        "delivery.json": ["StatusUpdate"],
        "delivery_watermark_only.json": ["Ignored"],
        "echo.json": ["Ignored"],
        "fallback_link.json": ["InboundMessage"],
        "file_attachment.json": ["InboundMessage"],
        "image_attachment.json": ["InboundMessage"],
        "location_attachment.json": ["InboundMessage"],
        "message_edit.json": ["Edit"],
        "postback_get_started.json": ["InboundMessage"],
        "quick_reply.json": ["InboundMessage"],
        "reaction.json": ["Ignored"],
        "read_watermark.json": ["Ignored"],
        "reply_to.json": ["InboundMessage"],
        "standby.json": ["Ignored"],
        "sticker_like.json": ["InboundMessage"],
        "text_portuguese.json": ["InboundMessage"],
        "text_russian_script.json": ["InboundMessage"],
        "video_attachment.json": ["InboundMessage"],
    },
    "instagram": {
        "comment_portuguese.json": ["InboundMessage"],
        "deleted.json": ["Ignored"],
        "echo.json": ["Ignored"],
        "image.json": ["InboundMessage"],
        "mention.json": ["Ignored"],
        "own_comment.json": ["Ignored"],
        "postback.json": ["InboundMessage"],
        "quick_reply.json": ["InboundMessage"],
        "reaction.json": ["Ignored"],
        "seen.json": ["StatusUpdate"],
        "share_reel.json": ["InboundMessage"],
        "story_mention.json": ["InboundMessage"],
        "text_russian.json": ["InboundMessage"],
        "unsupported.json": ["InboundMessage"],
    },
}


@pytest.fixture
def fb(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="messenger",
        key="fb-page",
        name="Facebook page",
        default_team=outages,
        credentials={
            "page_access_token": "EAAB-page-token",
            "app_secret": "fb-app-secret",
            "verify_token": "fb-verify-token",
        },
        settings={"page_id": PAGE},
    )


@pytest.fixture
def ig(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="instagram",
        key="ig-main",
        name="Instagram",
        default_team=outages,
        credentials={
            "page_access_token": "EAAB-ig-token",
            "app_secret": "ig-app-secret",
            "verify_token": "ig-verify-token",
        },
        settings={"instagram_id": IG},
    )


@pytest.fixture
def post(hook: Any) -> Any:
    """post(channel, fixture name or bytes): a webhook signed as Meta signs it."""

    def _post(channel: Channel, name_or_body: str | bytes, **headers: str) -> Any:
        body = (
            fixture_bytes(channel.kind, name_or_body)
            if isinstance(name_or_body, str)
            else name_or_body
        )
        signed = {**adapter_for(channel.kind).sign(channel, body, ""), **headers}
        return hook(channel.kind, channel.key, body, **signed)

    return _post


def parse(channel: Channel, name: str, kind: str | None = None) -> list[Any]:
    body = fixture_bytes(kind or channel.kind, name)
    return adapter_for(channel.kind).parse(channel, body, {})


def message_body(channel: Channel, sender: str, text: str, *, at_ms: int) -> bytes:
    """A messages notification written now (the fixtures' timestamps are in the past)."""
    account = PAGE if channel.kind == "messenger" else IG
    event = {
        "sender": {"id": sender},
        "recipient": {"id": account},
        "timestamp": at_ms,
        "message": {"mid": f"m_fresh_{at_ms}", "text": text},
    }
    data = {
        "object": adapter_for(channel.kind).object_name,
        "entry": [{"id": account, "messaging": [event]}],
    }
    return json.dumps(data, separators=(",", ":")).encode()


def buttons(*labels: str) -> dict[str, Any]:
    return {"buttons": [{"id": f"b{n}", "label": label} for n, label in enumerate(labels, 1)]}


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", sorted(EXPECTED["messenger"]))
def test_it_parses_every_messenger_fixture(fb, name):
    assert [type(i).__name__ for i in parse(fb, name)] == EXPECTED["messenger"][name]


@pytest.mark.parametrize("name", sorted(EXPECTED["instagram"]))
def test_it_parses_every_instagram_fixture(ig, name):
    assert [type(i).__name__ for i in parse(ig, name)] == EXPECTED["instagram"][name]


@pytest.mark.parametrize("kind", ["messenger", "instagram"])
def test_it_has_an_expectation_for_every_fixture_file(kind):
    assert sorted(p.name for p in (FIXTURES / kind).glob("*.json")) == sorted(EXPECTED[kind])


def test_it_reads_a_messenger_text_from_a_page_scoped_id(fb):
    [item] = parse(fb, "text_portuguese.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == MID_PT
    assert (item.sender.kind, item.sender.value, item.sender.phone) == ("messenger", PSID_PT, "")
    assert item.text.startswith("Olá! A fatura deste mês")
    assert item.sent_at is not None and item.payload["timestamp"] == 1763790060000
    [script] = parse(fb, "text_russian_script.json")
    assert "<script>document.location=" in script.text and script.text.endswith("😡")


def test_it_turns_quick_replies_and_postbacks_into_button_presses(fb):
    [quick] = parse(fb, "quick_reply.json")
    assert quick.kind == "postback"
    assert quick.payload["button"] == "outage_report"
    assert quick.text == "Pranešti apie gedimą"
    [postback] = parse(fb, "postback_get_started.json")
    assert postback.kind == "postback" and postback.text == "开始使用"
    assert postback.payload["button"] == "GET_STARTED"
    assert postback.platform_message_id.startswith("m_pB7gS0")


def test_it_reads_attachments_as_urls_the_worker_fetches(fb):
    [image] = parse(fb, "image_attachment.json")
    assert image.kind == "image"
    assert image.attachments[0].name.endswith("_n.jpg")
    assert image.attachments[0].content_type == "image/jpeg"
    assert image.attachments[0].source_url.startswith("https://scontent.xx.fbcdn.net/v/")
    assert "&oe=6787A1C2" in image.attachments[0].source_url
    [document] = parse(fb, "file_attachment.json")
    assert document.kind == "document" and document.text == "Prisegu sąskaitą – kodėl tiek daug?"
    assert document.attachments[0].name == "saskaita_lapkritis.pdf"
    assert document.attachments[0].content_type == "application/pdf"
    [voice] = parse(fb, "audio_attachment.json")
    assert voice.kind == "audio" and voice.attachments[0].content_type == "audio/mp4"
    [video] = parse(fb, "video_attachment.json")
    assert video.kind == "video" and video.text == "变压器在冒烟！"
    [sticker] = parse(fb, "sticker_like.json")
    assert sticker.kind == "sticker" and sticker.payload["sticker_id"] == 369239263222822


def test_it_reads_locations_and_shared_links(fb):
    [location] = parse(fb, "location_attachment.json")
    assert location.kind == "location"
    assert location.payload["location"]["latitude"] == pytest.approx(58.010455)
    assert location.payload["location"]["title"] == "Местоположение Ольги"
    [link] = parse(fb, "fallback_link.json")
    assert link.kind == "text" and not link.attachments
    assert link.payload["shared"] == [
        {
            "type": "fallback",
            "url": "https://www.energia.example/avarias?zona=lisboa&dia=22",
            "title": "Avarias e interrupções – Energia",
        }
    ]


def test_it_reads_receipts_edits_and_replies_and_ignores_the_rest(fb):
    [delivered] = parse(fb, "delivery.json")
    assert delivered == StatusUpdate(fb.pk, MID_OUT, "delivered", at=delivered.at)
    [watermark] = parse(fb, "delivery_watermark_only.json")
    assert watermark.reason == "delivery watermark without message ids"
    [read] = parse(fb, "read_watermark.json")
    assert read.reason == "read watermark 1763790060135"
    [edit] = parse(fb, "message_edit.json")
    assert isinstance(edit, Edit) and edit.platform_message_id == MID_PT
    assert edit.text.endswith("Conta nº 4471-23")
    [answer] = parse(fb, "reply_to.json")
    assert answer.reply_to == (MID_PT,)
    [echo] = parse(fb, "echo.json")
    assert echo.reason == "echo of a message this account sent"
    [reaction] = parse(fb, "reaction.json")
    assert isinstance(reaction, Ignored) and "❤️" in reaction.reason
    [standby] = parse(fb, "standby.json")
    assert standby.reason.startswith("standby")


def test_it_ignores_events_for_another_page_or_another_object(fb):
    fb.settings = {"page_id": "999"}
    [other] = parse(fb, "text_portuguese.json")
    assert other.reason == f"for account {PAGE}, not this channel's"
    [instagram] = parse(fb, "text_russian.json", kind="instagram")
    assert instagram.reason == "object instagram on a messenger channel"


def test_it_reads_instagram_messages_from_instagram_scoped_ids(ig):
    [text] = parse(ig, "text_russian.json")
    assert (text.sender.kind, text.sender.value) == ("instagram", IGSID_RU)
    assert text.text.startswith("Добрый вечер, в посёлке Заречный")
    [image] = parse(ig, "image.json")
    assert image.kind == "image" and image.attachments[0].name == "image-1.jpg"
    assert image.attachments[0].source_url.startswith("https://lookaside.fbsbx.com/")
    [seen] = parse(ig, "seen.json")
    assert seen == StatusUpdate(ig.pk, IG_MID_OUT, "read", at=seen.at)
    [reel] = parse(ig, "share_reel.json")
    assert reel.kind == "share" and reel.payload["shared"][0]["type"] == "ig_reel"
    assert reel.payload["shared"][0]["title"] == "Tempestade derruba postes em Sintra ⛈️"
    [unsupported] = parse(ig, "unsupported.json")
    assert unsupported.kind == "unsupported"
    [deleted] = parse(ig, "deleted.json")
    assert deleted.reason.startswith("the customer deleted message")


def test_it_keeps_only_the_url_of_a_story_mention(ig):
    [mention] = parse(ig, "story_mention.json")
    assert mention.kind == "mention" and not mention.attachments
    assert mention.payload["story_mention"]["url"].startswith("https://lookaside.fbsbx.com/")


def test_it_makes_a_public_ticket_of_an_instagram_comment(ig):
    [comment] = parse(ig, "comment_portuguese.json")
    assert comment.is_public
    assert comment.platform_message_id == "comment:17865799348012345"
    assert comment.sender.display_name == "@maria.luz_lisboa"
    assert comment.thread_key == "ig-media:18025498761234567"
    assert comment.payload["comment_id"] == "17865799348012345"
    assert comment.text.endswith("😤")
    [own] = parse(ig, "own_comment.json")
    assert own.reason == "a comment by this account"
    [mention] = parse(ig, "mention.json")
    assert "17894227972186120" in mention.reason


# --------------------------------------------------------------------------- the webhook


def test_it_turns_a_signed_webhook_into_a_ticket(fb, post):
    response = post(fb, "text_portuguese.json")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.platform_id == f"m:{MID_PT}" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.channel == fb and ticket.language == "pt"
    assert Identity.objects.get().kind == "messenger"


def test_it_splits_a_batch_of_entries(fb, post):
    post(fb, "batch_multi_entry.json")
    event = InboundEvent.objects.get()
    assert event.platform_id.startswith("batch:")
    assert event.result == {"message": 2, "receipt_unmatched": 1}
    assert Ticket.objects.count() == 2


def test_it_ignores_a_duplicate_delivery_and_echoes(fb, post):
    post(fb, "text_portuguese.json")
    post(fb, "text_portuguese.json")
    post(fb, "echo.json")
    assert InboundEvent.objects.count() == 2
    assert Message.objects.count() == 1
    echo = InboundEvent.objects.order_by("-id")[0]
    assert echo.result == {"ignored:echo of a message this account sent": 1}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Hub-Signature-256": "sha256=" + "ab" * 32}, 403)],
)
def test_it_rejects_a_missing_or_wrong_signature_and_stores_nothing(fb, ig, hook, headers, status):
    for channel in (fb, ig):
        body = fixture_bytes(channel.kind, "echo.json")
        response = hook(channel.kind, channel.key, body, **headers)
        assert response.status_code == status
    assert not InboundEvent.objects.exists()


def test_it_refuses_a_body_signed_with_another_apps_secret(fb, ig, post):
    body = fixture_bytes("messenger", "text_portuguese.json")
    signed_for_instagram = adapter_for("instagram").sign(ig, body, "")
    assert post(fb, body, **signed_for_instagram).status_code == 403


@pytest.mark.parametrize(
    ("key", "token"), [("fb-page", "fb-verify-token"), ("ig-main", "ig-verify-token")]
)
def test_it_answers_the_verification_handshake(fb, ig, client, key, token):
    kind = "messenger" if key == "fb-page" else "instagram"
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "987654321"}
    right = client.get(f"/hooks/{kind}/{key}/", query)
    assert right.status_code == 200 and right.content == b"987654321"
    wrong = client.get(f"/hooks/{kind}/{key}/", {**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        b"<xml/>",
        b'{"object": "page"}',
        b'{"object": "page", "entry": [{"messaging": [{"message": {}}]}]}',
    ],
)
def test_it_stores_a_malformed_body_as_a_failed_event(fb, post, body):
    response = post(fb, body)
    assert response.status_code == 400
    event = InboundEvent.objects.get()
    assert event.status == "failed" and event.error.startswith("malformed:")


def test_it_applies_an_edit_after_the_message(fb, post):
    post(fb, "text_portuguese.json")
    post(fb, "message_edit.json")
    message = Message.objects.get()
    assert message.text.endswith("4471-23")
    assert message.payload["edits"][0]["text"].endswith("4471-22")


def test_it_threads_a_reply_that_arrives_before_the_message_it_answers(fb, post):
    post(fb, "reply_to.json")
    post(fb, "text_portuguese.json")
    assert Ticket.objects.count() == 1 and Message.objects.count() == 2


def test_it_ignores_an_instagram_mention_and_keeps_own_comments_out(ig, post):
    post(ig, "mention.json")
    post(ig, "own_comment.json")
    assert not Ticket.objects.exists()


# --------------------------------------------------------------------------- sending


@pytest.fixture
def fb_ticket(fb: Channel, post: Any) -> Ticket:
    post(fb, "text_portuguese.json")
    return Ticket.objects.get()


def test_it_sends_a_reply_with_quick_replies_through_the_send_api(fb_ticket, alice, fake_platform):
    fake_platform.respond("POST", FB_SEND, 200, {"recipient_id": PSID_PT, "message_id": MID_OUT})
    message = actions.do_reply(fb_ticket, alice, "Resolvido?", payload=buttons("Sim", "Não"))

    assert send_delivery_now(message.delivery.pk).status == "sent"
    [request] = fake_platform.sent(FB_SEND)
    assert request.headers["authorization"] == "Bearer EAAB-page-token"
    assert request.json == {
        "recipient": {"id": PSID_PT},
        "messaging_type": "RESPONSE",
        "message": {
            "text": "Resolvido?",
            "quick_replies": [
                {"content_type": "text", "title": "Sim", "payload": "b1"},
                {"content_type": "text", "title": "Não", "payload": "b2"},
            ],
        },
    }
    message.refresh_from_db()
    assert message.platform_message_id == MID_OUT and message.delivery_status == "sent"


@pytest.mark.parametrize(
    "labels",
    [[f"Opção {n}" for n in range(1, 15)], ["Falar com um assistente", "Não"]],
)
def test_it_writes_choices_beyond_quick_reply_limits_as_numbered_text(
    fb_ticket, alice, fake_platform, labels
):
    fake_platform.respond("POST", FB_SEND, 200, {"recipient_id": PSID_PT, "message_id": MID_OUT})
    message = actions.do_reply(fb_ticket, alice, "Escolha:", payload=buttons(*labels))
    send_delivery_now(message.delivery.pk)
    [request] = fake_platform.sent(FB_SEND)
    assert "quick_replies" not in request.json["message"]
    assert request.json["message"]["text"].endswith(f"{len(labels)}. {labels[-1]}")


def test_it_splits_a_long_reply_and_sends_attachments_as_files(fb_ticket, alice, fake_platform):
    from django.core.files.uploadedfile import SimpleUploadedFile

    ids = iter(["m_1", "m_2", "m_3"])
    fake_platform.respond(
        "POST", FB_SEND, 200, lambda request: {"recipient_id": PSID_PT, "message_id": next(ids)}
    )
    text = ("Estamos a verificar a sua fatura com atenção. " * 60).strip()  # over 2000
    photo = SimpleUploadedFile("contador.jpg", b"\xff\xd8\xff", content_type="image/jpeg")
    message = actions.do_reply(fb_ticket, alice, text, attachments=[photo])
    send_delivery_now(message.delivery.pk)

    first, second, image = fake_platform.sent(FB_SEND)
    assert len(first.json["message"]["text"]) <= 2000
    assert first.json["message"]["text"] + " " + second.json["message"]["text"] == text
    assert image.json["message"]["attachment"]["type"] == "image"
    assert image.json["message"]["attachment"]["payload"]["url"].endswith(".jpg")
    message.refresh_from_db()
    assert message.platform_message_id == "m_2"


def test_it_measures_instagram_text_in_bytes(ig, post, alice, fake_platform):
    post(ig, "text_russian.json")
    ticket = Ticket.objects.get()
    fake_platform.respond(
        "POST", IG_SEND, 200, lambda request: {"recipient_id": IGSID_RU, "message_id": "m"}
    )
    text = "Бригада выехала. " * 80  # 1360 characters, twice as many bytes
    message = actions.do_reply(ticket, alice, text)
    send_delivery_now(message.delivery.pk)
    parts = [r.json["message"]["text"] for r in fake_platform.sent(IG_SEND)]
    assert len(parts) == 3
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert " ".join(parts) == text.strip()
    assert fake_platform.sent(IG_SEND)[0].json["recipient"] == {"id": IGSID_RU}


def test_it_answers_an_instagram_comment_with_a_public_reply(ig, post, alice, fake_platform):
    post(ig, "comment_portuguese.json")
    ticket = Ticket.objects.get()
    assert ticket.is_public
    fake_platform.respond("POST", r"/instagram/17865799348012345/replies", 200, {"id": "1789"})
    message = actions.do_reply(
        ticket, alice, "Lamentamos! Já enviámos uma equipa.", payload=buttons("Obrigado")
    )
    send_delivery_now(message.delivery.pk)

    [request] = fake_platform.sent(r"/replies")
    assert request.headers["authorization"] == "Bearer EAAB-ig-token"
    assert request.json == {"message": "Lamentamos! Já enviámos uma equipa.\n\n1. Obrigado"}
    message.refresh_from_db()
    assert message.platform_message_id == "comment:1789"
    assert not fake_platform.sent(IG_SEND)


@pytest.mark.parametrize(
    "error",
    [
        {"message": "(#613) Calls to this api have exceeded the rate limit.", "code": 613},
        {"message": "Temporary send message failure. Please try again later", "code": 1200},
    ],
)
def test_it_retries_rate_limits_and_temporary_failures(fb_ticket, alice, fake_platform, error):
    fake_platform.respond("POST", FB_SEND, 400, {"error": {**error, "type": "OAuthException"}})
    message = actions.do_reply(fb_ticket, alice, "Obrigado!")
    assert send_delivery_now(message.delivery.pk).status == "retry"
    delivery = Delivery.objects.get(pk=message.delivery.pk)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            {"message": "(#551) This person isn't available right now.", "code": 551},
            "isn't available right now",
        ),
        (
            {
                "message": "(#10) This message is sent outside of allowed window.",
                "code": 10,
                "error_subcode": 2018278,
            },
            "outside the 24-hour messaging window",
        ),
    ],
)
def test_it_fails_a_refused_send_at_once_and_reopens_the_ticket(
    fb_ticket, alice, fake_platform, error, reason
):
    fake_platform.respond("POST", FB_SEND, 400, {"error": {**error, "type": "OAuthException"}})
    message = actions.do_reply(fb_ticket, alice, "Resolvido.", status="resolved")
    assert send_delivery_now(message.delivery.pk).status == "failed"
    message.refresh_from_db()
    assert message.delivery_status == "failed" and reason in message.delivery_error
    assert Message.objects.get(ticket=fb_ticket, is_internal=True).payload == {
        "delivery_failed": message.pk
    }
    assert Ticket.objects.get(pk=fb_ticket.pk).status == "open"


def test_it_applies_delivery_receipts_and_instagram_seen_to_sent_messages(
    fb_ticket, fb, ig, post, alice, fake_platform
):
    fake_platform.respond("POST", FB_SEND, 200, {"recipient_id": PSID_PT, "message_id": MID_OUT})
    message = actions.do_reply(fb_ticket, alice, "Obrigado, vamos verificar.")
    send_delivery_now(message.delivery.pk)
    post(fb, "delivery.json")
    post(fb, "read_watermark.json")  # a time, not an id: kept in the record only
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    assert Ticket.objects.count() == 1

    post(ig, "text_russian.json")
    ig_ticket = Ticket.objects.get(channel=ig)
    fake_platform.respond(
        "POST", IG_SEND, 200, {"recipient_id": IGSID_RU, "message_id": IG_MID_OUT}
    )
    ig_message = actions.do_reply(ig_ticket, alice, "Бригада выехала.")
    send_delivery_now(ig_message.delivery.pk)
    post(ig, "seen.json")
    ig_message.refresh_from_db()
    assert ig_message.delivery_status == "read"


# --------------------------------------------------------------------------- the window


def test_it_refuses_a_reply_after_24_hours_without_the_human_agent_tag(fb_ticket, alice):
    Message.objects.filter(ticket=fb_ticket).update(created_at=timezone.now() - timedelta(hours=30))
    with pytest.raises(Conflict) as refused:
        actions.do_reply(fb_ticket, alice, "Ainda precisa de ajuda?")
    assert "within 24 hours" in refused.value.message
    assert not Message.objects.filter(direction=Direction.OUT).exists()
    assert not Delivery.objects.exists()


def test_it_sends_with_the_human_agent_tag_after_24_hours_when_allowed(
    fb, post, alice, fake_platform
):
    fb.settings = {**fb.settings, "human_agent_tag": True}
    fb.save()
    written = int((time.time() - 30 * 3600) * 1000)
    post(fb, message_body(fb, PSID_PT, "Ainda sem resposta sobre a fatura", at_ms=written))
    ticket = Ticket.objects.get()
    Message.objects.filter(ticket=ticket).update(created_at=timezone.now() - timedelta(hours=30))
    fake_platform.respond("POST", FB_SEND, 200, {"recipient_id": PSID_PT, "message_id": MID_OUT})

    message = actions.do_reply(ticket, alice, "Pedimos desculpa pela demora.")
    send_delivery_now(message.delivery.pk)

    [request] = fake_platform.sent(FB_SEND)
    assert request.json["messaging_type"] == "MESSAGE_TAG"
    assert request.json["tag"] == "HUMAN_AGENT"
    adapter = adapter_for("messenger")
    assert adapter.check_reply(fb, timezone.now() - timedelta(days=6)) is None
    assert "7 days" in adapter.check_reply(fb, timezone.now() - timedelta(days=8))


def test_it_answers_inside_the_window_without_a_tag(fb, post, alice, fake_platform):
    fb.settings = {**fb.settings, "human_agent_tag": True}
    fb.save()
    post(fb, message_body(fb, PSID_PT, "Olá, preciso de ajuda", at_ms=int(time.time() * 1000)))
    fake_platform.respond("POST", FB_SEND, 200, {"recipient_id": PSID_PT, "message_id": MID_OUT})
    message = actions.do_reply(Ticket.objects.get(), alice, "Claro!")
    send_delivery_now(message.delivery.pk)
    [request] = fake_platform.sent(FB_SEND)
    assert request.json["messaging_type"] == "RESPONSE" and "tag" not in request.json
