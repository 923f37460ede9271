"""tickets.fanout: one layer channel per group, each member's deliveries in order, a slow
member never holding up the others, and its own turn (Mailbox.acquire) never interleaved."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer

from tickets.fanout import Fanout, Mailbox


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
