"""Telegram Bot API: webhooks carry one JSON `Update`; we send with `sendMessage`.

Verification: `setWebhook(secret_token=...)` makes Telegram send the header
`X-Telegram-Bot-Api-Secret-Token` with that value on every delivery
(https://core.telegram.org/bots/api#setwebhook). Dedupe on `update_id`.
Message ids are unique per chat only, so ours are "<chat_id>:<message_id>".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from django.http import HttpRequest

from ..base import (
    Adapter,
    Edit,
    FetchError,
    Ignored,
    InboundAttachment,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SendError,
    SignatureError,
    constant_time_equal,
)
from ..http import base_url, classify, client
from ..media import download, raise_for_api, request_failed
from ..models import Channel
from ..registry import register

SECRET_HEADER = "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"  # noqa: S105  (a header name)
# Inline keyboards: callback_data is 1-64 bytes; keep rows short for phones.
MAX_CALLBACK_BYTES = 64
BUTTONS_PER_ROW = 2

_MEDIA_KINDS = (
    ("photo", "image"),
    ("document", "document"),
    ("voice", "audio"),
    ("audio", "audio"),
    ("video", "video"),
    ("video_note", "video"),
    ("animation", "video"),
    ("sticker", "sticker"),
)


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("an Update must be a JSON object")
    if not isinstance(data.get("update_id"), int):
        raise PayloadError("an Update needs an integer update_id")
    return data


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int) else None


def _name(user: dict[str, Any]) -> str:
    parts = [str(user.get("first_name") or ""), str(user.get("last_name") or "")]
    name = " ".join(p for p in parts if p).strip()
    return name or (f"@{user['username']}" if user.get("username") else "")


@register
class TelegramAdapter(Adapter):
    kind = "telegram"
    credential_names = ("bot_token", "secret_token")
    max_text = 4096

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        expected = str(channel.credentials.get("secret_token") or "")
        given = request.META.get(SECRET_HEADER)
        if not given:
            raise SignatureError("missing X-Telegram-Bot-Api-Secret-Token", status=401)
        if not expected or not constant_time_equal(given, expected):
            raise SignatureError("X-Telegram-Bot-Api-Secret-Token does not match")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        return {"X-Telegram-Bot-Api-Secret-Token": str(channel.credentials.get("secret_token", ""))}

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        return f"update:{_load(body)['update_id']}"

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        update = _load(body)
        if isinstance(update.get("message"), dict):
            return [self._message(channel, update["message"])]
        if isinstance(update.get("edited_message"), dict):
            edited = update["edited_message"]
            chat = edited.get("chat") or {}
            return [
                Edit(
                    channel_id=channel.pk,
                    platform_message_id=f"{chat.get('id')}:{edited.get('message_id')}",
                    text=str(edited.get("text") or edited.get("caption") or ""),
                    at=_when(edited.get("edit_date")),
                )
            ]
        if isinstance(update.get("callback_query"), dict):
            return [self._callback(channel, update["callback_query"])]
        kinds = sorted(k for k in update if k != "update_id")
        return [Ignored(reason=f"update type {kinds[0] if kinds else 'empty'}")]

    def _message(self, channel: Channel, message: dict[str, Any]) -> Parsed:
        chat = message.get("chat")
        user = message.get("from")
        if not isinstance(chat, dict) or "id" not in chat or "message_id" not in message:
            raise PayloadError("a message needs chat.id and message_id")
        if chat.get("type") in ("group", "supergroup", "channel") and not channel.settings.get(
            "groups"
        ):
            return Ignored(reason="group message")
        if not isinstance(user, dict) or user.get("is_bot"):
            return Ignored(reason="message from a bot")
        text = str(message.get("text") or message.get("caption") or "")
        kind, attachments, payload = "text", [], {}
        for field, media_kind in _MEDIA_KINDS:
            media = message.get(field)
            if media:
                kind = media_kind
                item = media[-1] if isinstance(media, list) else media  # photo: largest last
                attachments.append(
                    InboundAttachment(
                        name=str(
                            item.get("file_name") or f"{field}-{item.get('file_unique_id', '')}"
                        ),
                        content_type=str(item.get("mime_type") or _default_type(field)),
                        size=int(item.get("file_size") or 0),
                        source_url=f"telegram-file:{item.get('file_id', '')}",
                    )
                )
                if field == "sticker" and not text:
                    text = str(item.get("emoji") or "")
                break
        phone = ""
        if isinstance(message.get("location"), dict):
            kind = "location"
            loc = message["location"]
            payload["location"] = {
                "latitude": loc.get("latitude"),
                "longitude": loc.get("longitude"),
            }
            venue = message.get("venue") or {}
            payload["location"]["title"] = venue.get("title", "")
            payload["location"]["address"] = venue.get("address", "")
        if isinstance(message.get("contact"), dict):
            kind = "contact"
            shared = message["contact"]
            payload["contact"] = {
                "phone": shared.get("phone_number", ""),
                "name": _name(shared),
                "user_id": shared.get("user_id"),
            }
            # The customer shared their own number (the "share my phone" button): now we
            # can recognise them on WhatsApp and SMS too.
            if shared.get("user_id") == user.get("id"):
                phone = str(shared.get("phone_number") or "")
        chat_id = chat["id"]
        if chat.get("type") != "private":
            payload["reply_to_address"] = str(chat_id)
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=f"{chat_id}:{message['message_id']}",
            sender=Sender(
                kind="telegram",
                value=str(user["id"]),
                display_name=_name(user),
                phone=phone,
                language=str(user.get("language_code") or "")[:2],
            ),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_when(message.get("date")),
            reply_to=(
                (f"{chat_id}:{message['reply_to_message']['message_id']}",)
                if isinstance(message.get("reply_to_message"), dict)
                else ()
            ),
            thread_key="" if chat.get("type") == "private" else f"chat:{chat_id}",
        )

    def _callback(self, channel: Channel, query: dict[str, Any]) -> Parsed:
        user = query.get("from")
        if not isinstance(user, dict) or "id" not in query:
            raise PayloadError("a callback_query needs id and from")
        data = str(query.get("data") or "")
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=f"callback:{query['id']}",
            sender=Sender(
                kind="telegram",
                value=str(user["id"]),
                display_name=_name(user),
                language=str(user.get("language_code") or "")[:2],
            ),
            text=data,
            kind="postback",
            payload={"button": data},
        )

    def send(self, channel: Channel, out: Outbound) -> str:
        token = str(channel.credentials.get("bot_token") or "")
        if not token:
            raise SendError("the channel has no bot_token", permanent=True)
        body: dict[str, Any] = {"chat_id": out.recipient, "text": out.text[: self.max_text]}
        buttons = [b for b in out.buttons if len(b.id.encode()) <= MAX_CALLBACK_BYTES]
        if buttons:
            rows = [
                [
                    {"text": b.label[:64], "callback_data": b.id}
                    for b in buttons[i : i + BUTTONS_PER_ROW]
                ]
                for i in range(0, len(buttons), BUTTONS_PER_ROW)
            ]
            body["reply_markup"] = {"inline_keyboard": rows}
        if out.attachments:
            # Links rather than uploads: Telegram fetches public URLs itself.
            links = "\n".join(a.url for a in out.attachments)
            body["text"] = f"{body['text']}\n{links}".strip()[: self.max_text]
        response = client().post(f"{base_url('telegram')}/bot{token}/sendMessage", json=body)
        classify(response, "Telegram sendMessage")
        data = response.json()
        if not data.get("ok"):
            raise SendError(f"Telegram: {data.get('description', 'not ok')}", permanent=True)
        return f"{out.recipient}:{data['result']['message_id']}"

    def fetch_media(self, channel: Channel, source_url: str) -> tuple[bytes, str, str | None]:
        """`telegram-file:<file_id>`: getFile names the file's path, then the file server
        serves it (https://core.telegram.org/bots/api#getfile). Both URLs carry the bot
        token, so neither ever appears in an error."""
        if not source_url.startswith("telegram-file:"):
            return super().fetch_media(channel, source_url)
        file_id = source_url.removeprefix("telegram-file:")
        token = str(channel.credentials.get("bot_token") or "")
        if not token:
            raise FetchError("the channel has no bot_token", permanent=True)
        if not file_id:
            raise FetchError("the update named no file", permanent=True)
        api = base_url("telegram")
        try:
            response = client().get(f"{api}/bot{token}/getFile", params={"file_id": file_id})
        except httpx.HTTPError as exc:
            raise request_failed(exc, "Telegram") from exc
        # Bots may download files up to 20 MB: a bigger one is a 400 "file is too big".
        raise_for_api(response, "Telegram getFile")
        try:
            path = str(response.json()["result"]["file_path"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FetchError(
                "Telegram getFile answered without a file_path", permanent=False
            ) from exc
        content, content_type, _ = download(f"{api}/file/bot{token}/{path.lstrip('/')}")
        # "photos/file_12.jpg": a photo has no name of its own, but its path has the extension.
        return content, content_type, path.rsplit("/", 1)[-1] or None


def _default_type(field: str) -> str:
    return {
        "photo": "image/jpeg",
        "voice": "audio/ogg",
        "video_note": "video/mp4",
        "sticker": "image/webp",
        "animation": "video/mp4",
    }.get(field, "application/octet-stream")
