"""Trigram indexes for the `q` text search (tickets and contacts), on PostgreSQL only.

Django's `icontains` on PostgreSQL is `UPPER(col::text) LIKE UPPER('%term%')`, so each index
is on exactly that expression with `gin_trgm_ops`: a substring search in any script (the
database is C.UTF-8, where upper() and pg_trgm handle Cyrillic, Lithuanian and CJK) becomes a
bitmap index scan instead of a sequential scan over millions of rows.

The indexes are built CONCURRENTLY (hence `atomic = False`): tickets keep arriving while a
production database builds them. They live outside the model state on purpose: models.py
declares none of them, so later autodetected migrations leave them alone. SQLite (the embedded
default) skips all of this: its tables are small. (Its LIKE ignores case for ASCII only, so
there "ленина" does not find "Ленина"; PostgreSQL's UPPER() does.)
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# (index name, table, column)
TRIGRAM_INDEXES = [
    ("ticket_subject_trgm", "tickets_ticket", "subject"),
    ("ticket_preview_trgm", "tickets_ticket", "preview"),
    ("contact_name_trgm", "tickets_contact", "display_name"),
    ("identity_value_trgm", "tickets_identity", "value"),
]


def create_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in TRIGRAM_INDEXES:
        # A concurrent build that failed leaves an INVALID index behind; start it afresh.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON {table} "
            f"USING gin ((UPPER({column}::text)) gin_trgm_ops)"
        )


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in TRIGRAM_INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    # The extension stays: other objects may use it, and it costs nothing unused.


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
