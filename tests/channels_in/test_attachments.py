"""Attachments fetched by the worker: every platform's way of handing out media, the limits
(size, addresses, schemes), retries and failures shown on the message, and the authorized
download view."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from channels_in import media, tasks
from channels_in.base import FetchError, InboundAttachment
from channels_in.models import Channel, InboundEvent
from channels_in.processing import build_outbound, process_event, replay_event
from channels_in.x.oauth import parse_authorization_header, signature
from tests.channels_in.conftest import fixture_bytes
from tests.conftest import PASSWORD, inbound
from tests.e2e.conftest import browser, page, shoot  # noqa: F401  (Playwright fixtures)
from tests.fakeplatform import FakePlatform
from tests.worker import LiveListener, celery_worker, wait_for
from tickets import actions
from tickets.events import ticket_group
from tickets.file_links import public_url
from tickets.models import Attachment, Delivery, Message, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"0" * 500
TG_SECRET = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Any) -> Any:
    """Files go to a temporary directory, never the working tree's var/media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def media_message(
    channel: Channel,
    source_url: str,
    *,
    name: str = "photo-1",
    content_type: str = "image/jpeg",
    kind: str = "image",
    sender: str = "",
) -> Attachment:
    """A customer's media message as an adapter produces it: an attachment by reference."""
    phone_kinds = ("whatsapp", "sms", "viber")
    sender = sender or ("37060000001" if channel.kind in phone_kinds else "1001")
    item = replace(
        inbound(channel, "", sender=sender),
        kind=kind,
        attachments=(
            InboundAttachment(name=name, content_type=content_type, source_url=source_url),
        ),
    )
    message = actions.do_receive_inbound(item).message
    assert message is not None
    return message.attachments.get()


def fetch(attachment: Attachment) -> Attachment:
    """Run the worker's task (synchronously) and reload the row."""
    tasks.fetch_attachment(attachment.pk)
    attachment.refresh_from_db()
    return attachment


def stored(attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as handle:
        return handle.read()


# --------------------------------------------------------------------------- each platform


def test_it_fetches_a_telegram_photo_with_getfile_after_the_webhook(telegram, hook, fake_platform):
    fake_platform.respond(
        "GET",
        r"/telegram/bot123:ABC/getFile$",
        body={"ok": True, "result": {"file_id": "x", "file_path": "photos/file_7.jpg"}},
    )
    fake_platform.respond(
        "GET",
        r"/telegram/file/bot123:ABC/photos/file_7\.jpg$",
        body=JPEG,
        headers={"Content-Type": "image/jpeg"},
    )
    response = hook(
        "telegram", "tg-main", fixture_bytes("telegram", "photo_caption.json"), **TG_SECRET
    )
    assert response.status_code == 200

    attachment = Attachment.objects.get()
    assert stored(attachment) == JPEG
    assert attachment.size == len(JPEG)
    # The photo had no name of its own; it borrowed the extension of Telegram's file path.
    assert attachment.name == "photo-AQADlarge.jpg"
    assert attachment.content_type == "image/jpeg"
    [lookup] = fake_platform.sent(r"/getFile$")
    assert lookup.query == {"file_id": ["AgACAgIAAxkBAAIBQ2large"]}
    assert TicketEvent.objects.filter(verb="attachment.stored").count() == 1


def test_it_never_puts_the_bot_token_in_a_telegram_error(telegram, fake_platform):
    fake_platform.respond(
        "GET",
        r"/telegram/bot123:ABC/getFile$",
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"},
    )
    attachment = fetch(media_message(telegram, "telegram-file:BIG"))
    assert "file is too big" in attachment.fetch_error
    assert "123:ABC" not in attachment.fetch_error
    assert actions.attachment_given_up(attachment)


@pytest.fixture
def wa(whatsapp: Channel) -> Channel:
    whatsapp.credentials = {"access_token": "wa-token", "phone_number_id": "106540352242922"}
    whatsapp.save()
    return whatsapp


def test_it_fetches_whatsapp_media_by_id_then_url_with_the_bearer_token(wa, fake_platform):
    download_url = f"{fake_platform.url}/whatsapp/lookaside/attachments/?mid=1479537139650973"
    fake_platform.respond(
        "GET",
        r"/whatsapp/1479537139650973$",
        body={
            "messaging_product": "whatsapp",
            "url": download_url,
            "mime_type": "image/jpeg",
            "sha256": hashlib.sha256(JPEG).hexdigest(),
            "file_size": str(len(JPEG)),
            "id": "1479537139650973",
        },
    )
    fake_platform.respond("GET", r"/whatsapp/lookaside/attachments/$", body=JPEG)

    attachment = fetch(media_message(wa, "whatsapp-media:1479537139650973"))

    assert stored(attachment) == JPEG
    assert attachment.content_type == "image/jpeg"
    lookup, download = fake_platform.sent(r"/whatsapp/")
    assert lookup.path == "/whatsapp/1479537139650973"
    assert lookup.headers["authorization"] == "Bearer wa-token"
    assert download.query == {"mid": ["1479537139650973"]}
    assert download.headers["authorization"] == "Bearer wa-token"


def test_it_retries_a_whatsapp_download_that_does_not_match_its_checksum(wa, fake_platform):
    fake_platform.respond(
        "GET",
        r"/whatsapp/42$",
        body={"url": f"{fake_platform.url}/whatsapp/dl", "sha256": "00" * 32},
    )
    fake_platform.respond("GET", r"/whatsapp/dl$", body=JPEG)
    attachment = fetch(media_message(wa, "whatsapp-media:42"))
    assert not attachment.file
    assert attachment.fetch_attempts == 1
    assert "checksum" in attachment.fetch_error
    assert not actions.attachment_given_up(attachment)


@pytest.fixture
def second_origin(settings: Any) -> Iterator[FakePlatform]:
    """Another host (a CDN, Twilio's media storage): a second fake server, allowed as a
    platform address like the first."""
    cdn = FakePlatform().start()
    settings.HELPDESK_PLATFORM_URLS = {**settings.HELPDESK_PLATFORM_URLS, "cdn": cdn.url}
    yield cdn
    cdn.stop()


def test_it_fetches_twilio_media_with_basic_auth_and_drops_it_on_the_redirect(
    sms, fake_platform, second_origin
):
    sms.credentials = {"account_sid": "AC1", "auth_token": "tw-token", "from_number": "+3706"}
    sms.save()
    media_url = f"{fake_platform.url}/sms/Accounts/AC1/Messages/MM1/Media/ME1"
    fake_platform.respond(
        "GET",
        r"/sms/Accounts/AC1/Messages/MM1/Media/ME1$",
        307,
        "",
        headers={"Location": f"{second_origin.url}/s3/ME1.jpg"},
    )
    second_origin.respond(
        "GET", r"/s3/ME1\.jpg$", body=JPEG, headers={"Content-Type": "image/jpeg"}
    )

    attachment = fetch(media_message(sms, media_url))

    assert stored(attachment) == JPEG
    [twilio] = fake_platform.sent(r"/sms/")
    expected = base64.b64encode(b"AC1:tw-token").decode()
    assert twilio.headers["authorization"] == f"Basic {expected}"
    [storage] = second_origin.sent(r"/s3/")
    assert "authorization" not in storage.headers


def test_it_signs_an_x_direct_message_media_request_with_oauth(fake_platform):
    creds = {
        "consumer_key": "ck",
        "consumer_secret": "cs",
        "access_token": "at",
        "access_token_secret": "ats",
        "brand_handle": "utility",
    }
    x = Channel.objects.create(kind="x", key="x-main", name="X", credentials=creds)
    url = f"{fake_platform.url}/x/1.1/ton/data/dm/1034828552951160836/103482853381/oP5p.jpg"
    fake_platform.respond("GET", r"/x/1\.1/ton/data/dm/", body=JPEG)

    attachment = fetch(media_message(x, url))

    assert stored(attachment) == JPEG
    [request] = fake_platform.sent(r"/x/")
    header = request.headers["authorization"]
    assert header.startswith("OAuth ")
    params = parse_authorization_header(header)
    assert params["oauth_consumer_key"] == "ck"
    assert params["oauth_token"] == "at"
    claimed = params.pop("oauth_signature")
    assert claimed == signature("GET", url, params, consumer_secret="cs", token_secret="ats")


def test_it_fetches_x_media_elsewhere_without_a_signature(fake_platform, second_origin):
    creds = dict.fromkeys(
        ("consumer_key", "consumer_secret", "access_token", "access_token_secret"), "s"
    )
    x = Channel.objects.create(kind="x", key="x-main", name="X", credentials=creds)
    second_origin.respond("GET", r"/video\.mp4$", body=b"\x00\x00\x00\x18ftypmp42")
    attachment = fetch(media_message(x, f"{second_origin.url}/video.mp4", kind="video"))
    assert attachment.file
    [request] = second_origin.sent()
    assert "authorization" not in request.headers


def test_it_fetches_a_plain_cdn_url_with_its_type_and_name(fake_platform):
    messenger = Channel.objects.create(kind="messenger", key="fb", name="Facebook")
    url = f"{fake_platform.url}/messenger/cdn/v/t1.15752-9/467_n.pdf?_nc_cat=1&oe=6787A1C2"
    fake_platform.respond(
        "GET",
        r"/messenger/cdn/",
        body=PDF,
        headers={
            "Content-Type": "application/pdf",
            "Content-Disposition": "attachment; filename*=UTF-8''s%C4%85skaita.pdf",
        },
    )
    attachment = fetch(
        media_message(
            messenger, url, name="467_n", content_type="application/octet-stream", kind="document"
        )
    )
    assert stored(attachment) == PDF
    assert attachment.content_type == "application/pdf"
    assert attachment.name == "467_n.pdf"
    [request] = fake_platform.sent(r"/messenger/")
    assert request.query["oe"] == ["6787A1C2"]
    assert "authorization" not in request.headers


# --------------------------------------------------------------------------- limits


class _Streamer(BaseHTTPRequestHandler):
    """Answers /huge with a Content-Length of a terabyte, /endless with a body and no
    Content-Length that goes on far past any limit."""

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        if self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
            return
        self.protocol_version = "HTTP/1.0"  # the body ends when the connection closes
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            for _ in range(20_000):  # 160 MB at most, if nothing stopped reading
                self.wfile.write(b"y" * 8192)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def streamer(settings: Any) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Streamer)
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.HELPDESK_PLATFORM_URLS = {**settings.HELPDESK_PLATFORM_URLS, "stream": url}
    settings.HELPDESK_MAX_ATTACHMENT_BYTES = 100_000
    yield url
    server.shutdown()
    server.server_close()


def test_it_refuses_a_file_whose_content_length_is_over_the_limit(telegram, streamer):
    attachment = fetch(media_message(telegram, f"{streamer}/huge"))
    assert not attachment.file
    assert actions.attachment_given_up(attachment)
    assert "the limit is 98 KB" in attachment.fetch_error


def test_it_stops_reading_a_body_that_grows_past_the_limit(telegram, streamer):
    attachment = fetch(media_message(telegram, f"{streamer}/endless"))
    assert not attachment.file
    assert actions.attachment_given_up(attachment)
    assert attachment.fetch_error == "the file is over 98 KB; the limit is 98 KB"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.5/internal",
        "http://0.0.0.0:6379/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "ftp://ftp.example.org/file.jpg",
        "//cdn.example.org/photo.jpg",
        "http://user:pass@cdn.example.org/photo.jpg",
    ],
)
def test_it_never_fetches_a_private_address_or_another_scheme(telegram, fake_platform, url):
    attachment = fetch(media_message(telegram, url))
    assert not attachment.file
    assert actions.attachment_given_up(attachment)  # permanent: no retry will change it
    assert attachment.fetch_error.startswith("refusing to fetch")
    assert fake_platform.requests == []


def test_it_refuses_loopback_by_name_or_port_even_where_the_fake_platform_listens(
    telegram, fake_platform
):
    port = fake_platform.server.server_address[1]
    fake_platform.respond("GET", r"/secret$", body=b"internal")
    by_name = fetch(media_message(telegram, f"http://localhost:{port}/secret"))
    other_port = fetch(media_message(telegram, "http://127.0.0.1:6379/", sender="1002"))
    assert "private address" in by_name.fetch_error
    assert "not a public address" in other_port.fetch_error
    assert fake_platform.requests == []


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://localhost/"],
)
def test_it_checks_every_redirect_hop(telegram, fake_platform, location):
    fake_platform.respond(
        "GET", r"/messenger/cdn/redirect$", 302, "", headers={"Location": location}
    )
    attachment = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/redirect"))
    assert not attachment.file
    assert attachment.fetch_error.startswith("refusing to fetch")
    assert len(fake_platform.requests) == 1


def test_it_pins_a_public_name_to_the_address_it_checked(monkeypatch):
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "scontent.xx.fbcdn.net"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("157.240.1.10", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    target = media.resolve_target("https://scontent.xx.fbcdn.net/v/photo_n.jpg?oe=1")
    assert target.url == "https://157.240.1.10/v/photo_n.jpg?oe=1"
    assert target.headers == {"Host": "scontent.xx.fbcdn.net"}
    assert target.extensions == {"sni_hostname": "scontent.xx.fbcdn.net"}


def test_it_refuses_a_name_that_resolves_to_any_private_address(monkeypatch):
    addresses = ["157.240.1.10", "127.0.0.1"]
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ],
    )
    with pytest.raises(FetchError, match="resolves to a private address") as caught:
        media.resolve_target("https://rebind.example.net/photo.jpg")
    assert caught.value.permanent


# --------------------------------------------------------------------------- retries, failures


def test_it_retries_a_transient_error_and_the_sweeper_finishes_the_job(telegram, fake_platform):
    fake_platform.respond("GET", r"/messenger/cdn/p\.jpg$", body=JPEG)
    fake_platform.respond("GET", r"/messenger/cdn/p\.jpg$", 503, {"error": "busy"}, times=1)
    attachment = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg"))
    assert not attachment.file
    assert attachment.fetch_attempts == 1
    assert attachment.fetch_error == "HTTP 503 from 127.0.0.1"
    assert not attachment.message.payload.get("failed_attachments")

    # Not due yet (10 s backoff plus the sweeper's grace), then due.
    assert tasks.due_attachment_ids(timezone.now()) == []
    later = timezone.now() + timedelta(minutes=5)
    assert tasks.due_attachment_ids(later) == [attachment.pk]

    fetch(attachment)
    assert stored(attachment) == JPEG
    assert attachment.fetch_error == ""
    assert tasks.due_attachment_ids(later) == []


def test_it_gives_up_after_the_last_attempt_and_says_so_on_the_message(telegram, fake_platform):
    fake_platform.respond("GET", r"/messenger/cdn/", 502, "bad gateway")
    attachment = media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg")
    for _ in range(actions.ATTACHMENT_FETCH_MAX_ATTEMPTS):
        fetch(attachment)
    assert len(fake_platform.requests) == actions.ATTACHMENT_FETCH_MAX_ATTEMPTS
    assert actions.attachment_given_up(attachment)
    [failed] = attachment.message.payload["failed_attachments"]
    assert failed["reason"] == "HTTP 502 from 127.0.0.1 (gave up after 8 attempts)"
    fetch(attachment)  # given up: nothing more is tried
    assert len(fake_platform.requests) == actions.ATTACHMENT_FETCH_MAX_ATTEMPTS


def test_it_shows_a_permanent_failure_on_the_ticket_page_and_in_the_api(
    telegram, fake_platform, alice, api, client: Client
):
    fake_platform.respond("GET", r"/messenger/cdn/", 404, {"error": "gone"})
    attachment = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg"))
    assert len(fake_platform.requests) == 1  # permanent: not retried
    reason = "the platform no longer has this file (HTTP 404 from 127.0.0.1)"
    assert attachment.fetch_error == reason
    message = attachment.message
    assert message.payload["failed_attachments"] == [
        {"id": attachment.pk, "name": "photo-1", "label": "Photo", "reason": reason}
    ]
    assert TicketEvent.objects.filter(verb="attachment.failed", ticket=message.ticket).exists()

    client.login(username="alice", password=PASSWORD)
    html = client.get(f"/tickets/{message.ticket_id}/").content.decode()
    assert f"Photo could not be downloaded: {reason}" in html

    thread = api(alice).get(f"/api/v1/tickets/{message.ticket_id}/messages/").json()
    [shown] = thread["results"]
    assert shown["payload"]["failed_attachments"][0]["reason"] == reason
    assert shown["attachments"][0]["url"] is None


def test_it_escapes_a_failure_reason_on_the_ticket_page(telegram, alice, client: Client):
    attachment = media_message(telegram, "telegram-file:x")
    actions.do_fail_attachment(attachment.pk, 'cannot resolve <img src=x onerror="alert(1)">')
    client.login(username="alice", password=PASSWORD)
    html = client.get(f"/tickets/{attachment.message.ticket_id}/").content.decode()
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "<img src=x" not in html


def test_it_stores_one_file_when_the_task_runs_twice(telegram, fake_platform, media_root):
    fake_platform.respond("GET", r"/messenger/cdn/p\.jpg$", body=JPEG)
    attachment = media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg")
    fetch(attachment)
    name = attachment.file.name
    assert tasks.fetch_attachment(attachment.pk) == "skipped"
    # Two fetches that raced: the second one's store finds the file and writes nothing.
    actions.do_store_attachment_file(attachment.pk, b"other bytes", "image/png", "x.png")
    attachment.refresh_from_db()
    assert attachment.file.name == name
    assert stored(attachment) == JPEG
    assert len(fake_platform.requests) == 1
    assert TicketEvent.objects.filter(verb="attachment.stored").count() == 1
    assert len([p for p in media_root.rglob("*") if p.is_file()]) == 1


def test_it_does_not_fetch_again_when_an_event_is_replayed(telegram, hook, fake_platform):
    fake_platform.respond(
        "GET", r"/getFile$", body={"ok": True, "result": {"file_path": "photos/file_7.jpg"}}
    )
    fake_platform.respond("GET", r"/file/bot", body=JPEG)
    body = fixture_bytes("telegram", "photo_caption.json")
    hook("telegram", "tg-main", body, **TG_SECRET)
    event = InboundEvent.objects.get()
    replay_event(event)
    assert process_event(event.pk).counts == {"duplicate": 1}
    assert len(fake_platform.requests) == 2  # getFile and the download, once
    assert Attachment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_publishes_the_stored_file_through_a_real_worker(telegram, outages, settings, tmp_path):
    """Webhook -> real Celery worker -> fetch from the platform -> file stored -> a live
    "message update" on channels_redis for the open ticket page."""
    from django.db import connection

    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("needs the PostgreSQL test database and Redis")
    fake = FakePlatform().start()
    fake.respond(
        "GET", r"/getFile$", body={"ok": True, "result": {"file_path": "photos/file_9.jpg"}}
    )
    fake.respond("GET", r"/file/bot123:ABC/photos/file_9\.jpg$", body=JPEG)
    media_dir = tmp_path / "worker-media"
    env = {"TELEGRAM_API_BASE": f"{fake.url}/telegram", "MEDIA_ROOT": str(media_dir)}
    settings.MEDIA_ROOT = str(media_dir)
    try:
        with celery_worker(env) as worker:
            settings.CHANNEL_LAYERS = {
                "default": {
                    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                    "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": worker.prefix},
                }
            }
            # The worker's cache prefix, so its "kick" handshake with our webhooks (a key
            # the worker clears before it claims) is one key: a second webhook soon after the
            # first must wake the worker again.
            settings.CACHES = {
                "default": {**settings.CACHES["default"], "KEY_PREFIX": worker.prefix}
            }
            # The customer's first message opens the ticket; the page watching it (its group:
            # message events go only there) is subscribed before the photo arrives, whose
            # file may be stored within milliseconds.
            first = Client().post(
                "/hooks/telegram/tg-main/",
                fixture_bytes("telegram", "text_private.json"),
                content_type="application/json",
                headers=TG_SECRET,
            )
            assert first.status_code == 200
            ticket = wait_for(
                lambda: Ticket.objects.filter(team=outages).first(),
                timeout=30,
                what="the ticket\n" + worker.log,
            )
            listener = LiveListener([ticket_group(ticket.pk)])
            try:
                body = fixture_bytes("telegram", "photo_caption.json")
                response = Client().post(
                    "/hooks/telegram/tg-main/",
                    body,
                    content_type="application/json",
                    headers=TG_SECRET,
                )
                assert response.status_code == 200
                attachment = wait_for(
                    lambda: Attachment.objects.exclude(file="").first(),
                    timeout=30,
                    what="the stored file\n" + worker.log,
                )
                update = None
                while update is None:
                    event = listener.get(timeout=15)["event"]
                    if event["type"] == "message" and event["op"] == "update":
                        update = event
            finally:
                listener.close()
    finally:
        fake.stop()
    assert update["message"]["id"] == attachment.message_id
    assert update["ticket"] == Message.objects.get(pk=attachment.message_id).ticket_id == ticket.pk
    assert stored(attachment) == JPEG


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def photo(telegram, fake_platform) -> Attachment:
    fake_platform.respond(
        "GET", r"/messenger/cdn/p\.jpg$", body=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    return fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg"))


def _get(who: Any, url: str) -> Any:
    client = Client()
    if who is not None:
        client.force_login(who.user if hasattr(who, "user") else who)
    return client.get(url)


def test_it_serves_an_attachment_to_staff_who_may_see_its_ticket(photo, alice, carol):
    for who in (alice, carol):
        response = _get(who, f"/attachments/{photo.pk}/")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == JPEG
        assert response["Content-Type"] == "image/jpeg"
        assert response["Content-Disposition"].startswith("inline")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]


def test_it_hides_an_attachment_from_other_teams_and_non_agents(photo, bob, mallory):
    assert _get(bob, f"/attachments/{photo.pk}/").status_code == 404
    assert _get(mallory, f"/attachments/{photo.pk}/").status_code == 403
    anonymous = _get(None, f"/attachments/{photo.pk}/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")


def test_it_downloads_anything_but_a_raster_image(telegram, fake_platform, alice):
    fake_platform.respond(
        "GET",
        r"/messenger/cdn/x\.svg$",
        body=b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        headers={"Content-Type": "image/svg+xml"},
    )
    svg = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/x.svg", name="x.svg"))
    response = _get(alice, f"/attachments/{svg.pk}/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_answers_404_for_an_attachment_not_downloaded_yet(telegram, alice):
    pending = media_message(telegram, "telegram-file:later")
    assert _get(alice, f"/attachments/{pending.pk}/").status_code == 404
    assert _get(alice, "/attachments/999999/").status_code == 404


def test_it_links_the_page_and_the_api_to_the_download_view(photo, alice, api, client: Client):
    ticket_id = photo.message.ticket_id
    client.force_login(alice.user)
    html = client.get(f"/tickets/{ticket_id}/").content.decode()
    assert f'href="/attachments/{photo.pk}/"' in html
    assert "/media/" not in html
    thread = api(alice).get(f"/api/v1/tickets/{ticket_id}/messages/").json()
    assert thread["results"][0]["attachments"][0]["url"] == (
        f"http://testserver/attachments/{photo.pk}/"
    )


def test_it_gives_stored_files_unguessable_names(photo):
    stem = photo.file.name.rsplit("/", 1)[-1]
    assert stem.endswith(".jpg")
    assert "photo" not in stem
    assert len(stem) >= 24


def _upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("meter.jpg", JPEG, content_type="image/jpeg")


def _path(url: str) -> str:
    assert url.startswith("http://") or url.startswith("https://")
    return "/" + url.split("/", 3)[3]


def test_it_opens_a_file_we_send_by_its_signed_link_without_signing_in(photo):
    url = public_url(photo)
    assert str(photo.pk) not in url.split("/files/", 1)[1].split("/")[1:]  # the token decides

    response = _get(None, _path(url))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JPEG
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Cache-Control"].startswith("private")


def test_it_refuses_a_tampered_or_foreign_link(photo, telegram, fake_platform):
    path = _path(public_url(photo))
    token = path.split("/")[2]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert _get(None, path.replace(token, tampered)).status_code == 404
    # A value signed for anything else (another salt) never opens a file.
    assert _get(None, f"/files/{signing.dumps(photo.pk)}/p.jpg").status_code == 404
    assert _get(None, f"/files/{signing.dumps(photo.pk, salt='widget')}/p.jpg").status_code == 404
    # The name in the path is decoration: the token of another file cannot be renamed into it.
    other = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/p.jpg"))
    other_path = _path(public_url(other))
    response = _get(None, other_path.rsplit("/", 1)[0] + "/anything.jpg")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JPEG


def test_it_answers_410_for_an_expired_link(photo, settings, monkeypatch):
    settings.HELPDESK_ATTACHMENT_LINK_DAYS = 30
    path = _path(public_url(photo))
    later = time.time() + 31 * 86400
    monkeypatch.setattr(signing.time, "time", lambda: later)

    response = _get(None, path)

    assert response.status_code == 410
    assert "expired" in response.content.decode()


def test_it_serves_no_file_by_its_storage_path(photo, alice):
    assert _get(alice, f"/media/{photo.file.name}").status_code == 404
    assert _get(None, f"/media/{photo.file.name}").status_code == 404


def test_it_sends_signed_links_to_the_platforms(photo, telegram, alice):
    ticket = photo.message.ticket
    message = actions.do_reply(ticket, alice, "Here is the photo", attachments=[_upload()])
    delivery = Delivery.objects.get(message=message)

    (sent,) = build_outbound(delivery).attachments

    assert "/files/" in sent.url and "/media/" not in sent.url
    assert _get(None, _path(sent.url)).status_code == 200


# --------------------------------------------------------------------------- in a browser


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_shows_fetched_and_failed_media_on_the_ticket_page(
    live_server,
    telegram,
    alice,
    fake_platform,
    page,  # noqa: F811
    shoot,  # noqa: F811
):
    fake_platform.respond(
        "GET", r"/messenger/cdn/wire\.jpg$", body=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    fake_platform.respond("GET", r"/messenger/cdn/meter\.jpg$", 404, {"error": "expired"})
    photo = fetch(media_message(telegram, f"{fake_platform.url}/messenger/cdn/wire.jpg"))
    failed = media_message(telegram, f"{fake_platform.url}/messenger/cdn/meter.jpg")
    fetch(failed)

    page.goto(f"{live_server.url}/login/?next=/tickets/{photo.message.ticket_id}/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    link = page.wait_for_selector(f"a[href='/attachments/{photo.pk}/']")
    assert link.inner_text() == "photo-1.jpg"
    assert "Photo could not be downloaded: the platform no longer has this file" in (
        page.inner_text(".thread")
    )
    shoot(page, "ticket-attachments")
    response = page.goto(f"{live_server.url}/attachments/{photo.pk}/")
    assert response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
