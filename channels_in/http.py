"""The one seam to the outside world: every platform API call goes through `client()` and
a base URL from settings.HELPDESK_PLATFORM_URLS, so tests point them at a local fake server
and nothing reaches the internet."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from django.conf import settings

from .base import SendError

_local = threading.local()


def client() -> httpx.Client:
    """A pooled client per thread (httpx clients are not safe to share across threads)."""
    existing = getattr(_local, "client", None)
    if existing is None:
        existing = httpx.Client(
            timeout=httpx.Timeout(settings.HELPDESK_PLATFORM_TIMEOUT, connect=5.0),
            headers={"User-Agent": "helpdesk/1"},
        )
        _local.client = existing
    return existing


def base_url(kind: str) -> str:
    return settings.HELPDESK_PLATFORM_URLS[kind].rstrip("/")


def classify(response: httpx.Response, what: str) -> None:
    """Raise SendError for an unsuccessful answer: 429 and 5xx are transient, other 4xx are
    permanent (the platform refuses this message, retrying will not change its mind)."""
    if response.is_success:
        return
    detail = _detail(response)
    transient = response.status_code == 429 or response.status_code >= 500
    raise SendError(
        f"{what}: HTTP {response.status_code}: {detail}",
        permanent=not transient,
        code=str(response.status_code),
    )


def _detail(response: httpx.Response) -> str:
    try:
        data: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict):
        for key in ("description", "error_description", "message", "detail", "status_message"):
            if isinstance(data.get(key), str):
                return data[key][:300]
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        if isinstance(error, str):
            return error[:300]
    return str(data)[:300]
