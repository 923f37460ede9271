"""channels_in.processing.claim_events: due pending events, oldest first, each with its
channel, marked processing in the same statement; what another worker holds, what is not due
and what is not pending stays where it is (two workers racing: test_receive_concurrency). The
ORM fallback (the embedded SQLite mode) gives the same answer; both run here on the test
database."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
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


def heap_blocks_read() -> int:
    """Buffers of the events table read so far (PostgreSQL's statistics, flushed now)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT heap_blks_hit + heap_blks_read FROM pg_statio_user_tables "
            "WHERE relname = 'channels_in_inboundevent'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_it_does_not_reread_the_events_claimed_before(telegram):
    """Claimed events leave their entries in the due index until a vacuum; a claim must pass
    over them without reading their rows again (a storm's every claim re-read every event
    processed since the last autovacuum)."""
    if connection.vendor != "postgresql":
        pytest.skip("the due index and its statistics are PostgreSQL's")
    now = timezone.now() - timedelta(seconds=1)
    InboundEvent.objects.bulk_create(
        InboundEvent(
            channel=telegram,
            platform_id=f"update:{n}",
            body=tg_body(n),
            meta={"content_type": "application/json", "query": ""},
            next_attempt_at=now,
        )
        for n in range(3000)
    )
    # Claimed and processed, as a worker leaves them (committed: autocommit).
    InboundEvent.objects.update(status="processed", claimed_at=None)
    late = stored_event(telegram, tg_body(5000), status="pending", platform_id="update:5000")

    assert [e.pk for e in processing.claim_events(10)] == [late.pk]
    InboundEvent.objects.filter(pk=late.pk).update(status="processed")
    # Only rows no snapshot can see any more can be passed over: another backend of this
    # database (an autoanalyze, say) may hold an older snapshot for a moment. Claim until it
    # has let go, for a few seconds at most.
    read = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = heap_blocks_read()
        assert processing.claim_events(10) == []
        read.append(heap_blocks_read() - before)
        if read[-1] < 5:
            break
        time.sleep(0.2)
    # The table holds ~140 blocks of events: each claim read them all when the planner
    # chose a bitmap scan of the due index, which never marks an entry dead.
    assert read[-1] < 5, (read, snapshots_held())


def snapshots_held() -> list[tuple[Any, ...]]:
    """The other backends of this database holding a snapshot, for a failure's message."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_type, state, backend_xmin, left(query, 80) "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL"
        )
        return cursor.fetchall()
