"""`manage.py createdemo`: what a newcomer must find in the demo, made through the actions."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from channels_in.models import Channel, ChannelKind
from tests.conftest import make_agent
from tickets import actions
from tickets.models import (
    ACTIVE_STATUSES,
    Agent,
    CannedResponse,
    Contact,
    ContactMerge,
    Delivery,
    Identity,
    Message,
    Priority,
    Role,
    RoutingRule,
    Status,
    Ticket,
    TicketEvent,
)

pytestmark = pytest.mark.django_db

LANGUAGES = {"en", "pt", "ru", "zh", "lt"}
SMALL = ("--tickets", "30")


def createdemo(*args: str) -> str:
    out = io.StringIO()
    call_command("createdemo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def demo(db: Any) -> str:
    return createdemo(*SMALL, "--seed", "7")


def test_it_creates_the_personas_channels_and_canned_responses(demo):
    roles = dict(Agent.objects.values_list("user__username", "role"))
    assert roles["alice"] == roles["bob"] == Role.AGENT
    assert roles["carol"] == Role.SUPERVISOR
    assert roles["ada"] == Role.ADMIN
    assert sum(1 for role in roles.values() if role == Role.AGENT) >= 5
    alice = Agent.objects.get(user__username="alice")
    assert alice.user.check_password("demo")
    assert set(alice.languages) == {"ru", "lt", "en"}
    assert list(alice.teams.values_list("slug", flat=True)) == ["outages"]
    assert set(Agent.objects.get(user__username="bob").languages) == {"pt", "en", "zh"}
    ada = Agent.objects.get(user__username="ada").user
    assert ada.is_superuser and ada.is_staff  # /admin/ works for her

    assert set(Channel.objects.values_list("kind", flat=True)) == set(ChannelKind.values)
    for channel in Channel.objects.all():
        assert channel.default_team is not None
        assert channel.credentials, channel.kind
        # Obviously fake: nothing a real platform would accept.
        for value in channel.credentials.values():
            assert "demo" in value.lower() or value.startswith("+"), (channel.kind, value)

    assert set(CannedResponse.objects.values_list("language", flat=True)) >= LANGUAGES
    bodies = " ".join(CannedResponse.objects.values_list("body", flat=True))
    for variable in ("{{contact.name}}", "{{ticket.id}}", "{{agent.name}}", "{{contact.account}}"):
        assert variable in bodies
    assert "Logins" in demo and "password for everyone: demo" in demo


def test_it_creates_worked_multilingual_conversations(demo):
    tickets = Ticket.objects.all()
    assert tickets.count() >= 30
    assert set(tickets.values_list("language", flat=True)) >= LANGUAGES
    assert set(tickets.values_list("status", flat=True)) == set(Status.values)

    urgent = tickets.filter(priority=Priority.URGENT)
    assert any(
        any(reason["signal"] == "safety" for reason in t.priority_reasons) for t in urgent
    ), "a fallen wire or sparks must come out urgent"

    unified = [c for c in Contact.objects.all() if len({i.kind for i in c.identities.all()}) >= 2]
    assert unified, "a customer writing on WhatsApp and then SMS is one contact"
    assert any(c.tickets.values("channel__kind").distinct().count() >= 2 for c in unified)
    assert ContactMerge.objects.filter(actor__isnull=False).exists()
    assert tickets.filter(is_public=True, channel__kind="x").exists()
    assert tickets.filter(contact__tier="life_support").exists()

    # Worked through the actions: replies, notes, transfers, calls, manual priorities.
    verbs = set(TicketEvent.objects.values_list("verb", flat=True))
    assert {"message.sent", "note.added", "ticket.transferred", "call.logged"} <= verbs
    assert {"ticket.priority", "ticket.tags", "contact.merged"} <= verbs
    active = tickets.filter(status__in=ACTIVE_STATUSES)
    assert active.filter(assignee__isnull=True).exists()
    assert active.filter(assignee__isnull=False).exists()


def test_it_spreads_the_history_over_the_past_days(demo):
    now = timezone.now()
    tickets = Ticket.objects.all()
    assert all(t.created_at <= t.last_message_at <= now for t in tickets)
    oldest = min(t.created_at for t in tickets)
    assert now - oldest > timezone.timedelta(days=3)
    for ticket in tickets:
        times = list(ticket.messages.order_by("id").values_list("created_at", flat=True))
        assert times == sorted(times) and times[0] >= ticket.created_at, ticket.pk
        if ticket.first_response_at:
            assert ticket.created_at <= ticket.first_response_at <= now
    active = tickets.filter(status__in=ACTIVE_STATUSES)
    overdue = active.filter(sla_due_at__lt=now).count()
    assert overdue < active.count() / 2, "a few tickets are overdue, most are not"
    # Demo replies are history: nothing is left in the outbox for a real platform.
    assert not Delivery.objects.filter(state__in=["queued", "sending"]).exists()
    assert not Message.objects.filter(created_at__gt=now).exists()


def test_it_routes_new_messages_to_the_team_of_their_topic(demo, receive):
    sms = Channel.objects.get(kind=ChannelKind.SMS)
    assert sms.default_team.slug != "outages"  # so the rule, not the default, decides
    rules = dict(RoutingRule.objects.values_list("name", "actions"))
    assert {a["team"] for a in rules.values()} == {
        "outages",
        "billing",
        "meter-readings",
        "contracts",
    }

    outage = receive(
        sms, "Sem luz na rua toda desde as 20h, há fios caídos", sender="+351910000001"
    )
    actions.do_route_ticket(outage.ticket.pk)
    reading = receive(sms, "Показания счётчика: 04512 кВт·ч", sender="+37060000001")
    actions.do_route_ticket(reading.ticket.pk)

    assert Ticket.objects.get(pk=outage.ticket.pk).team.slug == "outages"
    assert Ticket.objects.get(pk=reading.ticket.pk).team.slug == "meter-readings"


def test_it_does_nothing_the_second_time_with_if_empty(demo):
    counts = (Ticket.objects.count(), Message.objects.count(), Agent.objects.count())

    out = createdemo(*SMALL, "--if-empty")

    assert "already has agents" in out
    assert (Ticket.objects.count(), Message.objects.count(), Agent.objects.count()) == counts


def test_it_refuses_a_database_that_has_agents_without_if_empty(db):
    make_agent("someone")

    with pytest.raises(CommandError, match="already has agents"):
        createdemo(*SMALL)
    assert not Ticket.objects.exists()


def _fingerprint() -> list[Any]:
    """Everything a newcomer sees, with database ids replaced by positions (sequences are not
    reset between runs) and times relative to the oldest ticket (each run has its own now)."""
    tickets = list(
        Ticket.objects.select_related("contact", "channel", "team", "assignee__user").order_by("id")
    )
    position = {t.pk: index for index, t in enumerate(tickets)}

    def text(value: str) -> str:
        return re.sub(r"#(\d+)", lambda m: f"#{position.get(int(m.group(1)), '?')}", value)

    start = min(t.created_at for t in tickets)
    return [
        (
            t.contact.display_name,
            t.contact.tier,
            t.channel.kind,
            t.subject,
            t.status,
            t.priority,
            t.language,
            t.team.slug if t.team else None,
            t.assignee.user.username if t.assignee else None,
            sorted(t.tags.values_list("name", flat=True)),
            [
                (kind, text(body))
                for kind, body in t.messages.order_by("id").values_list("author_kind", "text")
            ],
            t.created_at - start,
            t.sla_due_at - start,
        )
        for t in tickets
    ] + [sorted(Identity.objects.values_list("kind", "value"))]


@pytest.mark.django_db(transaction=True)  # flush truncates, which needs committed rows
def test_it_gives_the_same_data_for_the_same_seed():
    createdemo(*SMALL, "--seed", "3")
    first = _fingerprint()
    call_command("flush", interactive=False, verbosity=0)

    createdemo(*SMALL, "--seed", "3")

    assert _fingerprint() == first
