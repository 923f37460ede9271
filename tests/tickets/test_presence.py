"""Presence: set by the agent, automatic away and back, logins and logouts on record, the
offline sweep after the sockets are gone, live "presence" events to supervisors and
teammates, and take-next for online agents only."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import PASSWORD, make_agent
from tickets import actions, presence, queue
from tickets.errors import Conflict, Forbidden, InvalidInput
from tickets.events import QUEUE_GROUP, agent_group, team_group
from tickets.models import Agent, PresenceLog


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


class Listener:
    """A channel on the in-memory layer, in the groups given; collects what is published."""

    def __init__(self, *groups: str) -> None:
        self.layer = get_channel_layer()
        self.name = async_to_sync(self.layer.new_channel)()
        for group in groups:
            async_to_sync(self.layer.group_add)(group, self.name)

    def events(self) -> list[dict[str, Any]]:
        got = []

        async def read() -> None:
            while True:
                try:
                    message = await asyncio.wait_for(self.layer.receive(self.name), 0.05)
                except TimeoutError:
                    return
                got.append(message["event"])

        async_to_sync(read)()
        return got


def statuses(agent: Agent) -> list[tuple[str, str, str]]:
    return list(
        PresenceLog.objects.filter(agent=agent)
        .order_by("id")
        .values_list("previous", "status", "reason")
    )


# --------------------------------------------------------------------------- set by the agent


def test_it_records_each_change_with_its_time_and_tells_supervisors_and_teammates(
    alice: Agent, outages: Any, django_capture_on_commit_callbacks: Any
) -> None:
    supervisors, team, herself, billing = (
        Listener(QUEUE_GROUP),
        Listener(team_group(outages.pk)),
        Listener(agent_group(alice.pk)),
        Listener(team_group(outages.pk + 1000)),
    )
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        row = actions.do_set_presence(alice, "away")
    assert row is not None and before <= row.at <= timezone.now()
    fresh = Agent.objects.get(pk=alice.pk)
    assert (fresh.presence, fresh.presence_changed_at) == ("away", row.at)
    assert statuses(alice) == [("online", "away", "manual")]
    for listener in (supervisors, team, herself):
        [event] = listener.events()
        assert event == {
            "type": "presence",
            "op": "update",
            "agent": {"id": alice.pk, "name": "Alice"},
            "status": "away",
            "reason": "manual",
            "at": row.at.isoformat(),
            "version": row.pk,
        }
    assert billing.events() == []


def test_it_changes_nothing_when_the_status_is_already_set(alice: Agent) -> None:
    assert actions.do_set_presence(alice, "online") is None
    assert statuses(alice) == []


def test_it_refuses_an_unknown_status_and_writes_nothing(alice: Agent) -> None:
    with pytest.raises(InvalidInput, match="online, away, offline"):
        actions.do_set_presence(alice, "busy")
    with pytest.raises(InvalidInput, match="reason"):
        actions.do_set_presence(alice, "away", reason="lunch")
    assert statuses(alice) == []
    assert Agent.objects.get(pk=alice.pk).presence == "online"


def test_it_lets_only_supervisors_set_another_agents_status(
    alice: Agent, bob: Agent, carol: Agent
) -> None:
    with pytest.raises(Forbidden):
        actions.do_set_presence(bob, "offline", actor=alice)
    assert Agent.objects.get(pk=bob.pk).presence == "online"
    actions.do_set_presence(bob, "offline", actor=carol)
    assert statuses(bob) == [("online", "offline", "supervisor")]


# --------------------------------------------------------------------------- login, logout


def test_it_records_login_and_logout_through_the_pages(alice: Agent) -> None:
    actions.do_set_presence(alice, "offline")
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert Agent.objects.get(pk=alice.pk).presence == "online"
    client.post(reverse("logout"))
    assert Agent.objects.get(pk=alice.pk).presence == "offline"
    assert statuses(alice) == [
        ("online", "offline", "manual"),
        ("offline", "online", "login"),
        ("online", "offline", "logout"),
    ]


def test_it_records_a_login_even_when_the_agent_was_online_already(alice: Agent) -> None:
    Client().login(username="alice", password=PASSWORD)
    Client().login(username="alice", password=PASSWORD)  # a second browser
    assert statuses(alice) == [("online", "online", "login"), ("online", "online", "login")]
    # A login counts as a heartbeat: the page opens its socket a moment later.
    assert Agent.objects.get(pk=alice.pk).last_heartbeat_at is not None


def test_it_records_nothing_for_mallory_who_is_not_an_agent(mallory: Any) -> None:
    assert Client().login(username="mallory", password=PASSWORD)
    assert PresenceLog.objects.count() == 0


# --------------------------------------------------------------------------- idle, active


def test_it_makes_an_idle_agent_away_and_brings_them_back_when_active(alice: Agent) -> None:
    assert actions.do_mark_idle(alice) is not None
    assert Agent.objects.get(pk=alice.pk).presence == "away"
    assert actions.do_mark_idle(alice) is None  # away already
    assert actions.do_mark_active(alice) is not None
    assert Agent.objects.get(pk=alice.pk).presence == "online"
    assert statuses(alice) == [("online", "away", "idle"), ("away", "online", "active")]


def test_it_leaves_a_chosen_away_alone_when_the_agent_is_active(alice: Agent) -> None:
    actions.do_set_presence(alice, "away")
    assert actions.do_mark_active(alice) is None
    assert Agent.objects.get(pk=alice.pk).presence == "away"


def test_it_does_not_undo_a_logout_when_a_stale_tab_is_active(alice: Agent) -> None:
    actions.do_set_presence(alice, "offline", reason="logout")
    assert actions.do_mark_active(alice) is None
    assert Agent.objects.get(pk=alice.pk).presence == "offline"


# --------------------------------------------------------------------------- the sweep


def test_it_sweeps_agents_whose_sockets_are_gone_longer_than_the_grace_period(
    alice: Agent, bob: Agent, carol: Agent, outages: Any, settings: Any
) -> None:
    settings.HELPDESK_PRESENCE_GRACE_SECONDS = 120
    now = timezone.now()
    dan = make_agent("dan", teams=(outages,))
    eve = make_agent("eve", teams=(outages,))
    Agent.objects.filter(pk=alice.pk).update(last_heartbeat_at=now - timedelta(seconds=121))
    Agent.objects.filter(pk=bob.pk).update(last_heartbeat_at=now - timedelta(seconds=30))
    # Never connected since signing in three minutes ago.
    Agent.objects.filter(pk=carol.pk).update(
        last_heartbeat_at=None, presence_changed_at=now - timedelta(minutes=3)
    )
    # Signed in a minute ago and not connected yet: still within the grace period.
    Agent.objects.filter(pk=dan.pk).update(last_heartbeat_at=None, presence_changed_at=now)
    Agent.objects.filter(pk=eve.pk).update(
        presence="away", last_heartbeat_at=now - timedelta(hours=2)
    )

    assert actions.do_sweep_presence(now) == 3
    offline = set(Agent.objects.filter(presence="offline").values_list("user__username", flat=True))
    assert offline == {"alice", "carol", "eve"}
    assert statuses(alice) == [("online", "offline", "disconnected")]
    assert statuses(eve) == [("away", "offline", "disconnected")]
    assert statuses(bob) == statuses(dan) == []
    # Idempotent: a second run finds nobody.
    assert actions.do_sweep_presence(now) == 0


def test_it_runs_the_sweep_as_a_celery_task(alice: Agent, settings: Any) -> None:
    settings.HELPDESK_PRESENCE_GRACE_SECONDS = 60
    Agent.objects.filter(pk=alice.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert presence.sweep_presence.apply().get() == 1
    assert Agent.objects.get(pk=alice.pk).presence == "offline"


def test_it_restores_the_status_before_the_connection_was_lost(alice: Agent) -> None:
    actions.do_set_presence(alice, "away")
    Agent.objects.filter(pk=alice.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    actions.do_sweep_presence()
    assert actions.do_mark_active(alice) is not None
    assert Agent.objects.get(pk=alice.pk).presence == "away"
    assert statuses(alice)[-1] == ("offline", "away", "active")


# --------------------------------------------------------------------------- who gets work


def test_it_refuses_take_next_to_an_agent_who_is_not_online(
    alice: Agent, telegram: Any, receive: Any
) -> None:
    receive(telegram, "Нет света", sender="1")
    for status in ("away", "offline"):
        actions.do_set_presence(alice, status)
        with pytest.raises(Conflict, match=f"you are {status}: set yourself online") as caught:
            actions.do_take_next(Agent.objects.get(pk=alice.pk))
        assert caught.value.code == "not_online"
        assert not queue.workable_by(Agent.objects.get(pk=alice.pk)).exists()
    actions.do_set_presence(alice, "online")
    assert actions.do_take_next(Agent.objects.get(pk=alice.pk)) is not None


def test_it_answers_take_next_of_an_away_agent_with_409_in_the_api(
    alice: Agent, api: Any, telegram: Any, receive: Any
) -> None:
    receive(telegram, "Нет света", sender="1")
    actions.do_set_presence(alice, "away")
    response = api(Agent.objects.get(pk=alice.pk)).post("/api/v1/tickets/take-next/")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "not_online",
        "message": "you are away: set yourself online to take tickets",
    }


def test_it_says_why_take_next_did_nothing_on_the_page(alice: Agent, client: Any) -> None:
    client.force_login(alice.user)  # a login: online
    actions.do_set_presence(alice, "away")
    response = client.post(reverse("take-next"), follow=True)
    assert "you are away: set yourself online to take tickets" in response.content.decode()


def test_it_lists_only_online_agents_as_available(alice: Agent, bob: Agent) -> None:
    actions.do_set_presence(bob, "away")
    assert list(queue.available_agents()) == [alice]
    assert queue.is_available(alice) and not queue.is_available(Agent.objects.get(pk=bob.pk))
