"""The spine, end to end, through real processes: a signed webhook over HTTP → the stored
event → a real Celery worker → a ticket → a live event on channels_redis → an agent's reply →
the worker sends it to the (fake) platform → the delivery state on the message."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.db import connection

from channels_in.models import Channel, InboundEvent
from tests.channels_in.conftest import fixture_bytes
from tests.fakeplatform import FakePlatform
from tests.worker import LiveListener, celery_worker, wait_for
from tickets import actions
from tickets.events import team_group
from tickets.models import Message, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def platform():
    fake = FakePlatform().start()
    yield fake
    fake.stop()


def _layer_settings(prefix: str, redis_url: str) -> dict:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }


def _telegram(key: str, team, *, bot_token: str, secret: str) -> Channel:
    if connection.vendor != "postgresql":
        pytest.skip("the worker needs the PostgreSQL test database")
    return Channel.objects.create(
        kind="telegram",
        key=key,
        name="Telegram",
        default_team=team,
        credentials={"bot_token": bot_token, "secret_token": secret},
    )


def test_it_carries_a_telegram_message_to_a_ticket_and_the_reply_back(
    live_server, platform, alice, outages, settings
):
    channel = _telegram("tg-e2e", outages, bot_token="999:E2E", secret="e2e-secret")
    platform.respond(
        "POST",
        r"/telegram/bot999:E2E/sendMessage",
        200,
        {"ok": True, "result": {"message_id": 4242}},
    )

    with celery_worker({"TELEGRAM_API_BASE": f"{platform.url}/telegram"}) as worker:
        # Listen on the same Redis pub/sub layer the worker publishes to.
        settings.CHANNEL_LAYERS = _layer_settings(worker.prefix, settings.REDIS_URL)
        listener = LiveListener([team_group(outages.pk)])

        body = fixture_bytes("telegram", "text_private.json")
        response = httpx.post(
            f"{live_server.url}/hooks/telegram/{channel.key}/",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "e2e-secret",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text

        ticket = wait_for(
            lambda: Ticket.objects.filter(channel=channel).first(),
            what="the worker to create the ticket",
        )
        event = InboundEvent.objects.get(channel=channel)
        wait_for(
            lambda: InboundEvent.objects.get(pk=event.pk).status == "processed",
            what="the event to be marked processed",
        )

        live = listener.get(timeout=10)["event"]
        listener.close()
        assert live["type"] == "ticket" and live["op"] == "create"
        assert live["ticket"]["id"] == ticket.pk and live["version"] == 1

        # The same delivery again: a 200 that does nothing.
        again = httpx.post(
            f"{live_server.url}/hooks/telegram/{channel.key}/",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "e2e-secret",
            },
            timeout=10,
        )
        assert again.status_code == 200
        assert InboundEvent.objects.filter(channel=channel).count() == 1

        reply = actions.do_reply(ticket, alice, "Бригада уже выехала, ориентировочно 40 минут.")
        wait_for(
            lambda: Message.objects.get(pk=reply.pk).delivery_status == "sent",
            what="the worker to send the reply",
        )

    [sent] = platform.sent("sendMessage")
    assert json.loads(sent.body)["chat_id"] == "402871551"
    assert json.loads(sent.body)["text"].startswith("Бригада уже выехала")
    assert Message.objects.get(pk=reply.pk).platform_message_id == "402871551:4242"
    assert "process_pending_events" in worker.log and "send_delivery" in worker.log


def test_it_keeps_the_workers_database_connections_from_task_to_task(
    live_server, outages, settings
):
    """Celery's Django fix-up closes the psycopg pool around every task in a prefork worker;
    helpdesk.celery turns that off (each task hands its connection back to the pool instead).
    Several webhooks, each processed by a kick of its own: no new PostgreSQL backend after the
    first."""
    channel = _telegram("tg-pool", outages, bot_token="999:POOL", secret="pool-secret")
    update = json.loads(fixture_bytes("telegram", "text_private.json"))

    def post(n: int) -> None:
        update["update_id"] = 7_000 + n
        update["message"]["message_id"] = 7_000 + n
        response = httpx.post(
            f"{live_server.url}/hooks/telegram/{channel.key}/",
            content=json.dumps(update),
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "pool-secret",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        wait_for(
            lambda: InboundEvent.objects.filter(channel=channel, status="processed").count() > n,
            what=f"webhook {n} to be processed",
        )

    def backends_started() -> set[tuple[int, object]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, backend_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'pool-test-worker'"
            )
            return set(cursor.fetchall())

    # libpq names the worker's connections from PGAPPNAME: only they are counted.
    worker_env = {"DB_POOL_MAX": "2", "PGAPPNAME": "pool-test-worker"}
    with celery_worker(worker_env, pool="prefork") as worker:
        # The kick the webhook sets and the worker clears is one key in one namespace.
        settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": worker.prefix}}
        post(0)
        before = backends_started()
        for n in range(1, 5):
            post(n)
            time.sleep(0.3)  # past the kick's coalescing: the next webhook sends a new task
        after = backends_started()

    assert Message.objects.filter(ticket__channel=channel).count() == 5
    # Between tasks the connection waits in the pool, open (closed, there would be none).
    assert before, "the worker kept no database connection after its task"
    assert after == before, "the worker opened new database connections per task"
