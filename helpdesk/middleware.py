from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse


class QueryCountMiddleware:
    """Adds `X-Query-Count` (SQL statements run for the request). Enabled by
    HELPDESK_QUERY_COUNT_HEADER=1 for benchmarks; off by default."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        count = 0

        def counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            response = self.get_response(request)
            # Streaming and lazily rendered responses run their queries inside this block.
            if (
                hasattr(response, "render")
                and callable(response.render)
                and not getattr(response, "is_rendered", True)
            ):
                response.render()
        response["X-Query-Count"] = str(count)
        return response
