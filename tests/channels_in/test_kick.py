"""The ingest "kick": a webhook sends a task only when no kick is set; the task keeps the kick
while it processes (webhooks meanwhile send none), asks for another worker process when more
than one event waits, and clears the kick when nothing is left, then claims once more, so an
event stored while it cleared is never left behind."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from channels_in import processing, tasks
from channels_in.models import Channel, InboundEvent
from tests.channels_in.test_apply_event import pending
from tests.channels_in.test_failed_events import tg_body
from tests.conftest import make_agent
from tickets.models import Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_kick(settings: Any, monkeypatch: Any) -> list[str]:
    """A cache namespace of this test's own (other tests share the Redis database), and the
    tasks the kick and help would send, recorded rather than sent."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"kick-{uuid.uuid4().hex}"}
    }
    sent: list[str] = []
    monkeypatch.setattr(tasks.process_pending_events, "delay", lambda: sent.append("task"))
    return sent


def stored(channel: Channel, n: int, start: int = 9100) -> list[InboundEvent]:
    return [pending(channel, tg_body(start + i), f"update:{start + i}") for i in range(n)]


def test_it_keeps_the_kick_while_it_processes_and_clears_it_when_nothing_is_left(
    outages: Team, telegram: Channel, monkeypatch: Any
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",))
    stored(telegram, 1)
    assert tasks.set_kick()  # the webhook's: no kick was set, it sends the task
    kick_during: list[bool] = []
    real = processing.run_claimed

    def run(event_id: int, event: Any = None) -> Any:
        kick_during.append(tasks.set_kick())  # another webhook, while the event is processed
        return real(event_id, event)

    monkeypatch.setattr(processing, "run_claimed", run)

    assert tasks.process_pending_events() == 1

    assert kick_during == [False]  # it sent no task: the running one takes its event
    assert tasks.set_kick()  # cleared at the end: the next webhook sends a task


def test_it_processes_an_event_stored_while_it_clears_the_kick(
    outages: Team, telegram: Channel, monkeypatch: Any
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",))
    stored(telegram, 1)
    tasks.set_kick()
    late: list[InboundEvent] = []
    real_clear = tasks.clear_kick

    def clear() -> None:
        # A webhook stores its event after the task's last empty claim and before the kick
        # is cleared: its own kick finds the kick set and sends no task.
        late.extend(stored(telegram, 1, start=9200))
        assert not tasks.set_kick()
        real_clear()

    monkeypatch.setattr(tasks, "clear_kick", clear)

    assert tasks.process_pending_events() == 2

    assert InboundEvent.objects.get(pk=late[0].pk).status == "processed"


def test_it_asks_for_another_worker_process_once_when_events_wait(
    outages: Team, telegram: Channel, own_kick: list[str]
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",))
    stored(telegram, 5)
    tasks.set_kick()

    assert tasks.process_pending_events() == 5

    # Five waiting in one claim: one request for help; the second claim found none waiting.
    assert own_kick == ["task"]
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_it_does_not_ask_for_help_for_a_single_event(
    outages: Team, telegram: Channel, own_kick: list[str]
) -> None:
    make_agent("alice", teams=(outages,), languages=("ru",))
    stored(telegram, 1)
    tasks.set_kick()

    assert tasks.process_pending_events() == 1

    assert own_kick == []
