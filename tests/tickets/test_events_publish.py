"""tickets.events publishing to the channels_redis pub/sub layer from a synchronous caller (a
Celery worker, a WSGI request): every group's subscribers get the event, once, decoded by
the layer itself — also with the groups spread over two Redis shards."""

from __future__ import annotations

import uuid

import pytest

from tests.worker import LiveListener
from tickets import events


def _layers(prefix: str, hosts: list[str]) -> dict:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": prefix},
        }
    }


@pytest.mark.parametrize("shards", [1, 2])
def test_it_publishes_an_event_to_every_group_once(settings, shards) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (run with `make test`)")
    base = settings.REDIS_URL.rsplit("/", 1)[0]
    # Two logical databases of one server stand in for two shards: pub/sub ignores the
    # database, so each subscriber must be on the shard the publisher chose, or it hears nothing.
    hosts = [f"{base}/{n}" for n in range(shards)]
    settings.CHANNEL_LAYERS = _layers(f"t{uuid.uuid4().hex[:8]}", hosts)
    groups = ["queue", "team-7", "agent-3", "ticket-42"]
    listeners = [LiveListener([group]) for group in groups]
    try:
        event = {"type": "ticket", "op": "update", "ticket": {"id": 42, "subject": "Без света"}}
        events._publish(sorted(groups), event)
        for listener in listeners:
            got = listener.get(timeout=5)
            assert got == {"type": "helpdesk.event", "event": event}
        for listener in listeners:
            assert listener.events.empty(), "a group heard the event twice"
    finally:
        for listener in listeners:
            listener.close()


def test_it_logs_and_goes_on_when_redis_is_down(settings, caplog) -> None:
    settings.CHANNEL_LAYERS = _layers("down", ["redis://127.0.0.1:9/0"])
    events._publish(["queue"], {"type": "ticket", "op": "update", "ticket": {"id": 1}})
    assert "live event ticket.update not published" in caplog.text
