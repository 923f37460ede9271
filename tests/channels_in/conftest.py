from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.fakeplatform import FakePlatform

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / name).read_bytes()


def fixture_json(kind: str, name: str) -> Any:
    return json.loads(fixture_bytes(kind, name))


@pytest.fixture
def fake_platform(settings: Any) -> Iterator[FakePlatform]:
    """The platforms' APIs, faked at one seam: a local HTTP server."""
    platform = FakePlatform().start()
    settings.HELPDESK_PLATFORM_URLS = {**settings.HELPDESK_PLATFORM_URLS, **platform.urls()}
    yield platform
    platform.stop()


@pytest.fixture
def hook(client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """hook(kind, key, body, **headers) POSTs a webhook and runs what it enqueued (the worker's
    part, in-process here) as the transaction commits."""

    def _post(
        kind: str,
        key: str,
        body: bytes | str | dict[str, Any],
        *,
        content_type: str = "application/json",
        method: str = "post",
        path_suffix: str = "",
        **headers: str,
    ) -> Any:
        if isinstance(body, dict):
            body = json.dumps(body)
        with django_capture_on_commit_callbacks(execute=True):
            return getattr(client, method)(
                f"/hooks/{kind}/{key}/{path_suffix}",
                data=body,
                content_type=content_type,
                headers=headers,
            )

    return _post
