"""The web chat widget as a channel: a script tag on the utility's site talks to
`/ws/widget/<channel_key>/` (channels_in/widget/consumers.py).

Inbound: the consumer stores each accepted visitor message as an InboundEvent whose body is
the JSON built by `event_body` below, dedupes on "<visitor>:<client_id>" (a resend after a
reconnect is a no-op), and enqueues it; the worker calls `parse` like for any platform.
Outbound: `send` pushes the agent's or bot's message to the visitor's channel-layer group
(every tab they have open). The message is a stored `Message` already, so a visitor who is
offline gets it from the history when they come back.

There is no HTTP webhook for this kind: `/hooks/widget/<key>/` answers 404 `no_webhook`
(from `handshake`, before anything is read as an event; `verify` refuses too, should a
future view skip the handshake).

Channel credentials: `allowed_origins`, a list of "scheme://host[:port]" the widget may be
embedded on ("*" allows any site, only if listed explicitly).
Channel settings, all optional, under `settings["widget"]`:
    title, subtitle, greeting, bot_name
                        text, or {"en": ..., "lt": ...} per language (the header, the line
                        under it, the first bubble, the name above bot messages)
    color               "#RRGGBB", the launcher and header colour
    prechat             {"name"|"email"|"phone": "required"|"optional"}: the pre-chat form
    history_size        messages sent on (re)connect, default 50
    token_max_age_days  how long a browser stays the same visitor, default 30
    rate                {"messages", "messages_per_ip", "window", "connections_per_ip"}
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse

from tickets.models import AuthorKind, Message

from ..base import (
    Adapter,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SendError,
    SignatureError,
)
from ..models import Channel
from ..registry import register
from .conversation import author_name, group_name, platform_message_id, thread_key
from .tokens import VISITOR_ID, Visitor

# What a visitor may type in one message (the widget renders agents' replies at any length).
MAX_TEXT = 4000
# Client message ids: the browser makes them (crypto.randomUUID); anything short and plain.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PAGE_URL = 500

NO_WEBHOOK = (
    "the web chat widget has no HTTP webhook; "
    "the widget script connects by WebSocket to /ws/widget/<channel_key>/"
)


def event_body(
    visitor: Visitor,
    client_id: str,
    *,
    text: str = "",
    button: dict[str, str] | None = None,
    page: str = "",
    lang: str = "",
    at: datetime | None = None,
) -> bytes:
    """The stored body of one visitor message: exactly what `parse` reads back."""
    data: dict[str, Any] = {"visitor": visitor.id, "client_id": client_id, "text": text}
    if button is not None:
        data["button"] = button
    optional = {
        "name": visitor.name,
        "email": visitor.email,
        "phone": visitor.phone,
        "page": page,
        "lang": lang,
    }
    data.update({key: value for key, value in optional.items() if value})
    if at is not None:
        data["at"] = at.isoformat()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("a widget event must be a JSON object")
    if not isinstance(data.get("visitor"), str) or not VISITOR_ID.match(data["visitor"]):
        raise PayloadError("a widget event needs a visitor id (32 hex digits)")
    if not isinstance(data.get("client_id"), str) or not CLIENT_ID.match(data["client_id"]):
        raise PayloadError("a widget event needs a client_id")
    return data


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@register
class WidgetAdapter(Adapter):
    kind = "widget"
    credential_names = ("allowed_origins",)
    # No platform limit on what we show; the core's own cap applies to replies.
    max_text = 20000

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        # Every request to /hooks/widget/<key>/ ends here: nothing is stored or counted as a
        # rejected signature, the caller learns where the widget really connects.
        return JsonResponse({"error": {"code": "no_webhook", "message": NO_WEBHOOK}}, status=404)

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        raise SignatureError(NO_WEBHOOK, status=404)

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        data = _load(body)
        return platform_message_id(data["visitor"], data["client_id"])

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        visitor = data["visitor"]
        text = _text(data, "text", MAX_TEXT)
        kind, payload = "text", {}
        page = _text(data, "page", MAX_PAGE_URL)
        if page:
            payload["page"] = page
        button = data.get("button")
        if button is not None:
            if not isinstance(button, dict) or not isinstance(button.get("id"), str):
                raise PayloadError("a button press needs the button's id")
            kind = "postback"
            payload["button"] = button["id"]
            # Agents read the label the visitor pressed; bots match on the id.
            text = _text(button, "label", 200) or button["id"]
        elif not text.strip():
            raise PayloadError("a widget message needs text or a button")
        return [
            InboundMessage(
                channel_id=channel.pk,
                platform_message_id=platform_message_id(visitor, data["client_id"]),
                sender=Sender(
                    kind="widget",
                    value=visitor,
                    display_name=_text(data, "name", 200),
                    # Typed into the pre-chat form, proven by nothing: agents see them as
                    # claims (and may merge by hand); they never merge contacts by themselves.
                    claimed_email=_text(data, "email", 254),
                    claimed_phone=_text(data, "phone", 32),
                    language=_text(data, "lang", 2),
                ),
                text=text,
                kind=kind,
                payload=payload,
                sent_at=_when(data.get("at")),
                # One conversation per visitor, whatever contact they turn out to be.
                thread_key=thread_key(visitor),
            )
        ]

    def send(self, channel: Channel, out: Outbound) -> str:
        visitor = out.recipient
        if not VISITOR_ID.match(visitor):
            raise SendError(f"{visitor!r} is not a widget visitor", permanent=True)
        layer = get_channel_layer()
        if layer is None:
            raise SendError("no channel layer is configured (CHANNEL_LAYERS)", permanent=True)
        stored = (
            Message.objects.filter(pk=out.message_id)
            .values("author_kind", "author__user__first_name", "created_at")
            .first()
            if out.message_id
            else None
        )
        author_kind = stored["author_kind"] if stored else AuthorKind.AGENT
        frame = {
            "type": "message",
            "id": out.message_id or None,
            "author": "bot" if author_kind == AuthorKind.BOT else "agent",
            "name": author_name(
                channel, author_kind, (stored or {}).get("author__user__first_name") or ""
            ),
            "text": out.text,
            "buttons": [{"id": b.id[:64], "label": (b.label or b.id)[:80]} for b in out.buttons],
            "attachments": [
                {"name": a.name, "url": a.url}
                for a in out.attachments
                if a.url.startswith(("http://", "https://"))
            ],
            "at": stored["created_at"].isoformat() if stored else None,
        }
        try:
            async_to_sync(layer.group_send)(
                group_name(channel.pk, visitor), {"type": "widget.message", "message": frame}
            )
        except Exception as exc:
            # Redis blinked: the delivery is retried with backoff (and the message is in the
            # visitor's history meanwhile).
            raise SendError(f"channel layer: {type(exc).__name__}: {exc}", permanent=False) from exc
        # Ours, deterministic: a retried send gets the same id (the widget dedupes on "id").
        return f"out:{out.message_id}" if out.message_id else f"out:{uuid.uuid4().hex}"
