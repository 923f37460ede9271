"""Shared fixtures. Personas, as in every permission test:

- alice: agent in the Outages team (ru, lt, en)
- bob: agent in the Billing team (pt, en, zh)
- carol: supervisor (all tickets, reports)
- ada: admin (configuration)
- mallory: a logged-in user who is not a helpdesk agent at all
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from channels_in.models import Channel
from tickets import actions
from tickets.inbound import InboundMessage, Sender
from tickets.models import Agent, Role, Team

PASSWORD = "correct-horse-battery-staple"
_ids = itertools.count(1)


@pytest.fixture
def outages(db: Any) -> Team:
    return Team.objects.create(name="Outages", slug="outages")


@pytest.fixture
def billing(db: Any) -> Team:
    return Team.objects.create(name="Billing", slug="billing")


def make_agent(
    username: str,
    *,
    role: str = Role.AGENT,
    teams: tuple[Team, ...] = (),
    languages: tuple[str, ...] = (),
    capacity: int = 10,
    first_name: str = "",
) -> Agent:
    user = get_user_model().objects.create_user(
        username=username,
        password=PASSWORD,
        first_name=first_name or username.capitalize(),
        email=f"{username}@utility.example",
    )
    agent = Agent.objects.create(
        user=user, role=role, languages=list(languages), capacity=capacity, presence="online"
    )
    agent.teams.set(teams)
    return agent


@pytest.fixture
def alice(outages: Team) -> Agent:
    return make_agent("alice", teams=(outages,), languages=("ru", "lt", "en"))


@pytest.fixture
def bob(billing: Team) -> Agent:
    return make_agent("bob", teams=(billing,), languages=("pt", "en", "zh"))


@pytest.fixture
def carol(db: Any) -> Agent:
    return make_agent("carol", role=Role.SUPERVISOR)


@pytest.fixture
def ada(db: Any) -> Agent:
    return make_agent("ada", role=Role.ADMIN)


@pytest.fixture
def mallory(db: Any) -> Any:
    return get_user_model().objects.create_user(username="mallory", password=PASSWORD)


@pytest.fixture
def telegram(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="telegram",
        key="tg-main",
        name="Telegram bot",
        default_team=outages,
        credentials={"bot_token": "123:ABC", "secret_token": "s3cret"},
    )


@pytest.fixture
def whatsapp(outages: Team) -> Channel:
    return Channel.objects.create(
        kind="whatsapp", key="wa-main", name="WhatsApp", default_team=outages
    )


@pytest.fixture
def sms(billing: Team) -> Channel:
    return Channel.objects.create(kind="sms", key="sms-main", name="SMS", default_team=billing)


@pytest.fixture
def email_channel(billing: Team) -> Channel:
    return Channel.objects.create(
        kind="email", key="mail", name="Support mailbox", default_team=billing
    )


def inbound(
    channel: Channel,
    text: str = "",
    *,
    sender: str = "1001",
    kind: str | None = None,
    pid: str | None = None,
    name: str = "Ivan Petrov",
    phone: str = "",
    email: str = "",
    **extra: Any,
) -> InboundMessage:
    """A normalized inbound message as an adapter would produce it."""
    return InboundMessage(
        channel_id=channel.pk,
        platform_message_id=pid or f"m-{next(_ids)}",
        sender=Sender(
            kind=kind or _identity_kind(channel.kind),
            value=sender,
            display_name=name,
            phone=phone,
            email=email,
        ),
        text=text,
        **extra,
    )


def _identity_kind(channel_kind: str) -> str:
    return {"sms": "phone"}.get(channel_kind, channel_kind)


@pytest.fixture
def receive() -> Callable[..., actions.Received]:
    """Receive one inbound message through the action: receive(channel, text, **kw)."""

    def _receive(channel: Channel, text: str = "", **kwargs: Any) -> actions.Received:
        return actions.do_receive_inbound(inbound(channel, text, **kwargs))

    return _receive


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    """api(user_or_agent) -> an APIClient authenticated as that user (None: anonymous)."""

    def _client(who: Any = None) -> APIClient:
        client = APIClient()
        if who is not None:
            user = who.user if isinstance(who, Agent) else who
            client.force_authenticate(user=user)
        return client

    return _client


@pytest.fixture(autouse=True)
def _no_platform_reaches_the_internet(settings: Any) -> None:
    """Every platform API points at a closed local port unless a test installs the fake
    platform (tests/fakeplatform.py): nothing a test does can reach a real service."""
    settings.HELPDESK_PLATFORM_URLS = {
        kind: f"http://127.0.0.1:9/{kind}" for kind in settings.HELPDESK_PLATFORM_URLS
    }
