"""INSERTs written by hand for the inbound hot path (tickets.actions receiving a message).

`Model.objects.create()` compiles its INSERT anew on every call (fields, placeholders,
returning clause): about as much CPU as PostgreSQL spends executing it. `Insert(model)`
builds the statement text once per process and per model and turns an instance into its
parameters with the same field methods Django uses (`pre_save`, `get_db_prep_save`), so the
row written is the one `save()` would write. `pre_save`/`post_save` signals are sent as
`save()` sends them, when anything listens (the demo seeder does; nothing else here).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model
from django.db.models.signals import post_save, pre_save

M = TypeVar("M", bound=Model)


class Insert(Generic[M]):
    def __init__(
        self,
        model: type[M],
        *,
        using: str = "default",
        cursor: Callable[[], Any] | None = None,
        explicit_pk: bool = False,
    ) -> None:
        """`cursor` makes the cursors the statements run on (default: the connection's),
        e.g. one that prepares them on the server. `explicit_pk`: the instances come with
        their primary key already taken (from the table's sequence), which is written too."""
        connection = connections[using]
        self.cursor = cursor or connection.cursor
        quote = connection.ops.quote_name
        self.model = model
        self.using = using
        pk = model._meta.pk
        if pk is None:
            raise TypeError(f"{model.__name__} has no primary key")
        self.pk = pk
        # Every concrete column but an auto-generated primary key.
        self.fields: list[Field[Any, Any]] = [
            f
            for f in model._meta.concrete_fields
            if explicit_pk or not (f.primary_key and getattr(f, "db_returning", False))
        ]
        self.table = quote(model._meta.db_table)
        self.columns = ", ".join(quote(f.column) for f in self.fields)
        self.row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self.returning = f" RETURNING {quote(pk.column)}"

    def params(self, obj: M, *, without: Collection[str] = ()) -> list[Any]:
        """The row's parameters, as `save()` computes them (defaults, auto_now, JSON...);
        `without` leaves out fields whose value the statement computes (see `sql`)."""
        connection = connections[self.using]
        return [
            f.get_db_prep_save(f.pre_save(obj, True), connection)
            for f in self.fields
            if f.attname not in without
        ]

    def sql(
        self, rows: int = 1, *, computed: Mapping[str, str] | None = None, on_conflict: str = ""
    ) -> str:
        """The INSERT of `rows` rows; `computed` gives an SQL expression instead of a
        parameter for some fields (by attname), e.g. an id from a WITH clause;
        `on_conflict` is what follows ON CONFLICT (e.g. "DO NOTHING")."""
        row = self.row
        if computed:
            row = "(" + ", ".join(computed.get(f.attname, "%s") for f in self.fields) + ")"
        return (
            f"INSERT INTO {self.table} ({self.columns}) VALUES "  # noqa: S608 -- names only
            + ", ".join([row] * rows)
            + (f" ON CONFLICT {on_conflict}" if on_conflict else "")
            + self.returning
        )

    def one(self, obj: M) -> M:
        """INSERT one instance (its primary key set), as `obj.save(force_insert=True)`."""
        signals = pre_save.has_listeners(self.model) or post_save.has_listeners(self.model)
        if signals:
            pre_save.send(
                sender=self.model, instance=obj, raw=False, using=self.using, update_fields=None
            )
        with self.cursor() as cursor:
            cursor.execute(self.sql(), self.params(obj))
            (pk,) = cursor.fetchone()
        self.saved(obj, pk)
        if signals:
            post_save.send(
                sender=self.model,
                instance=obj,
                created=True,
                update_fields=None,
                raw=False,
                using=self.using,
            )
        return obj

    def many(self, objs: Sequence[M]) -> None:
        """INSERT several instances in one statement, as `bulk_create` (no signals)."""
        if not objs:
            return
        params = [value for obj in objs for value in self.params(obj)]
        with self.cursor() as cursor:
            cursor.execute(self.sql(len(objs)), params)
            pks = [row[0] for row in cursor.fetchall()]
        # PostgreSQL returns the rows of a multi-row VALUES insert in their order.
        for obj, pk in zip(objs, pks, strict=True):
            self.saved(obj, pk)

    def saved(self, obj: M, pk: Any) -> None:
        setattr(obj, self.pk.attname, pk)
        obj._state.adding = False
        obj._state.db = self.using


class Update(Generic[M]):
    """`obj.save(update_fields=...)` for the hot path: one UPDATE by primary key, its text
    built once per set of fields."""

    def __init__(
        self,
        model: type[M],
        *,
        using: str = "default",
        cursor: Callable[[], Any] | None = None,
    ) -> None:
        self.model = model
        self.using = using
        self.cursor = cursor or connections[using].cursor
        self.statements: dict[tuple[str, ...], tuple[str, list[Field[Any, Any]]]] = {}

    def statement(self, names: tuple[str, ...]) -> tuple[str, list[Field[Any, Any]]]:
        found = self.statements.get(names)
        if found is None:
            quote = connections[self.using].ops.quote_name
            meta = self.model._meta
            fields = [meta.get_field(name) for name in names]
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)  # type: ignore[union-attr]
            pk = meta.pk
            if pk is None:
                raise TypeError(f"{self.model.__name__} has no primary key")
            sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"  # noqa: S608
            found = self.statements[names] = (sql, fields)  # type: ignore[assignment]
        return found

    def save(self, obj: M, fields: Iterable[str]) -> None:
        names = tuple(sorted(fields))
        signals = pre_save.has_listeners(self.model) or post_save.has_listeners(self.model)
        if signals:
            pre_save.send(
                sender=self.model, instance=obj, raw=False, using=self.using, update_fields=names
            )
        sql, columns = self.statement(names)
        connection = connections[self.using]
        params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns]
        with self.cursor() as cursor:
            cursor.execute(sql, [*params, obj.pk])
        if signals:
            post_save.send(
                sender=self.model,
                instance=obj,
                created=False,
                update_fields=frozenset(names),
                raw=False,
                using=self.using,
            )
