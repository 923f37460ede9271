"""The web chat widget: the socket at /ws/widget/<key>/, its token, origin check and limits,
the way a visitor's message becomes a ticket, and an agent's reply comes back.

pytest-asyncio is not installed: each test drives WebsocketCommunicator inside one coroutine
run with async_to_sync. transaction=True because the consumer reaches the database through
database_sync_to_async (another connection's view of committed rows)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core import signing

from channels_in.base import InboundMessage, Outbound, PayloadError, SendError, SignatureError
from channels_in.models import Channel, InboundEvent
from channels_in.processing import process_event, send_delivery_now
from channels_in.registry import adapter_for
from channels_in.widget import tokens
from channels_in.widget.adapter import event_body
from channels_in.widget.consumers import normalize_origin, origin_allowed
from helpdesk.routing import websocket_urlpatterns
from tests.conftest import inbound
from tickets import actions
from tickets.models import Contact, Delivery, DeliveryStatus, Identity, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://www.utility.example"
APP = URLRouter(websocket_urlpatterns)
WAIT = 5  # seconds; generous, the machine is shared


def no_dispatch(delivery_id: int) -> None:
    """HELPDESK_DELIVERY_DISPATCHER in these tests: the test sends with send_delivery_now."""


@pytest.fixture(autouse=True)
def _isolated(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Rate-limit counters must not leak between tests (or runs).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"widget-{uuid.uuid4().hex}",
        }
    }
    settings.HELPDESK_DELIVERY_DISPATCHER = "tests.channels_in.test_widget.no_dispatch"


@pytest.fixture
def widget(outages: Any) -> Channel:
    return Channel.objects.create(
        kind="widget",
        key="web",
        name="Web chat",
        default_team=outages,
        credentials={"allowed_origins": [ORIGIN]},
        settings={"widget": {"title": {"en": "Northern Grid", "lt": "Šiaurės tinklai"}}},
    )


class Worker:
    """Stands in for Celery: collects what the consumer enqueued; `run` processes it."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def enqueue(self, event_id: int) -> None:
        self.ids.append(event_id)

    async def run(self) -> None:
        # The consumer enqueues right after it acks: give it the moment it needs.
        for _ in range(500):
            if self.ids:
                break
            await asyncio.sleep(0.01)
        assert self.ids, "nothing was enqueued"
        while self.ids:
            outcome = await database_sync_to_async(process_event)(self.ids.pop(0))
            assert outcome.status == "processed", outcome


@pytest.fixture
def worker(monkeypatch: Any) -> Worker:
    fake = Worker()
    monkeypatch.setattr("channels_in.widget.consumers.enqueue", fake.enqueue)
    return fake


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


class Browser:
    """One widget tab: a socket with an Origin header and a client address."""

    def __init__(
        self,
        key: str = "web",
        *,
        origin: str | None = ORIGIN,
        ip: str = "203.0.113.7",
        query: str = "",
    ) -> None:
        headers = [(b"origin", origin.encode())] if origin is not None else []
        path = f"/ws/widget/{key}/" + (f"?{query}" if query else "")
        self.socket = WebsocketCommunicator(APP, path, headers=headers)
        self.socket.scope["client"] = (ip, 51000)
        self.hello: dict[str, Any] = {}

    async def open(self, token: str | None = None, **hello: Any) -> dict[str, Any]:
        connected, _ = await self.socket.connect(timeout=WAIT)
        assert connected
        await self.send({"type": "hello", "token": token, **hello})
        self.hello = await self.receive()
        assert self.hello["type"] == "hello", self.hello
        return self.hello

    async def refused_with(self) -> int:
        """The close code of a socket the server accepts only to close at once."""
        connected, _ = await self.socket.connect(timeout=WAIT)
        assert connected
        out = await self.socket.receive_output(WAIT)
        assert out["type"] == "websocket.close", out
        return int(out["code"])

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send_json_to(frame)

    async def receive(self) -> dict[str, Any]:
        return await self.socket.receive_json_from(timeout=WAIT)

    async def say(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a message and return the server's answer to it (ack or error)."""
        client_id = client_id or uuid.uuid4().hex
        await self.send({"type": "message", "client_id": client_id, "text": text})
        return await self.answer(client_id)

    async def answer(self, client_id: str) -> dict[str, Any]:
        """The ack/error for `client_id`, skipping the echo of our own message."""
        while True:
            frame = await self.receive()
            if frame["type"] == "message" and frame.get("author") == "customer":
                continue
            return frame

    async def silent(self) -> bool:
        return await self.socket.receive_nothing(timeout=0.3)

    async def close(self) -> None:
        await self.socket.disconnect()


def _ticket_of(visitor_id: str) -> Ticket:
    return Ticket.objects.get(thread_key=f"widget:{visitor_id}")


# ------------------------------------------------------------------------ origin, channel


def test_it_greets_a_new_visitor_from_an_allowed_origin(widget: Channel) -> None:
    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open(lang="lt")
        assert len(hello["visitor"]) == 32
        assert tokens.read(widget, hello["token"]).id == hello["visitor"]
        assert hello["history"] == []
        assert hello["prechat"] == {"fields": {}, "done": True}
        assert hello["config"]["title"] == "Šiaurės tinklai"
        assert hello["limits"]["max_text"] == 4000
        await tab.close()

    run(scenario)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        None,  # no Origin header at all
        "null",
        "http://www.utility.example",  # another scheme is another origin
        "https://www.utility.example:8443",
        "https://utility.example",
        "https://www.utility.example.evil.example",
    ],
)
def test_it_refuses_origins_that_are_not_allowed(widget: Channel, origin: str | None) -> None:
    async def scenario() -> None:
        tab = Browser(origin=origin)
        assert await tab.refused_with() == 4403

    run(scenario)


def test_it_closes_with_4404_for_an_unknown_inactive_or_non_widget_channel(
    widget: Channel, telegram: Channel
) -> None:
    Channel.objects.create(
        kind="widget",
        key="old",
        name="Old",
        is_active=False,
        credentials={"allowed_origins": [ORIGIN]},
    )

    async def scenario() -> None:
        for key in ("nope", "old", telegram.key):
            assert await Browser(key).refused_with() == 4404

    run(scenario)


def test_it_lets_any_site_in_only_when_star_is_listed(widget: Channel) -> None:
    widget.credentials = {"allowed_origins": ["*"]}
    widget.save()

    async def scenario() -> None:
        tab = Browser(origin="https://anything.example")
        await tab.open()
        await tab.close()

    run(scenario)


def test_it_compares_origins_by_scheme_host_and_port() -> None:
    assert normalize_origin("HTTPS://WWW.Utility.Example:443/") == "https://www.utility.example"
    assert normalize_origin("http://127.0.0.1:8041") == "http://127.0.0.1:8041"
    assert normalize_origin("https://x.example/path") is None
    assert normalize_origin("javascript:alert(1)") is None
    allowed = ["https://www.utility.example", "http://localhost:8000"]
    assert origin_allowed("https://www.utility.example", allowed)
    assert origin_allowed("http://localhost:8000", allowed)
    assert not origin_allowed("http://localhost:8001", allowed)
    assert not origin_allowed("", allowed)
    assert not origin_allowed("https://www.utility.example", None)
    assert origin_allowed("", ["*"])


def test_it_accepts_an_allowed_site_through_the_asgi_application(widget: Channel) -> None:
    from helpdesk.asgi import application

    async def scenario() -> None:
        tab = WebsocketCommunicator(
            application, "/ws/widget/web/", headers=[(b"origin", ORIGIN.encode())]
        )
        connected, _ = await tab.connect(timeout=WAIT)
        await tab.disconnect()
        assert connected

    run(scenario)


# ------------------------------------------------------------------------ tokens


def test_it_keeps_the_conversation_across_a_reconnect(
    widget: Channel, worker: Worker, alice: Any
) -> None:
    async def scenario() -> None:
        tab = Browser()
        first = await tab.open()
        ack = await tab.say("Nėra elektros nuo ryto", client_id="c1")
        assert ack == {"type": "ack", "client_id": "c1", "duplicate": False}
        await tab.close()
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(first["visitor"])
        # Answered while the visitor was away: it waits in the history.
        await database_sync_to_async(actions.do_reply)(ticket, alice, "Brigada jau išvyko.")

        again = Browser()
        second = await again.open(token=first["token"])
        assert second["visitor"] == first["visitor"]
        assert second["token"] != ""
        texts = [(m["author"], m["text"]) for m in second["history"]]
        assert texts == [("customer", "Nėra elektros nuo ryto"), ("agent", "Brigada jau išvyko.")]
        assert second["history"][0]["client_id"] == "c1"
        assert second["history"][1]["name"] == "Alice"
        await again.close()

    run(scenario)


def test_it_accepts_the_token_in_the_query_string_too(widget: Channel) -> None:
    token = tokens.issue(widget, tokens.Visitor(id="a" * 32))

    async def scenario() -> None:
        tab = Browser(query=f"token={token}")
        connected, _ = await tab.socket.connect(timeout=WAIT)
        assert connected
        hello = await tab.receive()
        assert hello["type"] == "hello" and hello["visitor"] == "a" * 32
        await tab.close()

    run(scenario)


def test_it_treats_a_forged_foreign_or_expired_token_as_a_new_visitor(
    widget: Channel, monkeypatch: Any
) -> None:
    other = Channel.objects.create(
        kind="widget", key="other", name="Other", credentials={"allowed_origins": [ORIGIN]}
    )
    victim = tokens.Visitor(id="b" * 32)
    good = tokens.issue(widget, victim)
    forged = signing.dumps({"v": victim.id}, key="not-our-secret", salt="whatever")
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    foreign = tokens.issue(other, victim)
    with monkeypatch.context() as patch:
        stale = signing.TimestampSigner.timestamp
        patch.setattr(
            signing.TimestampSigner,
            "timestamp",
            lambda self: signing.b62_encode(signing.b62_decode(stale(self)) - 31 * 24 * 3600),
        )
        expired = tokens.issue(widget, victim)

    assert tokens.read(widget, good) == victim
    for bad in (forged, tampered, foreign, expired, "", "x" * 5000, 42, None):
        assert tokens.read(widget, bad) is None

    async def scenario() -> None:
        for bad in (forged, tampered, foreign, expired):
            tab = Browser()
            hello = await tab.open(token=bad)
            assert hello["visitor"] != victim.id
            assert hello["history"] == []
            await tab.close()

    run(scenario)


# ------------------------------------------------------------------------ inbound


def test_it_stores_acks_and_processes_a_message_like_any_platform_event(
    widget: Channel, worker: Worker
) -> None:
    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open(lang="lt", page="https://www.utility.example/gedimai")
        visitor = hello["visitor"]
        ack = await tab.say("Dingo elektra Kaune, Savanorių pr. 12", client_id="m-1")
        assert ack["type"] == "ack" and ack["duplicate"] is False

        # Acked means committed: the row is there before any worker ran.
        event = await database_sync_to_async(InboundEvent.objects.get)(channel=widget)
        assert event.platform_id == f"{visitor}:m-1"
        assert event.status == "pending"
        # Enqueued right after the ack, on the consumer's next step: wait for it.
        for _ in range(500):
            if worker.ids:
                break
            await asyncio.sleep(0.01)
        assert worker.ids == [event.pk]
        body = json.loads(bytes(event.body))
        assert body["visitor"] == visitor and body["text"].startswith("Dingo elektra")
        assert body["page"] == "https://www.utility.example/gedimai"

        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(visitor)
        message = await database_sync_to_async(Message.objects.get)(ticket=ticket)
        assert message.platform_message_id == f"{visitor}:m-1"
        assert message.payload["from"] == visitor
        assert message.payload["page"] == "https://www.utility.example/gedimai"
        assert ticket.channel_id == widget.pk and ticket.team_id == widget.default_team_id
        identity = await database_sync_to_async(Identity.objects.get)(kind="widget")
        assert identity.value == visitor and identity.contact_id == ticket.contact_id
        await tab.close()

    run(scenario)


def test_it_acks_a_resent_message_again_without_a_second_event(
    widget: Channel, worker: Worker
) -> None:
    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open()
        assert (await tab.say("Skaitiklio rodmenys: 04512", client_id="same"))["duplicate"] is False
        await tab.close()

        # The connection dropped before the ack arrived: the script resends after hello.
        again = Browser()
        await again.open(token=hello["token"])
        ack = await again.say("Skaitiklio rodmenys: 04512", client_id="same")
        assert ack == {"type": "ack", "client_id": "same", "duplicate": True}
        assert await again.silent()  # no echo either: nothing new happened
        await again.close()
        assert await database_sync_to_async(InboundEvent.objects.count)() == 1
        assert len(worker.ids) == 1
        await worker.run()
        assert await database_sync_to_async(Message.objects.count)() == 1

    run(scenario)


def test_it_answers_bad_input_with_specific_error_frames(widget: Channel, worker: Worker) -> None:
    async def scenario() -> None:
        tab = Browser()
        connected, _ = await tab.socket.connect(timeout=WAIT)
        assert connected

        async def error_for(raw: str | bytes) -> dict[str, Any]:
            if isinstance(raw, bytes):
                await tab.socket.send_to(bytes_data=raw)
            else:
                await tab.socket.send_to(text_data=raw)
            frame = await tab.receive()
            assert frame["type"] == "error", frame
            return frame

        assert (await error_for('{"type": "message", "client_id": "a", "text": "hi"}'))[
            "code"
        ] == "hello_first"
        await tab.send({"type": "hello"})
        assert (await tab.receive())["type"] == "hello"

        assert (await error_for("this is not json"))["code"] == "not_json"
        assert (await error_for("[1, 2]"))["code"] == "bad_frame"
        assert (await error_for('{"type": "subscribe", "group": "queue"}'))[
            "code"
        ] == "unknown_type"
        assert (await error_for('{"text": "no type"}'))["code"] == "unknown_type"
        assert (await error_for(b"\x00\x01"))["code"] == "not_text"
        assert (await error_for("x" * 70000))["code"] == "too_large"
        assert (await error_for('{"type": "hello"}'))["code"] == "already_greeted"

        def message(**fields: Any) -> str:
            return json.dumps({"type": "message", **fields})

        empty = await error_for(message(client_id="e1", text="   \n "))
        assert empty["code"] == "empty_text" and empty["client_id"] == "e1"
        assert (await error_for(message(client_id="e2")))["code"] == "empty_text"
        assert (await error_for(message(client_id="e3", text=["list"])))["code"] == "empty_text"
        long = await error_for(message(client_id="e4", text="ž" * 4001))
        assert long["code"] == "too_long" and "4000" in long["message"]
        assert (await error_for(message(client_id="bad id!", text="x")))["code"] == "bad_client_id"
        assert (await error_for(message(text="no id")))["code"] == "bad_client_id"
        assert (await error_for(message(client_id="x" * 65, text="x")))["code"] == "bad_client_id"
        button = await error_for(json.dumps({"type": "button", "client_id": "b1"}))
        assert button["code"] == "bad_button"
        assert (await error_for(json.dumps({"type": "prechat", "name": "Ona"})))[
            "code"
        ] == "prechat_off"
        # Exactly 4,000 characters is fine.
        assert (await tab.say("ž" * 4000))["type"] == "ack"
        await tab.close()
        assert await database_sync_to_async(InboundEvent.objects.count)() == 1

    run(scenario)


def test_it_asks_for_the_prechat_form_and_validates_it(widget: Channel, worker: Worker) -> None:
    widget.settings = {
        "widget": {"prechat": {"name": "required", "email": "required", "phone": "optional"}}
    }
    widget.save()

    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open()
        assert hello["prechat"] == {
            "fields": {"name": "required", "email": "required", "phone": "optional"},
            "done": False,
        }
        refused = await tab.say("Labas")
        assert refused["code"] == "prechat_required" and refused["field"] == "name"

        async def prechat(**fields: Any) -> dict[str, Any]:
            await tab.send({"type": "prechat", **fields})
            return await tab.receive()

        assert (await prechat(email="ona@example.lt"))["code"] == "prechat_required"
        bad_email = await prechat(name="Ona", email="ona@@example")
        assert bad_email["code"] == "invalid_email" and bad_email["field"] == "email"
        bad_phone = await prechat(name="Ona", email="ona@example.lt", phone="call me maybe")
        assert bad_phone["code"] == "invalid_phone"
        assert (await prechat(name="Ona\x07", email="ona@example.lt"))["code"] == "invalid_name"
        assert (await prechat(name=["Ona"], email="ona@example.lt"))["code"] == "invalid_name"
        done = await prechat(name="  Ona   Jonaitė ", email="Ona@Example.LT", phone="8 612 34567")
        assert done["type"] == "prechat" and done["done"] is True
        assert tokens.read(widget, done["token"]) == tokens.Visitor(
            id=hello["visitor"], name="Ona Jonaitė", email="ona@example.lt", phone="+37061234567"
        )
        assert (await tab.say("Labas, noriu pasiteirauti dėl sąskaitos"))["type"] == "ack"
        await tab.close()

        # The form is remembered by the token: not asked again after a reload.
        again = Browser()
        assert (await again.open(token=done["token"]))["prechat"]["done"] is True
        await again.close()

        await worker.run()
        contact = await database_sync_to_async(lambda: _ticket_of(hello["visitor"]).contact)()
        kinds = await database_sync_to_async(
            lambda: sorted(contact.identities.values_list("kind", "value"))
        )()
        # The form's details are claims on the contact, not identities (nothing proves them).
        assert kinds == [("widget", hello["visitor"])]
        assert contact.attributes["claimed"] == {"email": "ona@example.lt", "phone": "+37061234567"}
        assert contact.display_name == "Ona Jonaitė"

    run(scenario)


def test_it_never_merges_a_visitor_into_a_contact_on_an_unverified_prechat_email(
    widget: Channel, email_channel: Channel, worker: Worker
) -> None:
    widget.settings = {"widget": {"prechat": {"email": "optional"}}}
    widget.save()
    by_email = actions.do_receive_inbound(
        inbound(email_channel, "Sąskaita per didelė", sender="petras@example.lt", name="Petras")
    )

    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open()
        await tab.send({"type": "prechat", "email": "Petras@Example.lt"})
        assert (await tab.receive())["type"] == "prechat"
        assert (await tab.say("Ar gavote mano laišką?"))["type"] == "ack"
        await tab.close()
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(hello["visitor"])
        # Anyone can type Petras's address into a form: it is shown as a claim, and the real
        # Petras's history is not handed to whoever typed it.
        assert ticket.contact_id != by_email.ticket.contact_id
        contact = await database_sync_to_async(lambda: Contact.objects.get(pk=ticket.contact_id))()
        assert contact.attributes["claimed"] == {"email": "petras@example.lt"}
        email_identity = await database_sync_to_async(
            lambda: Identity.objects.get(kind="email", value="petras@example.lt")
        )()
        assert email_identity.contact_id == by_email.ticket.contact_id

    run(scenario)


# ------------------------------------------------------------------------ limits


def test_it_rate_limits_a_visitor_and_closes_on_abuse(widget: Channel, worker: Worker) -> None:
    widget.settings = {"widget": {"rate": {"messages": 3, "window": 60}}}
    widget.save()

    async def scenario() -> None:
        tab = Browser()
        await tab.open()
        for n in range(3):
            assert (await tab.say(f"message {n}"))["type"] == "ack"
        limited = await tab.say("one too many", client_id="over")
        assert limited["code"] == "rate_limited" and limited["client_id"] == "over"
        assert 1 <= limited["retry_after"] <= 61
        for _ in range(3):
            assert (await tab.say("still"))["code"] == "rate_limited"
        await tab.send({"type": "message", "client_id": "x5", "text": "and again"})
        assert (await tab.receive())["code"] == "rate_limited"
        closed = await tab.socket.receive_output(WAIT)
        assert closed == {"type": "websocket.close", "code": 4429}
        assert await database_sync_to_async(InboundEvent.objects.count)() == 3

    run(scenario)


def test_it_rate_limits_messages_per_address_across_visitors(
    widget: Channel, worker: Worker
) -> None:
    widget.settings = {"widget": {"rate": {"messages": 10, "messages_per_ip": 2, "window": 60}}}
    widget.save()

    async def scenario() -> None:
        first, second = Browser(), Browser()
        await first.open()
        await second.open()  # a new token every time does not buy new messages
        assert (await first.say("a"))["type"] == "ack"
        assert (await second.say("b"))["type"] == "ack"
        assert (await second.say("c"))["code"] == "rate_limited"
        elsewhere = Browser(ip="198.51.100.20")
        await elsewhere.open()
        assert (await elsewhere.say("d"))["type"] == "ack"
        for tab in (first, second, elsewhere):
            await tab.close()

    run(scenario)


def test_it_rate_limits_connections_per_address(widget: Channel) -> None:
    widget.settings = {"widget": {"rate": {"connections_per_ip": 2}}}
    widget.save()

    async def scenario() -> None:
        tabs = [Browser(), Browser()]
        for tab in tabs:
            await tab.open()
        assert await Browser().refused_with() == 4429
        other = Browser(ip="198.51.100.20")
        await other.open()
        for tab in [*tabs, other]:
            await tab.close()

    run(scenario)


def test_it_closes_a_socket_that_floods_frames(widget: Channel) -> None:
    async def scenario() -> None:
        tab = Browser()
        await tab.open()
        closed = None
        for _ in range(60):
            await tab.send({"type": "ping"})
        while closed is None:
            out = await tab.socket.receive_output(WAIT)
            if out["type"] == "websocket.close":
                closed = out["code"]
        assert closed == 4429

    run(scenario)


# ------------------------------------------------------------------------ outbound


def test_it_delivers_an_agent_reply_with_buttons_and_marks_it_sent(
    widget: Channel, worker: Worker, alice: Any
) -> None:
    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open()
        assert (await tab.say("Kada bus elektra?"))["type"] == "ack"
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(hello["visitor"])
        reply = await database_sync_to_async(actions.do_reply)(
            ticket,
            alice,
            "Ar norite gauti SMS, kai elektra bus atkurta?",
            payload={
                "buttons": [{"id": "sms-yes", "label": "Taip"}, {"id": "sms-no", "label": "Ne"}]
            },
        )
        delivery = await database_sync_to_async(Delivery.objects.get)(message=reply)
        assert (await database_sync_to_async(send_delivery_now)(delivery.pk)).status == "sent"

        frame = await tab.receive()
        assert frame == {
            "type": "message",
            "id": reply.pk,
            "author": "agent",
            "name": "Alice",
            "text": "Ar norite gauti SMS, kai elektra bus atkurta?",
            "buttons": [{"id": "sms-yes", "label": "Taip"}, {"id": "sms-no", "label": "Ne"}],
            "attachments": [],
            "at": reply.created_at.isoformat(),
        }
        sent = await database_sync_to_async(Message.objects.get)(pk=reply.pk)
        assert sent.delivery_status == DeliveryStatus.SENT
        assert sent.platform_message_id == f"out:{reply.pk}"

        # The visitor presses a button: a postback with the label we offered.
        await tab.send({"type": "button", "client_id": "press-1", "id": "sms-yes"})
        assert (await tab.answer("press-1"))["type"] == "ack"
        await tab.send({"type": "button", "client_id": "press-2", "id": "admin-mode"})
        refused = await tab.answer("press-2")
        assert refused["code"] == "unknown_button"
        await worker.run()
        pressed = await database_sync_to_async(Message.objects.get)(kind="postback")
        assert pressed.payload["button"] == "sms-yes" and pressed.text == "Taip"
        assert pressed.ticket_id == ticket.pk
        await tab.close()

    run(scenario)


def test_it_never_shows_one_visitor_anything_of_another(
    widget: Channel, worker: Worker, alice: Any
) -> None:
    widget.settings = {"widget": {"prechat": {"email": "optional"}}}
    widget.save()

    async def scenario() -> None:
        ona, mallory = Browser(), Browser(ip="198.51.100.66")
        ona_hello = await ona.open()
        await mallory.open()
        # Mallory claims Ona's email: a claim, which unifies nothing and shows her nothing.
        for tab in (ona, mallory):
            await tab.send({"type": "prechat", "email": "ona@example.lt"})
            assert (await tab.receive())["type"] == "prechat"
        assert (await ona.say("Mano sąskaitos numeris 123456"))["type"] == "ack"
        assert await mallory.silent()
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(ona_hello["visitor"])
        reply = await database_sync_to_async(actions.do_reply)(ticket, alice, "Jūsų skola 12 €")
        delivery = await database_sync_to_async(Delivery.objects.get)(message=reply)
        await database_sync_to_async(send_delivery_now)(delivery.pk)
        assert (await ona.receive())["text"] == "Jūsų skola 12 €"
        assert await mallory.silent()

        # Mallory writes too: her own contact, her own ticket and her own history.
        assert (await mallory.say("Kiek aš skolinga?"))["type"] == "ack"
        await worker.run()
        token = mallory.hello["token"]
        await mallory.close()
        again = Browser(ip="198.51.100.66")
        hello = await again.open(token=token)
        assert [m["text"] for m in hello["history"]] == ["Kiek aš skolinga?"]
        assert await again.silent()
        await again.close()
        await ona.close()
        tickets = await database_sync_to_async(
            lambda: list(Ticket.objects.filter(channel=widget).values_list("contact_id", flat=True))
        )()
        assert len(tickets) == 2 and len(set(tickets)) == 2

    run(scenario)


def test_it_leaves_internal_notes_out_of_the_history(
    widget: Channel, worker: Worker, alice: Any
) -> None:
    async def scenario() -> None:
        tab = Browser()
        hello = await tab.open()
        assert (await tab.say("Skaitiklis rodo keistai"))["type"] == "ack"
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(hello["visitor"])
        await database_sync_to_async(actions.do_add_note)(
            ticket, alice, "Klientas skolingas, nesakyti apie atjungimą"
        )
        await database_sync_to_async(actions.do_reply)(ticket, alice, "Patikrinsime skaitiklį.")
        assert await tab.silent()  # a note is never sent; the reply waits for its delivery
        await tab.close()

        again = Browser()
        history = (await again.open(token=hello["token"]))["history"]
        assert [m["text"] for m in history] == [
            "Skaitiklis rodo keistai",
            "Patikrinsime skaitiklį.",
        ]
        await again.close()

    run(scenario)


def test_it_passes_markup_through_as_plain_text(
    widget: Channel, worker: Worker, alice: Any
) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'

    async def scenario() -> None:
        tab, other_tab = Browser(), Browser()
        hello = await tab.open()
        await other_tab.open(token=hello["token"])
        assert (await tab.say(evil, client_id="xss"))["type"] == "ack"
        echo = await other_tab.receive()
        assert echo["author"] == "customer" and echo["client_id"] == "xss"
        assert echo["text"] == evil  # as typed: the script renders it with textContent
        await worker.run()
        ticket = await database_sync_to_async(_ticket_of)(hello["visitor"])
        stored = await database_sync_to_async(Message.objects.get)(ticket=ticket)
        assert stored.text == evil and stored.html == ""
        reply = await database_sync_to_async(actions.do_reply)(ticket, alice, f"Jūs rašėte: {evil}")
        delivery = await database_sync_to_async(Delivery.objects.get)(message=reply)
        await database_sync_to_async(send_delivery_now)(delivery.pk)
        frame = await tab.receive()
        assert frame["text"] == f"Jūs rašėte: {evil}"
        assert "html" not in frame
        await tab.close()
        await other_tab.close()

    run(scenario)


def test_it_shows_a_message_in_the_visitors_other_tabs(widget: Channel, worker: Worker) -> None:
    async def scenario() -> None:
        first = Browser()
        hello = await first.open()
        second = Browser()
        await second.open(token=hello["token"])
        assert (await first.say("Iš pirmo skirtuko", client_id="tab-1"))["type"] == "ack"
        echo = await second.receive()
        assert echo["type"] == "message" and echo["author"] == "customer"
        assert echo["client_id"] == "tab-1" and echo["text"] == "Iš pirmo skirtuko"
        await first.close()
        await second.close()

    run(scenario)


# ------------------------------------------------------------------------ adapter, HTTP


def test_it_parses_a_stored_event_into_a_normalized_message(widget: Channel) -> None:
    adapter = adapter_for("widget")
    visitor = tokens.Visitor(id="c" * 32, name="Ona", email="ona@example.lt", phone="+37061234567")
    body = event_body(visitor, "k1", text="Labas", page="https://www.utility.example/", lang="lt")
    assert adapter.event_id(widget, body, {}) == f"{'c' * 32}:k1"
    [item] = adapter.parse(widget, body, {})
    assert isinstance(item, InboundMessage)
    assert item.platform_message_id == f"{'c' * 32}:k1"
    assert item.sender.kind == "widget" and item.sender.value == "c" * 32
    # Pre-chat details are claims: never identities (nothing proves them).
    assert (item.sender.email, item.sender.phone) == ("", "")
    assert (item.sender.display_name, item.sender.claimed_email, item.sender.claimed_phone) == (
        "Ona",
        "ona@example.lt",
        "+37061234567",
    )
    assert item.sender.language == "lt"
    assert item.thread_key == f"widget:{'c' * 32}"
    assert item.payload == {"page": "https://www.utility.example/"}

    press = event_body(visitor, "k2", button={"id": "outage", "label": "Pranešti apie gedimą"})
    [postback] = adapter.parse(widget, press, {})
    assert postback.kind == "postback" and postback.payload["button"] == "outage"
    assert postback.text == "Pranešti apie gedimą"

    for bad in (
        b"not json",
        b"[]",
        b'{"visitor": "me", "client_id": "a", "text": "x"}',
        json.dumps({"visitor": "c" * 32, "client_id": "k", "text": " "}).encode(),
    ):
        with pytest.raises(PayloadError):
            adapter.parse(widget, bad, {})


def test_it_refuses_to_send_to_something_that_is_not_a_visitor(widget: Channel) -> None:
    adapter = adapter_for("widget")
    with pytest.raises(SendError) as error:
        adapter.send(widget, Outbound(channel_id=widget.pk, recipient="+37061234567", text="x"))
    assert error.value.permanent


def test_it_has_no_http_webhook(widget: Channel, client: Any) -> None:
    for method in ("get", "post"):
        response = getattr(client, method)("/hooks/widget/web/", content_type="application/json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "no_webhook"
    assert not InboundEvent.objects.exists()
    with pytest.raises(SignatureError):
        adapter_for("widget").verify(widget, None, b"")  # type: ignore[arg-type]


def test_it_serves_a_demo_page_with_the_script_tag(widget: Channel, client: Any) -> None:
    page = client.get("/widget/demo/web/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'lang="lt"' in html and "Šiaurės tinklai" in html
    assert '/static/channels_in/widget.js" data-channel="web"' in html
    english = client.get("/widget/demo/web/?lang=en&widget_lang=ru").content.decode()
    assert "Northern Grid" in english and 'data-lang="ru"' in english
    injected = client.get('/widget/demo/web/?widget_lang="><script>').content.decode()
    assert "data-lang" not in injected
    assert client.get("/widget/demo/nope/").status_code == 404
    assert client.get("/static/channels_in/widget.js").status_code == 200


def test_it_issues_tokens_per_channel_with_the_prechat_fields(widget: Channel) -> None:
    visitor = tokens.new_visitor()
    assert tokens.VISITOR_ID.match(visitor.id)
    with_form = visitor.with_prechat(name="Ona", email="ona@example.lt", phone="")
    assert tokens.read(widget, tokens.issue(widget, with_form)) == with_form
    assert Contact.objects.count() == 0  # a token is not a contact until they write


def test_it_never_builds_html_from_text_in_the_script() -> None:
    source = (
        Path(__file__).resolve().parents[2] / "channels_in" / "static" / "channels_in" / "widget.js"
    ).read_text()
    # One innerHTML, for the icons, and every icon is one of the script's own SVG constants.
    assert source.count("innerHTML") == 1
    assert 'if (key === "icon") node.innerHTML = value;' in source.replace("else ", "")
    icons = re.findall(r"\bicon:\s*([A-Za-z_]+)", source)
    assert icons and all(name.startswith("ICON_") for name in icons)
    for sink in ("outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source
