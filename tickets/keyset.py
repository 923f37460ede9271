"""Keyset (cursor) pagination over the queue order, without COUNT(*) and without OFFSET.

The queue order is (priority DESC, sla_due_at ASC, waiting_since ASC NULLS LAST, id ASC).
Mixed directions and a nullable column rule out one SQL row comparison, and an OR over the
keys would make PostgreSQL give up the index order. Instead a page is at most two index range
scans: the rest of the cursor's priority level (`priority = P AND sla_due_at >= S`, the exact
ties filtered in Python-built SQL), then the following levels (`priority < P`). Each is a range
on the queue indexes, so page 1 and page 40,000 cost the same.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from .errors import InvalidInput
from .models import Ticket
from .queue import QUEUE_ORDERING

# Reversed queue order, for "previous" pages.
REVERSED_ORDERING = tuple(expr.copy().reverse_ordering() for expr in QUEUE_ORDERING)


@dataclass(frozen=True)
class Position:
    priority: int
    sla_due_at: datetime
    waiting_since: datetime | None
    id: int

    @classmethod
    def of(cls, ticket: Ticket) -> Position:
        return cls(ticket.priority, ticket.sla_due_at, ticket.waiting_since, ticket.pk)

    def encode(self, direction: str) -> str:
        raw = json.dumps(
            [
                direction,
                self.priority,
                self.sla_due_at.isoformat(),
                self.waiting_since.isoformat() if self.waiting_since else None,
                self.id,
            ],
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> tuple[str, Position]:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            direction, priority, due, waiting, pk = json.loads(base64.urlsafe_b64decode(padded))
            due_at = parse_datetime(due)
            waiting_at = parse_datetime(waiting) if waiting is not None else None
            if (
                direction not in ("n", "p")
                or not isinstance(priority, int)
                or not isinstance(pk, int)
                or due_at is None
                or (waiting is not None and waiting_at is None)
            ):
                raise ValueError(cursor)
        except (
            ValueError,
            TypeError,
            binascii.Error,
            json.JSONDecodeError,
            UnicodeDecodeError,
            RecursionError,  # a forged cursor of deeply nested brackets
        ) as exc:
            raise InvalidInput(
                "the cursor is not valid; start again from the first page", field="cursor"
            ) from exc
        return direction, cls(priority, due_at, waiting_at, pk)


def _after_within_level(pos: Position) -> Q:
    """Rows of the same priority after `pos` in queue order (waiting_since NULLS LAST)."""
    if pos.waiting_since is None:
        tie = Q(waiting_since__isnull=True, id__gt=pos.id)
    else:
        tie = (
            Q(waiting_since__gt=pos.waiting_since)
            | Q(waiting_since__isnull=True)
            | Q(waiting_since=pos.waiting_since, id__gt=pos.id)
        )
    return Q(sla_due_at__gt=pos.sla_due_at) | (Q(sla_due_at=pos.sla_due_at) & tie)


def _before_within_level(pos: Position) -> Q:
    if pos.waiting_since is None:
        tie = Q(waiting_since__isnull=False) | Q(waiting_since__isnull=True, id__lt=pos.id)
    else:
        tie = Q(waiting_since__lt=pos.waiting_since) | Q(
            waiting_since=pos.waiting_since, id__lt=pos.id
        )
    return Q(sla_due_at__lt=pos.sla_due_at) | (Q(sla_due_at=pos.sla_due_at) & tie)


@dataclass(frozen=True)
class Slice:
    """The part of the queue order one page query reads, `limit` rows of it: from the start
    (no `pos`); the rest of `pos`'s priority level after it (forward) or before it
    (backward, read in reversed order); or the levels below (forward) or above it."""

    forward: bool
    pos: Position | None = None
    same_level: bool = False


# Reads one slice of `qs`, in queue order (reversed order when not forward). `orm_fetch` is
# the reference; tickets.rows has the queue rows' SQL twin of it.
Fetch = Callable[[QuerySet[Ticket], Slice, int], list[Ticket]]


def orm_fetch(qs: QuerySet[Ticket], part: Slice, limit: int) -> list[Ticket]:
    pos = part.pos
    if pos is not None:
        if part.same_level and part.forward:
            qs = qs.filter(priority=pos.priority, sla_due_at__gte=pos.sla_due_at).filter(
                _after_within_level(pos)
            )
        elif part.same_level:
            qs = qs.filter(priority=pos.priority, sla_due_at__lte=pos.sla_due_at).filter(
                _before_within_level(pos)
            )
        elif part.forward:
            qs = qs.filter(priority__lt=pos.priority)
        else:
            qs = qs.filter(priority__gt=pos.priority)
    return list(qs.order_by(*(QUEUE_ORDERING if part.forward else REVERSED_ORDERING))[:limit])


# The same order and slices as SQL on the ticket table, for queries written by hand (the
# queue rows): the exact conditions orm_fetch's filters compile to. Kept next to the Q
# versions above; tests/tickets/test_queue.py pages through tied rows with both.
_T = f'"{Ticket._meta.db_table}"'
ORDER_SQL = (
    f'{_T}."priority" DESC, {_T}."sla_due_at" ASC, {_T}."waiting_since" ASC NULLS LAST, '
    f'{_T}."id" ASC'
)
REVERSED_ORDER_SQL = (
    f'{_T}."priority" ASC, {_T}."sla_due_at" DESC, {_T}."waiting_since" DESC NULLS FIRST, '
    f'{_T}."id" DESC'
)


def slice_sql(part: Slice) -> tuple[str, list[Any]]:
    """`part`'s condition as SQL on the ticket table ("" for the whole queue) and its
    parameters."""
    pos = part.pos
    if pos is None:
        return "", []
    if not part.same_level:
        return f'{_T}."priority" {"<" if part.forward else ">"} %s', [pos.priority]
    sla, waiting, pk = f'{_T}."sla_due_at"', f'{_T}."waiting_since"', f'{_T}."id"'
    if part.forward:
        if pos.waiting_since is None:
            tie, tie_params = f"{waiting} IS NULL AND {pk} > %s", [pos.id]
        else:
            tie = f"{waiting} > %s OR {waiting} IS NULL OR ({waiting} = %s AND {pk} > %s)"
            tie_params = [pos.waiting_since, pos.waiting_since, pos.id]
        op, strict = ">=", ">"
    else:
        if pos.waiting_since is None:
            tie, tie_params = (
                f"{waiting} IS NOT NULL OR ({waiting} IS NULL AND {pk} < %s)",
                [pos.id],
            )
        else:
            tie = f"{waiting} < %s OR ({waiting} = %s AND {pk} < %s)"
            tie_params = [pos.waiting_since, pos.waiting_since, pos.id]
        op, strict = "<=", "<"
    return (
        f'{_T}."priority" = %s AND {sla} {op} %s '
        f"AND ({sla} {strict} %s OR ({sla} = %s AND ({tie})))",
        [pos.priority, pos.sla_due_at, pos.sla_due_at, pos.sla_due_at, *tie_params],
    )


@dataclass
class Page:
    rows: list[Ticket]
    next_cursor: str | None
    previous_cursor: str | None


def paginate(
    qs: QuerySet[Ticket], *, cursor: str | None, size: int, fetch: Fetch = orm_fetch
) -> Page:
    """One page of `qs` in queue order. `qs` carries the filters (and select_related);
    `fetch` reads each slice (at most two per page)."""
    if not cursor:
        rows = fetch(qs, Slice(forward=True), size + 1)
        has_more = len(rows) > size
        rows = rows[:size]
        return Page(rows, Position.of(rows[-1]).encode("n") if has_more else None, None)

    direction, pos = Position.decode(cursor)
    if direction == "n":
        rows = fetch(qs, Slice(forward=True, pos=pos, same_level=True), size + 1)
        if len(rows) <= size:
            rows += fetch(qs, Slice(forward=True, pos=pos), size + 1 - len(rows))
        has_more = len(rows) > size
        rows = rows[:size]
        return Page(
            rows,
            Position.of(rows[-1]).encode("n") if has_more and rows else None,
            Position.of(rows[0]).encode("p") if rows else None,
        )

    rows = fetch(qs, Slice(forward=False, pos=pos, same_level=True), size + 1)
    if len(rows) <= size:
        rows += fetch(qs, Slice(forward=False, pos=pos), size + 1 - len(rows))
    has_more = len(rows) > size
    rows = rows[:size]
    rows.reverse()
    return Page(
        rows,
        Position.of(rows[-1]).encode("n") if rows else None,
        Position.of(rows[0]).encode("p") if has_more and rows else None,
    )


def page_size(raw: Any, *, default: int = 25, maximum: int = 100) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"page_size must be a whole number, got {raw!r}", field="page_size"
        ) from exc
    if not 1 <= value <= maximum:
        raise InvalidInput(f"page_size must be between 1 and {maximum}", field="page_size")
    return value
