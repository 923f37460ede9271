"""The trigram indexes behind `q` (migration 0002) match the SQL Django generates for the
searches, in every script the helpdesk serves. Measured on a million tickets (see the API
work's report); here the planner is only told to prefer indexes, so a test table of a few rows
still shows whether an index *can* answer the query."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from tickets.api.filtersets import contact_search
from tickets.models import Contact, Identity, Ticket

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="trigram indexes exist on PostgreSQL only"
    ),
]

INDEXES = ["ticket_subject_trgm", "ticket_preview_trgm", "contact_name_trgm", "identity_value_trgm"]


def plan(queryset: Any, *, bitmap_only: bool = False) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if bitmap_only:  # no walking the queue indexes either: only conditions on indexes
            cursor.execute("SET LOCAL enable_indexscan = off")
        return queryset.explain()


def test_it_has_the_trigram_indexes_and_the_extension():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() == ("pg_trgm",)
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)", [INDEXES]
        )
        found = dict(cursor.fetchall())
    assert sorted(found) == sorted(INDEXES)
    assert all("gin_trgm_ops" in definition for definition in found.values())


@pytest.mark.parametrize("term", ["ленина", "ЛЕНИНА 5", "电线掉下", "Žirmūnuose", "no power"])
def test_it_answers_a_subject_search_from_the_trigram_index(term):
    assert "ticket_subject_trgm" in plan(Ticket.objects.filter(subject__icontains=term))
    assert "ticket_preview_trgm" in plan(Ticket.objects.filter(preview__icontains=term))


def test_it_answers_contact_searches_from_the_trigram_indexes():
    assert "contact_name_trgm" in plan(Contact.objects.filter(display_name__icontains="иван"))
    assert "identity_value_trgm" in plan(Identity.objects.filter(value__icontains="612345"))
    assert "contact_name_trgm" in plan(Contact.objects.filter(contact_search("王小明")))


def test_it_answers_the_queue_text_filter_as_index_scans_without_a_join(telegram, receive, carol):
    from tickets.filters import TicketFilter

    receive(telegram, "Нет света на улице Ленина", sender="1", name="Иван Петров")
    queryset = TicketFilter(
        {"q": "Иван", "status": "all"}, queryset=Ticket.objects.all(), agent=carol
    ).qs
    text = plan(queryset, bitmap_only=True)
    assert "BitmapOr" in text
    assert "ticket_subject_trgm" in text and "ticket_preview_trgm" in text
    # The customer's name is resolved to contact ids first: no join, no per-row subquery.
    assert "tickets_contact" not in text and "SubPlan" not in text
