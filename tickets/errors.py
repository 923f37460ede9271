"""Errors the actions raise; the API and the pages turn each into a specific 4xx answer."""

from __future__ import annotations


class ActionError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(ActionError):
    status = 400
    code = "invalid"


class Forbidden(ActionError):
    status = 403
    code = "forbidden"


class NotFound(ActionError):
    status = 404
    code = "not_found"


class Conflict(ActionError):
    status = 409
    code = "conflict"


class TooLarge(ActionError):
    status = 413
    code = "too_large"
