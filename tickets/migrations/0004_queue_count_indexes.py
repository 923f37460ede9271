"""Indexes for the queue page's tab counts of an agent (their teams OR assigned to them, per
status). Built CONCURRENTLY on PostgreSQL: a site with millions of tickets keeps taking
messages while they build."""

from django.db import migrations, models

INDEXES = [
    models.Index(fields=["team", "status"], name="ticket_team_status_idx"),
    models.Index(fields=["assignee", "status"], name="ticket_assignee_status_idx"),
]


def add(apps, schema_editor):
    ticket = apps.get_model("tickets", "Ticket")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            columns = ", ".join(
                f'"{ticket._meta.get_field(f).column}"' for f in index.fields
            )
            schema_editor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{index.name}" '
                f'ON "{ticket._meta.db_table}" ({columns})'
            )
        else:
            schema_editor.add_index(ticket, index)


def remove(apps, schema_editor):
    ticket = apps.get_model("tickets", "Ticket")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"')
        else:
            schema_editor.remove_index(ticket, index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0003_presence_sla_routing_scoring"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add, remove)],
            state_operations=[
                migrations.AddIndex(model_name="ticket", index=index) for index in INDEXES
            ],
        )
    ]
