"""`/ws/agent/` — an agent's live socket: the queue and the ticket pages update through it.

Authenticated by the Django session (helpdesk.routing, same origin only). On connect the
socket joins its agent's group, and either the "queue" group (supervisors and admins: every
ticket) or its teams' groups; a ticket page then asks to watch its ticket and joins that
ticket's group, if the agent may see it. The actions choose who is told what (they publish
to those groups after commit); this consumer only forwards, and on top of that:

- never tells anyone about a ticket they may not see: a ticket event whose ticket is no longer
  in the agent's teams or assigned to them is forwarded as {"op": "remove"} with the id and
  version only (the ticket moved away: it leaves their queue, nothing else is said);
- coalesces ticket events: a change after a quiet HELPDESK_LIVE_COALESCE_MS goes out at once;
  within the window only the newest version of each ticket is sent at its end, several at
  once in one "batch" frame (PERF-NOTES: a socket must not get a
  frame per change at storm rates);
- drops the copies that reach a socket through several of its groups (a supervisor watching
  a ticket hears of it through "queue" and "ticket-<id>");
- sends message, viewing and typing events only to the page watching that ticket, and holds
  a message that is newer than the last ticket event of that ticket until that ticket event
  arrives (or HOLD_SECONDS pass): the actions publish the two together, but not in a
  guaranteed order, and a transfer out of the agent's teams must not let its note (or the
  next message) through to the page it just closed.

Protocol (JSON text frames). Client -> server:
    {"type": "ping"}                              heartbeat (every `config.ping` seconds)
    {"type": "listen", "queue": false}             a ticket page: no other tickets' events
    {"type": "watch", "ticket": 12}                a ticket page opened (viewing starts)
    {"type": "unwatch"}
    {"type": "typing", "ticket": 12, "typing": true|false}
    {"type": "presence", "status": "online"|"away"|"offline"}   chosen by the agent
    {"type": "idle"} / {"type": "active"}          automatic away, and back
Server -> client:
    {"type": "hello", "agent": {"id", "name", "role", "presence"}, "config": {...}}
    {"type": "pong"}
    {"type": "watching", "ticket": 12, "version": 7}
    events: {"type": "ticket"|"message"|"notice"|"presence"|"viewing"|"typing", "op", ...}
    {"type": "batch", "events": [...]}
    {"type": "error", "code", "message"}
Close codes: 4401 not signed in (or signed out), 4403 not a helpdesk agent, 4429 too many
frames. The client reconnects on anything else, and then re-syncs what it shows.

Queries: loading the agent and its team ids on connect, and one per watch (the ticket's team
and assignee, for tickets.queue.can_see). Everything per event is query-free. Heartbeats and
presence changes are actions (writes), throttled per socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from typing import Any, cast

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import actions, fanout, presence
from .errors import ActionError
from .events import QUEUE_GROUP, agent_group, team_group, ticket_group
from .models import Agent, Presence, PresenceLog, Ticket
from .queue import can_see, team_ids

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429

MAX_FRAME_CHARS = 2048
# Per socket, any frame: a burst of 30, then 5 a second (typing sends one every 2 s).
FRAME_BURST, FRAME_RATE = 30, 5.0
STRIKES_BEFORE_CLOSE = 5
# Copies of one event reach a socket back to back; this many recent ones are remembered.
RECENT_EVENTS = 64
# Newest version sent per ticket, to drop late or repeated ticket events.
SENT_VERSIONS = 4096
TYPING_MIN_INTERVAL = 1.0  # seconds between two "typing" publishes of one socket
# A message newer than the watched ticket's last ticket event waits at most this long for it.
# Delivery receipts change the version without a ticket event, so they wait this long.
HOLD_SECONDS = 0.5


def coalesce_seconds(deliveries_per_second: float = 0.0) -> float:
    """The coalescing window: HELPDESK_LIVE_COALESCE_MS, widened when this process is busy.

    Every frame costs a write to its socket whatever it carries: at 500 agents and 100
    messages a second (~15,000 deliveries a second), the writes were a third of the ASGI
    process's CPU, which competes with the workers for the machine. Above
    HELPDESK_LIVE_BUSY_DELIVERIES a second the window grows in proportion, up to
    HELPDESK_LIVE_COALESCE_MAX_MS: fewer, fuller frames, where a wider window costs
    latency that nobody can read at that rate anyway."""
    base = float(getattr(settings, "HELPDESK_LIVE_COALESCE_MS", 50)) / 1000
    busy = float(getattr(settings, "HELPDESK_LIVE_BUSY_DELIVERIES", 5000))
    widest = float(getattr(settings, "HELPDESK_LIVE_COALESCE_MAX_MS", 100)) / 1000
    if busy <= 0 or deliveries_per_second <= busy:
        return base
    return max(base, min(widest, base * deliveries_per_second / busy))


def _load_agent(user_id: int) -> Agent | None:
    agent = Agent.objects.select_related("user").filter(user_id=user_id).first()
    if agent is not None:
        team_ids(agent)  # cached on the instance: can_see needs no query per event
    return agent


def _ticket_for_watch(ticket_id: int) -> Ticket | None:
    return (
        Ticket.objects.filter(pk=ticket_id).only("id", "team_id", "assignee_id", "version").first()
    )


def _connected(agent: Agent) -> None:
    """The socket is up: a heartbeat, and back from "connection lost" if that is why the
    agent is offline (a laptop waking up)."""
    actions.do_heartbeat(agent.pk)
    if agent.presence == Presence.OFFLINE:
        actions.do_mark_active(agent)


# Recently encoded events and their text, by identity: the fan-out hands one event object to
# every socket of a group, so an event is encoded once, not once per socket — also inside the
# "batch" frames a coalescing window sends, which differ from socket to socket but are made of
# the same events (json.dumps per batch was an eighth of the ASGI CPU at 500 agents). Holding
# the object keeps its id from being reused; events are never modified once built.
_encoded: OrderedDict[int, tuple[object, str]] = OrderedDict()
ENCODED_KEPT = 2048


def _encode(event: dict[str, Any]) -> str:
    hit = _encoded.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    _encoded[id(event)] = (event, text)
    if len(_encoded) > ENCODED_KEPT:
        _encoded.popitem(last=False)
    return text


def _encode_batch(events: list[dict[str, Any]]) -> str:
    """json.dumps({"type": "batch", "events": events}) with the compact separators, from each
    event's cached text."""
    return '{"type":"batch","events":[' + ",".join(map(_encode, events)) + "]}"


class _Shown:
    """The two fields of an event's ticket row that tickets.queue.can_see reads. A Ticket
    instance built for the check cost ~150 µs (every field's default) per event per socket:
    an eighth of the ASGI CPU in bench/live.py's profile."""

    __slots__ = ("assignee_id", "team_id")

    def __init__(self, team_id: Any, assignee_id: Any) -> None:
        self.team_id, self.assignee_id = team_id, assignee_id


class _Bucket:
    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens = capacity
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class AgentConsumer(AsyncWebsocketConsumer):
    agent: Agent | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Group events arrive through the process's fan-out (tickets/fanout.py), not through
        # this socket's layer channel: ~4x less ASGI CPU per delivery at 500 sockets.
        self.mailbox = fanout.Mailbox(self.helpdesk_event)

    async def connect(self) -> None:
        self.fanout = fanout.for_layer(self.channel_layer)
        self.groups_joined: list[str] = []
        self.watching: int | None = None
        self.watch_version = 0  # the newest version of the watched ticket known to be visible
        self.held: list[tuple[float, dict[str, Any]]] = []
        self.hold_task: asyncio.Task[None] | None = None
        self.queue_on = True
        self.closed = False
        self.presence = ""
        self.presence_reason = ""
        self.pending: dict[int, dict[str, Any]] = {}
        self.flush_timer: asyncio.TimerHandle | None = None
        self.sending: set[asyncio.Task[None]] = set()
        self.last_flush = float("-inf")  # event-loop time of the last frame of ticket events
        self.recent: deque[str] = deque(maxlen=RECENT_EVENTS)
        self.recent_set: set[str] = set()
        self.sent_versions: OrderedDict[int, int] = OrderedDict()
        self.frames = _Bucket(FRAME_BURST, FRAME_RATE)
        self.strikes = 0
        self.last_beat = 0.0
        self.last_typing = 0.0

        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED, "sign in first")
            return
        agent = await database_sync_to_async(_load_agent)(user.pk)
        if agent is None:
            await self._refuse(CLOSE_FORBIDDEN, "this account is not a helpdesk agent")
            return
        self.agent = agent
        self.presence = agent.presence
        groups = [agent_group(agent.pk)]
        if agent.is_supervisor:
            groups.append(QUEUE_GROUP)
        else:
            groups += [team_group(t) for t in team_ids(agent)]
        # Join before accepting: an event committed while the page loads its data reaches
        # the socket instead of falling between the page and the subscription.
        for group in groups:
            await self.fanout.add(group, self.mailbox)
        self.groups_joined = groups
        await self.accept()
        await database_sync_to_async(_connected)(agent)
        self.last_beat = time.monotonic()
        await self._send(
            {
                "type": "hello",
                "agent": {
                    "id": agent.pk,
                    "name": agent.name,
                    "role": agent.role,
                    "presence": self.presence,
                },
                "config": presence.live_config(),
            }
        )

    async def _refuse(self, code: int, reason: str) -> None:
        # Accept, then close with a code: closed before accepting, the browser sees a bare
        # 1006 and could not tell "never" (stop reconnecting) from "try again".
        self.closed = True
        await self.accept()
        await self.close(code=code, reason=reason)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        if self.hold_task is not None:
            self.hold_task.cancel()
        if self.agent is not None and self.watching is not None:
            await self._announce_viewing(self.watching, "stop")
        self.mailbox.close()
        for group in self.groups_joined:
            await self.fanout.discard(group, self.mailbox)
        self.groups_joined = []

    # ------------------------------------------------------------------ client frames

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed or self.agent is None:
            return
        if not self.frames.take():
            self.strikes += 1
            await self._error("rate_limited", "too many frames; slow down")
            if self.strikes >= STRIKES_BEFORE_CLOSE:
                self.closed = True
                await self.close(code=CLOSE_RATE_LIMITED)
            return
        self.strikes = 0
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self._error("bad_frame", f"frames are JSON text of at most {MAX_FRAME_CHARS}")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error("not_json", "a frame must be a JSON object")
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "ping": self._ping,
            "listen": self._listen,
            "watch": self._watch,
            "unwatch": self._unwatch,
            "typing": self._typing,
            "presence": self._presence,
            "idle": self._idle,
            "active": self._active,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self._error("unknown_type", f"unknown frame type {str(kind)[:40]!r}")
            return
        await handler(content)

    async def _ping(self, content: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101  (receive() checked it)
        await self._send({"type": "pong"})
        now = time.monotonic()
        if now - self.last_beat >= presence.heartbeat_write_seconds():
            self.last_beat = now
            if self.presence == Presence.OFFLINE and (
                self.presence_reason == PresenceLog.Reason.DISCONNECTED
            ):
                await database_sync_to_async(_connected)(agent)
            else:
                await database_sync_to_async(actions.do_heartbeat)(agent.pk)
        if self.watching is not None:
            # Viewers are forgotten after viewing_ttl unless repeated: a crashed browser
            # leaves no ghost.
            await self._announce_viewing(self.watching, "here")

    async def _listen(self, content: dict[str, Any]) -> None:
        self.queue_on = bool(content.get("queue", True))

    async def _watch(self, content: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        ticket_id = _ticket_id(content.get("ticket"))
        if ticket_id is None:
            await self._error("bad_ticket", "ticket must be a ticket number")
            return
        ticket = await database_sync_to_async(_ticket_for_watch)(ticket_id)
        if ticket is None or not can_see(agent, ticket):
            # The same answer as for a ticket that does not exist: no probing.
            await self._error("not_found", f"ticket {ticket_id} does not exist")
            return
        if self.watching != ticket_id:
            await self._unwatch({})
            await self.fanout.add(ticket_group(ticket_id), self.mailbox)
            self.groups_joined.append(ticket_group(ticket_id))
            self.watching = ticket_id
            self.watch_version = ticket.version
            await self._announce_viewing(ticket_id, "start")
        await self._send({"type": "watching", "ticket": ticket_id, "version": ticket.version})

    async def _unwatch(self, content: dict[str, Any]) -> None:
        ticket_id = self.watching
        if ticket_id is None:
            return
        self.watching = None
        self.held = []
        group = ticket_group(ticket_id)
        if group in self.groups_joined:
            self.groups_joined.remove(group)
        await self.fanout.discard(group, self.mailbox)
        await self._announce_viewing(ticket_id, "stop")

    async def _typing(self, content: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        ticket_id = _ticket_id(content.get("ticket"))
        if ticket_id is None or ticket_id != self.watching:
            await self._error("not_watching", "watch the ticket before typing on it")
            return
        typing = bool(content.get("typing", True))
        now = time.monotonic()
        if typing and now - self.last_typing < TYPING_MIN_INTERVAL:
            return
        self.last_typing = now if typing else 0.0
        await sync_to_async(actions.do_announce_typing, thread_sensitive=False)(
            agent, ticket_id, typing
        )

    async def _presence(self, content: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        try:
            await database_sync_to_async(actions.do_set_presence)(
                agent, content.get("status"), reason=PresenceLog.Reason.MANUAL
            )
        except ActionError as exc:
            await self._error(exc.code, exc.message)

    # The client sends these once per idle period, so the action (which decides under the
    # agent's row lock) is asked every time: this socket's idea of the status may be a
    # moment behind.
    async def _idle(self, content: dict[str, Any]) -> None:
        await database_sync_to_async(actions.do_mark_idle)(self.agent)

    async def _active(self, content: dict[str, Any]) -> None:
        await database_sync_to_async(actions.do_mark_active)(self.agent)

    async def _announce_viewing(self, ticket_id: int, op: str) -> None:
        await sync_to_async(actions.do_announce_viewing, thread_sensitive=False)(
            self.agent, ticket_id, op
        )

    # ------------------------------------------------------------------ channel layer

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The fan-out's deliveries wait while this socket handles its own messages (connect,
        # client frames, disconnect), as they waited on its layer channel before.
        await self.mailbox.acquire()
        try:
            if message.get("type") == "helpdesk.event":
                # Channels' dispatch first hops to a worker thread to close stale database
                # connections (aclose_old_connections), for every message: a third of the
                # ASGI CPU at 100 events/s × 100 sockets (bench/live.py). Events are
                # query-free here, and each database_sync_to_async call of this consumer
                # closes stale connections itself, so they skip the hop.
                await self.helpdesk_event(message)
            else:
                await super().dispatch(message)
        finally:
            self.mailbox.release()

    async def helpdesk_event(self, message: dict[str, Any]) -> None:
        """An event an action published to one of this socket's groups."""
        if self.closed or self.agent is None:
            return
        event = message.get("event")
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "ticket":
            await self._ticket_event(event)
        elif kind == "message":
            if self.watching is not None and event.get("ticket") == self.watching:
                await self._message_event(event)
        elif kind in ("viewing", "typing"):
            await self._ephemeral_event(event)
        elif kind == "presence":
            await self._presence_event(event)
        else:
            await self._send_once(event)

    async def _ticket_event(self, event: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        row = event.get("ticket")
        if not isinstance(row, dict) or not isinstance(row.get("id"), int):
            return
        ticket_id: int = row["id"]
        version = event.get("version") or 0
        if self.sent_versions.get(ticket_id, -1) >= version:
            return  # a copy through another group, or older than what was sent
        # The same rule as every page (tickets.queue.can_see), on the event's own fields.
        shown = _Shown(row.get("team_id"), row.get("assignee_id"))
        if not can_see(agent, cast(Ticket, shown)):
            event = {
                "type": "ticket",
                "op": "remove",
                "ticket": {"id": ticket_id},
                "version": version,
            }
            if self.watching == ticket_id:
                # Transferred away while open: no more messages or viewers of it here.
                await self._unwatch({})
                self.pending[ticket_id] = event
                await self._flush()
                return
        elif ticket_id == self.watching:
            await self._release(version)
        elif not self.queue_on:
            return
        queued = self.pending.get(ticket_id)
        if queued is None or (queued.get("version") or 0) <= version:
            self.pending[ticket_id] = event
        if self.flush_timer is None:
            # Leading edge: after a quiet window the change goes out at once (no added latency
            # for the first event); within the window it waits for the window's end with
            # whatever else changes, so a socket still gets at most one frame per window.
            loop = asyncio.get_running_loop()
            window = coalesce_seconds(self.fanout.load.rate)
            wait = self.last_flush + window - loop.time()
            if wait <= 0:
                await self._flush()
            else:
                # A timer, not a task per socket per window (a task and its sleep were a
                # tenth of the ASGI CPU at 500 sockets).
                self.flush_timer = loop.call_later(wait, self._flush_at_timer)

    async def _message_event(self, event: dict[str, Any]) -> None:
        version = event.get("version") or 0
        if version <= self.watch_version:
            await self._send_once(event)
            return
        loop = asyncio.get_running_loop()
        self.held.append((loop.time() + HOLD_SECONDS, event))
        if self.hold_task is None:
            self.hold_task = asyncio.create_task(self._release_later())

    async def _release(self, version: int) -> None:
        """The watched ticket's event of `version` arrived, and the agent may still see it:
        the messages it was published with go out."""
        self.watch_version = max(self.watch_version, version)
        ready = [e for _, e in self.held if (e.get("version") or 0) <= version]
        self.held = [(t, e) for t, e in self.held if (e.get("version") or 0) > version]
        for event in ready:
            await self._send_once(event)

    async def _release_later(self) -> None:
        """No ticket event came for these: the change was a delivery receipt or an edit,
        which never moves a ticket out of anyone's view."""
        try:
            while self.held:
                loop = asyncio.get_running_loop()
                await asyncio.sleep(max(0.0, self.held[0][0] - loop.time()))
                now = loop.time()
                due = [e for t, e in self.held if t <= now]
                if due:
                    await self._release(max(e.get("version") or 0 for e in due))
        except asyncio.CancelledError:
            pass
        finally:
            self.hold_task = None

    def _flush_at_timer(self) -> None:
        self.flush_timer = None
        fanout.run_now(self._flush(), self.sending)

    async def _flush(self) -> None:
        events, self.pending = list(self.pending.values()), {}
        if not events or self.closed:
            return
        for event in events:
            ticket_id = event["ticket"]["id"]
            self.sent_versions[ticket_id] = event.get("version") or 0
            self.sent_versions.move_to_end(ticket_id)
        while len(self.sent_versions) > SENT_VERSIONS:
            self.sent_versions.popitem(last=False)
        self.last_flush = asyncio.get_running_loop().time()
        await self._send_text(_encode(events[0]) if len(events) == 1 else _encode_batch(events))

    async def _ephemeral_event(self, event: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        who = event.get("agent") or {}
        if self.watching is None or event.get("ticket") != self.watching:
            return
        if who.get("id") == agent.pk:
            return  # our own, echoed back by the group
        await self._send_once(event)
        if event.get("type") == "viewing" and event.get("op") == "start":
            # A newcomer: tell them at once who is already here, not at the next ping.
            await self._announce_viewing(self.watching, "here")

    async def _presence_event(self, event: dict[str, Any]) -> None:
        agent = self.agent
        assert agent is not None  # noqa: S101
        mine = (event.get("agent") or {}).get("id") == agent.pk
        if mine:
            self.presence = str(event.get("status") or "")
            self.presence_reason = str(event.get("reason") or "")
        await self._send_once(event)
        if mine and self.presence_reason == PresenceLog.Reason.LOGOUT:
            # Signed out (in this tab or another): the session is gone, so is this socket.
            self.closed = True
            await self.close(code=CLOSE_UNAUTHENTICATED)

    # ------------------------------------------------------------------ sending

    async def _send_once(self, event: dict[str, Any]) -> None:
        text = _encode(event)
        if text in self.recent_set:
            return
        if len(self.recent) == self.recent.maxlen:
            self.recent_set.discard(self.recent[0])
        self.recent.append(text)
        self.recent_set.add(text)
        await self._send_text(text)

    async def _send(self, event: dict[str, Any]) -> None:
        """A frame of this socket's own (hello, pong, an error): nothing to share."""
        await self._send_text(json.dumps(event, separators=(",", ":"), ensure_ascii=False))

    async def _send_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self.send(text_data=text)
        except OSError:
            # The client went away under a send (uvicorn raises ClientDisconnected, an
            # OSError); disconnect() follows. Raised in a flush or hold task, nobody would
            # retrieve the error: one "Task exception was never retrieved" per closed tab.
            self.closed = True

    async def _error(self, code: str, message: str) -> None:
        await self._send({"type": "error", "code": code, "message": message})


def _ticket_id(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None
