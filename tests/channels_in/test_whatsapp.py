from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels_in.base import Ignored, InboundMessage, StatusUpdate
from channels_in.models import Channel, InboundEvent
from channels_in.processing import process_event, send_delivery_now
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes
from tickets import actions
from tickets.errors import Conflict
from tickets.models import Contact, Delivery, Direction, Identity, Message, Ticket

pytestmark = pytest.mark.django_db

PNID = "106540352242922"
APP_SECRET = "wa-app-secret"
VERIFY_TOKEN = "verify-me-please"
WAMID_OUT = "wamid.HBgLMzUxOTEyMzQ1Njc4FQIAERgSQzY3RjJBMUUwQjVDNzI5MTBBAA=="
WAMID_PT = "wamid.HBgLMzUxOTEyMzQ1Njc4FQIAEhgUM0E0QjY1OTlBRUUwMzgxMDE0NEYA"
SEND_PATH = rf"/whatsapp/{PNID}/messages"

# What each fixture must parse into: a new fixture needs its expectation here.
EXPECTED = {
    "audio_voice.json": ["InboundMessage"],
    "batch_multi_entry.json": ["InboundMessage", "InboundMessage", "StatusUpdate"],
    "button_template_quick_reply.json": ["InboundMessage"],
    "contacts_card.json": ["InboundMessage"],
    "document_lithuanian.json": ["InboundMessage"],
    "errors_system.json": ["Ignored"],
    "image_caption_chinese.json": ["InboundMessage"],
    "interactive_button_reply.json": ["InboundMessage"],
    "interactive_list_reply.json": ["InboundMessage"],
    "location.json": ["InboundMessage"],
    "other_phone_number.json": ["Ignored"],
    "reaction.json": ["Ignored"],
    "reply_context.json": ["InboundMessage"],
    "status_delivered.json": ["StatusUpdate"],
    "status_failed.json": ["StatusUpdate"],
    "status_read.json": ["StatusUpdate"],
    "status_sent.json": ["StatusUpdate"],
    "sticker.json": ["InboundMessage"],
    "template_status_update.json": ["Ignored"],
    "text_portuguese.json": ["InboundMessage"],
    "text_russian_script.json": ["InboundMessage"],
    "unsupported.json": ["InboundMessage"],
    "video.json": ["InboundMessage"],
}


@pytest.fixture
def wa(whatsapp: Channel) -> Channel:
    whatsapp.credentials = {
        "access_token": "EAAG-test-token",
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "phone_number_id": PNID,
    }
    whatsapp.save()
    return whatsapp


@pytest.fixture
def post(wa: Channel, hook: Any) -> Any:
    """post(fixture name or bytes): a webhook signed as Meta signs it."""

    def _post(name_or_body: str | bytes, **headers: str) -> Any:
        body = (
            fixture_bytes("whatsapp", name_or_body)
            if isinstance(name_or_body, str)
            else name_or_body
        )
        signed = {**adapter_for("whatsapp").sign(wa, body, ""), **headers}
        return hook("whatsapp", "wa-main", body, **signed)

    return _post


def parse(channel: Channel, name: str) -> list[Any]:
    return adapter_for("whatsapp").parse(channel, fixture_bytes("whatsapp", name), {})


def answer(wamid: str = WAMID_OUT) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "351912345678", "wa_id": "351912345678"}],
        "messages": [{"id": wamid}],
    }


def reply(ticket: Ticket, agent: Any, text: str, **kwargs: Any) -> Message:
    """An agent's reply, left queued (its on-commit dispatch does not run in a test)."""
    return actions.do_reply(ticket, agent, text, **kwargs)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "whatsapp").glob("*.json")))
def test_it_parses_every_fixture(wa, name):
    items = parse(wa, name)
    assert [type(i).__name__ for i in items] == EXPECTED[name]


def test_it_reads_a_text_and_the_senders_profile_name(wa):
    [item] = parse(wa, "text_portuguese.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == WAMID_PT
    assert item.sender.kind == "whatsapp"
    assert item.sender.value == item.sender.phone == "351912345678"
    assert item.sender.display_name == "João Conceição"
    assert item.text.startswith("Bom dia! Estou sem luz na Rua das Flores")
    assert item.text.endswith("🙏")
    assert item.sent_at is not None and item.sent_at.year == 2025


def test_it_keeps_markup_and_emoji_as_plain_text(wa):
    [item] = parse(wa, "text_russian_script.json")
    assert item.sender.display_name == "Ольга Смирнова"
    assert "<script>alert('xss')</script>" in item.text  # escaped where it is shown
    assert item.text.endswith("⚡🔌")


def test_it_reads_media_as_references_the_worker_fetches(wa):
    [image] = parse(wa, "image_caption_chinese.json")
    assert image.kind == "image" and image.text == "电表读数：04512，请查收 📷"
    assert image.attachments[0].source_url == "whatsapp-media:1479537139650973"
    assert image.attachments[0].content_type == "image/jpeg"
    [document] = parse(wa, "document_lithuanian.json")
    assert document.kind == "document"
    assert document.attachments[0].name == "sąskaita_2025-11.pdf"
    assert document.attachments[0].content_type == "application/pdf"
    assert document.text == "Kodėl lapkričio sąskaita tokia didelė?"
    [voice] = parse(wa, "audio_voice.json")
    assert voice.kind == "audio" and voice.payload["voice"] is True
    assert voice.attachments[0].content_type == "audio/ogg"
    [video] = parse(wa, "video.json")
    assert video.kind == "video" and video.text.startswith("Faíscas no poste")
    [sticker] = parse(wa, "sticker.json")
    assert sticker.kind == "sticker" and sticker.attachments[0].content_type == "image/webp"


def test_it_reads_a_location(wa):
    [item] = parse(wa, "location.json")
    assert item.kind == "location"
    assert item.payload["location"] == {
        "latitude": pytest.approx(54.687157),
        "longitude": pytest.approx(25.279652),
        "title": "Gedimino pr. 9",
        "address": "Gedimino pr. 9, Vilnius",
    }


def test_it_keeps_a_shared_contact_card_as_data_not_as_the_senders_phone(wa):
    [item] = parse(wa, "contacts_card.json")
    assert item.kind == "contact"
    assert item.payload["contact"]["name"] == "Jonas Kazlauskas"
    assert item.payload["contact"]["phone"] == "+370 612 22222"
    assert item.payload["contact"]["company"] == "UAB Namų priežiūra"
    assert item.sender.phone == "37061234567"  # the sender's own wa_id, not the card's


def test_it_turns_reply_buttons_list_rows_and_template_buttons_into_postbacks(wa):
    [button] = parse(wa, "interactive_button_reply.json")
    assert button.kind == "postback"
    assert button.payload["button"] == "outage_report"
    assert button.text == "Pranešti apie gedimą"
    assert button.reply_to == (WAMID_OUT,)
    [row] = parse(wa, "interactive_list_reply.json")
    assert row.kind == "postback" and row.payload["button"] == "billing"
    assert row.payload["description"] == "Вопросы по счёту"
    [template] = parse(wa, "button_template_quick_reply.json")
    assert template.kind == "postback" and template.payload["button"] == "CONFIRM_VISIT"
    assert template.text == "Confirmar visita"


def test_it_ignores_reactions_but_shows_unsupported_messages(wa):
    [reaction] = parse(wa, "reaction.json")
    assert isinstance(reaction, Ignored) and "👍" in reaction.reason
    [unsupported] = parse(wa, "unsupported.json")
    assert isinstance(unsupported, InboundMessage) and unsupported.kind == "unsupported"
    assert unsupported.payload["unsupported"]["type"] == "poll_creation"
    assert "131051" in unsupported.payload["unsupported"]["error"]


def test_it_reads_receipts_and_the_reason_of_a_failure(wa):
    for name, status in [
        ("status_sent.json", "sent"),
        ("status_delivered.json", "delivered"),
        ("status_read.json", "read"),
    ]:
        [item] = parse(wa, name)
        assert item == StatusUpdate(wa.pk, WAMID_OUT, status, at=item.at)
    [failed] = parse(wa, "status_failed.json")
    assert failed.status == "failed"
    assert "within 24 hours" in failed.error and "Re-engagement message (131047)" in failed.error


def test_it_ignores_other_numbers_other_fields_and_account_errors(wa):
    [other] = parse(wa, "other_phone_number.json")
    assert "109999999999999" in other.reason
    [template] = parse(wa, "template_status_update.json")
    assert template.reason == "message_template_status_update notification"
    [error] = parse(wa, "errors_system.json")
    assert "Rate limit hit (130429)" in error.reason


# --------------------------------------------------------------------------- the webhook


def test_it_turns_a_signed_webhook_into_a_ticket_with_a_phone_identity(wa, post):
    response = post("text_portuguese.json")

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.platform_id == f"msg:{WAMID_PT}"
    assert event.status == "processed" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.language == "pt" and ticket.channel == wa
    assert ticket.contact.display_name == "João Conceição"
    assert {(i.kind, i.value) for i in ticket.contact.identities.all()} == {
        ("whatsapp", "+351912345678"),
        ("phone", "+351912345678"),
    }


def test_it_splits_a_batch_into_its_messages_and_receipts(wa, post):
    response = post("batch_multi_entry.json")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.platform_id.startswith("batch:")
    assert event.result == {"message": 2, "receipt_unmatched": 1}
    assert Ticket.objects.count() == 2
    assert set(Message.objects.values_list("text", flat=True)) == {
        "你好，我家停电了，什么时候恢复？",
        "Nėra elektros Žirmūnų g. 12 – kada bus?",
    }


def test_it_ignores_a_duplicate_delivery(wa, post):
    first = post("text_portuguese.json")
    second = post("text_portuguese.json")
    assert first.status_code == second.status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_it_keeps_receipts_of_one_message_as_separate_events(wa, post):
    post("status_sent.json")
    post("status_delivered.json")
    post("status_delivered.json")
    assert sorted(InboundEvent.objects.values_list("platform_id", flat=True)) == [
        f"status:{WAMID_OUT}:delivered",
        f"status:{WAMID_OUT}:sent",
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Hub-Signature-256": ""}, 401),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
        ({"X-Hub-Signature-256": "not-a-signature"}, 403),
    ],
)
def test_it_rejects_a_missing_or_wrong_signature_and_stores_nothing(wa, hook, headers, status):
    body = fixture_bytes("whatsapp", "text_portuguese.json")
    response = hook("whatsapp", "wa-main", body, **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_checks_the_signature_over_the_bytes_meta_sent(wa, hook):
    # Re-serializing (unescaping \u00e3 to "ã") changes the bytes: the signature no longer fits.
    original = fixture_bytes("whatsapp", "text_portuguese.json")
    headers = adapter_for("whatsapp").sign(wa, original, "")
    rewritten = json.dumps(json.loads(original), ensure_ascii=False).encode()
    assert hook("whatsapp", "wa-main", rewritten, **headers).status_code == 403
    assert hook("whatsapp", "wa-main", original, **headers).status_code == 200


def test_it_answers_the_verification_handshake_with_the_challenge(wa, client):
    response = client.get(
        "/hooks/whatsapp/wa-main/",
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
        {},
    ],
)
def test_it_refuses_a_handshake_without_the_right_token(wa, client, query):
    response = client.get("/hooks/whatsapp/wa-main/", query)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "bad_signature"  # and no challenge echoed


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json at all", "not JSON"),
        (b'{"object": "page", "entry": []}', "whatsapp_business_account"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": '
            b'"messages", "value": {"messages": [{"type": "text", "text": {"body": "hi"}}]}}]}]}',
            "needs id and type",
        ),
    ],
)
def test_it_stores_a_malformed_body_as_a_failed_event(wa, post, body, error):
    response = post(body)
    assert response.status_code == 400
    assert error in response.json()["error"]["message"]
    event = InboundEvent.objects.get()
    assert event.status == "failed" and error in event.error
    assert not Ticket.objects.exists()


def test_it_never_opens_a_ticket_for_a_receipt(wa, post):
    post("status_delivered.json")
    post("status_failed.json")
    assert not Ticket.objects.exists()
    assert [e.result for e in InboundEvent.objects.order_by("id")] == [
        {"receipt_unmatched": 1},
        {"receipt_unmatched": 1},
    ]


def test_it_threads_a_reply_that_arrives_before_the_message_it_quotes(wa, post):
    post("reply_context.json")
    post("text_portuguese.json")
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


def test_it_unifies_the_same_person_on_whatsapp_and_sms(wa, post, sms, hook, settings):
    sms.credentials = {"account_sid": "AC1", "auth_token": "twilio-token", "from_number": "+1"}
    sms.save()
    settings.SITE_URL = "https://helpdesk.example.org"
    body = b"MessageSid=SMaaa&From=%2B351912345678&To=%2B37066000111&Body=Ainda+sem+luz&NumMedia=0"
    signed = adapter_for("sms").sign(sms, body, "https://helpdesk.example.org/hooks/sms/sms-main/")
    hook("sms", "sms-main", body, content_type="application/x-www-form-urlencoded", **signed)
    post("text_portuguese.json")

    assert Contact.objects.filter(merged_into__isnull=True).count() == 1
    contact = Identity.objects.get(kind="whatsapp").contact
    assert {i.kind for i in contact.identities.all()} == {"phone", "whatsapp"}
    assert Ticket.objects.filter(contact=contact).count() == 2  # one conversation per channel


# --------------------------------------------------------------------------- sending


@pytest.fixture
def ticket(wa: Channel, post: Any) -> Ticket:
    post("text_portuguese.json")
    return Ticket.objects.get()


def test_it_sends_a_text_reply_through_the_cloud_api(ticket, alice, fake_platform):
    fake_platform.respond("POST", SEND_PATH, 200, answer())
    message = reply(ticket, alice, "Olá João, a equipa já está a caminho.")

    assert send_delivery_now(message.delivery.pk).status == "sent"
    [request] = fake_platform.sent(SEND_PATH)
    assert request.headers["authorization"] == "Bearer EAAG-test-token"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "351912345678",
        "type": "text",
        "text": {"preview_url": False, "body": "Olá João, a equipa já está a caminho."},
    }
    message.refresh_from_db()
    assert message.delivery_status == "sent" and message.platform_message_id == WAMID_OUT


def buttons(*labels: str) -> dict[str, Any]:
    return {"buttons": [{"id": f"b{n}", "label": label} for n, label in enumerate(labels, 1)]}


def test_it_renders_up_to_three_short_buttons_as_reply_buttons(ticket, alice, fake_platform):
    fake_platform.respond("POST", SEND_PATH, 200, answer())
    message = reply(ticket, alice, "Já tem luz?", payload=buttons("Sim", "Não", "Ainda não sei"))
    send_delivery_now(message.delivery.pk)

    [request] = fake_platform.sent(SEND_PATH)
    assert request.json["type"] == "interactive"
    assert request.json["interactive"] == {
        "type": "button",
        "body": {"text": "Já tem luz?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "b1", "title": "Sim"}},
                {"type": "reply", "reply": {"id": "b2", "title": "Não"}},
                {"type": "reply", "reply": {"id": "b3", "title": "Ainda não sei"}},
            ]
        },
    }


def test_it_renders_up_to_ten_choices_as_a_list(ticket, alice, fake_platform):
    fake_platform.respond("POST", SEND_PATH, 200, answer())
    labels = ["Falta de luz", "Fatura", "Leitura", "Contrato", "Outro assunto"]
    message = reply(ticket, alice, "Escolha o assunto:", payload=buttons(*labels))
    send_delivery_now(message.delivery.pk)

    [request] = fake_platform.sent(SEND_PATH)
    interactive = request.json["interactive"]
    assert interactive["type"] == "list"
    assert interactive["body"] == {"text": "Escolha o assunto:"}
    assert interactive["action"]["button"] == "☰"
    assert [r["title"] for r in interactive["action"]["sections"][0]["rows"]] == labels


@pytest.mark.parametrize(
    "labels",
    [
        [f"Opção {n}" for n in range(1, 12)],  # 11 choices: more than a list holds
        ["Quero falar com um assistente humano", "Não"],  # a title over 24 characters
    ],
)
def test_it_writes_choices_beyond_whatsapps_limits_as_numbered_text(
    ticket, alice, fake_platform, labels
):
    fake_platform.respond("POST", SEND_PATH, 200, answer())
    message = reply(ticket, alice, "Escolha:", payload=buttons(*labels))
    send_delivery_now(message.delivery.pk)

    [request] = fake_platform.sent(SEND_PATH)
    assert request.json["type"] == "text"
    body = request.json["text"]["body"]
    assert body.startswith("Escolha:\n\n1. ")
    assert f"{len(labels)}. {labels[-1]}" in body


def test_it_splits_a_long_reply_and_sends_attachments_after_the_text(ticket, alice, fake_platform):
    from django.core.files.uploadedfile import SimpleUploadedFile

    ids = iter(["wamid.part1", "wamid.part2", "wamid.file"])
    fake_platform.respond("POST", SEND_PATH, 200, lambda request: answer(next(ids)))
    text = ("A equipa está a trabalhar na avaria. " * 120).strip()  # over 4096 characters
    bill = SimpleUploadedFile("fatura.pdf", b"%PDF-1.4 fatura", content_type="application/pdf")
    message = reply(ticket, alice, text, attachments=[bill])
    send_delivery_now(message.delivery.pk)

    first, second, document = fake_platform.sent(SEND_PATH)
    assert len(first.json["text"]["body"]) <= 4096
    assert first.json["text"]["body"] + " " + second.json["text"]["body"] == text
    assert document.json["type"] == "document"
    assert document.json["document"]["filename"].endswith(".pdf")
    assert document.json["document"]["link"].startswith("http")
    message.refresh_from_db()
    assert message.platform_message_id == "wamid.part2"  # receipts follow the text


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}),
        (
            400,
            {"message": "(#131056) Pair rate limit hit", "type": "OAuthException", "code": 131056},
        ),
        (503, {"message": "Service temporarily unavailable", "code": 2}),
        (429, {"message": "Too many calls", "code": 80007}),
    ],
)
def test_it_retries_throttling_and_outages_later(ticket, alice, fake_platform, status, error):
    fake_platform.respond("POST", SEND_PATH, status, {"error": error})
    message = reply(ticket, alice, "Obrigado pela paciência.")
    before = timezone.now()

    result = send_delivery_now(message.delivery.pk)

    assert result.status == "retry"
    delivery = Delivery.objects.get(pk=message.delivery.pk)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > before
    assert str(error["code"]) in delivery.last_error
    message.refresh_from_db()
    assert message.delivery_status == "queued"


def test_it_fails_a_permanent_error_at_once_with_a_note_and_reopens_the_ticket(
    ticket, alice, fake_platform
):
    fake_platform.respond(
        "POST",
        SEND_PATH,
        400,
        {
            "error": {
                "message": "(#131026) Message Undeliverable.",
                "type": "OAuthException",
                "code": 131026,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "Message Undeliverable.",
                },
                "fbtrace_id": "AbCdEf123",
            }
        },
    )
    message = reply(ticket, alice, "Resolvido!", status="resolved")
    assert Ticket.objects.get(pk=ticket.pk).status == "resolved"

    assert send_delivery_now(message.delivery.pk).status == "failed"

    delivery = Delivery.objects.get(pk=message.delivery.pk)
    assert delivery.state == "failed" and "could not deliver to this number" in delivery.last_error
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    note = Message.objects.get(ticket=ticket, is_internal=True)
    assert note.payload == {"delivery_failed": message.pk}
    assert "131026" in note.text
    assert Ticket.objects.get(pk=ticket.pk).status == "open"


def test_it_explains_a_send_refused_for_the_24_hour_window(ticket, alice, fake_platform):
    fake_platform.respond(
        "POST",
        SEND_PATH,
        400,
        {"error": {"message": "(#131047) Re-engagement message", "code": 131047}},
    )
    message = reply(ticket, alice, "Ainda precisa de ajuda?")
    assert send_delivery_now(message.delivery.pk).status == "failed"
    message.refresh_from_db()
    assert message.delivery_error.startswith(
        "WhatsApp send: WhatsApp only allows free-form replies within 24 hours"
    )


def test_it_refuses_a_reply_outside_the_24_hour_window_and_writes_nothing(ticket, alice):
    Message.objects.filter(ticket=ticket).update(created_at=timezone.now() - timedelta(hours=25))

    with pytest.raises(Conflict) as refused:
        actions.do_reply(ticket, alice, "Bom dia, ainda sem luz?")

    assert refused.value.message == (
        "WhatsApp only allows free-form replies within 24 hours of the customer's last "
        "message; send an approved template instead"
    )
    assert not Message.objects.filter(direction=Direction.OUT).exists()
    assert not Delivery.objects.exists()


def test_it_allows_a_reply_inside_the_window_and_refuses_without_a_customer_message(wa):
    adapter = adapter_for("whatsapp")
    assert adapter.check_reply(wa, timezone.now() - timedelta(hours=23, minutes=59)) is None
    assert "24 hours" in adapter.check_reply(wa, None)


# --------------------------------------------------------------------------- receipts


def test_it_applies_receipts_in_any_order_and_a_failure_reopens_the_ticket(
    ticket, alice, post, fake_platform
):
    # A receipt that beats our record of the send finds nothing yet: the core keeps the event
    # pending and applies it on a later attempt.
    post("status_delivered.json")
    early = InboundEvent.objects.order_by("-id")[0]
    assert early.status == "pending" and early.result == {"receipt_unmatched": 1}

    fake_platform.respond("POST", SEND_PATH, 200, answer())
    message = reply(ticket, alice, "A luz volta até às 18h.", status="pending")
    send_delivery_now(message.delivery.pk)
    assert process_event(early.pk).counts == {"receipt": 1}
    message.refresh_from_db()
    assert message.delivery_status == "delivered"

    post("status_read.json")
    post("status_sent.json")  # late: never moves the status backwards
    message.refresh_from_db()
    assert message.delivery_status == "read"
    assert Ticket.objects.count() == 1

    post("status_failed.json")
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert "within 24 hours" in message.delivery_error
    assert Ticket.objects.get(pk=ticket.pk).status == "open"
