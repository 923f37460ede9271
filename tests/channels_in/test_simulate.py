from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from channels_in.models import Channel, InboundEvent
from channels_in.simulate import SIMULATED_KINDS
from tickets.management import demo_data
from tickets.models import Team, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_channels(db):
    team = Team.objects.create(name="Outages", slug="outages")
    for kind, key, name, _team, credentials, channel_settings in demo_data.CHANNELS:
        Channel.objects.create(
            kind=kind,
            key=key,
            name=name,
            credentials=credentials,
            settings=channel_settings,
            default_team=team,
        )


def test_it_posts_signed_webhooks_of_every_kind_that_all_become_tickets(live_server, demo_channels):
    out = io.StringIO()
    call_command(
        "simulate",
        "--url",
        live_server.url,
        "--count",
        "45",
        "--rate",
        "0",
        "--duplicates",
        "0.2",
        "--no-progress",
        "--seed",
        "3",
        stdout=out,
    )

    assert "posted" in out.getvalue()
    events = InboundEvent.objects.all()
    assert events.count() == 45  # redeliveries were stored once
    assert set(events.values_list("status", flat=True)) == {"processed"}
    kinds = set(Ticket.objects.values_list("channel__kind", flat=True))
    assert kinds == set(SIMULATED_KINDS) & set(Channel.objects.values_list("kind", flat=True))
    assert set(Ticket.objects.exclude(language="").values_list("language", flat=True)) >= {
        "ru",
        "lt",
    }


def test_it_refuses_an_unknown_kind_with_a_clear_message(demo_channels):
    with pytest.raises(CommandError, match="cannot simulate fax"):
        call_command("simulate", "--kinds", "fax", "--no-progress")
