"""Drop the single-column foreign-key indexes that a composite index starting with the same
column already serves, on the two tables routing writes for every assignment: each
assignment updates tickets_ticket (assignee_id changes, so no HOT update: every index of the
row gets a new entry) and inserts two tickets_ticketevent rows. Three fewer indexes on each
(bench/routing.py).

    tickets_ticket.contact_id      ticket_thread_idx (contact_id, channel_id, thread_key, id)
    tickets_ticket.team_id         ticket_team_status_idx (team_id, status)
    tickets_ticket.assignee_id     ticket_assignee_status_idx (assignee_id, status)
    tickets_ticketevent.ticket_id  event_ticket_idx (ticket_id, id)
    tickets_ticketevent.contact_id event_contact_idx (contact_id, id)
    tickets_ticketevent.actor_id   event_actor_time_idx (actor_id, created_at)

Dropped (and, backwards, built) CONCURRENTLY on PostgreSQL, as in 0004: a site with millions
of tickets keeps taking messages meanwhile."""

from django.db import migrations, models

FIELDS = [
    ("ticket", "contact"),
    ("ticket", "team"),
    ("ticket", "assignee"),
    ("ticketevent", "ticket"),
    ("ticketevent", "contact"),
    ("ticketevent", "actor"),
]


def _targets(apps, schema_editor):
    for model_name, field_name in FIELDS:
        model = apps.get_model("tickets", model_name)
        yield model, model._meta.get_field(field_name).column


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for model, column in _targets(apps, schema_editor):
        # The index Django made for the ForeignKey: exactly this one column, whatever its
        # generated name; composite indexes starting with the column are not matched.
        names = schema_editor._constraint_names(model, [column], index=True, type_="idx")
        for name in names:
            schema_editor.execute(
                f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}"
            )


def build(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for model, column in _targets(apps, schema_editor):
        table = model._meta.db_table
        name = schema_editor._create_index_name(table, [column], suffix="")
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {schema_editor.quote_name(name)} "
            f"ON {schema_editor.quote_name(table)} ({schema_editor.quote_name(column)})"
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0004_queue_count_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop, build)],
            state_operations=[
                migrations.AlterField(
                    model_name="ticket",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="tickets",
                        to="tickets.contact",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticket",
                    name="team",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        to="tickets.team",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticket",
                    name="assignee",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="assigned_tickets",
                        to="tickets.agent",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticketevent",
                    name="ticket",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.CASCADE,
                        related_name="events",
                        to="tickets.ticket",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticketevent",
                    name="contact",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.CASCADE,
                        related_name="events",
                        to="tickets.contact",
                    ),
                ),
                migrations.AlterField(
                    model_name="ticketevent",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        to="tickets.agent",
                    ),
                ),
            ],
        )
    ]
