"""tickets.events publishing to the channels_redis pub/sub layer from a synchronous caller (a
Celery worker, a WSGI request): every group's subscribers get the event, once, decoded by
the layer itself — also with the groups spread over two Redis shards."""

from __future__ import annotations

import queue
import uuid

import pytest
from django.db import transaction

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


def _redis_layer(settings) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (run with `make test`)")
    settings.CHANNEL_LAYERS = _layers(f"t{uuid.uuid4().hex[:8]}", [settings.REDIS_URL])


def _event(n: int) -> dict:
    return {"type": "ticket", "op": "update", "ticket": {"id": n}, "version": n}


def test_it_publishes_a_batchs_events_together_in_order_when_the_block_ends(settings) -> None:
    _redis_layer(settings)
    listener = LiveListener(["queue", "team-1"])
    try:
        with events.batched():
            events._publish(["queue"], _event(1))
            with events.batched():  # nested: the outer block publishes
                events._publish(["queue", "team-1"], _event(2))
            events._publish(["team-1"], _event(3))
            with pytest.raises(queue.Empty):
                listener.events.get(timeout=0.5)
        got = [listener.get(timeout=5)["event"]["ticket"]["id"] for _ in range(4)]
        # One socket in both groups hears every publish, in publishing order.
        assert got == [1, 2, 2, 3]
        with pytest.raises(queue.Empty):
            listener.events.get(timeout=0.3)
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_it_batches_only_the_events_of_work_that_committed(settings) -> None:
    _redis_layer(settings)
    listener = LiveListener(["queue"])
    try:
        with events.batched():
            with transaction.atomic():
                events.publish_on_commit(["queue"], _event(1))
                with pytest.raises(RuntimeError), transaction.atomic():
                    events.publish_on_commit(["queue"], _event(2))
                    raise RuntimeError("a savepoint rolled back")
            with pytest.raises(RuntimeError), transaction.atomic():
                events.publish_on_commit(["queue"], _event(3))
                raise RuntimeError("a transaction rolled back")
            with transaction.atomic():
                events.publish_on_commit(["queue"], _event(4))
        got = [listener.get(timeout=5)["event"]["ticket"]["id"] for _ in range(2)]
        assert got == [1, 4]
        with pytest.raises(queue.Empty):
            listener.events.get(timeout=0.5)
    finally:
        listener.close()


def test_it_logs_a_batch_it_could_not_publish_and_goes_on(settings, caplog) -> None:
    settings.CHANNEL_LAYERS = _layers("down", ["redis://127.0.0.1:9/0"])
    with events.batched():
        events._publish(["queue"], _event(1))
        events._publish(["queue"], {"type": "message", "op": "create", "ticket": {"id": 1}})
    assert "live event ticket.update, message.create not published" in caplog.text
