"""Cursor pagination for the API: `{"results": [...], "next": url|null, "previous": url|null}`.

No page numbers and no counts: a COUNT(*) or an OFFSET over millions of tickets costs more
than the page itself. The queue pages by its own order (`tickets.keyset`); everything else
pages by id, which is unique and indexed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django.db.models import Model, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from tickets import keyset, rows
from tickets.errors import InvalidInput

from .common import MAX_ID

CURSOR_PARAM = "cursor"
SIZE_PARAM = "page_size"


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    # RecursionError: a forged cursor of deeply nested brackets.
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError) as exc:
        raise bad_cursor() from exc


def bad_cursor() -> InvalidInput:
    return InvalidInput(
        "the cursor is not valid; start again from the first page", field=CURSOR_PARAM
    )


def page_link(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return replace_query_param(request.build_absolute_uri(), CURSOR_PARAM, cursor)


def _parameters(default: int, maximum: int, what: str) -> list[dict[str, Any]]:
    return [
        {
            "name": CURSOR_PARAM,
            "required": False,
            "in": "query",
            "description": "Opaque cursor from the `next` or `previous` link of a page.",
            "schema": {"type": "string"},
        },
        {
            "name": SIZE_PARAM,
            "required": False,
            "in": "query",
            "description": f"{what} per page (default {default}, at most {maximum}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        },
    ]


def _page_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["results", "next", "previous"],
        "properties": {
            "results": schema,
            "next": {"type": "string", "format": "uri", "nullable": True},
            "previous": {"type": "string", "format": "uri", "nullable": True},
        },
    }


class QueuePagination(BasePagination):
    """Tickets in queue order (most urgent first), by `tickets.keyset`."""

    default_size = 25
    max_size = 100

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        size = keyset.page_size(
            request.query_params.get(SIZE_PARAM), default=self.default_size, maximum=self.max_size
        )
        # The queue rows' own reader (tickets.rows): the page query as fixed SQL text.
        self.page = rows.page(queryset, cursor=request.query_params.get(CURSOR_PARAM), size=size)
        return self.page.rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "results": data,
                "next": page_link(self.request, self.page.next_cursor),
                "previous": page_link(self.request, self.page.previous_cursor),
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return _page_schema(schema)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _parameters(self.default_size, self.max_size, "Tickets")


class IdPagination(BasePagination):
    """Pages by primary key, ascending (oldest first) unless `newest_first`."""

    default_size = 100
    max_size = 500
    newest_first = False

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        size = keyset.page_size(
            request.query_params.get(SIZE_PARAM), default=self.default_size, maximum=self.max_size
        )
        rows, self.next_cursor, self.previous_cursor = paginate_by_id(
            queryset,
            cursor=request.query_params.get(CURSOR_PARAM),
            size=size,
            newest_first=self.newest_first,
        )
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "results": data,
                "next": page_link(self.request, self.next_cursor),
                "previous": page_link(self.request, self.previous_cursor),
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return _page_schema(schema)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _parameters(self.default_size, self.max_size, "Items")


class NewestFirstPagination(IdPagination):
    default_size = 25
    max_size = 100
    newest_first = True


class MessagePagination(IdPagination):
    """A ticket's thread, oldest first, as it is read."""

    default_size = 50
    max_size = 200


def paginate_by_id(
    qs: QuerySet[Any], *, cursor: str | None, size: int, newest_first: bool
) -> tuple[list[Any], str | None, str | None]:
    """One page of `qs` ordered by id; returns (rows, next cursor, previous cursor)."""
    forward = "-id" if newest_first else "id"
    backward = "id" if newest_first else "-id"
    if not cursor:
        rows = list(qs.order_by(forward)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return rows, _id_cursor("n", rows[-1]) if more else None, None

    value = decode_cursor(cursor)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] not in ("n", "p")
        or not isinstance(value[1], int)
        or isinstance(value[1], bool)
        or not 0 <= value[1] <= MAX_ID
    ):
        raise bad_cursor()
    direction, pk = value
    after = {"id__lt": pk} if newest_first else {"id__gt": pk}
    before = {"id__gt": pk} if newest_first else {"id__lt": pk}
    if direction == "n":
        rows = list(qs.filter(**after).order_by(forward)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return (
            rows,
            _id_cursor("n", rows[-1]) if more else None,
            _id_cursor("p", rows[0]) if rows else None,
        )
    rows = list(qs.filter(**before).order_by(backward)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    rows.reverse()
    return (
        rows,
        _id_cursor("n", rows[-1]) if rows else None,
        _id_cursor("p", rows[0]) if more else None,
    )


def _id_cursor(direction: str, row: Model) -> str:
    return encode_cursor([direction, row.pk])
