from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from channels_in import processing
from channels_in.base import Ignored, InboundMessage, StatusUpdate
from channels_in.models import Channel, InboundEvent, ListeningCount
from channels_in.registry import adapter_for
from channels_in.x import oauth
from channels_in.x.length import weighted_length
from tests.channels_in.conftest import FIXTURES, fixture_bytes, fixture_json
from tickets import actions
from tickets.models import Agent, Delivery, Identity, Message, Team, Ticket

pytestmark = pytest.mark.django_db

KEY = "x-brand"
BRAND = "1459032145"
# The consumer secret and crc_token of X's own CRC examples (linked from the fixtures' README);
# the expected answer was computed independently with
#   printf %s "$TOKEN" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
DOCS_SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
DOCS_CRC_TOKEN = "9b4507b3-9040-4669-9ca3-6b94edb50553"
DOCS_CRC_ANSWER = "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
LISTENING = {
    "handles": ["@EnergyCo"],
    "trigger_words": {
        "en": ["help"],
        "pt": ["ajuda"],
        "ru": ["помогите"],
        "zh": ["帮助"],
        "lt": ["pagalbos"],
    },
    "require_trigger": True,
}


@pytest.fixture
def x_channel(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="x",
        key=KEY,
        name="EnergyCo on X",
        default_team=outages,
        credentials={
            "consumer_key": "xvz1evFS4wEEPTGEFPHBog",
            "consumer_secret": DOCS_SECRET,
            "access_token": "1459032145-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            "access_token_secret": "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
            "brand_handle": "@EnergyCo",
        },
    )


@pytest.fixture
def post_x(hook: Callable[..., Any], x_channel: Channel) -> Callable[..., Any]:
    """post_x(fixture name or bytes or dict) delivers it signed as X signs it."""

    def _post(body: str | bytes | dict[str, Any], **headers: str) -> Any:
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False).encode()
        elif isinstance(body, str):
            body = fixture_bytes("x", body)
        signed = headers or adapter_for("x").sign(x_channel, body, "")
        return hook("x", KEY, body, **signed)

    return _post


def parse(channel: Channel, name: str) -> list[Any]:
    return adapter_for("x").parse(channel, fixture_bytes("x", name), {})


def reply(
    capture: Any, ticket: Ticket, agent: Agent, text: str, **kwargs: Any
) -> tuple[Message, processing.SendResult]:
    """An agent's reply, sent by the worker's code (not left to the on-commit dispatcher)."""
    with capture(execute=False):
        message = actions.do_reply(ticket, agent, text, **kwargs)
    return message, processing.send_delivery_now(message.delivery.pk)


def assert_oauth_signed(request: Any, fake_platform: Any, channel: Channel) -> None:
    """The Authorization header is OAuth 1.0a, for our keys, and signs exactly this request."""
    params = oauth.parse_authorization_header(request.headers["authorization"])
    creds = channel.credentials
    assert params["oauth_consumer_key"] == creds["consumer_key"]
    assert params["oauth_token"] == creds["access_token"]
    assert params["oauth_signature_method"] == "HMAC-SHA1"
    assert params["oauth_version"] == "1.0"
    given = params.pop("oauth_signature")
    expected = oauth.signature(
        request.method,
        f"{fake_platform.url}{request.path}",
        params,  # a JSON body is not part of the signature
        consumer_secret=creds["consumer_secret"],
        token_secret=creds["access_token_secret"],
    )
    assert given == expected


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "x").glob("*.json")))
def test_it_parses_every_fixture(x_channel, name):
    items = parse(x_channel, name)
    assert items
    assert all(isinstance(i, InboundMessage | StatusUpdate | Ignored) for i in items)


def test_it_reads_a_direct_message_with_the_sender_from_the_users_map(x_channel):
    [item] = parse(x_channel, "dm_text.json")
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == "1861234567890123457"
    assert item.sender.kind == "x" and item.sender.value == "3001969357"
    assert item.sender.display_name == "Joana Ferreira"
    assert item.sender.followers == 312 and not item.sender.verified
    assert "<script>alert('x')</script>" in item.text  # kept as text; escaped where shown
    assert item.text.endswith("Preciso de ajuda, por favor.")
    assert not item.is_public and item.thread_key == ""
    assert item.sent_at is not None and item.sent_at.year == 2025


def test_it_turns_a_quick_reply_into_a_postback(x_channel):
    [item] = parse(x_channel, "dm_quick_reply.json")
    assert item.kind == "postback"
    assert item.payload["button"] == "reading"
    assert item.text == "Показания счётчика"


def test_it_takes_dm_media_and_drops_the_link_x_appends_for_it(x_channel):
    [item] = parse(x_channel, "dm_media.json")
    assert item.kind == "image"
    assert item.text == "Skaitiklio nuotrauka, rodmenys 04512 kWh"
    [attachment] = item.attachments
    assert attachment.content_type == "image/jpeg"
    assert attachment.source_url.startswith("https://ton.twitter.com/1.1/ton/data/dm/")


def test_it_reads_a_public_mention_with_its_reach(x_channel):
    [item] = parse(x_channel, "mention_help.json")
    assert item.is_public and item.kind == "mention"
    assert item.platform_message_id == "1992240000000000001"
    assert item.thread_key == "x-thread:1992240000000000001"
    assert item.sender.followers == 184230 and item.sender.verified
    assert item.sender.language == "en"
    # v1.1 post text arrives HTML-escaped; we keep what the customer typed.
    assert "6am & it's freezing" in item.text
    assert "<b>Nobody answers the hotline</b>" in item.text
    assert item.payload["tweet_id"] == "1992240000000000001"
    assert item.payload["public"] is True


def test_it_reads_the_whole_text_of_a_long_post_and_its_photo(x_channel):
    [item] = parse(x_channel, "mention_extended_zh.json")
    assert item.text.startswith("@EnergyCo 帮助！")
    assert item.text.endswith("请尽快派人来看看，谢谢！")
    assert "…" not in item.text
    assert item.kind == "image"
    assert item.attachments[0].source_url == "https://pbs.twimg.com/media/GdX1a2bWcAA9xYz.jpg"


def test_it_expands_links_and_threads_replies(x_channel):
    [pt] = parse(x_channel, "mention_pt.json")
    assert "https://energyco.example/outages?area=lisboa" in pt.text
    [ru] = parse(x_channel, "mention_reply_ru.json")
    assert ru.reply_to == ("1992240000000000100",)
    assert ru.thread_key == "x-thread:1992240000000000100"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("dm_echo.json", "echo of our own direct message"),
        ("own_post.json", "our own post"),
        ("repost.json", "a repost"),
        ("typing.json", "direct_message_indicate_typing"),
        ("favorite.json", "favorite"),
        ("follow.json", "follow"),
    ],
)
def test_it_ignores_echoes_and_account_events(x_channel, name, reason):
    [item] = parse(x_channel, name)
    assert isinstance(item, Ignored) and item.reason == reason


def test_it_turns_a_read_event_into_a_receipt(x_channel):
    [item] = parse(x_channel, "mark_read.json")
    assert isinstance(item, StatusUpdate)
    assert item.platform_message_id == "1861234567890199999"
    assert item.status == "read"


def test_it_dedupes_on_the_event_ids(x_channel):
    adapter = adapter_for("x")
    assert adapter.event_id(x_channel, fixture_bytes("x", "dm_text.json"), {}) == (
        "dm:1861234567890123457"
    )
    assert adapter.event_id(x_channel, fixture_bytes("x", "mention_help.json"), {}) == (
        "post:1992240000000000001"
    )
    typing = adapter.event_id(x_channel, fixture_bytes("x", "typing.json"), {})
    assert typing.startswith("sha256:")


# ------------------------------------------------------------------ the webhook


def test_it_answers_the_crc_exactly_as_documented(x_channel, client: Client):
    response = client.get(f"/hooks/x/{KEY}/", {"crc_token": DOCS_CRC_TOKEN})
    assert response.status_code == 200
    assert response.json() == {"response_token": DOCS_CRC_ANSWER}
    assert not InboundEvent.objects.exists()


def test_it_refuses_to_sign_a_crc_token_that_could_be_a_forged_body(x_channel, client: Client):
    # Same key, same HMAC: signing '{...}' would hand out a valid signature for that body.
    forged = json.dumps({"for_user_id": BRAND, "direct_message_events": []})
    response = client.get(f"/hooks/x/{KEY}/", {"crc_token": forged})
    assert response.status_code == 400
    assert "response_token" not in response.content.decode()


def test_it_answers_a_get_without_crc_token_with_405(x_channel, client: Client):
    assert client.get(f"/hooks/x/{KEY}/").status_code == 405


def test_it_turns_a_signed_direct_message_into_a_ticket(post_x):
    response = post_x("dm_text.json")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.platform_id == "dm:1861234567890123457"
    assert event.status == "processed" and event.result == {"message": 1}
    ticket = Ticket.objects.get()
    assert ticket.contact.display_name == "Joana Ferreira"
    assert not ticket.is_public
    assert Identity.objects.filter(kind="x", value="3001969357").exists()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-twitter-webhooks-signature": "sha256=bm90IHRoZSByaWdodCBzaWduYXR1cmU="}, 403),
    ],
)
def test_it_rejects_a_missing_or_wrong_signature_and_stores_nothing(
    hook, x_channel, headers, status
):
    response = hook("x", KEY, fixture_bytes("x", "dm_text.json"), **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_rejects_a_signature_of_another_body(hook, x_channel):
    other = adapter_for("x").sign(x_channel, fixture_bytes("x", "dm_media.json"), "")
    response = hook("x", KEY, fixture_bytes("x", "dm_text.json"), **other)
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_it_ignores_a_duplicate_delivery(post_x):
    first = post_x("mention_help.json")
    second = post_x("mention_help.json")
    assert first.status_code == second.status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", json.dumps({"for_user_id": BRAND, "tweet_create_events": {}}).encode()],
)
def test_it_stores_a_malformed_body_as_a_failed_event(post_x, body):
    response = post_x(body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    event = InboundEvent.objects.get()
    assert event.status == "failed" and event.error.startswith("malformed:")


@pytest.mark.parametrize(
    "name", ["dm_echo.json", "own_post.json", "repost.json", "typing.json", "follow.json"]
)
def test_it_makes_no_ticket_of_echoes_and_account_events(post_x, name):
    assert post_x(name).status_code == 200
    assert InboundEvent.objects.get().status == "processed"
    assert not Ticket.objects.exists()


def test_it_never_makes_a_ticket_of_a_read_receipt(post_x):
    # Out of order: the receipt for a message we have not recorded (yet).
    post_x("mark_read.json")
    event = InboundEvent.objects.get()
    assert event.result == {"receipt_unmatched": 1} and event.status == "pending"
    assert not Ticket.objects.exists()


# ------------------------------------------------------------------ listening


def test_it_counts_but_does_not_ticket_a_mention_without_a_trigger(post_x, x_channel):
    x_channel.settings = {"listening": LISTENING}
    x_channel.save()
    post_x("mention_no_trigger.json")
    assert not Ticket.objects.exists()
    assert InboundEvent.objects.get().result == {"mention_not_ticketed": 1}
    count = ListeningCount.objects.get(channel=x_channel)
    assert (count.ticketed, count.counted_only) == (0, 1)


def test_it_does_not_take_a_handle_for_a_trigger_word(post_x, x_channel):
    x_channel.settings = {"listening": {**LISTENING, "handles": ["@EnergyCoHelp"]}}
    x_channel.save()
    body = fixture_json("x", "mention_no_trigger.json")
    post = body["tweet_create_events"][0]
    post["text"] = post["text"].replace("@EnergyCo", "@EnergyCoHelp")
    post_x(body)
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    "name",
    [
        "mention_help.json",
        "mention_pt.json",
        "mention_reply_ru.json",
        "mention_extended_zh.json",
        "mention_lt.json",
    ],
)
def test_it_tickets_a_mention_with_a_trigger_in_any_language(post_x, x_channel, outages, name):
    x_channel.settings = {"listening": LISTENING}
    x_channel.save()
    post_x(name)
    ticket = Ticket.objects.get()
    assert ticket.is_public and ticket.team == outages
    count = ListeningCount.objects.get(channel=x_channel)
    assert (count.ticketed, count.counted_only) == (1, 0)


def test_it_scores_an_influential_public_post_higher(post_x, x_channel, receive):
    x_channel.settings = {"listening": LISTENING}
    x_channel.save()
    post_x("mention_help.json")
    ticket = Ticket.objects.get()
    signals = {reason["signal"] for reason in ticket.priority_reasons}
    assert {"influence", "public"} <= signals
    private = receive(x_channel, "the whole of Elm Ave has no power since 6am", sender="77").ticket
    assert ticket.priority_score > private.priority_score


# ------------------------------------------------------------------ sending


def test_it_sends_a_dm_reply_signed_with_oauth(
    post_x, x_channel, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond(
        "POST",
        r"^/x/2/dm_conversations/with/3001969357/messages$",
        201,
        {
            "data": {
                "dm_conversation_id": "1459032145-3001969357",
                "dm_event_id": "1861234567890199999",
            }
        },
    )
    post_x("dm_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks,
        ticket,
        alice,
        "Olá Joana, a equipa já está a caminho.",
        payload={
            "buttons": [
                {"id": "ok", "label": "Obrigado"},
                {"id": "still", "label": "Ainda sem luz"},
            ]
        },
    )
    assert result.status == "sent"
    [request] = fake_platform.sent("dm_conversations")
    assert request.json == {
        "text": "Olá Joana, a equipa já está a caminho.\n\n1. Obrigado\n2. Ainda sem luz"
    }
    assert request.headers["content-type"] == "application/json"
    assert_oauth_signed(request, fake_platform, x_channel)
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert message.platform_message_id == "1861234567890199999"

    # The customer reads it: the read event marks our message read.
    post_x("mark_read.json")
    message.refresh_from_db()
    assert message.delivery_status == "read"
    assert Ticket.objects.count() == 1


def test_it_replies_publicly_to_a_public_mention_and_threads_the_answer(
    post_x, x_channel, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond(
        "POST",
        r"^/x/2/tweets$",
        201,
        {"data": {"id": "1992240000000000100", "text": "We're sorry!"}},
    )
    post_x("mention_help.json")
    ticket = Ticket.objects.get()
    _message, result = reply(
        django_capture_on_commit_callbacks,
        ticket,
        alice,
        "We're sorry! A crew is on Elm Ave now; power is expected back by 11:00.",
    )
    assert result.status == "sent"
    [request] = fake_platform.sent(r"/2/tweets$")
    assert request.json == {
        "text": "We're sorry! A crew is on Elm Ave now; power is expected back by 11:00.",
        "reply": {"in_reply_to_tweet_id": "1992240000000000001"},
    }
    assert_oauth_signed(request, fake_platform, x_channel)
    assert not fake_platform.sent("dm_conversations")

    # Our own post comes back as an activity (ignored), then the customer answers it.
    post_x("own_post.json")
    answer = fixture_json("x", "mention_help.json")
    post = answer["tweet_create_events"][0]
    post.update(
        id=1992240000000000200,
        id_str="1992240000000000200",
        text="@EnergyCo thanks, still dark at number 12 though",
        in_reply_to_status_id=1992240000000000100,
        in_reply_to_status_id_str="1992240000000000100",
        timestamp_ms="1763823000000",
    )
    post_x(answer)
    assert Ticket.objects.count() == 1
    assert ticket.messages.filter(direction="in").count() == 2


def test_it_refuses_a_public_reply_over_280_characters(
    post_x, alice, fake_platform, django_capture_on_commit_callbacks
):
    post_x("mention_help.json")
    ticket = Ticket.objects.get()
    # The text alone fits (so the up-front check lets it through); the numbered options the
    # buttons become push it over, which only the send can know.
    message, result = reply(
        django_capture_on_commit_callbacks,
        ticket,
        alice,
        "Светлана, " + "о" * 265,
        status="resolved",
        payload={"buttons": [{"id": "yes", "label": "Taip"}, {"id": "no", "label": "Ne"}]},
    )
    assert result.status == "failed"
    assert not fake_platform.sent()  # never reached X
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "failed" and "280" in delivery.last_error
    ticket.refresh_from_db()
    assert ticket.status == "open"  # reopened: the customer has no answer
    note = ticket.messages.get(is_internal=True, author_kind="system")
    assert "280" in note.text


def test_it_retries_a_transient_failure_later(
    post_x, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond("POST", r"/dm_conversations/", 503, {"title": "Service Unavailable"})
    post_x("dm_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(django_capture_on_commit_callbacks, ticket, alice, "Um momento")
    assert result.status == "retry"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "queued" and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert "503" in delivery.last_error


def test_it_fails_for_good_when_x_refuses_the_dm(
    post_x, alice, fake_platform, django_capture_on_commit_callbacks
):
    fake_platform.respond(
        "POST",
        r"/dm_conversations/",
        403,
        {
            "title": "Forbidden",
            "detail": "You are not permitted to send Direct Messages to this user.",
            "type": "about:blank",
            "status": 403,
        },
    )
    post_x("dm_text.json")
    ticket = Ticket.objects.get()
    message, result = reply(
        django_capture_on_commit_callbacks, ticket, alice, "Um momento", status="resolved"
    )
    assert result.status == "failed"
    delivery = Delivery.objects.get(message=message)
    assert delivery.state == "failed"
    assert "not permitted to send Direct Messages" in delivery.last_error
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.messages.filter(is_internal=True, payload__delivery_failed=message.pk).exists()


# ------------------------------------------------------------------ OAuth and length


def test_it_signs_requests_as_the_oauth_docs_example():
    # https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature: the
    # documented signature is for the original host name, api.twitter.com.
    params = {
        "status": "Hello Ladies + Gentlemen, a signed OAuth request!",
        "oauth_consumer_key": "xvz1evFS4wEEPTGEFPHBog",
        "oauth_nonce": "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1318622958",
        "oauth_token": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "oauth_version": "1.0",
    }
    url = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true"
    assert (
        oauth.signature(
            "POST",
            url,
            params,
            consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        )
        == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
    )
    header = oauth.authorization_header(
        "POST",
        url,
        consumer_key=params["oauth_consumer_key"],
        consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        token=params["oauth_token"],
        token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        form={"status": params["status"]},
        nonce=params["oauth_nonce"],
        timestamp=1318622958,
    )
    assert 'oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"' in header
    assert header.startswith('OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", ')


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("a" * 280, 280),
        ("Ação é já", 9),
        ("停电" * 70, 280),
        ("停电" * 70 + "!", 281),
        ("👨\u200d👩\u200d👧\u200d👦", 2),
        ("see https://energyco.example/outages?area=north&day=2025-11-22 now", 31),
    ],
)
def test_it_counts_characters_as_x_does(text, length):
    assert weighted_length(text) == length


def test_it_refuses_a_too_long_public_reply_before_it_is_written(post_x, alice):
    from tickets import actions
    from tickets.errors import Conflict

    post_x("mention_help.json")
    ticket = Ticket.objects.get()
    with pytest.raises(Conflict, match="280 characters"):
        actions.do_reply(ticket, alice, "Sveiki! " * 60)
    assert not ticket.messages.filter(direction="out").exists()
