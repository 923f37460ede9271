"""tickets.fanout: one layer channel per group, each member's deliveries in order, a slow
member never holding up the others, and its own turn (Mailbox.acquire) never interleaved."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer

from tickets.fanout import Fanout, Mailbox, run_now


class Member:
    def __init__(self, *, block: asyncio.Event | None = None) -> None:
        self.got: list[int] = []
        self.block = block
        self.mailbox = Mailbox(self.handle)

    async def handle(self, message: dict[str, Any]) -> None:
        if self.block is not None and not self.block.is_set():
            await self.block.wait()
        self.got.append(message["n"])


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_it_delivers_in_order_without_letting_a_slow_member_hold_up_the_group() -> None:
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        fanout = Fanout(layer)
        gate = asyncio.Event()
        fast, slow = Member(), Member(block=gate)
        await fanout.add("team-1", fast.mailbox)
        await fanout.add("team-1", slow.mailbox)
        assert len(layer.groups["team-1"]) == 1, "one layer channel per group and process"
        for n in range(3):
            await layer.group_send("team-1", {"type": "helpdesk.event", "n": n})
        await settle()
        assert (fast.got, slow.got) == ([0, 1, 2], [])
        gate.set()
        await settle()
        assert slow.got == [0, 1, 2]
        await fanout.discard("team-1", fast.mailbox)
        await fanout.discard("team-1", slow.mailbox)
        assert not layer.groups.get("team-1") and not fanout.groups

    asyncio.run(scenario())


def test_it_holds_deliveries_during_the_members_own_turn() -> None:
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        fanout = Fanout(layer)
        member = Member()
        await fanout.add("queue", member.mailbox)
        await member.mailbox.acquire()
        await layer.group_send("queue", {"type": "helpdesk.event", "n": 1})
        await settle()
        assert member.got == []
        member.mailbox.release()
        await settle()
        assert member.got == [1]
        await layer.group_send("queue", {"type": "helpdesk.event", "n": 2})
        await settle()
        assert member.got == [1, 2]

    asyncio.run(scenario())


def test_it_counts_deliveries_per_second_across_the_groups_members() -> None:
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        fanout = Fanout(layer)
        members = [Member() for _ in range(3)]
        for member in members:
            await fanout.add("team-1", member.mailbox)
        loop = asyncio.get_running_loop()
        fanout.load.since = loop.time()  # a reading just taken: the next one is a second away
        for n in range(10):
            await layer.group_send("team-1", {"type": "helpdesk.event", "n": n})
        await settle()
        assert fanout.load.rate == 0.0, "no reading before a second has passed"
        fanout.load.since = loop.time() - 2.0  # as if these came over two seconds
        await layer.group_send("team-1", {"type": "helpdesk.event", "n": 10})
        await settle()
        # 11 messages x 3 members over ~2 s.
        assert 15 <= fanout.load.rate <= 17
        assert all(m.got == list(range(11)) for m in members)

    asyncio.run(scenario())


def test_it_runs_a_coroutine_at_once_and_finishes_one_that_waits_in_a_task() -> None:
    async def scenario() -> None:
        ran: list[str] = []
        gate = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def quick() -> None:
            ran.append("quick")

        async def waits() -> None:
            ran.append("waits: started")
            await gate.wait()
            ran.append("waits: done")

        async def fails() -> None:
            raise RuntimeError("a handler bug")

        run_now(quick(), tasks)
        assert ran == ["quick"] and not tasks, "done in the caller's turn, no task"
        run_now(waits(), tasks)
        assert ran[-1] == "waits: started" and len(tasks) == 1
        run_now(fails(), tasks)  # logged, not raised into the caller
        gate.set()
        await settle()
        assert ran[-1] == "waits: done" and not tasks

    asyncio.run(scenario())
