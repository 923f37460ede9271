from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def helpdesk(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    agent = getattr(user, "agent", None) if user is not None and user.is_authenticated else None
    return {"me": agent}
