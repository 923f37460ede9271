"""A real browser for the e2e tests: Debian's chromium driven by Playwright for Python.

Never downloads a browser. Screenshots go to test-artifacts/ (gitignored) for a person to
look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # (setting up data, checking results) are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A 1366x768 page that fails the test if any JavaScript dialog opens (an XSS canary)."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB")
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.dialogs = dialogs
    try:
        yield page
    finally:
        context.close()
    assert not dialogs, f"a dialog opened: {dialogs}"


@pytest.fixture
def shoot() -> Any:
    """shoot(page, "name") saves test-artifacts/name.png."""
    ARTIFACTS.mkdir(exist_ok=True)

    def _shoot(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return _shoot


@pytest.fixture
def platforms(settings: Any) -> Iterator[Any]:
    """The platforms' APIs on a local fake server (the one seam for the outside world), with
    Telegram accepting every sendMessage, so replies typed in the browser really go out."""
    from tests.fakeplatform import FakePlatform

    fake = FakePlatform().start()
    settings.HELPDESK_PLATFORM_URLS = {**settings.HELPDESK_PLATFORM_URLS, **fake.urls()}
    fake.respond(
        "POST",
        r"/telegram/bot[^/]+/sendMessage$",
        body=lambda request: {"ok": True, "result": {"message_id": fake.next_id()}},
    )
    try:
        yield fake
    finally:
        fake.stop()
