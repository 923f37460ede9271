from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import inbound
from tickets import actions
from tickets.errors import Conflict, Forbidden, InvalidInput, NotFound
from tickets.models import (
    Agent,
    Contact,
    ContactMerge,
    Delivery,
    Identity,
    Message,
    Priority,
    Status,
    Ticket,
    TicketEvent,
)

pytestmark = pytest.mark.django_db


def test_it_creates_contact_ticket_and_message_from_one_inbound(telegram, receive):
    result = receive(telegram, "Добрый день, нет света на улице Ленина 5", sender="555")

    assert result.created_ticket and not result.duplicate
    ticket = result.ticket
    assert ticket.status == Status.NEW
    assert ticket.language == "ru"
    assert ticket.topic == "outage"
    assert ticket.team == telegram.default_team
    assert ticket.waiting_since is not None
    assert ticket.subject.startswith("Добрый день")
    assert ticket.message_count == 1
    assert Identity.objects.get(kind="telegram", value="555").contact == ticket.contact
    verbs = list(TicketEvent.objects.filter(ticket=ticket).values_list("verb", flat=True))
    assert verbs == ["ticket.created", "message.received"]


def test_it_ignores_a_duplicate_delivery_of_the_same_platform_message(telegram):
    message = inbound(telegram, "нет света", pid="update-42")
    first = actions.do_receive_inbound(message)
    second = actions.do_receive_inbound(message)

    assert second.duplicate
    assert second.message.pk == first.message.pk
    assert Message.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert TicketEvent.objects.filter(verb="message.received").count() == 1


def test_it_appends_a_second_message_to_the_open_ticket_of_the_conversation(telegram, receive):
    first = receive(telegram, "нет света", sender="555")
    second = receive(telegram, "уже 3 часа", sender="555")

    assert not second.created_ticket
    assert second.ticket.pk == first.ticket.pk
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    assert ticket.message_count == 2
    assert ticket.version == 2
    assert ticket.preview == "уже 3 часа"


def test_it_keeps_separate_tickets_for_separate_threads(email_channel, receive):
    a = receive(email_channel, "bill question", sender="ana@example.pt", thread_key="<a@x>")
    b = receive(email_channel, "meter question", sender="ana@example.pt", thread_key="<b@x>")
    assert a.ticket.pk != b.ticket.pk
    assert a.ticket.contact_id == b.ticket.contact_id


def test_it_threads_a_reply_by_the_message_it_replies_to(email_channel, receive):
    first = receive(
        email_channel,
        "my bill",
        sender="ana@example.pt",
        pid="<m1@mail.pt>",
        thread_key="<m1@mail.pt>",
    )
    reply = receive(
        email_channel,
        "any news?",
        sender="ana@example.pt",
        pid="<m2@mail.pt>",
        reply_to=("<m1@mail.pt>",),
        thread_key="<other-root@mail.pt>",
    )
    assert reply.ticket.pk == first.ticket.pk


def test_it_threads_by_a_ticket_reference_only_for_the_same_contact(email_channel, receive):
    first = receive(email_channel, "my bill", sender="ana@example.pt")
    same = receive(
        email_channel, "re", sender="ana@example.pt", thread_key="new", ticket_ref=first.ticket.pk
    )
    stranger = receive(email_channel, "re", sender="eve@example.com", ticket_ref=first.ticket.pk)
    assert same.ticket.pk == first.ticket.pk
    assert stranger.ticket.pk != first.ticket.pk


def test_it_unifies_the_same_phone_across_whatsapp_telegram_and_sms(
    whatsapp, telegram, sms, receive
):
    wa = receive(whatsapp, "sem luz", sender="37061234567", phone="37061234567", name="Rasa")
    tg = receive(telegram, "hello", sender="777", phone="+370 612 34567", name="Rasa K.")
    text = receive(sms, "still no power", sender="+37061234567", name="")

    contact_ids = {wa.ticket.contact_id, tg.ticket.contact_id, text.ticket.contact_id}
    assert len(contact_ids) == 1
    contact = Contact.objects.get(pk=contact_ids.pop())
    assert set(contact.identities.values_list("kind", "value")) == {
        ("whatsapp", "+37061234567"),
        ("phone", "+37061234567"),
        ("telegram", "777"),
    }
    # One ticket per channel conversation, one person.
    assert len({wa.ticket.pk, tg.ticket.pk, text.ticket.pk}) == 3


def test_it_merges_two_known_contacts_when_a_phone_proves_they_are_one(telegram, sms, receive):
    by_sms = receive(sms, "hi", sender="+37061234567")
    by_tg = receive(telegram, "hi", sender="888")
    assert by_sms.ticket.contact_id != by_tg.ticket.contact_id

    receive(telegram, "my number", sender="888", phone="+37061234567")

    merge = ContactMerge.objects.get()
    assert merge.target_id == by_tg.ticket.contact_id
    assert merge.source_id == by_sms.ticket.contact_id
    assert Ticket.objects.get(pk=by_sms.ticket.pk).contact_id == by_tg.ticket.contact_id


def test_it_never_merges_contacts_on_a_name_alone(telegram, sms, receive):
    a = receive(telegram, "hi", sender="1", name="Ivan Petrov")
    b = receive(sms, "hi", sender="+37060000001", name="Ivan Petrov")
    assert a.ticket.contact_id != b.ticket.contact_id
    assert not ContactMerge.objects.exists()


def test_it_reopens_a_resolved_ticket_within_the_window(telegram, receive, alice):
    first = receive(telegram, "нет света", sender="5")
    actions.do_assign(first.ticket, alice, actor=alice)
    actions.do_set_status(first.ticket, Status.RESOLVED, actor=alice)
    assert Agent.objects.get(pk=alice.pk).open_count == 0

    again = receive(telegram, "опять нет света", sender="5")

    assert again.reopened and again.ticket.pk == first.ticket.pk
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    assert ticket.status == Status.OPEN and ticket.resolved_at is None
    assert Agent.objects.get(pk=alice.pk).open_count == 1
    assert TicketEvent.objects.filter(ticket=ticket, verb="ticket.reopened").exists()


def test_it_starts_a_new_ticket_after_the_reopen_window(telegram, receive, alice, settings):
    first = receive(telegram, "нет света", sender="5")
    actions.do_set_status(first.ticket, Status.RESOLVED, actor=alice)
    Ticket.objects.filter(pk=first.ticket.pk).update(
        resolved_at=timezone.now() - settings.HELPDESK_REOPEN_WINDOW - timedelta(minutes=1)
    )
    again = receive(telegram, "снова", sender="5")
    assert again.created_ticket and again.ticket.pk != first.ticket.pk


def test_it_never_reopens_a_closed_ticket(telegram, receive, alice):
    first = receive(telegram, "нет света", sender="5")
    actions.do_set_status(first.ticket, Status.CLOSED, actor=alice)
    again = receive(telegram, "снова", sender="5")
    assert again.created_ticket


def test_it_scores_a_safety_report_urgent_with_its_reasons(telegram, receive):
    result = receive(telegram, "Возле школы оборван провод, искрит!", sender="9")
    assert result.ticket.priority == Priority.URGENT
    signals = {r["signal"] for r in result.ticket.priority_reasons}
    assert "safety" in signals


def test_it_writes_the_reply_and_its_delivery_row_in_one_transaction(telegram, receive, alice):
    ticket = receive(telegram, "нет света", sender="5").ticket
    message = actions.do_reply(ticket, alice, "Бригада выехала")

    delivery = Delivery.objects.get(message=message)
    assert delivery.state == Delivery.State.QUEUED
    assert message.delivery_status == "queued"
    ticket.refresh_from_db()
    assert ticket.assignee == alice  # a reply claims an unassigned ticket
    assert ticket.status == Status.OPEN
    assert ticket.first_response_at is not None and ticket.waiting_since is None


def test_it_refuses_an_empty_reply_and_writes_nothing(telegram, receive, alice):
    ticket = receive(telegram, "нет света", sender="5").ticket
    with pytest.raises(InvalidInput, match="reply is empty"):
        actions.do_reply(ticket, alice, "   ")
    assert not Delivery.objects.exists()
    assert Message.objects.count() == 1


def test_it_hides_other_teams_tickets_from_an_agent(telegram, receive, bob):
    ticket = receive(telegram, "нет света", sender="5").ticket
    with pytest.raises(NotFound):
        actions.do_reply(ticket, bob, "hi")


def test_it_keeps_notes_internal(telegram, receive, alice):
    ticket = receive(telegram, "нет света", sender="5").ticket
    note = actions.do_add_note(ticket, alice, "called the dispatcher")
    assert note.is_internal and note.delivery_status == "not_sent"
    assert not Delivery.objects.exists()


def test_it_counts_load_through_assign_transfer_and_resolve(
    telegram, receive, alice, carol, bob, billing
):
    ticket = receive(telegram, "нет света", sender="5").ticket
    actions.do_assign(ticket, alice, actor=carol)
    assert Agent.objects.get(pk=alice.pk).open_count == 1
    actions.do_transfer(ticket, actor=carol, team=billing, agent=bob, note="billing question")
    assert Agent.objects.get(pk=alice.pk).open_count == 0
    assert Agent.objects.get(pk=bob.pk).open_count == 1
    actions.do_set_status(ticket, Status.RESOLVED, actor=bob)
    assert Agent.objects.get(pk=bob.pk).open_count == 0
    ticket.refresh_from_db()
    assert ticket.team == billing
    assert ticket.messages.filter(is_internal=True, text="billing question").exists()


def test_it_refuses_to_assign_an_agent_outside_the_ticket_team(telegram, receive, alice, bob):
    ticket = receive(telegram, "нет света", sender="5").ticket
    with pytest.raises(InvalidInput, match="transfer"):
        actions.do_assign(ticket, bob, actor=alice)


def test_it_does_not_let_an_agent_take_a_colleagues_ticket(
    telegram, receive, alice, carol, outages
):
    from tests.conftest import make_agent

    dan = make_agent("dan", teams=(outages,))
    ticket = receive(telegram, "нет света", sender="5").ticket
    actions.do_assign(ticket, dan, actor=carol)
    with pytest.raises(Forbidden):
        actions.do_assign(ticket, alice, actor=alice)


def test_it_merges_and_unmerges_contacts_exactly(telegram, sms, receive, carol):
    a = receive(telegram, "hi", sender="1").ticket
    b = receive(sms, "hi", sender="+37060000002").ticket
    target, source = a.contact, b.contact
    merge = actions.do_merge_contacts(target, source, actor=carol, reason="same person")
    assert Ticket.objects.get(pk=b.pk).contact_id == target.pk
    assert Identity.objects.get(kind="phone").contact_id == target.pk

    actions.do_unmerge_contacts(merge, actor=carol)
    assert Ticket.objects.get(pk=b.pk).contact_id == source.pk
    assert Identity.objects.get(kind="phone").contact_id == source.pk
    with pytest.raises(Conflict):
        actions.do_unmerge_contacts(merge, actor=carol)


def test_it_logs_a_phone_call_on_the_timeline_and_the_ticket(telegram, receive, alice):
    ticket = receive(telegram, "нет света", sender="5").ticket
    call = actions.do_log_call(
        ticket.contact,
        actor=alice,
        phone="+37061234567",
        duration_seconds=95,
        summary="Explained the outage",
        ticket=ticket,
    )
    assert call.contact == ticket.contact
    assert ticket.messages.filter(kind="call", is_internal=True).exists()
    assert TicketEvent.objects.filter(verb="call.logged", contact=ticket.contact).exists()


def test_it_sets_priority_manually_and_stops_rescoring(telegram, receive, alice):
    ticket = receive(telegram, "вопрос по договору", sender="5").ticket
    actions.do_set_priority(ticket, "high", actor=alice, reason="hospital")
    receive(telegram, "оборван провод искрит", sender="5")
    ticket.refresh_from_db()
    assert ticket.priority == Priority.HIGH and ticket.priority_locked


def test_it_rejects_an_unknown_status(telegram, receive, alice):
    ticket = receive(telegram, "x", sender="5").ticket
    with pytest.raises(InvalidInput, match="status must be one of"):
        actions.do_set_status(ticket, "deleted", actor=alice)


def test_it_adds_and_removes_tags(telegram, receive, alice):
    ticket = receive(telegram, "x", sender="5").ticket
    actions.do_update_tags(ticket, actor=alice, add=["Storm 2026", "vip"])
    actions.do_update_tags(ticket, actor=alice, remove=["vip"])
    assert list(ticket.tags.values_list("name", flat=True)) == ["storm-2026"]
    assert TicketEvent.objects.filter(verb="ticket.tags").count() == 2


def test_it_sanitizes_email_html_before_storing(email_channel, receive):
    result = receive(
        email_channel,
        "see html",
        sender="a@b.pt",
        html='<p onclick="x()">Hi<script>alert(1)</script><img src="http://t.co/x"></p>',
    )
    assert "<script" not in result.message.html
    assert "onclick" not in result.message.html
    assert "http://t.co" not in result.message.html
    assert "Hi" in result.message.html
