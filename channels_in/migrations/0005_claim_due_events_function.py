"""channels_in_due_events(n, due): the ids of up to n due pending events, oldest first, locked
(SKIP LOCKED), for processing.claim_events (PostgreSQL only; SQLite claims with the ORM).

Why a function: its SET clause keeps the planner on a plain scan of event_due_idx in index
order. Each claim leaves the claimed rows' entries behind in that partial index until a
vacuum, and a plain index scan marks the entries of dead rows as dead the first time it
passes them (later scans skip them without visiting the table); the bitmap scan the planner
otherwise picks for a handful of due rows never does, so every claim re-read every event
processed since the last autovacuum — 1.3 ms per claim after a minute at 100 messages/s
(bench/live.py, pg_stat_statements), growing with the storm. Measured on 6,000 processed
events: 3 ms and 470 buffers per claim with the bitmap scan; with the index scan 2 ms once,
then 0.03 ms and 24 buffers."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION channels_in_due_events(n integer, due timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    SELECT e.id FROM channels_in_inboundevent e
    WHERE e.status = 'pending' AND e.next_attempt_at <= due
    ORDER BY e.next_attempt_at, e.id
    LIMIT n
    FOR UPDATE SKIP LOCKED;
END
$$
"""

DROP = "DROP FUNCTION IF EXISTS channels_in_due_events(integer, timestamptz)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_in", "0004_event_claims_and_backoff"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
