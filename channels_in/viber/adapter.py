"""Viber REST bot API: Viber POSTs one JSON callback per event; we send with `send_message`.

Verification (https://developers.viber.com/docs/api/rest-bot-api/#callbacks): every callback
carries `X-Viber-Content-Signature`, the hex HMAC-SHA256 of the raw body keyed with the bot's
auth token. `set_webhook` makes Viber send an `event: webhook` callback and expects HTTP 200
(https://creators.viber.com/docs/bots-api/getting-started/web-hooks); we verify it and answer
without storing anything.

Dedupe: Viber retries a callback for up to an hour until it gets 200
(https://developers.viber.com/docs/faq/); a retry carries the same `message_token`. A message and
its delivered/seen receipts share the token, so the event id is "<event>:<message_token>".

Buttons: a keyboard of "reply" buttons whose ActionBody is the button id
(https://developers.viber.com/docs/tools/keyboards/). Pressing one sends that ActionBody as a
text message; `tracking_data` on our message (echoed back with the reply) lists the ids we
offered, so we can tell a button press from a customer who typed the same word. A button with
the id "share_phone" becomes Viber's share-phone button; the contact it sends back is the
customer's own number (the client fills it in), so only then do we learn their phone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..base import (
    Adapter,
    Ignored,
    InboundAttachment,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SendError,
    SignatureError,
    StatusUpdate,
    body_hash,
    constant_time_equal,
)
from ..http import base_url, classify, client
from ..models import Channel
from ..registry import register

SIGNATURE_HEADER = "HTTP_X_VIBER_CONTENT_SIGNATURE"
PHONE_BUTTON_ID = "share_phone"
# https://developers.viber.com/docs/api/rest-bot-api/#send-message: text up to 7,000
# characters, sender.name up to 28, tracking_data up to 4,000. A keyboard row is 6 columns
# wide (https://developers.viber.com/docs/tools/keyboards/) and a keyboard holds up to 12 rows
# (https://developers.viber.com/docs/faq/): 24 half-width buttons at most.
MAX_TEXT = 7000
MAX_SENDER_NAME = 28
MAX_TRACKING = 4000
MAX_BUTTONS = 24
MAX_BUTTON_TEXT = 250
# Keyboard buttons with ActionType "share-phone" need clients on API level 3.
SHARE_PHONE_API_VERSION = 3

_MEDIA = {
    "picture": ("image", "image/jpeg"),
    "video": ("video", "video/mp4"),
    "file": ("document", "application/octet-stream"),
    "sticker": ("sticker", "image/png"),
}
# https://developers.viber.com/docs/api/rest-bot-api/#error-codes. Only "too many requests"
# and Viber's own general failure are worth retrying; the others need a person (a blocked or
# unsubscribed customer, a bad token, an unpaid account) and fail the delivery at once.
_TRANSIENT = {12: "tooManyRequests"}
_PERMANENT = {
    1: "invalidUrl",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    7: "publicAccountBlocked",
    8: "publicAccountNotFound",
    9: "publicAccountSuspended",
    10: "webhookNotSet",
    11: "receiverNoSuitableDevice",
    13: "apiVersionNotSupported",
    14: "incompatibleWithVersion",
    15: "publicAccountNotAuthorized",
    16: "inchatReplyMessageNotAllowed",
    17: "publicAccountIsNotInline",
    18: "noPublicChat",
    19: "cannotSendBroadcast",
    20: "broadcastNotAllowed",
    21: "unsupportedCountry",
    22: "paymentUnsupported",
    23: "freeMessagesExceeded",
    24: "noBalance",
}


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("a Viber callback must be a JSON object")
    if not isinstance(data.get("event"), str) or not data["event"]:
        raise PayloadError("a Viber callback needs an event name")
    if data["event"] == "message":
        sender, message = data.get("sender"), data.get("message")
        if not isinstance(sender, dict) or not sender.get("id"):
            raise PayloadError("a message callback needs sender.id")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise PayloadError("a message callback needs message.type")
        if data.get("message_token") is None:
            raise PayloadError("a message callback needs message_token")
    if data["event"] in ("delivered", "seen", "failed") and data.get("message_token") is None:
        raise PayloadError(f"a {data['event']} callback needs message_token")
    return data


def _signature(auth_token: str, body: bytes) -> str:
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def _when(value: Any) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _token(value: Any) -> str:
    return str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""


def _tracking(value: Any) -> dict[str, Any]:
    """Our own tracking_data, echoed back with the customer's reply (or {} if it is not ours)."""
    if not isinstance(value, str) or not value.startswith("{"):
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("hd") == 1 else {}


@register
class ViberAdapter(Adapter):
    kind = "viber"
    credential_names = ("auth_token",)
    max_text = MAX_TEXT

    # ------------------------------------------------------------------ webhook

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        if request.method != "POST" or b'"webhook"' not in body:
            return None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("event") != "webhook":
            return None
        # Signed like every callback; nothing to store, Viber only wants the 200.
        self.verify(channel, request, body)
        return HttpResponse("ok", content_type="text/plain")

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        given = request.META.get(SIGNATURE_HEADER)
        if not given:
            raise SignatureError("missing X-Viber-Content-Signature", status=401)
        token = str(channel.credentials.get("auth_token") or "")
        if not token or not constant_time_equal(given.lower(), _signature(token, body)):
            raise SignatureError("X-Viber-Content-Signature does not match the body")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        token = str(channel.credentials.get("auth_token") or "")
        return {"X-Viber-Content-Signature": _signature(token, body)}

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        data = _load(body)
        token = _token(data.get("message_token"))
        if token:
            return f"{data['event']}:{token}"
        return "sha256:" + body_hash(body)

    # ------------------------------------------------------------------ parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        event = data["event"]
        if event == "message":
            return [self._message(channel, data)]
        if event in ("delivered", "seen", "failed"):
            return [
                StatusUpdate(
                    channel_id=channel.pk,
                    platform_message_id=_token(data["message_token"]),
                    status={"seen": "read"}.get(event, event),
                    error=str(data.get("desc") or "") if event == "failed" else "",
                    at=_when(data.get("timestamp")),
                )
            ]
        # subscribed / unsubscribed / conversation_started / webhook / anything new: nothing to
        # ticket. An unsubscribed customer shows up as a permanent send failure (status 6) on
        # the next reply, with the reason on the ticket, which is where an agent needs it.
        return [Ignored(reason=f"event {event}")]

    def _message(self, channel: Channel, data: dict[str, Any]) -> Parsed:
        sender, message = data["sender"], data["message"]
        mtype = message["type"]
        text = str(message.get("text") or "")
        tracking = _tracking(message.get("tracking_data"))
        kind, attachments, payload = "text", [], {}
        phone = ""
        if mtype in _MEDIA:
            kind, default_type = _MEDIA[mtype]
            media = str(message.get("media") or "")
            attachments.append(
                InboundAttachment(
                    name=str(
                        message.get("file_name") or f"{mtype}-{_token(data['message_token'])}"
                    ),
                    content_type=_content_type(message.get("file_name"), default_type),
                    size=int(message.get("file_size") or message.get("size") or 0),
                    # Viber's media links expire; the worker fetches them soon after.
                    source_url=media,
                )
            )
            if mtype == "sticker":
                payload["sticker_id"] = message.get("sticker_id")
        elif mtype == "location":
            kind = "location"
            location = message.get("location") or {}
            payload["location"] = {
                "latitude": location.get("lat"),
                "longitude": location.get("lon"),
                "address": str(location.get("address") or ""),
            }
        elif mtype == "contact":
            kind = "contact"
            shared = message.get("contact") or {}
            payload["contact"] = {
                "name": str(shared.get("name") or ""),
                "phone": str(shared.get("phone_number") or ""),
            }
            # Only the share-phone button guarantees the number is the sender's own; a contact
            # card they forward is someone else's and must not merge two people.
            if tracking.get("ask") == "phone":
                phone = payload["contact"]["phone"]
        elif mtype == "url":
            payload["url"] = str(message.get("media") or "")
            text = text or payload["url"]
        elif mtype == "text":
            offered = tracking.get("buttons")
            if isinstance(offered, dict) and text in offered:
                kind = "postback"
                payload["button"] = text
                text = str(offered[text] or text)
        else:
            kind = mtype[:16]  # rich_media and whatever Viber adds: kept, shown as its type
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=_token(data["message_token"]),
            sender=Sender(
                kind="viber",
                value=str(sender["id"]),
                display_name=str(sender.get("name") or ""),
                phone=phone,
                language=str(sender.get("language") or "")[:2].lower(),
            ),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_when(data.get("timestamp")),
        )

    # ------------------------------------------------------------------ sending

    def send(self, channel: Channel, out: Outbound) -> str:
        token = str(channel.credentials.get("auth_token") or "")
        if not token:
            raise SendError("the Viber channel has no auth_token", permanent=True)
        text = out.text
        if out.attachments:
            # Links rather than uploads: Viber shows them as links the customer can open.
            text = "\n".join([text, *(a.url for a in out.attachments)]).strip()
        body: dict[str, Any] = {
            "receiver": out.recipient,
            "min_api_version": 1,
            "sender": {"name": (channel.name or "Support")[:MAX_SENDER_NAME]},
            "type": "text",
            "text": text,
        }
        avatar = channel.settings.get("viber_avatar") if isinstance(channel.settings, dict) else ""
        if avatar:
            body["sender"]["avatar"] = str(avatar)
        buttons = list(out.buttons)
        if buttons and len(buttons) <= MAX_BUTTONS:
            body["keyboard"] = _keyboard(buttons)
            tracking = _tracking_data(buttons)
            if tracking:
                body["tracking_data"] = tracking
            if any(b.id == PHONE_BUTTON_ID for b in buttons):
                body["min_api_version"] = SHARE_PHONE_API_VERSION
        elif buttons:
            lines = [f"{n}. {b.label}" for n, b in enumerate(buttons, start=1)]
            body["text"] = "\n".join([text, "", *lines])
        if len(body["text"]) > MAX_TEXT:
            raise SendError(
                f"a Viber message holds {MAX_TEXT} characters; this one has {len(body['text'])}",
                permanent=True,
                code="too_long",
            )
        response = client().post(
            f"{base_url('viber')}/send_message",
            json=body,
            headers={"X-Viber-Auth-Token": token},
        )
        classify(response, "Viber send_message")
        try:
            data = response.json()
        except ValueError as exc:
            raise SendError("Viber send_message: the answer is not JSON", permanent=False) from exc
        status = data.get("status") if isinstance(data, dict) else None
        if status != 0:
            raise _status_error(status, data)
        message_token = _token(data.get("message_token"))
        if not message_token:
            raise SendError(f"Viber send_message: no message_token in {data}", permanent=False)
        return message_token


def _keyboard(buttons: list[Any]) -> dict[str, Any]:
    # Full-width buttons while they fit in one screen, half-width beyond that (6 columns).
    columns = 6 if len(buttons) <= 6 else 3
    return {
        "Type": "keyboard",
        "DefaultHeight": False,
        "Buttons": [
            {
                "Columns": columns,
                "Rows": 1,
                "ActionType": "share-phone" if b.id == PHONE_BUTTON_ID else "reply",
                "ActionBody": b.id,
                "Text": b.label[:MAX_BUTTON_TEXT],
            }
            for b in buttons
        ],
    }


def _tracking_data(buttons: list[Any]) -> str:
    offered = {b.id: b.label for b in buttons if b.id != PHONE_BUTTON_ID}
    data: dict[str, Any] = {"hd": 1, "buttons": offered}
    if any(b.id == PHONE_BUTTON_ID for b in buttons):
        data["ask"] = "phone"
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(encoded) > MAX_TRACKING:  # keep the ids, drop the labels
        data["buttons"] = dict.fromkeys(offered, "")
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return encoded if len(encoded) <= MAX_TRACKING else ""


def _status_error(status: Any, data: Any) -> SendError:
    detail = str(data.get("status_message") or "") if isinstance(data, dict) else ""
    if isinstance(status, int) and status in _PERMANENT:
        name = _PERMANENT[status]
        return SendError(
            f"Viber refused the message: {name} ({status}) {detail}".strip(),
            permanent=True,
            code=str(status),
        )
    name = _TRANSIENT.get(status, "generalError") if isinstance(status, int) else "no status"
    return SendError(
        f"Viber could not send the message now: {name} ({status}) {detail}".strip(),
        permanent=False,
        code=str(status),
    )


def _content_type(file_name: Any, default: str) -> str:
    if isinstance(file_name, str) and file_name:
        guessed, _ = mimetypes.guess_type(file_name)
        if guessed:
            return guessed
    return default
