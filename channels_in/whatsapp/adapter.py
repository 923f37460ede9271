"""WhatsApp Cloud API: Meta POSTs `whatsapp_business_account` notifications; we send with
`POST /{phone_number_id}/messages`.

The wire format is the `messages` webhook
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
and its pages per message type and for statuses); verification is Meta's (see channels_in/meta.py).
One body may carry several entries, changes, messages and statuses: each becomes one item.

- The sender's `wa_id` is their phone number without "+", so a WhatsApp sender is also a phone
  identity: the same person on SMS or Telegram (shared phone) is one contact.
- Media arrive as ids, not bytes: attachments point at `whatsapp-media:<id>` for the worker to
  fetch with `GET /{media-id}` later (media URLs expire after minutes; the webhook is kept raw).
- Dedupe on the ids in the body: `wamid` for messages and `wamid` + status for receipts (one
  message has a "sent", a "delivered" and a "read" notification, each its own delivery).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .. import meta as graph
from ..base import (
    Adapter,
    Button,
    FetchError,
    Ignored,
    InboundAttachment,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SendError,
    StatusUpdate,
    body_hash,
)
from ..http import base_url, client
from ..media import download, human_size, request_failed
from ..models import Channel
from ..registry import register

OBJECT = "whatsapp_business_account"

# Limits from https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/
# text-messages (body 4096 characters), interactive-reply-buttons-messages (body 1024, at most 3
# buttons, title 20, id 256) and interactive-list-messages (at most 10 rows, row title 24,
# row id 200, button label 20).
MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_ID = 200
MAX_LIST_BUTTON = 20

# The customer service window: free-form messages only within 24 hours of the customer's last
# message; after that only approved templates
# (https://developers.facebook.com/docs/whatsapp/conversation-types#customer-service-window).
WINDOW = timedelta(hours=24)
WINDOW_REASON = (
    "WhatsApp only allows free-form replies within 24 hours of the customer's last message; "
    "send an approved template instead"
)

# Meta error codes an agent should read in plain words
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
EXPLAIN: graph.Explanations = {
    131047: WINDOW_REASON,
    131026: "WhatsApp could not deliver to this number (not on WhatsApp, an old app version, "
    "or the customer has not accepted WhatsApp's terms)",
    131021: "the recipient is this business number itself",
    131030: "the recipient is not in this test number's allowed list",
    131051: "WhatsApp does not support this message type",
    131049: "WhatsApp chose not to deliver this message to keep engagement healthy",
    131050: "the customer has stopped marketing messages from this business",
    190: "the channel's access_token has expired or was revoked",
    368: "this WhatsApp account is temporarily blocked for policy violations",
}

_MEDIA_KINDS = {
    "image": "image",
    "document": "document",
    "audio": "audio",
    "video": "video",
    "sticker": "sticker",
}
_DEFAULT_TYPES = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "sticker": "image/webp",
    "document": "application/octet-stream",
}
_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
# A voice message the customer played has been read too (the "played" status).
_STATUSES["played"] = "read"


# --------------------------------------------------------------------------- reading bodies


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise PayloadError("a WhatsApp notification is an object with an entry array")
    if data.get("object") != OBJECT:
        raise PayloadError(f"object is {data.get('object')!r}, not {OBJECT!r}")
    return data


def _changes(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in data["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise PayloadError("each entry needs a changes array")
        for change in entry.get("changes", []):
            if not isinstance(change, dict) or not isinstance(change.get("value", {}), dict):
                raise PayloadError("each change needs a value object")
            yield change


def _list(value: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = value.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PayloadError(f"value.{key} must be an array of objects")
    return items


def _keys(data: dict[str, Any]) -> list[str]:
    """The platform ids in a body, for dedupe; raises PayloadError on what Meta never sends."""
    keys: list[str] = []
    for change in _changes(data):
        if change.get("field") != "messages":
            continue
        value = change.get("value") or {}
        for message in _list(value, "messages"):
            if not message.get("id") or not message.get("type"):
                raise PayloadError("a message needs id and type")
            keys.append(f"msg:{message['id']}")
        for status in _list(value, "statuses"):
            if not status.get("id") or not status.get("status"):
                raise PayloadError("a status needs id and status")
            keys.append(f"status:{status['id']}:{status['status']}")
    return sorted(set(keys))


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _media_name(kind: str, media: dict[str, Any]) -> str:
    if media.get("filename"):
        return str(media["filename"])
    base_type = str(media.get("mime_type") or _DEFAULT_TYPES[kind]).split(";")[0].strip()
    extension = mimetypes.guess_extension(base_type) or ""
    return f"{kind}-{media.get('id', '')}{extension}"


def _card(card: dict[str, Any]) -> dict[str, Any]:
    """A shared contact card, reduced to what an agent uses (the same shape as Telegram's)."""
    name = card.get("name") if isinstance(card.get("name"), dict) else {}
    phones = [
        {
            "phone": str(p.get("phone") or ""),
            "wa_id": str(p.get("wa_id") or ""),
            "type": p.get("type"),
        }
        for p in card.get("phones") or []
        if isinstance(p, dict)
    ]
    emails = [str(e.get("email")) for e in card.get("emails") or [] if isinstance(e, dict)]
    org = card.get("org") if isinstance(card.get("org"), dict) else {}
    return {
        "name": str(name.get("formatted_name") or name.get("first_name") or ""),
        "phone": phones[0]["phone"] if phones else "",
        "phones": phones,
        "emails": emails,
        "company": str(org.get("company") or ""),
    }


@register
class WhatsAppAdapter(Adapter):
    kind = "whatsapp"
    credential_names = ("access_token", "app_secret", "verify_token", "phone_number_id")
    max_text = MAX_TEXT

    # ----------------------------------------------------------------------- the request

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        return graph.handshake(channel, request)

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        graph.verify(channel, request, body)

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        return graph.sign(channel, body)

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        keys = _keys(_load(body))
        if not keys:
            return "sha256:" + body_hash(body)
        if len(keys) == 1 and len(keys[0]) <= 255:
            return keys[0]
        # A batch: one event for the whole body, named by all its ids.
        return "batch:" + body_hash("\n".join(keys).encode())

    # ----------------------------------------------------------------------- parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        _keys(data)  # the same checks as at the door, for an event replayed from the store
        mine = str(channel.credentials.get("phone_number_id") or "")
        items: list[Parsed] = []
        for change in _changes(data):
            field = str(change.get("field") or "")
            value = change.get("value") or {}
            if field != "messages":
                items.append(Ignored(reason=f"{field or 'unknown'} notification"))
                continue
            number = str((value.get("metadata") or {}).get("phone_number_id") or "")
            if mine and number and number != mine:
                # One app can serve several numbers; this one is another channel's.
                items.append(Ignored(reason=f"for phone number id {number}, not this channel's"))
                continue
            names = {
                str(c.get("wa_id")): str((c.get("profile") or {}).get("name") or "")
                for c in _list(value, "contacts")
            }
            before = len(items)
            items.extend(self._message(channel, m, names) for m in _list(value, "messages"))
            items.extend(self._status(channel, s) for s in _list(value, "statuses"))
            # System- or account-level problems, not tied to one message.
            items.extend(
                Ignored(reason="WhatsApp error: " + graph.describe_errors([error]))
                for error in _list(value, "errors")
            )
            if len(items) == before:
                items.append(Ignored(reason="messages notification without messages"))
        return items

    def _message(self, channel: Channel, message: dict[str, Any], names: dict[str, str]) -> Parsed:
        message_type = str(message.get("type") or "")
        wa_id = str(message.get("from") or "")
        if message.get("group_id"):
            return Ignored(reason="group message")
        if message_type == "reaction":
            # A reaction is not a request for help: it must not reopen a ticket or restart its
            # SLA clock, so it is kept in the event's record only.
            reaction = message.get("reaction") or {}
            emoji = reaction.get("emoji") or "removed"
            return Ignored(reason=f"reaction {emoji} to {reaction.get('message_id', '?')}")
        if message_type in ("system", "request_welcome"):
            return Ignored(reason=f"{message_type} message")
        if not wa_id.isdigit():
            return Ignored(reason="sender has no phone number (wa_id)")

        text, kind = "", "text"
        attachments: list[InboundAttachment] = []
        payload: dict[str, Any] = {}
        if message_type == "text":
            text = str((message.get("text") or {}).get("body") or "")
        elif message_type in _MEDIA_KINDS:
            kind = _MEDIA_KINDS[message_type]
            media = message.get(message_type) or {}
            text = str(media.get("caption") or "")
            attachments.append(
                InboundAttachment(
                    name=_media_name(message_type, media),
                    content_type=str(media.get("mime_type") or _DEFAULT_TYPES[message_type])
                    .split(";")[0]
                    .strip(),
                    source_url=f"whatsapp-media:{media.get('id', '')}",
                )
            )
            if message_type == "audio" and media.get("voice"):
                payload["voice"] = True
        elif message_type == "location":
            kind = "location"
            location = message.get("location") or {}
            payload["location"] = {
                "latitude": location.get("latitude"),
                "longitude": location.get("longitude"),
                "title": str(location.get("name") or ""),
                "address": str(location.get("address") or ""),
            }
        elif message_type == "contacts":
            # A card the customer shared: data for the agent, never the sender's own identity
            # (it is usually someone else: a landlord, a neighbour, the account holder).
            kind = "contact"
            cards = [_card(c) for c in message.get("contacts") or [] if isinstance(c, dict)]
            payload["contacts"] = cards
            payload["contact"] = cards[0] if cards else {}
        elif message_type == "interactive":
            interactive = message.get("interactive") or {}
            reply = interactive.get(str(interactive.get("type") or "")) or {}
            if interactive.get("type") in ("button_reply", "list_reply"):
                kind = "postback"
                text = str(reply.get("title") or "")
                payload["button"] = str(reply.get("id") or "")
                payload["label"] = text
                if reply.get("description"):
                    payload["description"] = str(reply["description"])
            else:
                kind = "unsupported"
                payload["unsupported"] = {"type": f"interactive/{interactive.get('type')}"}
        elif message_type == "button":
            # A quick-reply button of a template message.
            button = message.get("button") or {}
            kind = "postback"
            text = str(button.get("text") or "")
            payload["button"] = str(button.get("payload") or text)
            payload["label"] = text
        else:
            # "unsupported" (view-once media, polls, ...) and types added after this adapter: the
            # customer is waiting for an answer, so an agent sees that something arrived.
            kind = "unsupported"
            inner = (
                message.get("unsupported") if isinstance(message.get("unsupported"), dict) else {}
            )
            payload["unsupported"] = {
                "type": str(inner.get("type") or message_type),
                "error": graph.describe_errors(message.get("errors")),
            }

        context = message.get("context") if isinstance(message.get("context"), dict) else {}
        if context.get("forwarded") or context.get("frequently_forwarded"):
            payload["forwarded"] = True
        referral = message.get("referral")
        if isinstance(referral, dict):
            # Click-to-WhatsApp ads: which ad or post brought the customer.
            payload["referral"] = {
                k: referral.get(k) for k in ("source_url", "source_type", "source_id", "headline")
            }
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=str(message["id"]),
            sender=Sender(
                kind="whatsapp", value=wa_id, display_name=names.get(wa_id, ""), phone=wa_id
            ),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_when(message.get("timestamp")),
            reply_to=(str(context["id"]),) if context.get("id") else (),
        )

    def _status(self, channel: Channel, status: dict[str, Any]) -> Parsed:
        state = _STATUSES.get(str(status.get("status")))
        if state is None:
            return Ignored(reason=f"status {status.get('status')}")
        error = ""
        if state == "failed":
            error = graph.describe_errors(status.get("errors")) or "WhatsApp reported a failure"
            if any(
                isinstance(e, dict) and e.get("code") == 131047 for e in status.get("errors") or []
            ):
                error = f"{WINDOW_REASON} ({error})"
        return StatusUpdate(
            channel_id=channel.pk,
            platform_message_id=str(status["id"]),
            status=state,
            error=error,
            at=_when(status.get("timestamp")),
        )

    # ----------------------------------------------------------------------- replying

    def check_reply(
        self,
        channel: Channel,
        last_customer_message_at: datetime | None,
        *,
        text: str = "",
        last_inbound: dict[str, Any] | None = None,
    ) -> str | None:
        if last_customer_message_at is None or timezone.now() - last_customer_message_at > WINDOW:
            return WINDOW_REASON
        return None

    def send(self, channel: Channel, out: Outbound) -> str:
        token = str(channel.credentials.get("access_token") or "")
        number = str(channel.credentials.get("phone_number_id") or "")
        if not token or not number:
            raise SendError("the channel needs access_token and phone_number_id", permanent=True)
        to = _digits(out.recipient)
        if not to:
            raise SendError(f"{out.recipient!r} is not a WhatsApp number", permanent=True)
        url = f"{base_url('whatsapp')}/{number}/messages"
        headers = {"Authorization": f"Bearer {token}"}
        primary = ""
        for body, is_text in self._bodies(channel, out):
            request = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
            response = client().post(url, json={**request, **body}, headers=headers)
            graph.raise_for_graph(response, "WhatsApp send", EXPLAIN)
            try:
                message_id = str(response.json()["messages"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise SendError(
                    f"WhatsApp answered without a message id: {exc}", permanent=True
                ) from exc
            # Receipts update the message by the id of its text (the last part, which carries
            # the buttons); a reply of attachments only is known by its first.
            if is_text or not primary:
                primary = message_id
        return primary

    def _bodies(self, channel: Channel, out: Outbound) -> list[tuple[dict[str, Any], bool]]:
        """The requests one reply needs: its text (split at the 4096-character limit, buttons
        on the last part), then each attachment as a media message fetched from its URL."""
        bodies: list[tuple[dict[str, Any], bool]] = []
        buttons = list(out.buttons)
        native = self._interactive_action(channel, buttons) if buttons else None
        text = out.text
        if buttons and native is None:
            text = graph.numbered_text(text, buttons)
        parts = graph.split_text(text, MAX_TEXT) if text.strip() else []
        if native is not None and parts and len(parts[-1]) > MAX_INTERACTIVE_BODY:
            parts = parts[:-1] + graph.split_text(parts[-1], MAX_INTERACTIVE_BODY)
        if native is not None and not parts:
            # An interactive message needs a body; without text the buttons go as a list.
            parts = [graph.numbered_text("", buttons)]
            native = None
        for n, part in enumerate(parts):
            if native is not None and n == len(parts) - 1:
                interactive = {"type": native[0], "body": {"text": part}, "action": native[1]}
                bodies.append(({"type": "interactive", "interactive": interactive}, True))
            else:
                bodies.append(
                    ({"type": "text", "text": {"preview_url": False, "body": part}}, True)
                )
        for attachment in out.attachments:
            media_type = attachment.content_type.split("/")[0]
            if media_type not in ("image", "video", "audio"):
                media_type = "document"
            media: dict[str, Any] = {"link": attachment.url}
            if media_type == "document":
                media["filename"] = attachment.name
            bodies.append(({"type": media_type, media_type: media}, False))
        if not bodies:
            raise SendError(
                "nothing to send: the reply has no text and no attachments", permanent=True
            )
        return bodies

    def _interactive_action(
        self, channel: Channel, buttons: list[Button]
    ) -> tuple[str, dict[str, Any]] | None:
        """Reply buttons (up to 3, titles up to 20 characters), else a list (up to 10 rows,
        titles up to 24), else None: the caller renders the choices as numbered text."""
        labels = [b.label or b.id for b in buttons]
        if (
            len(buttons) <= MAX_BUTTONS
            and all(len(label) <= MAX_BUTTON_TITLE for label in labels)
            and all(0 < len(b.id) <= MAX_BUTTON_ID for b in buttons)
        ):
            return "button", {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": label}}
                    for b, label in zip(buttons, labels, strict=True)
                ]
            }
        if (
            len(buttons) <= MAX_ROWS
            and all(len(label) <= MAX_ROW_TITLE for label in labels)
            and all(0 < len(b.id) <= MAX_ROW_ID for b in buttons)
        ):
            # The list opens from one button; a symbol reads the same in every language.
            opener = str(channel.settings.get("list_button") or "☰")[:MAX_LIST_BUTTON]
            rows = [{"id": b.id, "title": label} for b, label in zip(buttons, labels, strict=True)]
            return "list", {"button": opener, "sections": [{"rows": rows}]}
        return None

    def fetch_media(self, channel: Channel, source_url: str) -> tuple[bytes, str, str | None]:
        """`whatsapp-media:<id>`: `GET /{media-id}` answers with a short-lived URL, its type,
        size and SHA-256; that URL wants the same Bearer token
        (https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media#download-media).
        Each attempt asks for a fresh URL: they expire after five minutes."""
        if not source_url.startswith("whatsapp-media:"):
            return super().fetch_media(channel, source_url)
        media_id = source_url.removeprefix("whatsapp-media:")
        token = str(channel.credentials.get("access_token") or "")
        if not token:
            raise FetchError("the channel has no access_token", permanent=True)
        if not media_id.isdigit():
            raise FetchError("the message named no valid media id", permanent=True)
        bearer = {"Authorization": f"Bearer {token}"}
        try:
            response = client().get(f"{base_url('whatsapp')}/{media_id}", headers=bearer)
        except httpx.HTTPError as exc:
            raise request_failed(exc, "WhatsApp") from exc
        try:
            graph.raise_for_graph(response, "WhatsApp media lookup", EXPLAIN)
        except SendError as exc:
            raise FetchError(str(exc), permanent=exc.permanent) from exc
        try:
            info = response.json()
            url = str(info["url"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FetchError(
                "WhatsApp media lookup answered without a url", permanent=False
            ) from exc
        # file_size comes as a string ("303833"), sometimes as a number.
        size = int(info["file_size"]) if str(info.get("file_size", "")).isdigit() else None
        limit = int(settings.HELPDESK_MAX_ATTACHMENT_BYTES)
        if size is not None and size > limit:
            raise FetchError(
                f"the file is {human_size(size)}; the limit is {human_size(limit)}",
                permanent=True,
            )
        content, content_type, filename = download(url, auth=lambda _url: bearer)
        expected = str(info.get("sha256") or "")
        digest = hashlib.sha256(content).digest()
        # Hex in media lookups, base64 in webhooks: accept the checksum in either spelling.
        if expected and expected.lower() != digest.hex() and expected != b64encode(digest).decode():
            # Cut short or corrupted on the way: the next attempt gets a fresh copy.
            raise FetchError("the download does not match WhatsApp's checksum", permanent=False)
        return content, str(info.get("mime_type") or content_type), filename
