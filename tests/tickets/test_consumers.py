"""The agents' live socket, /ws/agent/: who may open it, which groups each role hears,
watching a ticket, presence, viewing and typing frames, and what it never says.

Driven through the whole staff stack (AllowedHostsOriginValidator, the session cookie,
helpdesk.routing.SessionUserMiddleware) on the in-memory layer. pytest-asyncio is not
installed: each test is one coroutine run with async_to_sync. transaction=True because the
consumer and the actions reach the database from other threads (and live events are
published on commit)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from helpdesk.routing import websocket_application
from tests.conftest import make_agent
from tickets import actions
from tickets.consumers import coalesce_seconds
from tickets.events import message_payload, ticket_event, ticket_group
from tickets.models import Agent, Presence, PresenceLog, Ticket, TicketEvent

pytestmark = pytest.mark.django_db(transaction=True)

APP = websocket_application()
WAIT = 5  # seconds; generous, the machine is shared
QUIET = 0.4  # how long "nothing arrives" is watched for


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.HELPDESK_LIVE_COALESCE_MS = 20


@pytest.fixture
def dan(outages: Any) -> Agent:
    return make_agent("dan", teams=(outages,), languages=("ru", "lt", "en"))


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def session_of(who: Any) -> str:
    user = who.user if isinstance(who, Agent) else who
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class Socket:
    """One agent page's socket, with a session cookie (None: anonymous)."""

    def __init__(self, cookie: str | None = None, *, origin: str = "http://testserver") -> None:
        self.cookie = cookie
        headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
        if self.cookie:
            headers.append((b"cookie", f"sessionid={self.cookie}".encode()))
        self.comm = WebsocketCommunicator(APP, "/ws/agent/", headers=headers)
        self.hello: dict[str, Any] = {}

    async def open(self) -> Socket:
        connected, _ = await self.comm.connect(timeout=WAIT)
        assert connected
        self.hello = await self.recv()
        assert self.hello["type"] == "hello", self.hello
        return self

    async def closed_with(self) -> int | None:
        """Connect, and return the close code the server answers with."""
        connected, code = await self.comm.connect(timeout=WAIT)
        if not connected:
            return code
        output = await self.comm.receive_output(timeout=WAIT)
        assert output["type"] == "websocket.close", output
        return output.get("code")

    async def send(self, frame: dict[str, Any]) -> None:
        await self.comm.send_to(text_data=json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        return json.loads(await self.comm.receive_from(timeout))

    async def events(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The next frame as a list of events (a batch frame holds several)."""
        frame = await self.recv(timeout)
        return frame["events"] if frame["type"] == "batch" else [frame]

    async def next_of(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """Skip frames until one of this type (others, like presence, may come first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in await self.events(max(0.05, deadline - loop.time())):
                if event["type"] == kind:
                    return event

    async def gather(self, *kinds: str, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The first event of each of these types, in whatever order they come."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: dict[str, dict[str, Any]] = {}
        while len(found) < len(kinds):
            for event in await self.events(max(0.05, deadline - loop.time())):
                if event["type"] in kinds:
                    found.setdefault(event["type"], event)
        return [found[kind] for kind in kinds]

    async def silent(self, timeout: float = QUIET) -> bool:
        return await self.comm.receive_nothing(timeout)

    async def drain(self) -> list[dict[str, Any]]:
        """Everything that arrives within QUIET seconds."""
        got: list[dict[str, Any]] = []
        while not await self.comm.receive_nothing(QUIET):
            got += await self.events()
        return got

    async def close(self) -> None:
        await self.comm.disconnect()


def in_db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(fn)


async def socket_of(who: Any, **kwargs: Any) -> Socket:
    """A socket with `who`'s session (signed in through Django's login: a "login" on record)."""
    return Socket(await in_db(session_of)(who) if who is not None else None, **kwargs)


async def opened(who: Any) -> Socket:
    return await (await socket_of(who)).open()


# --------------------------------------------------------------------------- who may connect


def test_it_closes_an_anonymous_socket_with_4401(db: Any) -> None:
    async def scenario() -> None:
        assert await (await socket_of(None)).closed_with() == 4401

    run(scenario)


def test_it_closes_mallorys_socket_with_4403_because_she_is_not_an_agent(mallory: Any) -> None:
    async def scenario() -> None:
        assert await (await socket_of(mallory)).closed_with() == 4403

    run(scenario)


def test_it_refuses_a_socket_opened_from_another_site(alice: Agent) -> None:
    async def scenario() -> None:
        socket = await socket_of(alice, origin="https://evil.example")
        connected, _ = await socket.comm.connect(timeout=WAIT)
        assert not connected

    run(scenario)


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
def test_it_greets_each_agent_with_their_status_and_the_timings(
    who: str, alice: Agent, bob: Agent, carol: Agent
) -> None:
    agent = {"alice": alice, "bob": bob, "carol": carol}[who]

    async def scenario() -> None:
        socket = await opened(agent)
        assert socket.hello["agent"] == {
            "id": agent.pk,
            "name": agent.name,
            "role": agent.role,
            "presence": "online",
        }
        assert set(socket.hello["config"]) == {"ping", "idle", "viewing_ttl", "typing_ttl"}
        await socket.close()

    run(scenario)
    # Connecting is a heartbeat.
    assert Agent.objects.get(pk=agent.pk).last_heartbeat_at is not None


# --------------------------------------------------------------------------- groups per role


def test_it_tells_billing_nothing_about_an_outages_ticket(
    alice: Agent, bob: Agent, carol: Agent, telegram: Any, receive: Any
) -> None:
    async def scenario() -> None:
        a, b, c = [await opened(x) for x in (alice, bob, carol)]
        for s in (a, b, c):
            await s.drain()  # the others' login presence events
        received = await in_db(receive)(telegram, "Нет света на улице Ленина", sender="77")
        ticket = received.ticket
        for s in (a, c):
            event = await s.next_of("ticket")
            assert event["op"] == "create" and event["ticket"]["id"] == ticket.pk
            assert event["ticket"]["preview"] == "Нет света на улице Ленина"
            assert event["version"] == ticket.version
        assert await b.silent(), "bob (Billing) heard about an Outages ticket"
        # A message event is only for a page watching the ticket: queue pages get none.
        assert all(e["type"] != "message" for e in await a.drain())
        for s in (a, b, c):
            await s.close()

    run(scenario)


def test_it_says_only_remove_to_the_team_a_ticket_is_transferred_away_from(
    alice: Agent, bob: Agent, carol: Agent, billing: Any, telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "Счёт за март неправильный", sender="78").ticket

    async def scenario() -> None:
        a, b = await opened(alice), await opened(bob)
        await a.drain()
        await b.drain()
        await in_db(actions.do_transfer)(
            ticket, actor=carol, team=billing, note="a billing question"
        )
        gone = await a.next_of("ticket")
        assert gone == {
            "type": "ticket",
            "op": "remove",
            "ticket": {"id": ticket.pk},
            "version": gone["version"],
        }
        # Ticket events wait a moment to be coalesced; a notice does not: any order.
        arrived, notice = await b.gather("ticket", "notice")
        assert arrived["op"] == "update" and arrived["ticket"]["team_id"] == billing.pk
        assert arrived["ticket"]["preview"] == "Счёт за март неправильный"
        assert notice["op"] == "transferred" and notice["note"] == "a billing question"
        # Nothing about the ticket but its removal reached alice.
        assert all(e["type"] not in ("ticket", "message", "notice") for e in await a.drain())
        await a.close()
        await b.close()

    run(scenario)


def test_it_sends_the_first_change_at_once_and_coalesces_the_rest_into_the_newest_version(
    alice: Agent, telegram: Any, receive: Any, settings: Any
) -> None:
    settings.HELPDESK_LIVE_COALESCE_MS = 1500
    ticket = receive(telegram, "Искрит провод", sender="79").ticket

    async def scenario() -> None:
        a = await opened(alice)
        await a.drain()
        await in_db(actions.do_set_priority)(ticket, "urgent", actor=alice)
        await in_db(actions.do_update_tags)(ticket, actor=alice, add=["wires"])
        await in_db(actions.do_set_status)(ticket, "pending", actor=alice)
        frames = [[e for e in await a.events(timeout=5) if e["type"] == "ticket"]]
        frames.append([e for e in await a.events(timeout=5) if e["type"] == "ticket"])
        final = await in_db(lambda: Ticket.objects.get(pk=ticket.pk).version)()
        # The first change goes out at once (the socket was quiet); the two that followed
        # within the window arrive together, in the next frame, as the newest version only.
        [first], [newest] = frames  # two frames of one event each for three changes
        assert first["ticket"]["id"] == newest["ticket"]["id"] == ticket.pk
        assert first["ticket"]["priority"] == "urgent" and first["ticket"]["status"] != "pending"
        assert first["version"] < final and newest["version"] == final
        assert newest["ticket"]["status"] == "pending"
        assert all(e["type"] != "ticket" for e in await a.drain())
        await a.close()

    run(scenario)


@pytest.mark.parametrize(
    ("deliveries_per_second", "window_ms"),
    [(0, 50), (5000, 50), (7500, 75), (10000, 100), (60000, 100)],
)
def test_it_widens_the_window_with_the_process_load_up_to_its_maximum(
    settings: Any, deliveries_per_second: float, window_ms: float
) -> None:
    settings.HELPDESK_LIVE_COALESCE_MS = 50
    settings.HELPDESK_LIVE_BUSY_DELIVERIES = 5000
    settings.HELPDESK_LIVE_COALESCE_MAX_MS = 100
    assert coalesce_seconds(deliveries_per_second) == pytest.approx(window_ms / 1000)


def test_it_keeps_the_window_when_widening_is_off_or_the_maximum_is_below_it(
    settings: Any,
) -> None:
    settings.HELPDESK_LIVE_COALESCE_MS = 50
    settings.HELPDESK_LIVE_BUSY_DELIVERIES = 0
    assert coalesce_seconds(60000) == pytest.approx(0.05)
    settings.HELPDESK_LIVE_BUSY_DELIVERIES = 5000
    settings.HELPDESK_LIVE_COALESCE_MAX_MS = 20
    assert coalesce_seconds(60000) == pytest.approx(0.05), "never narrower than the window"


# --------------------------------------------------------------------------- watching a ticket


def test_it_refuses_to_watch_a_ticket_the_agent_may_not_see(
    alice: Agent, bob: Agent, carol: Agent, telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "Нет света", sender="80").ticket

    async def scenario() -> None:
        b = await opened(bob)
        await b.send({"type": "watch", "ticket": ticket.pk})
        refused = await b.next_of("error")
        assert refused["code"] == "not_found"
        # Exactly the answer for a ticket that does not exist: no probing.
        await b.send({"type": "watch", "ticket": ticket.pk + 1000})
        assert (await b.next_of("error"))["message"] == f"ticket {ticket.pk + 1000} does not exist"
        await b.send({"type": "watch", "ticket": "x"})
        assert (await b.next_of("error"))["code"] == "bad_ticket"
        for who in (alice, carol):
            s = await opened(who)
            await s.send({"type": "watch", "ticket": ticket.pk})
            watching = await s.next_of("watching")
            assert watching == {"type": "watching", "ticket": ticket.pk, "version": ticket.version}
            await s.close()
        # Bob's socket never joined the ticket's group: a new message says nothing to him.
        await b.drain()
        await in_db(actions.do_add_note)(ticket, alice, "checking with the crew")
        assert all(e["type"] not in ("ticket", "message") for e in await b.drain())
        await b.close()

    run(scenario)


def test_it_sends_a_tickets_messages_to_the_page_watching_it_once(
    alice: Agent, carol: Agent, telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "Нет света", sender="81").ticket

    async def scenario() -> None:
        queue_page = await opened(alice)
        ticket_page = await opened(alice)
        # A supervisor hears of the ticket through "queue" and "ticket-<id>": once is enough.
        supervisor_page = await opened(carol)
        for page in (ticket_page, supervisor_page):
            await page.send({"type": "listen", "queue": False})
            await page.send({"type": "watch", "ticket": ticket.pk})
            await page.next_of("watching")
        for page in (queue_page, ticket_page, supervisor_page):
            await page.drain()
        note = await in_db(actions.do_add_note)(ticket, alice, "crew is on the way")
        for page in (ticket_page, supervisor_page):
            got = await page.drain()
            messages = [e for e in got if e["type"] == "message"]
            assert [(m["op"], m["message"]["id"]) for m in messages] == [("create", note.pk)]
            assert len([e for e in got if e["type"] == "ticket"]) == 1
        queue_events = await queue_page.drain()
        assert [e["type"] for e in queue_events if e["type"] in ("ticket", "message")] == ["ticket"]
        for page in (queue_page, ticket_page, supervisor_page):
            await page.close()

    run(scenario)


def test_it_never_lets_a_message_through_that_arrives_before_its_transfer_away(
    alice: Agent, carol: Agent, billing: Any, telegram: Any, receive: Any
) -> None:
    """The actions publish a transfer's ticket event and its note together, but Redis may
    deliver the note first: the page holds it until the ticket event says whether the agent
    may still see the ticket. Here the layer is driven directly, in the bad order."""
    ticket = receive(telegram, "Нет света", sender="83").ticket
    note = actions.do_add_note(ticket, carol, "moving this to billing: it is about a bill")
    ticket = Ticket.objects.get(pk=ticket.pk)
    ticket.version += 1
    moved = Ticket(
        **{**{f.attname: getattr(ticket, f.attname) for f in Ticket._meta.concrete_fields}}
    )
    moved.team_id = billing.pk
    message = {
        "type": "message",
        "op": "create",
        "message": message_payload(note),
        "ticket": ticket.pk,
        "version": ticket.version,
    }

    async def scenario() -> None:
        a = await opened(alice)
        await a.send({"type": "listen", "queue": False})
        await a.send({"type": "watch", "ticket": ticket.pk})
        await a.next_of("watching")
        await a.drain()
        layer = get_channel_layer()
        for event in (message, ticket_event("update", moved)):
            await layer.group_send(
                ticket_group(ticket.pk), {"type": "helpdesk.event", "event": event}
            )
        got = await a.drain()
        assert [(e["type"], e["op"]) for e in got if e["type"] in ("ticket", "message")] == [
            ("ticket", "remove")
        ]
        await a.close()

    run(scenario)


def test_it_releases_a_held_delivery_update_that_has_no_ticket_event(
    alice: Agent, telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "Нет света", sender="84").ticket
    note = actions.do_add_note(ticket, alice, "checking")
    version = Ticket.objects.get(pk=ticket.pk).version + 1
    update = {
        "type": "message",
        "op": "update",
        "message": message_payload(note),
        "ticket": ticket.pk,
        "version": version,
    }

    async def scenario() -> None:
        a = await opened(alice)
        await a.send({"type": "watch", "ticket": ticket.pk})
        await a.next_of("watching")
        await a.drain()
        await get_channel_layer().group_send(
            ticket_group(ticket.pk), {"type": "helpdesk.event", "event": update}
        )
        assert await a.silent(0.2), "sent before its ticket event could arrive"
        assert (await a.next_of("message", timeout=2)) == update
        await a.close()

    run(scenario)


# --------------------------------------------------------------------------- viewing, typing


def test_it_tells_viewers_who_else_is_viewing_and_typing_without_storing_it(
    alice: Agent, dan: Agent, bob: Agent, telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "Нет света", sender="82").ticket
    stored_before = (PresenceLog.objects.count(), TicketEvent.objects.count())

    async def scenario() -> None:
        a, d, b = await opened(alice), await opened(dan), await opened(bob)
        await a.send({"type": "watch", "ticket": ticket.pk})
        await a.next_of("watching")
        await d.send({"type": "watch", "ticket": ticket.pk})
        await d.next_of("watching")
        arrived = await a.next_of("viewing")
        assert (arrived["op"], arrived["agent"]["id"], arrived["ticket"]) == (
            "start",
            dan.pk,
            ticket.pk,
        )
        assert arrived["ttl"] > 0
        # The newcomer learns at once who was already there.
        already = await d.next_of("viewing")
        assert (already["op"], already["agent"]) == ("here", {"id": alice.pk, "name": "Alice"})

        await d.send({"type": "typing", "ticket": ticket.pk, "typing": True})
        typing = await a.next_of("typing")
        assert (typing["op"], typing["agent"]["id"]) == ("start", dan.pk)
        await d.send({"type": "typing", "ticket": ticket.pk, "typing": False})
        assert (await a.next_of("typing"))["op"] == "stop"
        # Typing on a ticket one is not watching is refused.
        await b.send({"type": "typing", "ticket": ticket.pk, "typing": True})
        assert (await b.next_of("error"))["code"] == "not_watching"

        await d.close()
        left = await a.next_of("viewing")
        assert (left["op"], left["agent"]["id"]) == ("stop", dan.pk)
        assert all(e["type"] not in ("viewing", "typing") for e in await b.drain())
        await a.close()
        await b.close()

    # Logins (session cookies) are on record; viewing and typing add nothing.
    logins = 3
    run(scenario)
    assert PresenceLog.objects.count() == stored_before[0] + logins
    assert TicketEvent.objects.count() == stored_before[1]


# --------------------------------------------------------------------------- presence frames


def test_it_sets_presence_from_the_socket_and_tells_supervisors_and_teammates(
    alice: Agent, dan: Agent, bob: Agent, carol: Agent
) -> None:
    async def scenario() -> None:
        a, d, b, c = [await opened(x) for x in (alice, dan, bob, carol)]
        for s in (a, d, b, c):
            await s.drain()
        await a.send({"type": "presence", "status": "away"})
        for s in (a, d, c):
            event = await s.next_of("presence")
            assert (event["agent"]["id"], event["status"], event["reason"]) == (
                alice.pk,
                "away",
                "manual",
            )
        assert all(e["type"] != "presence" for e in await b.drain()), "bob is not her teammate"

        await a.send({"type": "presence", "status": "busy"})
        error = await a.next_of("error")
        assert error["code"] == "invalid" and "online, away, offline" in error["message"]

        # Idle and back: automatic, so "active" only undoes "idle".
        await a.send({"type": "presence", "status": "online"})
        assert (await c.next_of("presence"))["status"] == "online"
        await a.send({"type": "idle"})
        assert (await c.next_of("presence"))["reason"] == "idle"
        await a.send({"type": "active"})
        back = await c.next_of("presence")
        assert (back["status"], back["reason"]) == ("online", "active")
        for s in (a, d, b, c):
            await s.close()

    run(scenario)
    log = list(
        PresenceLog.objects.filter(agent=alice)
        .exclude(reason="login")
        .values_list("status", "reason")
    )
    assert log == [
        ("away", "manual"),
        ("online", "manual"),
        ("away", "idle"),
        ("online", "active"),
    ]
    assert Agent.objects.get(pk=alice.pk).presence == Presence.ONLINE


def test_it_closes_every_socket_of_an_agent_who_signs_out(alice: Agent) -> None:
    async def scenario() -> None:
        first, second = await opened(alice), await opened(alice)
        await first.drain()  # the second tab's login
        await in_db(actions.do_set_presence)(alice, "offline", reason="logout")
        for s in (first, second):
            event = await s.next_of("presence")
            assert (event["status"], event["reason"]) == ("offline", "logout")
            closed = await s.comm.receive_output(timeout=WAIT)
            assert (closed["type"], closed["code"]) == ("websocket.close", 4401)

    run(scenario)


def test_it_writes_a_heartbeat_at_most_every_n_seconds(alice: Agent, settings: Any) -> None:
    settings.HELPDESK_HEARTBEAT_WRITE_SECONDS = 3600

    async def scenario() -> None:
        s = await opened(alice)
        first = await in_db(lambda: Agent.objects.get(pk=alice.pk).last_heartbeat_at)()
        await s.send({"type": "ping"})
        assert (await s.next_of("pong"))["type"] == "pong"
        after = await in_db(lambda: Agent.objects.get(pk=alice.pk).last_heartbeat_at)()
        assert after == first, "a ping within the interval wrote again"
        settings.HELPDESK_HEARTBEAT_WRITE_SECONDS = 0
        await s.send({"type": "ping"})
        await s.next_of("pong")
        later = await in_db(lambda: Agent.objects.get(pk=alice.pk).last_heartbeat_at)()
        assert later > first
        await s.close()

    run(scenario)


def test_it_brings_back_an_agent_swept_offline_when_their_socket_returns(
    alice: Agent, settings: Any
) -> None:
    session = session_of(alice)  # a login: online, and a heartbeat now
    actions.do_set_presence(alice, "away")  # then she chose away
    settings.HELPDESK_PRESENCE_GRACE_SECONDS = 0  # and her sockets are gone: swept
    assert actions.do_sweep_presence() == 1
    assert Agent.objects.get(pk=alice.pk).presence == "offline"

    async def scenario() -> None:
        s = await Socket(session).open()
        assert s.hello["agent"]["presence"] == "offline"  # as loaded, before coming back
        back = await s.next_of("presence")
        assert (back["status"], back["reason"]) == ("away", "active")
        await s.close()

    run(scenario)
    last = PresenceLog.objects.filter(agent=alice).order_by("-id").first()
    # What she had chosen before the connection was lost, not simply "online".
    assert (last.status, last.reason, last.previous) == ("away", "active", "offline")


def test_it_answers_bad_frames_with_specific_errors(alice: Agent) -> None:
    async def scenario() -> None:
        s = await opened(alice)
        await s.comm.send_to(text_data="not json")
        assert (await s.next_of("error"))["code"] == "not_json"
        await s.send({"type": "shout"})
        assert (await s.next_of("error"))["code"] == "unknown_type"
        await s.comm.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 5000}))
        assert (await s.next_of("error"))["code"] == "bad_frame"
        await s.close()

    run(scenario)


def test_it_closes_a_socket_that_floods_frames(alice: Agent) -> None:
    async def scenario() -> None:
        s = await opened(alice)
        for _ in range(60):
            await s.send({"type": "listen", "queue": True})
        codes = []
        while True:
            output = await s.comm.receive_output(timeout=WAIT)
            if output["type"] == "websocket.close":
                codes.append(output["code"])
                break
        assert codes == [4429]

    run(scenario)


def test_it_encodes_a_batch_frame_exactly_as_json_dumps_would() -> None:
    import json

    from tickets.consumers import _encode, _encode_batch

    events = [
        {"type": "ticket", "op": "update", "ticket": {"id": 1, "subject": "Sem luz 💡 <b>"}},
        {"type": "ticket", "op": "create", "ticket": {"id": 2, "subject": "断电"}, "version": 3},
    ]
    whole = json.dumps(
        {"type": "batch", "events": events}, separators=(",", ":"), ensure_ascii=False
    )
    assert _encode_batch(events) == whole
    assert _encode(events[0]) is _encode(events[0]), "an event is encoded once"
