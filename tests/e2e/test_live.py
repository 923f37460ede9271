"""Two agents work the queue live, in a real browser, through real processes: Debian's
chromium on pages and sockets served by uvicorn, a signed Telegram webhook POSTed to uvicorn,
a real Celery worker turning it into a ticket and sending the reply to the fake Telegram API,
and channels_redis carrying the live events between them.

pytest-django's live_server does not speak WebSocket, so the test starts uvicorn itself on a
free port, on the test database (as tests/e2e/test_widget.py does)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection, connections

from channels_in.models import Channel
from tests.channels_in.conftest import fixture_json
from tests.conftest import PASSWORD, make_agent
from tests.fakeplatform import FakePlatform
from tests.worker import celery_worker, wait_for
from tickets.models import CannedResponse, Message, Team, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
SECRET = "e2e-live-secret"
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
    """ORM work off the main thread: Playwright's sync API keeps an event loop running there,
    and Django refuses synchronous queries next to a running loop."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    fake = FakePlatform().start()
    # Telegram accepts every message, after a moment: long enough for the page to show
    # "Queued" first, so the tick can be seen changing live.
    fake.respond(
        "POST",
        r"/telegram/bot[^/]+/sendMessage$",
        body=lambda request: (time.sleep(2.5), {"ok": True, "result": {"message_id": 77}})[1],
    )
    yield fake
    fake.stop()


@pytest.fixture
def worker(settings: Any, platform: FakePlatform) -> Iterator[Any]:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("the browser test needs the PostgreSQL test database and Redis")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(exist_ok=True)
    with celery_worker({"TELEGRAM_API_BASE": f"{platform.url}/telegram"}) as running:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": running.prefix},
            }
        }
        yield running


UVICORN = [sys.executable, "-m", "uvicorn", "helpdesk.asgi:application"]


@pytest.fixture
def uvicorn(worker: Any, platform: FakePlatform) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL or django_settings.REDIS_URL,
        # Inbound events and replies go to the worker's private queue; live events and the
        # ingest kicks use its prefixes: web, socket and worker are one site.
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": worker.queue,
        "CHANNEL_LAYER_PREFIX": worker.prefix,
        "CACHE_PREFIX": worker.prefix,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DB_POOL_MAX": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "TELEGRAM_API_BASE": f"{platform.url}/telegram",
    }
    log = open(ARTIFACTS / "e2e-live-uvicorn.log", "w")  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and app)
        # As the README runs it: no per-message deflate.
        [*UVICORN, "--port", str(port), "--ws-per-message-deflate", "false"],
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


def webhook(base: str, channel: Channel, update: dict[str, Any]) -> float:
    """POST a signed Telegram update to uvicorn; the moment it answered."""
    response = httpx.post(
        f"{base}/hooks/telegram/{channel.key}/",
        content=json.dumps(update, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return time.monotonic()


def within(since: float, limit: float = 1.0) -> float:
    """What is left of `limit` seconds since `since`, in milliseconds (for a wait timeout)."""
    left = limit - (time.monotonic() - since)
    assert left > 0, f"more than {limit} s have passed already"
    return left * 1000


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.wait_for_selector("#live-state[data-state=live]", timeout=10000)


def test_it_works_the_queue_live_with_two_agents(
    uvicorn: str, worker: Any, platform: FakePlatform
) -> None:
    outages = in_thread(Team.objects.create, name="Outages", slug="outages")
    for username in ("alice", "dan"):
        agent = in_thread(make_agent, username, teams=(outages,), languages=("ru", "lt", "en"))
        # Nobody is assigned automatically: the ticket waits in the queue for take-next.
        agent.auto_assign = False
        in_thread(agent.save, update_fields=["auto_assign"])
    channel = in_thread(
        Channel.objects.create,
        kind="telegram",
        key="tg-live",
        name="Telegram",
        default_team=outages,
        credentials={"bot_token": "999:LIVE", "secret_token": SECRET},
    )
    in_thread(
        CannedResponse.objects.create,
        shortcut="crew",
        title="Crew on the way",
        language="ru",
        body="Здравствуйте, {{contact.name}}! Бригада уже выехала, заявка №{{ticket.id}}. "
        "— {{agent.name}}",
    )
    in_thread(
        CannedResponse.objects.create,
        shortcut="bill",
        title="Billing question",
        body="Please write to billing.",
    )
    first_update = fixture_json("telegram", "text_private.json")

    # Warm the worker up first: its first message loads the language models (seconds, once
    # per process). "Within a second" is about the steady state, so a message to another
    # team's bot (nobody here sees it) goes first.
    billing = in_thread(Team.objects.create, name="Billing", slug="billing")
    other = in_thread(
        Channel.objects.create,
        kind="telegram",
        key="tg-billing",
        name="Billing bot",
        default_team=billing,
        credentials={"bot_token": "998:BILL", "secret_token": SECRET},
    )
    warm = json.loads(json.dumps(first_update))
    warm["update_id"], warm["message"]["from"]["id"], warm["message"]["chat"]["id"] = 1, 7, 7
    webhook(uvicorn, other, warm)
    wait_for(
        lambda: in_thread(lambda: Ticket.objects.filter(channel=other).exists()),
        what="the warm-up message to become a ticket",
        timeout=60,
    )

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        contexts, pages, dialogs, errors = [], [], [], []
        # Dan's sockets go through a switch, so the test can cut his network for a while.
        network: dict[str, Any] = {"down": False, "sockets": []}

        def dan_socket(ws: Any) -> None:
            if network["down"]:
                ws.close()
                return
            ws.connect_to_server()
            network["sockets"].append(ws)

        for username in ("alice", "dan"):
            context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB")
            page = context.new_page()
            if username == "dan":
                page.route_web_socket(re.compile(r"/ws/agent/$"), dan_socket)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            sign_in(page, uvicorn, username)
            contexts.append(context)
            pages.append(page)
        alice, dan = pages
        assert alice.locator("tr.qrow").count() == 0

        # 1. A customer writes: both queues show it within a second, without a reload.
        answered = webhook(uvicorn, channel, first_update)
        row = "tr.qrow:has-text('Нет света на ул. Ленина 12')"
        alice.wait_for_selector(row, timeout=within(answered))
        dan.wait_for_selector(row, timeout=within(answered))
        seen_after = time.monotonic() - answered
        ticket = in_thread(lambda: Ticket.objects.get(channel=channel))
        for page in pages:
            assert page.locator(".tab[data-status=active] .count").inner_text() == "1"
            assert page.locator(".tab[data-status=new] .count").inner_text() == "1"
            assert page.locator(f"#t{ticket.pk} .c-who").inner_text() == "Unassigned"
        ARTIFACTS.mkdir(exist_ok=True)
        dan.screenshot(path=str(ARTIFACTS / "e2e-live-1-queue-arrived.png"))

        # 2. Alice takes it from the keyboard (n); Dan's queue shows it assigned to her.
        alice.keyboard.press("n")
        alice.wait_for_url(f"{uvicorn}/tickets/{ticket.pk}/")
        dan.wait_for_selector(f"#t{ticket.pk} .c-who:has-text('Alice')", timeout=3000)
        assert dan.locator(".tab[data-status=open] .count").inner_text() == "1"
        dan.screenshot(path=str(ARTIFACTS / "e2e-live-2-queue-assigned.png"))

        # 3. Dan opens it too (j selects the row, Enter opens it): each sees the other
        # there; Dan's typing shows on Alice's page.
        dan.mouse.click(5, 500)
        dan.keyboard.press("j")
        assert dan.locator(f"#t{ticket.pk}").get_attribute("class").split().count("is-selected")
        dan.keyboard.press("Enter")
        dan.wait_for_url(f"{uvicorn}/tickets/{ticket.pk}/")
        alice.wait_for_selector("#viewers:has-text('Dan')", timeout=3000)
        dan.wait_for_selector("#viewers:has-text('Alice')", timeout=3000)
        dan.locator("#reply-text").type("Проверяю")
        alice.wait_for_selector("#typing:has-text('Dan is typing')", timeout=3000)
        dan.locator("#reply-text").fill("")

        # 4. The customer writes markup: it arrives live and is shown as text, never run.
        hostile = "<img src=x onerror=alert(1)> и <script>alert('x')</script> свет?"
        second = json.loads(json.dumps(first_update))
        second["update_id"] += 1
        second["message"]["message_id"] += 1
        second["message"]["text"] = hostile
        answered = webhook(uvicorn, channel, second)
        last_in = "#thread .msg-in >> nth=-1"
        for page in pages:
            page.wait_for_selector(f"{last_in} >> text=свет?", timeout=within(answered))
            assert page.locator(last_in).locator(".msg-text").inner_text() == hostile
            assert page.locator("#thread img").count() == 0
            assert page.locator("#thread script").count() == 0
        alice.screenshot(path=str(ARTIFACTS / "e2e-live-3-ticket-viewers-xss.png"))

        # 5. Alice answers with a canned response chosen by type-ahead, from the keyboard.
        alice.mouse.click(400, 450)
        alice.keyboard.press("r")
        assert alice.evaluate("document.activeElement.id") == "reply-text"
        alice.keyboard.type("/way")  # a word of the title finds it too
        alice.wait_for_selector("#canned-list li.is-active:has-text('/crew')")
        for _ in range(3):
            alice.keyboard.press("Backspace")
        alice.keyboard.type("cre")
        alice.wait_for_selector("#canned-list li.is-active:has-text('/crew')")
        assert alice.locator("#canned-list li").count() == 1
        alice.screenshot(path=str(ARTIFACTS / "e2e-live-4-type-ahead.png"))
        alice.keyboard.press("Enter")
        expected = (
            f"Здравствуйте, Ольга Смирнова! Бригада уже выехала, заявка №{ticket.pk}. — Alice"
        )
        assert alice.locator("#reply-text").input_value() == expected
        alice.keyboard.press("Control+Enter")
        alice.wait_for_selector(f".msg-out:has-text('заявка №{ticket.pk}')")

        # 6. The thread and the delivery state update live: on Dan's page, which never
        # reloaded, the reply arrives, then its tick turns from queued to sent.
        dan.wait_for_selector(f".msg-out:has-text('заявка №{ticket.pk}')", timeout=3000)
        reply = in_thread(
            lambda: Message.objects.get(ticket=ticket, direction="out", is_internal=False)
        )
        assert dan.locator(f"#m{reply.pk} .ticks").inner_text().strip().endswith("Queued")
        dan.wait_for_selector(f"#m{reply.pk} .ticks-sent", timeout=10000)
        alice.wait_for_selector(f"#m{reply.pk} .ticks-sent", timeout=10000)
        alice.screenshot(path=str(ARTIFACTS / "e2e-live-5-reply-sent.png"))
        dan.screenshot(path=str(ARTIFACTS / "e2e-live-6-dan-sees-reply.png"))
        wait_for(
            lambda: in_thread(lambda: Message.objects.get(pk=reply.pk).delivery_status == "sent"),
            what="the reply to be sent",
        )

        # 7. Dan's network drops; the customer writes meanwhile; when Dan is back, his page
        # re-syncs and shows what he missed.
        network["down"] = True
        for ws in network["sockets"]:
            ws.close()
        dan.wait_for_selector("#live-state[data-state=offline]", timeout=5000)
        third = json.loads(json.dumps(second))
        third["update_id"] += 1
        third["message"]["message_id"] += 1
        third["message"]["text"] = "Спасибо, ждём бригаду"
        webhook(uvicorn, channel, third)
        alice.wait_for_selector("#thread .msg-in:has-text('ждём бригаду')", timeout=3000)
        assert dan.locator("#thread .msg-in:has-text('ждём бригаду')").count() == 0
        network["down"] = False
        dan.wait_for_selector("#live-state[data-state=live]", timeout=30000)
        dan.wait_for_selector("#thread .msg-in:has-text('ждём бригаду')", timeout=5000)
        dan.screenshot(path=str(ARTIFACTS / "e2e-live-7-dan-back-online.png"))

        # 8. The keys overlay.
        alice.mouse.click(400, 450)
        alice.keyboard.press("?")
        assert alice.locator("dialog#keys").is_visible()
        alice.screenshot(path=str(ARTIFACTS / "e2e-live-8-keys.png"))
        alice.keyboard.press("Escape")

        for context in contexts:
            context.close()
        browser.close()

    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert errors == [], errors
    [sent] = platform.sent("sendMessage")
    assert json.loads(sent.body)["text"] == expected
    print(f"\nnew ticket on both queues {seen_after * 1000:.0f} ms after the webhook answered")
