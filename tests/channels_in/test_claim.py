"""channels_in.processing.claim_events: due pending events, oldest first, each with its
channel, marked processing in the same statement; what another worker holds, what is not due
and what is not pending stays where it is (two workers racing: test_receive_concurrency). The
ORM fallback (the embedded SQLite mode) gives the same answer; both run here on the test
database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_in import processing
from channels_in.models import InboundEvent
from tests.channels_in.test_failed_events import stored_event, tg_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def backlog(telegram):
    now = timezone.now()

    def event(n: int, status: str = "pending", **fields) -> InboundEvent:
        return stored_event(
            telegram, tg_body(n), status=status, error="", attempts=0,
            platform_id=f"update:{n}", **fields,
        )  # fmt: skip

    return {
        "late": event(1, next_attempt_at=now - timedelta(minutes=5)),
        "due": event(2, next_attempt_at=now - timedelta(minutes=1)),
        "later": event(3, next_attempt_at=now - timedelta(seconds=1)),
        "not_due": event(4, next_attempt_at=now + timedelta(minutes=1)),
        "failed": event(5, next_attempt_at=now - timedelta(minutes=9), status="failed"),
    }


@pytest.mark.parametrize("claim", ["claim_events", "_claim_events_orm"])
def test_it_claims_due_pending_events_oldest_first_with_their_channel(backlog, telegram, claim):
    if claim == "_claim_events_orm":
        claimed = processing._claim_events_orm(2, timezone.now())
    else:
        claimed = processing.claim_events(2)
    assert [e.pk for e in claimed] == [backlog["late"].pk, backlog["due"].pk]
    assert [bytes(e.body) for e in claimed] == [tg_body(1), tg_body(2)]
    for event in claimed:
        assert event.channel.pk == telegram.pk and event.channel.kind == "telegram"
        assert event.meta == {"content_type": "application/json", "query": ""}
    statuses = dict(InboundEvent.objects.values_list("pk", "status"))
    assert [statuses[backlog[k].pk] for k in ("late", "due", "later", "not_due", "failed")] == [
        "processing", "processing", "pending", "pending", "failed",
    ]  # fmt: skip
    assert InboundEvent.objects.filter(status="processing", claimed_at__isnull=True).count() == 0
    again = processing.claim_events(10)
    assert [e.pk for e in again] == [backlog["later"].pk], "a claimed event is not claimed again"
