"""`/ws/widget/<channel_key>/` — the web chat widget's socket. Public: anyone on an allowed
site may open it, so it checks the Origin, names the visitor only by a server-signed token,
and rate-limits.

Protocol (JSON text frames). Client → server:
    {"type": "hello", "token": "<token or null>", "lang": "lt", "page": "https://..."}
    {"type": "message", "client_id": "<id>", "text": "..."}
    {"type": "button", "client_id": "<id>", "id": "<button id>"}
    {"type": "prechat", "name": "...", "email": "...", "phone": "..."}
    {"type": "ping"}
Server → client:
    {"type": "hello", "token", "visitor", "history": [message...], "prechat": {"fields", "done"},
     "config": {"title", "subtitle", "greeting", "color", "bot_name"}, "limits": {"max_text"}}
    {"type": "ack", "client_id", "duplicate"}   only after the event row is committed
    {"type": "message", "id", "author": "agent"|"bot"|"customer", "name", "text", "buttons",
     "attachments", "at", "client_id" (customer)}
    {"type": "prechat", "token", "done": true}
    {"type": "error", "code", "message", "client_id"?, "field"?, "retry_after"?}
    {"type": "pong"}
Close codes: 4403 origin not allowed, 4404 no such widget, 4429 rate limited. The script stops
reconnecting on 4403/4404 and waits long on 4429.

The token may also come as `?token=` (then the hello is answered at once), but the first
frame is preferred: query strings end up in proxies' access logs.

Every accepted message goes the way of any platform event: stored as an InboundEvent (deduped
on "<visitor>:<client_id>", so a resend after a reconnect is a no-op that is acked again),
enqueued, parsed by WidgetAdapter.parse on the worker. The consumer itself never writes a
ticket and never decides who sees what beyond "this socket is this visitor".
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tickets.errors import InvalidInput
from tickets.identities import normalize_email, normalize_phone

from ..models import Channel
from ..webhooks import enqueue, store_event
from . import ratelimit, tokens
from .adapter import CLIENT_ID, MAX_PAGE_URL, MAX_TEXT, event_body
from .conversation import group_name, history, offered_button, platform_message_id
from .tokens import Visitor, widget_settings

log = logging.getLogger(__name__)

CLOSE_ORIGIN = 4403
CLOSE_UNKNOWN_CHANNEL = 4404
CLOSE_RATE_LIMITED = 4429

# A 4,000-character message of emoji is ~48 KB once JSON escapes it (\ud83d\ude00 each).
MAX_FRAME_CHARS = 64 * 1024
MAX_NAME = 200
# Rate-limited frames in a row before the socket is closed as abusive.
STRIKES_BEFORE_CLOSE = 5
# Per connection, any frame: a burst of 20, then 2 a second.
FRAME_BURST, FRAME_RATE = 20, 2.0
DEFAULT_RATES = {
    "messages": 8,  # per visitor per window
    # Per IP per window: generous, because a mobile carrier puts thousands of customers
    # behind one address, and a storm is exactly when they all write at once.
    "messages_per_ip": 60,
    "window": 10,  # seconds
    "connections_per_ip": 60,  # per minute
}
PRECHAT_FIELDS = ("name", "email", "phone")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_origin(value: str) -> str | None:
    """ "scheme://host[:port]" in lower case without a default port, or None if not an origin."""
    try:
        parts = urlsplit(value.strip().rstrip("/"))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.path or parts.query:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(origin: str, allowed: Any) -> bool:
    """Exact scheme, host and port match against the channel's `allowed_origins`; "*" lets
    any site embed the widget, and only when an admin listed it explicitly."""
    if isinstance(allowed, str):
        allowed = [allowed]
    if not isinstance(allowed, list | tuple):
        return False
    entries = [entry.strip() for entry in allowed if isinstance(entry, str)]
    if "*" in entries:
        return True
    normalized = normalize_origin(origin) if origin else None
    if normalized is None:
        return False
    return any(normalize_origin(entry) == normalized for entry in entries)


def prechat_fields(channel: Channel) -> dict[str, str]:
    """{"name": "required", "email": "optional", ...}: the pre-chat form this channel asks."""
    raw = widget_settings(channel).get("prechat")
    if not isinstance(raw, dict):
        return {}
    return {
        name: str(raw[name])
        for name in PRECHAT_FIELDS
        if str(raw.get(name, "")) in ("required", "optional")
    }


def public_config(channel: Channel, lang: str) -> dict[str, str]:
    """What the script shows (title, subtitle, greeting, colour, bot name) in the visitor's
    language: only these, never credentials."""
    conf = widget_settings(channel)

    def localized(value: Any) -> str:
        if isinstance(value, dict):
            value = value.get(lang) or value.get("en") or next(iter(value.values()), "")
        return str(value or "")[:500]

    color = str(conf.get("color") or "")
    return {
        "title": localized(conf.get("title")) or channel.name,
        "subtitle": localized(conf.get("subtitle"))[:120],
        "greeting": localized(conf.get("greeting")),
        "color": color if _COLOR.match(color) else "",
        "bot_name": localized(conf.get("bot_name"))[:60],
    }


def rates(channel: Channel) -> dict[str, int]:
    merged = dict(DEFAULT_RATES)
    custom = widget_settings(channel).get("rate")
    if isinstance(custom, dict):
        for key in merged:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                merged[key] = max(1, int(custom[key]))
    return merged


@dataclass(frozen=True)
class Stored:
    event_id: int | None  # None: a duplicate, already stored
    error: str = ""
    label: str = ""  # the pressed button's label, as we offered it


def _active_channel(key: str) -> Channel | None:
    return Channel.objects.filter(kind="widget", key=key, is_active=True).first()


def _store_message(
    channel: Channel,
    visitor: Visitor,
    client_id: str,
    *,
    text: str = "",
    button_id: str | None = None,
    page: str = "",
    lang: str = "",
    origin: str = "",
) -> Stored:
    button = None
    if button_id is not None:
        label = offered_button(channel, visitor.id, button_id)
        if label is None:
            return Stored(None, error="unknown_button")
        button = {"id": button_id, "label": label}
    body = event_body(
        visitor, client_id, text=text, button=button, page=page, lang=lang, at=timezone.now()
    )
    meta = {"content_type": "application/json", "origin": origin}
    with transaction.atomic():
        event_id = store_event(channel, platform_message_id(visitor.id, client_id), body, meta)
    return Stored(event_id, label=button["label"] if button else "")


def _enqueue(event_id: int) -> None:
    # Looked up at call time so tests can stand in for the worker.
    enqueue(event_id)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _client_ip(scope: dict[str, Any]) -> str:
    # The ASGI server fills this in; behind a proxy run it with --proxy-headers and
    # --forwarded-allow-ips so it is the visitor's address, not the proxy's.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _lang(value: Any) -> str:
    code = str(value or "")[:2].lower()
    return code if code in settings.HELPDESK_LANGUAGES else ""


def _page(value: Any) -> str:
    text = str(value or "")
    return text[:MAX_PAGE_URL] if text.startswith(("https://", "http://")) else ""


class WidgetConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.widget: Channel | None = None
        self.visitor: Visitor | None = None
        self.group = ""
        self.closed = False
        self.strikes = 0
        self.frames = ratelimit.TokenBucket(capacity=FRAME_BURST, rate=FRAME_RATE)
        self.lang = ""
        self.page = ""
        self.origin = _header(self.scope, b"origin")
        self.ip = _client_ip(self.scope)

        key = str(self.scope["url_route"]["kwargs"].get("channel_key", ""))
        channel = await database_sync_to_async(_active_channel)(key)
        if channel is None:
            await self._refuse(CLOSE_UNKNOWN_CHANNEL, "no such chat")
            return
        if not origin_allowed(self.origin, channel.credentials.get("allowed_origins")):
            log.info("widget %s refused origin %r", channel.key, self.origin[:200])
            await self._refuse(CLOSE_ORIGIN, "origin not allowed")
            return
        self.rates = rates(channel)
        wait = await ratelimit.hit(
            f"conn:{channel.pk}:{self.ip}", self.rates["connections_per_ip"], 60
        )
        if wait:
            await self._refuse(CLOSE_RATE_LIMITED, "too many connections")
            return
        self.widget = channel
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            await self._hello({"token": query["token"][0]})

    async def _refuse(self, code: int, reason: str) -> None:
        # Accept, then close with a code: a socket closed before it is accepted reaches the
        # browser as a bare 1006, and the script could not tell "never" from "try again".
        self.closed = True
        await self.accept()
        await self.close(code=code, reason=reason)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # ------------------------------------------------------------------ client frames

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.closed or self.widget is None:
            return
        if not self.frames.take():
            await self.error("rate_limited", "too many frames; slow down")
            await self._close(CLOSE_RATE_LIMITED)
            return
        if text_data is None:
            await self.error("not_text", "frames are JSON text")
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self.error("too_large", f"a frame may be at most {MAX_FRAME_CHARS} characters")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.error("not_json", "a frame must be a JSON object")
            return
        if not isinstance(content, dict):
            await self.error("bad_frame", "a frame must be a JSON object")
            return
        kind = content.get("type")
        handlers = {
            "hello": self._hello,
            "message": self._message,
            "button": self._button,
            "prechat": self._prechat,
            "ping": self._ping,
        }
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.error("unknown_type", f"unknown frame type {str(kind)[:40]!r}")
            return
        if self.visitor is None and kind not in ("hello", "ping"):
            await self.error("hello_first", "send a hello frame first")
            return
        await handler(content)

    async def _hello(self, content: dict[str, Any]) -> None:
        channel = self.widget
        assert channel is not None  # noqa: S101  (connect() accepted only with a channel)
        if self.visitor is not None:
            await self.error("already_greeted", "this socket has said hello already")
            return
        visitor = tokens.read(channel, content.get("token"))
        returning = visitor is not None
        if visitor is None:
            # No token, or one we did not sign, or expired: a new visitor, never a guess.
            visitor = tokens.new_visitor()
        self.lang = _lang(content.get("lang"))
        self.page = _page(content.get("page"))
        self.visitor = visitor
        self.group = group_name(channel.pk, visitor.id)
        # Join before reading the history: a reply sent in between then arrives twice (the
        # script drops the repeat by id) instead of not at all.
        await self.channel_layer.group_add(self.group, self.channel_name)
        past = await database_sync_to_async(history)(channel, visitor.id) if returning else []
        await self.send_json(
            {
                "type": "hello",
                "token": tokens.issue(channel, visitor),
                "visitor": visitor.id,
                "history": past,
                "prechat": self._prechat_state(),
                "config": public_config(channel, self.lang),
                "limits": {"max_text": MAX_TEXT},
            }
        )

    async def _message(self, content: dict[str, Any]) -> None:
        client_id = await self._client_id(content)
        if client_id is None:
            return
        text = content.get("text")
        if not isinstance(text, str) or not text.replace("\x00", "").strip():
            await self.error("empty_text", "the message is empty", client_id=client_id)
            return
        text = text.replace("\x00", "").strip()
        if len(text) > MAX_TEXT:
            await self.error(
                "too_long",
                f"the message is {len(text)} characters; the limit is {MAX_TEXT}",
                client_id=client_id,
            )
            return
        await self._accept(client_id, text=text, page=_page(content.get("page")) or self.page)

    async def _button(self, content: dict[str, Any]) -> None:
        client_id = await self._client_id(content)
        if client_id is None:
            return
        button_id = content.get("id")
        if not isinstance(button_id, str) or not button_id or len(button_id) > 64:
            await self.error(
                "bad_button", "a button frame needs the button's id", client_id=client_id
            )
            return
        await self._accept(client_id, button_id=button_id, page=self.page)

    async def _client_id(self, content: dict[str, Any]) -> str | None:
        client_id = content.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            await self.error("bad_client_id", "client_id must be 1-64 letters, digits, '-' or '_'")
            return None
        return client_id

    async def _accept(
        self, client_id: str, *, text: str = "", button_id: str | None = None, page: str = ""
    ) -> None:
        channel, visitor = self.widget, self.visitor
        assert channel is not None and visitor is not None  # noqa: S101  (checked in receive)
        missing = self._missing_prechat()
        if missing:
            await self.error(
                "prechat_required",
                f"please fill in the form first ({missing})",
                client_id=client_id,
                field=missing,
            )
            return
        if await self._rate_limited(client_id):
            return
        try:
            stored = await database_sync_to_async(_store_message)(
                channel,
                visitor,
                client_id,
                text=text,
                button_id=button_id,
                page=page,
                lang=self.lang,
                origin=self.origin,
            )
        except Exception:
            log.exception("widget %s: could not store a visitor message", channel.key)
            await self.error(
                "unavailable",
                "the message could not be saved; it will be sent again",
                client_id=client_id,
            )
            return
        if stored.error == "unknown_button":
            await self.error(
                "unknown_button", "that button is no longer available", client_id=client_id
            )
            return
        # The event row is committed: from here on the message cannot be lost.
        await self.send_json(
            {"type": "ack", "client_id": client_id, "duplicate": stored.event_id is None}
        )
        if stored.event_id is None:
            return
        # The visitor's other tabs show what they wrote here.
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "widget.message",
                "skip": self.channel_name,
                "message": {
                    "type": "message",
                    "id": None,
                    "author": "customer",
                    "name": "",
                    "text": text if button_id is None else stored.label,
                    "buttons": [],
                    "at": timezone.now().isoformat(),
                    "client_id": client_id,
                },
            },
        )
        await database_sync_to_async(_enqueue)(stored.event_id)

    async def _rate_limited(self, client_id: str) -> bool:
        channel, visitor = self.widget, self.visitor
        assert channel is not None and visitor is not None  # noqa: S101
        window = self.rates["window"]
        waits = [
            await ratelimit.hit(f"msg:{channel.pk}:{visitor.id}", self.rates["messages"], window),
            await ratelimit.hit(
                f"msgip:{channel.pk}:{self.ip}", self.rates["messages_per_ip"], window
            ),
        ]
        wait = max(w or 0 for w in waits)
        if not wait:
            self.strikes = 0
            return False
        self.strikes += 1
        await self.error(
            "rate_limited",
            f"too many messages; try again in {wait} s",
            client_id=client_id,
            retry_after=wait,
        )
        if self.strikes >= STRIKES_BEFORE_CLOSE:
            await self._close(CLOSE_RATE_LIMITED)
        return True

    async def _prechat(self, content: dict[str, Any]) -> None:
        channel, visitor = self.widget, self.visitor
        assert channel is not None and visitor is not None  # noqa: S101
        fields = prechat_fields(channel)
        if not fields:
            await self.error("prechat_off", "this chat has no pre-chat form")
            return
        values = {"name": visitor.name, "email": visitor.email, "phone": visitor.phone}
        for name, mode in fields.items():
            raw = content.get(name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if mode == "required":
                    await self.error("prechat_required", f"{name} is required", field=name)
                    return
                values[name] = ""
                continue
            if not isinstance(raw, str):
                await self.error(f"invalid_{name}", f"{name} must be text", field=name)
                return
            try:
                values[name] = _clean_prechat(name, raw)
            except InvalidInput as exc:
                await self.error(f"invalid_{name}", exc.message, field=name)
                return
        self.visitor = visitor.with_prechat(**values)
        await self.send_json(
            {"type": "prechat", "token": tokens.issue(channel, self.visitor), "done": True}
        )

    async def _ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    # ------------------------------------------------------------------ helpers

    def _prechat_state(self) -> dict[str, Any]:
        """The form to show: "done" once every required field is given and the visitor has
        filled it in at least once (a form of optional fields only may be skipped)."""
        assert self.widget is not None and self.visitor is not None  # noqa: S101
        fields = prechat_fields(self.widget)
        done = not fields or (not self._missing_prechat() and self.visitor.has_prechat)
        return {"fields": fields, "done": done}

    def _missing_prechat(self) -> str:
        """The first required pre-chat field this visitor has not given, or ""."""
        assert self.widget is not None and self.visitor is not None  # noqa: S101
        given = {
            "name": self.visitor.name,
            "email": self.visitor.email,
            "phone": self.visitor.phone,
        }
        for name, mode in prechat_fields(self.widget).items():
            if mode == "required" and not given[name]:
                return name
        return ""

    async def error(self, code: str, message: str, **extra: Any) -> None:
        if self.closed:
            return
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    async def _close(self, code: int) -> None:
        self.closed = True
        await self.close(code=code)

    # ------------------------------------------------------------------ channel layer

    async def widget_message(self, event: dict[str, Any]) -> None:
        """A message for this visitor (WidgetAdapter.send, or their own from another tab)."""
        if not self.closed and event.get("skip") != self.channel_name:
            await self.send_json(event["message"])


def _clean_prechat(name: str, raw: str) -> str:
    if name == "email":
        return normalize_email(raw)
    if name == "phone":
        return normalize_phone(raw)
    value = " ".join(raw.split())
    if len(value) > MAX_NAME or _CONTROL.search(value):
        raise InvalidInput(f"a name may be at most {MAX_NAME} plain characters", field="name")
    return value
