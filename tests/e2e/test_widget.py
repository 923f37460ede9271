"""The chat widget in a real browser, through real processes: Debian's chromium loads the demo
page from uvicorn (which serves the page, the script and the socket), a real Celery worker
turns the visitor's message into a ticket, an agent's reply goes out through the worker and
channels_redis to the visitor's socket, and a button press comes back as a postback.

pytest-django's live_server does not speak WebSocket, so the test starts uvicorn itself on a
free port, on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections

from channels_in.models import Channel, InboundEvent
from tests.conftest import make_agent
from tests.worker import celery_worker, wait_for
from tickets import actions
from tickets.models import Message, Team, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
T = TypeVar("T")

playwright_sync = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM work off the main thread: Playwright's sync API keeps an event loop running
    there, and Django refuses synchronous queries next to a running loop."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@pytest.fixture
def uvicorn(worker: Any) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL or django_settings.REDIS_URL,
        # Inbound events go to the worker's private queue; live messages use its prefix.
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": worker.queue,
        "CHANNEL_LAYER_PREFIX": worker.prefix,
        "CACHE_PREFIX": worker.prefix,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DB_POOL_MAX": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log = open(ARTIFACTS / "e2e-widget-uvicorn.log", "w")  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and app)
        [sys.executable, "-m", "uvicorn", "helpdesk.asgi:application", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start; see " + log.name) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def worker(settings: Any) -> Iterator[Any]:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("the browser test needs the PostgreSQL test database and Redis")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(exist_ok=True)
    with celery_worker() as running:
        # This process publishes (the reply's delivery runs on the worker; nothing here
        # listens), but keep its layer on the same prefix in case it does.
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": running.prefix},
            }
        }
        yield running


def test_it_chats_from_a_real_browser_through_the_worker(uvicorn: str, worker: Any) -> None:
    outages = in_thread(Team.objects.create, name="Outages", slug="outages")
    alice = in_thread(make_agent, "alice", teams=(outages,), languages=("lt",))
    channel = in_thread(
        Channel.objects.create,
        kind="widget",
        key="e2e-web",
        name="Web chat",
        default_team=outages,
        credentials={"allowed_origins": [uvicorn]},
        settings={"widget": {"title": {"lt": "Šiaurės tinklai"}}},
    )

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{uvicorn}/widget/demo/{channel.key}/")

        page.get_by_role("button", name="Parašykite mums").click()
        page.wait_for_selector(".status[data-state=online]")
        assert page.locator(".title").inner_text() == "Šiaurės tinklai"
        page.get_by_label("Jūsų žinutė").fill("<b>Nėra elektros</b> nuo 7 ryto")
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.mine .meta:has-text('Išsiųsta')")
        # Customer text is text: the tag is shown, never made into an element.
        assert page.locator(".msg.mine .bubble").inner_text() == "<b>Nėra elektros</b> nuo 7 ryto"
        assert page.locator(".msg.mine .bubble b").count() == 0

        ticket = wait_for(
            lambda: in_thread(lambda: Ticket.objects.filter(channel=channel).first()),
            what="the worker to turn the message into a ticket",
            timeout=30,
        )
        reply = in_thread(
            actions.do_reply,
            ticket,
            alice,
            "Brigada jau vietoje. Pranešti SMS, kai elektra bus atkurta?",
            payload={
                "buttons": [{"id": "sms-yes", "label": "Taip"}, {"id": "sms-no", "label": "Ne"}]
            },
        )
        page.wait_for_selector(".msg.agent .choice", timeout=30000)
        assert "Brigada jau vietoje" in page.locator(".msg.agent .bubble").inner_text()
        wait_for(
            lambda: in_thread(lambda: Message.objects.get(pk=reply.pk).delivery_status == "sent"),
            what="the reply to be marked sent",
        )

        page.get_by_role("button", name="Taip").click()
        page.wait_for_selector(".msg.mine >> nth=1 >> .meta:has-text('Išsiųsta')")
        pressed = wait_for(
            lambda: in_thread(lambda: Message.objects.filter(kind="postback").first()),
            what="the button press to arrive as a postback",
            timeout=30,
        )
        assert pressed.payload["button"] == "sms-yes" and pressed.ticket_id == ticket.pk

        # A reload keeps the conversation: the token in localStorage, the history from the server.
        page.reload()
        page.wait_for_selector(".status[data-state=online]")
        page.wait_for_selector(".msg.agent")
        texts = page.locator(".msg .bubble").all_inner_texts()
        assert texts[1:] == [
            "<b>Nėra elektros</b> nuo 7 ryto",
            "Brigada jau vietoje. Pranešti SMS, kai elektra bus atkurta?",
            "Taip",
        ]
        page.screenshot(path=str(ARTIFACTS / "e2e-widget.png"))

        page.keyboard.press("Escape")
        assert (
            page.get_by_role("button", name="Parašykite mums").get_attribute("aria-expanded")
            == "false"
        )
        browser.close()

    assert errors == []
    assert (
        in_thread(lambda: InboundEvent.objects.filter(channel=channel, status="processed").count())
        == 2
    )
    assert "process_pending_events" in worker.log and "send_delivery" in worker.log
