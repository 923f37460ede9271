"""Model instances from hand-written SELECTs, for the few hot reads where Django's query
compilation and Model.__init__ cost more CPU than PostgreSQL spends on the query (the queue
page, authentication on every request).

`Columns(model, alias, fields)` gives the SELECT list of those fields and turns the matching
slice of a row into an instance exactly as `Model.from_db` would (the same database
converters, e.g. JSON decoding; fields not selected load on first access, as with .only()),
without `Model.__init__`'s setattr per field and its init signals (nothing in this project
listens to them for the models read here).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model
from django.db.models.base import ModelState

M = TypeVar("M", bound=Model)


class Columns(Generic[M]):
    def __init__(
        self,
        model: type[M],
        alias: str,
        fields: Sequence[str] | None = None,
        *,
        using: str = "default",
    ) -> None:
        connection = connections[using]
        chosen: list[Field[Any, Any]] = (
            [model._meta.get_field(name) for name in fields]  # type: ignore[misc]
            if fields is not None
            else list(model._meta.concrete_fields)
        )
        quote = connection.ops.quote_name
        self.model = model
        self.using = using
        self.names = [f.attname for f in chosen]
        self.width = len(chosen)
        pk = model._meta.pk
        self.pk_index = self.names.index(pk.attname) if pk is not None and pk in chosen else None
        self.sql = ", ".join(f"{quote(alias)}.{quote(f.column)}" for f in chosen)
        # What Django's compiler applies to each selected column.
        self.converters = []
        for i, f in enumerate(chosen):
            col = f.get_col(alias)
            found = col.get_db_converters(connection) + connection.ops.get_db_converters(col)
            if found:
                self.converters.append((i, col, found))

    def build(self, row: Sequence[Any], start: int = 0) -> M:
        """The instance from `row[start : start + width]`."""
        values = list(row[start : start + self.width])
        if self.converters:
            connection = connections[self.using]
            for i, col, converters in self.converters:
                for converter in converters:
                    values[i] = converter(values[i], col, connection)
        obj = self.model.__new__(self.model)
        obj.__dict__.update(zip(self.names, values, strict=True))
        state = ModelState()
        state.adding = False
        state.db = self.using
        obj._state = state
        return obj

    def is_null(self, row: Sequence[Any], start: int = 0) -> bool:
        """No row on this side of a LEFT JOIN (its primary key is NULL)."""
        if self.pk_index is None:
            raise ValueError("select the primary key to tell a missing row")
        return row[start + self.pk_index] is None


def c_timestamps(cursor: Any) -> None:
    """Read timestamptz columns on this cursor (a Django cursor wrapper) with psycopg's own
    loader, which is in C: Django's is Python (~3 µs a value, ~0.6 ms of CPU for the 200
    timestamps of a 25-row queue page; ~0.04 ms in C). Only where both give the same values:
    PostgreSQL with the session in UTC, as Django sets it with USE_TZ, where psycopg returns
    datetimes in datetime.timezone.utc exactly as Django's loader does."""
    db = cursor.db
    if db.vendor != "postgresql" or db.timezone_name != "UTC":
        return
    raw = cursor.cursor
    if raw.connection.info.parameter_status("TimeZone") != "UTC":
        return
    raw.adapters.register_loader("timestamptz", _psycopg_timestamptz_loader())


@functools.cache
def _psycopg_timestamptz_loader() -> Any:
    import psycopg

    oid = psycopg.adapters.types["timestamptz"].oid
    return psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)
