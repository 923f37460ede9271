from __future__ import annotations

import pytest

from channels_in.base import Edit, Ignored, InboundMessage
from channels_in.models import InboundEvent
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes
from tickets.models import Contact, Identity, Message, Priority, Ticket

pytestmark = pytest.mark.django_db

SECRET = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}


def parse(channel, name):
    return adapter_for("telegram").parse(channel, fixture_bytes("telegram", name), {})


@pytest.mark.parametrize("path", sorted(p.name for p in (FIXTURES / "telegram").glob("*.json")))
def test_it_parses_every_fixture(telegram, path):
    items = parse(telegram, path)
    assert len(items) == 1


def test_it_reads_a_private_text_message(telegram):
    [item] = parse(telegram, "text_private.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == "402871551:311"
    assert item.sender.value == "402871551"
    assert item.sender.display_name == "Ольга Смирнова"
    assert item.sender.language == "ru"
    assert "<b>срочно</b>" in item.text  # kept as text; escaping happens where it is shown


def test_it_takes_the_largest_photo_and_its_caption(telegram):
    [item] = parse(telegram, "photo_caption.json")
    assert item.kind == "image"
    assert item.text == "Вот провод на земле, искрит"
    assert item.attachments[0].source_url == "telegram-file:AgACAgIAAxkBAAIBQ2large"


def test_it_reads_documents_voice_stickers_and_locations(telegram):
    [doc] = parse(telegram, "document.json")
    assert doc.kind == "document" and doc.attachments[0].name == "квитанция_ноябрь.pdf"
    [voice] = parse(telegram, "voice.json")
    assert voice.kind == "audio" and voice.attachments[0].content_type == "audio/ogg"
    [sticker] = parse(telegram, "sticker.json")
    assert sticker.kind == "sticker" and sticker.text == "😡"
    [location] = parse(telegram, "location.json")
    assert location.kind == "location"
    assert location.payload["location"]["latitude"] == pytest.approx(58.010455)


def test_it_learns_the_phone_the_customer_shares_about_themselves(telegram):
    [item] = parse(telegram, "contact_own.json")
    assert item.kind == "contact"
    assert item.sender.phone == "79121234567"


def test_it_turns_a_button_press_into_a_postback(telegram):
    [item] = parse(telegram, "callback_query.json")
    assert item.kind == "postback"
    assert item.payload == {"button": "reading"}


def test_it_reads_edits_and_ignores_groups_and_membership_changes(telegram):
    [edit] = parse(telegram, "edited_message.json")
    assert isinstance(edit, Edit) and edit.platform_message_id == "402871551:311"
    [group] = parse(telegram, "group_message.json")
    assert isinstance(group, Ignored) and group.reason == "group message"
    [member] = parse(telegram, "my_chat_member.json")
    assert isinstance(member, Ignored)


def test_it_takes_group_messages_when_the_channel_wants_them(telegram):
    telegram.settings = {"groups": True}
    [item] = parse(telegram, "group_message.json")
    assert isinstance(item, InboundMessage)
    assert item.thread_key == "chat:-1001234567890"
    assert item.payload["reply_to_address"] == "-1001234567890"


def test_it_turns_a_signed_webhook_into_a_ticket(telegram, hook):
    response = hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.status == "processed" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.language == "ru" and ticket.topic == "outage"
    assert Identity.objects.filter(kind="telegram", value="402871551").exists()


def test_it_ignores_a_duplicate_delivery(telegram, hook):
    body = fixture_bytes("telegram", "text_private.json")
    first = hook("telegram", "tg-main", body, **SECRET)
    second = hook("telegram", "tg-main", body, **SECRET)
    assert first.status_code == second.status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_it_applies_an_edit_that_arrives_after_the_message(telegram, hook):
    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)
    hook("telegram", "tg-main", fixture_bytes("telegram", "edited_message.json"), **SECRET)
    message = Message.objects.get()
    assert message.text.startswith("Нет света на ул. Ленина 14")
    assert message.payload["edits"][0]["text"].startswith("Здравствуйте!")


def test_it_threads_messages_that_arrive_out_of_order(telegram, hook):
    # The reply (update 785011) is delivered before the message it answers (785001).
    hook("telegram", "tg-main", fixture_bytes("telegram", "reply_to_message.json"), **SECRET)
    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


def test_it_unifies_the_shared_phone_with_an_sms_sender(telegram, sms, receive, hook):
    earlier = receive(sms, "нет света", sender="+79121234567").ticket
    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)
    hook("telegram", "tg-main", fixture_bytes("telegram", "contact_own.json"), **SECRET)
    assert Contact.objects.filter(merged_into__isnull=True).count() == 1
    contact = Ticket.objects.get(pk=earlier.pk).contact
    assert {i.kind for i in contact.identities.all()} == {"phone", "telegram"}


def test_it_scores_a_photo_of_a_sparking_wire_urgent(telegram, hook):
    hook("telegram", "tg-main", fixture_bytes("telegram", "photo_caption.json"), **SECRET)
    assert Ticket.objects.get().priority == Priority.URGENT


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, 403)],
)
def test_it_rejects_a_missing_or_wrong_secret_and_stores_nothing(telegram, hook, headers, status):
    response = hook(
        "telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **headers
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_sends_a_reply_with_buttons_through_the_bot_api(
    telegram, hook, alice, fake_platform, django_capture_on_commit_callbacks
):
    from tickets import actions

    fake_platform.respond(
        "POST",
        r"/telegram/bot123:ABC/sendMessage",
        200,
        {"ok": True, "result": {"message_id": 900}},
    )
    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        message = actions.do_reply(
            ticket,
            alice,
            "Бригада выехала",
            payload={"buttons": [{"id": "ok", "label": "Спасибо"}]},
        )

    [request] = fake_platform.sent("sendMessage")
    assert request.json["chat_id"] == "402871551"
    assert request.json["text"] == "Бригада выехала"
    assert request.json["reply_markup"]["inline_keyboard"] == [
        [{"text": "Спасибо", "callback_data": "ok"}]
    ]
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert message.platform_message_id == "402871551:900"


def test_it_stores_a_malformed_body_as_a_failed_event(telegram, hook):
    response = hook("telegram", "tg-main", b'{"message": {}}', **SECRET)
    assert response.status_code == 400
    assert "update_id" in response.json()["error"]["message"]
    event = InboundEvent.objects.get()
    assert event.status == "failed" and "update_id" in event.error


def test_it_waits_for_the_message_when_its_edit_arrives_first(telegram, hook):
    hook("telegram", "tg-main", fixture_bytes("telegram", "edited_message.json"), **SECRET)
    edit_event = InboundEvent.objects.get()
    assert edit_event.status == "pending" and edit_event.error.startswith("deferred")

    hook("telegram", "tg-main", fixture_bytes("telegram", "text_private.json"), **SECRET)
    from channels_in.processing import process_event

    assert process_event(edit_event.pk).status == "processed"
    assert Message.objects.get().text.startswith("Нет света на ул. Ленина 14")


def test_it_gives_up_waiting_for_a_missing_message_after_a_while(telegram, hook):
    from datetime import timedelta

    from django.utils import timezone

    from channels_in.processing import DEFER_UNMATCHED_FOR, process_event

    hook("telegram", "tg-main", fixture_bytes("telegram", "edited_message.json"), **SECRET)
    event = InboundEvent.objects.get()
    InboundEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - DEFER_UNMATCHED_FOR - timedelta(seconds=1)
    )
    outcome = process_event(event.pk)
    assert outcome.status == "processed" and outcome.counts == {"edit_unmatched": 1}
