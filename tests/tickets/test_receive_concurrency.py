"""Receiving under concurrency, on PostgreSQL: the first messages of a new person, taken by
several workers at once (each in its own event transaction, as channels_in.processing runs
them), make one contact and one ticket; nothing is lost, nothing duplicated, and no worker
fails. The receive path writes a new contact and its identities in one statement that skips
an identity another worker has just committed, then steps back and uses theirs."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from channels_in.models import Channel
from tests.conftest import inbound
from tests.tickets.test_routing_concurrency import run_workers
from tickets import actions
from tickets.models import Contact, Identity, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 6


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks and ON CONFLICT need PostgreSQL")


def receive_in_event_transaction(channel: Channel, **kwargs: Any) -> actions.Received:
    # As processing applies an event: the receive runs inside the event's transaction.
    with transaction.atomic():
        return actions.do_receive_inbound(inbound(channel, **kwargs), channel=channel)


def test_it_makes_one_contact_and_one_ticket_of_a_new_persons_first_messages_at_once(
    telegram: Channel,
) -> None:
    received: list[actions.Received] = []

    def work(i: int) -> None:
        received.append(
            receive_in_event_transaction(
                telegram, text=f"no power, message {i}", sender="555001", pid=f"tg-race-{i}"
            )
        )

    assert run_workers(work) == []
    assert Identity.objects.filter(kind="telegram", value="555001").count() == 1
    assert Contact.objects.count() == 1
    ticket = Ticket.objects.get()
    assert ticket.message_count == WORKERS
    assert Message.objects.filter(ticket=ticket).count() == WORKERS
    assert sum(r.created_ticket for r in received) == 1
    # Nothing half-made is left by the workers that stepped back.
    assert not Contact.objects.filter(identities__isnull=True).exists()


def test_it_joins_two_platforms_of_one_phone_arriving_at_once(
    whatsapp: Channel, sms: Channel
) -> None:
    # WhatsApp reveals the phone; SMS is the phone: both name +37060012345 at once.
    def work(i: int) -> None:
        if i % 2:
            receive_in_event_transaction(
                whatsapp, text="dark", sender="37060012345", phone="+37060012345", pid=f"wa-{i}"
            )
        else:
            receive_in_event_transaction(
                sms, text="still dark", sender="+37060012345", pid=f"s-{i}"
            )

    assert run_workers(work, 4) == []
    contact = Contact.objects.get(merged_into__isnull=True)
    assert set(contact.identities.values_list("kind", "value")) == {
        ("whatsapp", "+37060012345"),
        ("phone", "+37060012345"),
    }
    assert Message.objects.filter(ticket__contact=contact).count() == 4
    assert Identity.objects.count() == 2
