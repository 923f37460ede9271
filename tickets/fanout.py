"""Per-process fan-out of channel-layer group messages to the agents' sockets of this process.

Through Channels, every socket has its own layer channel: a group message is deserialised
once per socket, put on each socket's queue, and each consumer's dispatch loop wakes up
(a new task and an asyncio.wait per message): ~75 µs of ASGI CPU per delivery in
bench/live.py at 500 agents, where a message reaches ~190 sockets. Here a group has one layer
channel per process (the same Redis pub/sub subscription, so the same delivery guarantees),
its messages are deserialised once, and each local member's handler is called directly.

A member's events and its own frames (connect, client frames, disconnect) never interleave,
as with Channels' one-message-at-a-time dispatch: the consumer wraps its dispatch in
`Mailbox.acquire()` / `release()`; what the group delivers meanwhile waits in the mailbox, in
order, and runs after. A handler that has to wait (a full socket buffer, a thread) finishes
in a task of its own, so a slow socket delays only itself, never the rest of the group.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Go on driving `coro`, which was started by hand and is waiting on `yielded`, inside
    the awaiting task (what asyncio's eager tasks do in Python 3.12)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation too: it is handed to the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


def _first_step(coro: Coroutine[Any, Any, None]) -> tuple[bool, Any]:
    """Run `coro` in the caller's turn up to its first wait: (True, what it waits on), or
    (False, None) when it finished there (a failure is logged)."""
    try:
        return True, coro.send(None)
    except StopIteration:
        return False, None
    except Exception:
        log.exception("live event handler failed")
        return False, None


async def _complete(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Drive a coroutine `_first_step` left waiting on `yielded` to its end (a failure is
    logged)."""
    try:
        await _resume(coro, yielded)
    except Exception:
        log.exception("live event handler failed")


def _spawn(coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
    # An empty context: not the context of whichever socket's code happened to start it.
    task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
    tasks.add(task)  # the loop keeps only a weak reference to tasks
    task.add_done_callback(tasks.discard)


def run_now(coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
    """Run `coro` at once in the caller's turn, without a task: the usual case of a send to a
    socket whose buffer has room finishes here. If it has to wait, it goes on in a task of
    its own (kept in `tasks`: the loop holds tasks only weakly)."""
    waiting, yielded = _first_step(coro)
    if waiting:
        _spawn(_complete(coro, yielded), tasks)


class Mailbox:
    """One member's deliveries: run at once when the member is idle, else queued in order."""

    __slots__ = ("backlog", "busy", "handler", "tasks", "waiters")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.busy = False
        self.backlog: deque[dict[str, Any]] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.tasks: set[asyncio.Task[None]] = set()

    def deliver(self, message: dict[str, Any]) -> None:
        if self.busy:
            self.backlog.append(message)
            return
        coro = self.handler(message)
        waiting, yielded = _first_step(coro)
        if not waiting:
            return  # the usual case: checked, sent, done, without a task or a queue
        self.busy = True
        _spawn(self._finish(coro, yielded), self.tasks)

    async def acquire(self) -> None:
        """Wait until no delivery runs, then hold deliveries back (the consumer's own turn)."""
        while self.busy:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
        self.busy = True

    def release(self) -> None:
        """The consumer's turn is over: what arrived meanwhile runs now, in order."""
        if self.backlog:
            _spawn(self._drain(), self.tasks)
        else:
            self._idle()

    def close(self) -> None:
        self.backlog.clear()

    async def _finish(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        await _complete(coro, yielded)
        await self._drain()

    async def _drain(self) -> None:
        try:
            while self.backlog:
                try:
                    await self.handler(self.backlog.popleft())
                except Exception:
                    log.exception("live event handler failed")
        finally:
            self._idle()

    def _idle(self) -> None:
        self.busy = False
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
                break


class _Group:
    __slots__ = ("channel", "members", "name", "ready", "task")

    def __init__(self, name: str, ready: asyncio.Future[None]) -> None:
        self.name = name
        self.members: dict[Mailbox, None] = {}  # insertion-ordered set
        self.channel = ""
        self.ready = ready
        self.task: asyncio.Task[None] | None = None


class Fanout:
    """The groups that this process's members joined, each with one layer channel."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.groups: dict[str, _Group] = {}
        self.load = Load()

    async def add(self, group: str, member: Mailbox) -> None:
        """Returns once the group's messages reach `member` (join before accepting)."""
        entry = self.groups.get(group)
        if entry is not None:
            entry.members[member] = None
            await asyncio.shield(entry.ready)
            return
        loop = asyncio.get_running_loop()
        entry = self.groups[group] = _Group(group, loop.create_future())
        entry.members[member] = None
        try:
            entry.channel = await self.layer.new_channel()
            await self.layer.group_add(group, entry.channel)
        except BaseException as exc:
            if self.groups.get(group) is entry:
                del self.groups[group]
            entry.ready.set_exception(exc)
            entry.ready.exception()  # retrieved: the other joiners get it raised
            raise
        entry.task = loop.create_task(self._listen(entry), context=contextvars.Context())
        entry.ready.set_result(None)

    async def discard(self, group: str, member: Mailbox) -> None:
        entry = self.groups.get(group)
        if entry is None or member not in entry.members:
            return
        del entry.members[member]
        if entry.members or not entry.ready.done() or entry.ready.exception() is not None:
            return
        # The last local member left: one unsubscription, as the layer does per channel.
        del self.groups[group]
        if entry.task is not None:
            entry.task.cancel()
        await self.layer.group_discard(group, entry.channel)

    async def _listen(self, entry: _Group) -> None:
        receive: Callable[[str], Awaitable[dict[str, Any]]] = self.layer.receive
        while True:
            message = await receive(entry.channel)
            # A copy: a handler may leave the group (a ticket transferred away) meanwhile.
            members = tuple(entry.members)
            self.load.count(len(members))
            for member in members:
                member.deliver(message)


class Load:
    """Deliveries per second in this process, over the last whole second or so."""

    __slots__ = ("counted", "rate", "since")

    def __init__(self) -> None:
        self.counted = 0
        self.rate = 0.0
        self.since = 0.0

    def count(self, deliveries: int) -> None:
        self.counted += deliveries
        now = asyncio.get_running_loop().time()
        elapsed = now - self.since
        if elapsed >= 1.0:
            # Over the whole stretch since the last reading: after a quiet minute the first
            # delivery reads as quiet, and the second after it as what it carried.
            self.rate = self.counted / elapsed
            self.counted, self.since = 0, now


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Fanout] = weakref.WeakKeyDictionary()


def for_layer(layer: Any) -> Fanout:
    """This event loop's fan-out over `layer` (channels_redis keeps one layer per loop too)."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None or fanout.layer is not layer:
        fanout = _fanouts[loop] = Fanout(layer)
    return fanout
