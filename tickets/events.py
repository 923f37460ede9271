"""Typed live events, published to channel-layer groups after the transaction commits.

Only `tickets.actions` calls `publish_on_commit`. The action chooses the recipients (groups),
never the consumer: an agent's socket joins its own group, its teams' groups and the pages it
has open; supervisors join the whole queue. Every event carries the ticket's version so a
client can drop what it has already rendered and re-sync after a gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts
from django.db import transaction

from .models import Message, Ticket

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"  # supervisors: every ticket


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


def agent_group(agent_id: int) -> str:
    return f"agent-{agent_id}"


def ticket_group(ticket_id: int) -> str:
    return f"ticket-{ticket_id}"


def ticket_groups(
    ticket: Ticket, *also_teams: int | None, also_agents: Iterable[int | None] = ()
) -> set[str]:
    """Everyone who may see this ticket now, plus former team/assignee (so it leaves their
    view)."""
    groups = {QUEUE_GROUP, ticket_group(ticket.pk)}
    for team_id in (ticket.team_id, *also_teams):
        if team_id:
            groups.add(team_group(team_id))
    for agent_id in (ticket.assignee_id, *also_agents):
        if agent_id:
            groups.add(agent_group(agent_id))
    return groups


def ticket_payload(ticket: Ticket) -> dict[str, Any]:
    """The queue row of a ticket: the same fields the list API returns."""
    return {
        "id": ticket.pk,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority_name,
        "priority_score": ticket.priority_score,
        "priority_reasons": ticket.priority_reasons,
        "topic": ticket.topic,
        "language": ticket.language,
        "channel_id": ticket.channel_id,
        "contact_id": ticket.contact_id,
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
        "sla_due_at": ticket.sla_due_at.isoformat() if ticket.sla_due_at else None,
        "waiting_since": ticket.waiting_since.isoformat() if ticket.waiting_since else None,
        "last_message_at": ticket.last_message_at.isoformat(),
        "preview": ticket.preview,
        "version": ticket.version,
    }


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "ticket_id": message.ticket_id,
        "direction": message.direction,
        "author_kind": message.author_kind,
        "author_id": message.author_id,
        "kind": message.kind,
        "text": message.text,
        "is_internal": message.is_internal,
        "delivery_status": message.delivery_status,
        "created_at": message.created_at.isoformat(),
    }


def ticket_event(op: str, ticket: Ticket, **extra: Any) -> dict[str, Any]:
    return {
        "type": "ticket",
        "op": op,
        "ticket": ticket_payload(ticket),
        "version": ticket.version,
        **extra,
    }


def publish_on_commit(groups: Iterable[str], event: dict[str, Any]) -> None:
    targets = sorted(set(groups))
    transaction.on_commit(lambda: _publish(targets, event))


def _publish(groups: list[str], event: dict[str, Any]) -> None:
    pending = getattr(_batch, "items", None)
    if pending is not None:
        pending.append((groups, event))
        return
    _publish_all([(groups, event)])


# Events whose transaction has committed inside a `batched()` block, waiting for its end.
_batch = threading.local()


@contextmanager
def batched() -> Iterator[None]:
    """Publish the live events of every transaction committed inside the block together, when
    it ends: one Redis round trip instead of one per event. An inbound message publishes
    three (ticket created, message added, assigned), and those pipelines were a tenth of the
    worker's CPU per message (bench/live.py, py-spy). Events are still only those of
    committed work: Django drops the on-commit hooks of a rolled-back savepoint or
    transaction, so they never reach the batch. Nested blocks publish with the outermost."""
    if getattr(_batch, "items", None) is not None:
        yield
        return
    _batch.items = []
    try:
        yield
    finally:
        items, _batch.items = _batch.items, None
        if items:
            _publish_all(items)


def _publish_all(items: list[tuple[list[str], dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    messages = [(groups, {"type": "helpdesk.event", "event": event}) for groups, event in items]
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # The in-process layer delivers to consumers of this process's loop.
            async_to_sync(_send_all)(layer, messages)
        elif isinstance(layer, RedisPubSubChannelLayer):
            _RedisPublisher.of(layer).publish(messages)
        else:
            _Publisher.get().submit(layer, messages)
    except Exception:
        # The change is committed; a client that misses this re-syncs by version.
        log.exception(
            "live event %s not published",
            ", ".join(f"{e.get('type')}.{e.get('op')}" for _, e in items),
        )


async def _send_all(layer: Any, messages: list[tuple[list[str], dict[str, Any]]]) -> None:
    for groups, message in messages:
        for group in groups:
            await layer.group_send(group, message)


class _RedisPublisher:
    """Publishes to the groups of a channels_redis pub/sub layer from the calling thread, with
    redis-py's synchronous client: the message serialized once (the layer's own serializer,
    encryption included), every group's PUBLISH in one pipeline per Redis shard — one round
    trip per event, or per batch of events (`batched`). The layer's own group_send
    serializes per group and awaits a PUBLISH each, on an event loop in another thread: a
    third of the Celery worker's CPU per inbound message went there (bench/live.py, py-spy),
    and the thread fought the worker for the GIL.
    Channel names and shard choice are the layer's (`{prefix}__group__{group}`, CRC hash)."""

    _by_layer: weakref.WeakKeyDictionary[Any, _RedisPublisher] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, layer: RedisPubSubChannelLayer) -> None:
        config = dict(layer._kwargs)
        hosts = config.get("hosts", layer._args[0] if layer._args else None)
        self.layer = weakref.ref(layer)
        self.prefix = config.get("prefix", "asgi")
        # redis-py pools notice a fork and reconnect in the child (Celery's prefork pool).
        self.clients = [
            redis.Redis.from_url(host["address"], **_TIMEOUTS)
            if "address" in host
            else redis.Redis(**{**_TIMEOUTS, **host})
            for host in decode_hosts(hosts)
        ]

    @classmethod
    def of(cls, layer: RedisPubSubChannelLayer) -> _RedisPublisher:
        with cls._lock:
            publisher = cls._by_layer.get(layer)
            if publisher is None:
                publisher = cls._by_layer[layer] = cls(layer)
            return publisher

    def publish(self, messages: list[tuple[list[str], dict[str, Any]]]) -> None:
        layer = self.layer()
        if layer is None:
            return
        # In the order given within each shard: a socket sees one ticket's events in order.
        by_shard: dict[int, list[tuple[str, bytes]]] = {}
        for groups, message in messages:
            payload = layer.serialize(message)
            for group in groups:
                channel = f"{self.prefix}__group__{group}"
                shard = _consistent_hash(channel, len(self.clients))
                by_shard.setdefault(shard, []).append((channel, payload))
        for shard, publishes in by_shard.items():
            pipe = self.clients[shard].pipeline(transaction=False)
            for channel, payload in publishes:
                pipe.publish(channel, payload)
            pipe.execute()


# A live event is not worth holding up a worker or a request for: fail fast, log, move on
# (clients re-sync by version).
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


class _Publisher:
    """One event loop per process, in a daemon thread, for publishing through any other
    channel layer.

    `async_to_sync` from a worker or a WSGI thread starts a fresh loop per call, and
    channels_redis opens a Redis connection per loop: ~8 ms per message in the ingest
    profile. Here the connection lives as long as the process, and publishing does not wait
    for Redis (fire and forget: clients re-sync by version if an event is lost).
    """

    _instance: _Publisher | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, name="live-publisher", daemon=True)
        thread.start()

    @classmethod
    def get(cls) -> _Publisher:
        # After a fork (Celery's prefork pool) the loop thread does not exist in the child.
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def submit(self, layer: Any, messages: list[tuple[list[str], dict[str, Any]]]) -> None:
        future = asyncio.run_coroutine_threadsafe(_send_all(layer, messages), self.loop)
        future.add_done_callback(_log_failure)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("live event not published: %s", future.exception())


# --------------------------------------------------------------------------- live: presence,
# viewing, typing (helpers only; published by tickets.actions like every other event)


def presence_groups(agent_id: int, team_ids: Iterable[int]) -> set[str]:
    """Who hears about an agent's presence: supervisors, the agent's teammates, and the
    agent's own other tabs (so every open page shows the same status)."""
    return {QUEUE_GROUP, agent_group(agent_id), *(team_group(t) for t in team_ids)}


def presence_event(
    agent_id: int, name: str, status: str, *, reason: str, at: str, version: int
) -> dict[str, Any]:
    """`version` is the PresenceLog row's id: increasing per agent, so a client keeps the
    newest status whatever order two changes arrive in."""
    return {
        "type": "presence",
        "op": "update",
        "agent": {"id": agent_id, "name": name},
        "status": status,
        "reason": reason,
        "at": at,
        "version": version,
    }


def ephemeral_event(
    kind: str, op: str, ticket_id: int, agent_id: int, name: str, *, ttl: int, version: int
) -> dict[str, Any]:
    """Someone viewing or typing on a ticket page. Never stored: the client forgets it after
    `ttl` seconds unless it is repeated, so a closed tab or a crashed browser cannot leave a
    ghost. `version` is a millisecond clock, to drop a late "stop" that overtook a "start"."""
    return {
        "type": kind,
        "op": op,
        "ticket": ticket_id,
        "agent": {"id": agent_id, "name": name},
        "ttl": ttl,
        "version": version,
    }
