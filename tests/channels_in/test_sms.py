from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from channels_in.base import Ignored, InboundMessage, StatusUpdate
from channels_in.models import Channel, InboundEvent
from channels_in.processing import process_event, send_delivery_now
from channels_in.registry import adapter_for
from channels_in.sms.adapter import signature
from tests.channels_in.conftest import FIXTURES, fixture_bytes
from tickets import actions
from tickets.models import Delivery, Identity, Message, Ticket

pytestmark = pytest.mark.django_db

ACCOUNT = "AC3f1c2a9b7d6e5f40a8b9c0d1e2f3a4b5"
TOKEN = "twilio-auth-token"
OURS = "+37066000111"
SITE = "https://helpdesk.example.org"
URL = f"{SITE}/hooks/sms/sms-main/"
OUT_SID = "SMb7c7e2a1d4f94e0c8a2f6d3e9b1c4a57"
SEND_PATH = rf"/sms/Accounts/{ACCOUNT}/Messages.json"
FORM = "application/x-www-form-urlencoded"

EXPECTED = {
    "inbound_alphanumeric_sender.form": ["Ignored"],
    "inbound_chinese.form": ["InboundMessage"],
    "inbound_lithuanian.form": ["InboundMessage"],
    "inbound_portuguese_mms.form": ["InboundMessage"],
    "inbound_russian_script.form": ["InboundMessage"],
    "inbound_stop.form": ["InboundMessage"],
    "status_delivered.form": ["StatusUpdate"],
    "status_failed.form": ["StatusUpdate"],
    "status_queued.form": ["Ignored"],
    "status_sent.form": ["StatusUpdate"],
    "status_undelivered.form": ["StatusUpdate"],
}


@pytest.fixture
def twilio(sms: Channel, settings: Any) -> Channel:
    settings.SITE_URL = SITE
    sms.credentials = {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": OURS}
    sms.save()
    return sms


@pytest.fixture
def post(twilio: Channel, hook: Any) -> Any:
    """post(fixture name or bytes, url=...): a webhook signed as Twilio signs it for `url`."""

    def _post(name_or_body: str | bytes, url: str = URL, **headers: str) -> Any:
        body = fixture_bytes("sms", name_or_body) if isinstance(name_or_body, str) else name_or_body
        signed = {**adapter_for("sms").sign(twilio, body, url), **headers}
        return hook("sms", "sms-main", body, content_type=FORM, **signed)

    return _post


def parse(channel: Channel, name: str) -> list[Any]:
    return adapter_for("sms").parse(channel, fixture_bytes("sms", name), {})


def created(sid: str = OUT_SID) -> dict[str, Any]:
    return {"sid": sid, "status": "queued", "account_sid": ACCOUNT, "num_segments": "1"}


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "sms").glob("*.form")))
def test_it_parses_every_fixture(twilio, name):
    assert [type(i).__name__ for i in parse(twilio, name)] == EXPECTED[name]


def test_it_reads_an_sms_from_a_phone_number(twilio):
    [item] = parse(twilio, "inbound_lithuanian.form")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == "SM0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
    assert (item.sender.kind, item.sender.value, item.sender.phone) == (
        "phone",
        "+37061234567",
        "+37061234567",
    )
    assert item.text == "Laba diena, nėra elektros Žirmūnų g. 12, Vilnius. Kada bus įjungta?"
    assert item.payload == {"to": OURS, "place": {"country": "LT"}}


def test_it_decodes_the_form_exactly(twilio):
    [item] = parse(twilio, "inbound_russian_script.form")
    assert item.text == 'Нет света! <script>alert("x")</script> & 100% без ответа 😡 #авария'
    [chinese] = parse(twilio, "inbound_chinese.form")
    assert chinese.text == "电表读数 04512，户号 889-221。谢谢！"


def test_it_reads_mms_media_as_urls(twilio):
    [item] = parse(twilio, "inbound_portuguese_mms.form")
    assert item.kind == "image"
    assert [a.content_type for a in item.attachments] == ["image/jpeg", "image/png"]
    assert item.attachments[0].name == "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9.jpg"
    assert item.attachments[1].source_url.startswith(
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/"
    )
    assert item.text == "Fotos do contador — leitura de hoje."


def test_it_notes_an_opt_out_and_ignores_senders_that_are_not_phones(twilio):
    [stop] = parse(twilio, "inbound_stop.form")
    assert stop.text == "STOP" and stop.payload["opt_out"] == "STOP"
    [alphanumeric] = parse(twilio, "inbound_alphanumeric_sender.form")
    assert isinstance(alphanumeric, Ignored) and "TELIA" in alphanumeric.reason


def test_it_reads_status_callbacks(twilio):
    [sent] = parse(twilio, "status_sent.form")
    assert sent == StatusUpdate(twilio.pk, OUT_SID, "sent")
    [delivered] = parse(twilio, "status_delivered.form")
    assert delivered.status == "delivered"
    [undelivered] = parse(twilio, "status_undelivered.form")
    assert undelivered.status == "failed"
    assert undelivered.error == (
        "Twilio reported the message undelivered: the customer's phone is switched off or "
        "unreachable (error 30003)"
    )
    [failed] = parse(twilio, "status_failed.form")
    assert "spam (error 30007)" in failed.error
    [queued] = parse(twilio, "status_queued.form")
    assert queued.reason == "status queued (before hand-off)"


# --------------------------------------------------------------------------- the webhook


def test_it_answers_a_signed_sms_with_empty_twiml_and_opens_a_ticket(twilio, post):
    response = post("inbound_lithuanian.form")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    event = InboundEvent.objects.get()
    assert event.platform_id == "sms:SM0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
    assert event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.language == "lt" and ticket.channel == twilio
    assert Identity.objects.get().value == "+37061234567"


def test_it_accepts_the_url_django_sees_as_well_as_site_url(twilio, post):
    # The test client calls http://testserver/...: what build_absolute_uri() reconstructs.
    assert (
        post("inbound_lithuanian.form", url="http://testserver/hooks/sms/sms-main/").status_code
        == 200
    )
    # Twilio's libraries also sign https URLs with the default port written out.
    assert (
        post(
            "inbound_chinese.form", url="https://helpdesk.example.org:443/hooks/sms/sms-main/"
        ).status_code
        == 200
    )
    assert Ticket.objects.count() == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Twilio-Signature": ""}, 401),
        ({"X-Twilio-Signature": "bm90IHRoZSByaWdodCBzaWduYXR1cmU="}, 403),
    ],
)
def test_it_rejects_a_missing_or_wrong_signature_and_stores_nothing(twilio, post, headers, status):
    response = post("inbound_lithuanian.form", **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_rejects_a_signature_for_another_url_or_other_parameters(twilio, post, hook):
    assert post("inbound_lithuanian.form", url=f"{SITE}/hooks/sms/other/").status_code == 403
    body = fixture_bytes("sms", "inbound_lithuanian.form")
    signed = adapter_for("sms").sign(twilio, body, URL)
    tampered = body.replace(b"Kada+bus", b"Kada+nebus")
    assert hook("sms", "sms-main", tampered, content_type=FORM, **signed).status_code == 403
    assert not InboundEvent.objects.exists()


def test_it_signs_as_twilios_documentation_describes():
    # https://www.twilio.com/docs/usage/webhooks/webhooks-security: URL, then each parameter
    # sorted by name, name and value concatenated, HMAC-SHA1 with the auth token, base64.
    import hashlib
    import hmac

    params = [("To", "+1"), ("Body", "Olá & <b>"), ("From", "+2"), ("CallSid", "CA1")]
    data = "https://x.example/hook?a=1" + "BodyOlá & <b>CallSidCA1From+2To+1"
    expected = base64.b64encode(hmac.new(b"12345", data.encode(), hashlib.sha1).digest()).decode()
    assert signature("12345", "https://x.example/hook?a=1", params) == expected


def test_it_ignores_a_duplicate_delivery(twilio, post):
    post("inbound_lithuanian.form")
    post("inbound_lithuanian.form")
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (urlencode({"From": "+37061234567", "Body": "be SID"}).encode(), "needs MessageSid"),
        (b"MessageSid=SM1&From=%2B37061234567&Body=%FF%FE", "not UTF-8"),
        (b"MessageSid=SM2&From=%2B37061234567&NumMedia=two", "NumMedia"),
    ],
)
def test_it_stores_a_malformed_body_as_a_failed_event(twilio, post, body, error):
    response = post(body)
    assert response.status_code == 400
    assert error in response.json()["error"]["message"]
    event = InboundEvent.objects.get()
    assert event.status == "failed" and error in event.error
    assert not Ticket.objects.exists()


def test_it_never_opens_a_ticket_for_a_status_callback(twilio, post):
    post("status_sent.form")
    post("status_delivered.form")
    post("status_delivered.form")
    assert not Ticket.objects.exists()
    assert sorted(InboundEvent.objects.values_list("platform_id", flat=True)) == [
        f"status:{OUT_SID}:delivered",
        f"status:{OUT_SID}:sent",
    ]


# --------------------------------------------------------------------------- sending


@pytest.fixture
def ticket(twilio: Channel, post: Any) -> Ticket:
    post("inbound_lithuanian.form")
    return Ticket.objects.get()


def test_it_sends_a_reply_through_the_messages_api(ticket, bob, fake_platform):
    fake_platform.respond("POST", SEND_PATH, 201, created())
    message = actions.do_reply(ticket, bob, "Elektra bus įjungta iki 18 val.")

    assert send_delivery_now(message.delivery.pk).status == "sent"
    [request] = fake_platform.sent(SEND_PATH)
    credentials = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.headers["content-type"] == FORM
    assert request.form == {
        "To": ["+37061234567"],
        "From": [OURS],
        "Body": ["Elektra bus įjungta iki 18 val."],
        "StatusCallback": [URL],
    }
    message.refresh_from_db()
    assert message.platform_message_id == OUT_SID and message.delivery_status == "sent"


def test_it_writes_buttons_and_attachments_as_text(ticket, bob, fake_platform):
    from django.core.files.uploadedfile import SimpleUploadedFile

    fake_platform.respond("POST", SEND_PATH, 201, created())
    bill = SimpleUploadedFile("saskaita.pdf", b"%PDF", content_type="application/pdf")
    message = actions.do_reply(
        ticket,
        bob,
        "Ar elektra jau yra?",
        attachments=[bill],
        payload={"buttons": [{"id": "yes", "label": "Taip"}, {"id": "no", "label": "Ne"}]},
    )
    send_delivery_now(message.delivery.pk)
    [request] = fake_platform.sent(SEND_PATH)
    body = request.form["Body"][0]
    assert body.startswith("Ar elektra jau yra?\n\n1. Taip\n2. Ne\nhttps://helpdesk.example.org/")
    assert body.endswith(".pdf")


def test_it_splits_a_reply_over_1600_characters(ticket, bob, fake_platform):
    sids = iter(["SM001", "SM002"])
    fake_platform.respond("POST", SEND_PATH, 201, lambda request: created(next(sids)))
    text = ("Atsiprašome už nepatogumus, brigada dirba. " * 50).strip()  # 2149 characters
    message = actions.do_reply(ticket, bob, text)
    send_delivery_now(message.delivery.pk)

    first, second = (r.form["Body"][0] for r in fake_platform.sent(SEND_PATH))
    assert len(first) <= 1600 and first.endswith("dirba.")
    assert f"{first} {second}" == text
    message.refresh_from_db()
    assert message.platform_message_id == "SM002"


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (400, 21610, "unsubscribed from this number"),
        (400, 21211, "not a valid phone number"),
        (400, 21614, "cannot receive SMS"),
    ],
)
def test_it_fails_a_permanent_twilio_error_and_reopens_the_ticket(
    ticket, bob, fake_platform, status, code, reason
):
    fake_platform.respond(
        "POST",
        SEND_PATH,
        status,
        {
            "code": code,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )
    message = actions.do_reply(ticket, bob, "Sąskaita patikslinta.", status="resolved")
    assert send_delivery_now(message.delivery.pk).status == "failed"

    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert reason in message.delivery_error and str(code) in message.delivery_error
    assert Delivery.objects.get(pk=message.delivery.pk).state == "failed"
    note = Message.objects.get(ticket=ticket, is_internal=True)
    assert note.text.startswith("The reply could not be delivered: Twilio send:")
    assert Ticket.objects.get(pk=ticket.pk).status == "open"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
        (503, {"code": 20503, "message": "Service Unavailable", "status": 503}),
        (502, "<html>Bad Gateway</html>"),
    ],
)
def test_it_retries_throttling_and_outages(ticket, bob, fake_platform, status, body):
    fake_platform.respond("POST", SEND_PATH, status, body)
    message = actions.do_reply(ticket, bob, "Ačiū už kantrybę.")
    assert send_delivery_now(message.delivery.pk).status == "retry"
    delivery = Delivery.objects.get(pk=message.delivery.pk)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    message.refresh_from_db()
    assert message.delivery_status == "queued"


def test_it_applies_status_callbacks_in_any_order(ticket, bob, post, fake_platform):
    post("status_delivered.form")  # ahead of our record of the send: kept pending
    early = InboundEvent.objects.order_by("-id")[0]
    assert early.status == "pending" and early.result == {"receipt_unmatched": 1}
    fake_platform.respond("POST", SEND_PATH, 201, created())
    message = actions.do_reply(ticket, bob, "Brigada atvyks per valandą.", status="pending")
    send_delivery_now(message.delivery.pk)

    assert process_event(early.pk).counts == {"receipt": 1}
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    # A late "sent" is a different event (not a duplicate) and never moves the status back.
    post(fixture_bytes("sms", "status_sent.form").replace(b"SmsSid=", b"RawDlrDoneDate=1&SmsSid="))
    message.refresh_from_db()
    assert message.delivery_status == "delivered"

    post("status_undelivered.form")
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert "switched off or unreachable" in message.delivery_error
    assert Ticket.objects.get(pk=ticket.pk).status == "open"
    assert Ticket.objects.count() == 1


def test_it_has_no_messaging_window(twilio):
    assert adapter_for("sms").check_reply(twilio, None) is None
