"""VK Callback API: VK POSTs one JSON event per request; we answer with `messages.send`.

Verification (https://dev.vk.com/ru/api/callback/getting-started): VK does not sign requests.
Instead the "secret key" set in the community's Callback API settings travels in the body of
every event as the field `secret`, and `group_id` names the community. So the secret is checked
inside the body: missing -> 401, wrong -> 403, another community -> 403. `sign()` therefore
returns no headers: a simulator or test must put `secret` (and `group_id`) in the body it posts.
A body that is not JSON carries no secret and cannot be authenticated: it is refused with 401
rather than stored.

When a server is added VK posts `{"type": "confirmation", "group_id": ...}` and expects the
community's confirmation string as the plain-text answer; every other event must be answered
with exactly `ok` (anything else and VK retries, and after several failures stops sending).

Dedupe on the event's `event_id` (API 5.103+), else on the message ids. A message id is
"<peer_id>:<conversation_message_id>": in group chats a community bot sees `id` 0 and only the
conversation message id is meaningful, and it is the id edits and replies refer to.
Event formats: https://dev.vk.com/ru/api/community-events/json-schema.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..base import (
    Adapter,
    Edit,
    Ignored,
    InboundAttachment,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SendError,
    SignatureError,
    body_hash,
    constant_time_equal,
)
from ..http import base_url, classify, client
from ..models import Channel
from ..registry import register

API_VERSION = "5.199"
CHAT_PEER_OFFSET = 2_000_000_000
# messages.send (https://dev.vk.com/en/method/messages.send) documents 9000 characters, but
# messages over 4096 are refused with error 914 "message is too long" in practice.
MAX_TEXT = 4096
# Keyboards (https://dev.vk.com/ru/api/bots/development/keyboard): up to 10 rows of 5, 40
# buttons; a label holds 40 characters, a payload 255.
MAX_BUTTONS = 40
MAX_ROWS = 10
MAX_PER_ROW = 5
MAX_LABEL = 40
MAX_PAYLOAD = 255
# client_info.lang_id uses VK's numeric language ids (those of the `lang` request parameter);
# only the first, well-known ones are mapped, anything else gives no hint.
_LANGUAGES = {0: "ru", 1: "uk", 2: "be", 3: "en", 4: "es", 5: "fi", 6: "de", 7: "it"}
# API errors come as {"error": {"error_code", "error_msg"}} with HTTP 200. Too many requests
# (6), flood control (9, e.g. over 1000 messages an hour to one user), an internal error (10)
# or an unknown one (1) pass; everything else needs a person: 901 the user has not allowed
# the community's messages, 902 privacy settings, 900 blacklisted
# (https://dev.vk.com/en/reference/objects/conversation, can_write.reason), 5 a bad token,
# 911 a bad keyboard (https://dev.vk.com/ru/api/bots/development/keyboard), 914 too long.
_TRANSIENT = {1: "unknown error", 6: "too many requests", 9: "flood control", 10: "server error"}
_MESSAGE_EVENTS = ("message_new", "message_reply", "message_edit")


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("a Callback API event must be a JSON object")
    if not isinstance(data.get("type"), str) or not data["type"]:
        raise PayloadError("a Callback API event needs a type")
    return data


def _message_of(data: dict[str, Any]) -> dict[str, Any]:
    """The message object of a message_* event, checked (PayloadError if it is not one)."""
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise PayloadError(f"a {data['type']} event needs an object")
    # API 5.103+: message_new wraps the message with client_info; replies and edits do not.
    message = obj.get("message") if data["type"] == "message_new" else obj
    if not isinstance(message, dict):
        raise PayloadError(f"a {data['type']} event needs object.message")
    for field in ("peer_id", "from_id", "conversation_message_id"):
        if not isinstance(message.get(field), int) or isinstance(message.get(field), bool):
            raise PayloadError(f"a {data['type']} message needs an integer {field}")
    return message


def _message_id(message: dict[str, Any]) -> str:
    return f"{message['peer_id']}:{message['conversation_message_id']}"


def _when(value: Any) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _group_id(channel: Channel) -> str:
    return str(channel.credentials.get("group_id") or "").strip()


@register
class VKAdapter(Adapter):
    kind = "vk"
    credential_names = ("access_token", "secret", "confirmation_code", "group_id")
    max_text = MAX_TEXT

    # ------------------------------------------------------------------ webhook

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        if request.method != "POST" or b"confirmation" not in body:
            return None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("type") != "confirmation":
            return None
        if not _group_id(channel) or str(data.get("group_id")) != _group_id(channel):
            raise SignatureError("confirmation requested for another community")
        secret = str(channel.credentials.get("secret") or "")
        given = data.get("secret")
        if given is not None and secret and not constant_time_equal(str(given), secret):
            raise SignatureError("the secret in the confirmation request does not match")
        code = str(channel.credentials.get("confirmation_code") or "")
        if not code:
            raise SignatureError("the channel has no confirmation_code to answer with")
        return HttpResponse(code, content_type="text/plain")

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict) or "secret" not in data:
            raise SignatureError("missing secret in the Callback API body", status=401)
        secret = str(channel.credentials.get("secret") or "")
        if not secret or not constant_time_equal(str(data["secret"]), secret):
            raise SignatureError("the Callback API secret does not match")
        if str(data.get("group_id")) != _group_id(channel):
            raise SignatureError("the event is for another community")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        # VK puts the secret in the body, not in a header: the simulator must add
        # "secret" and "group_id" to the JSON it posts.
        return {}

    def redact(self, channel: Channel, body: bytes) -> bytes:
        # The community's secret travels inside every event; it must not sit in the event
        # store (or in a replay an operator copies out of it).
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
        if not isinstance(data, dict) or "secret" not in data:
            return body
        data.pop("secret")
        return json.dumps(data, ensure_ascii=False).encode()

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        data = _load(body)
        # A malformed message event is refused here, at the door, with 400.
        message = _message_of(data) if data["type"] in _MESSAGE_EVENTS else None
        if isinstance(data.get("event_id"), str) and data["event_id"]:
            return f"event:{data['event_id']}"
        if message is not None:  # API versions before 5.103 have no event_id
            version = message.get("update_time") or ""
            return f"{data['type']}:{_message_id(message)}:{version}".rstrip(":")
        return "sha256:" + body_hash(body)

    def ack(self, channel: Channel) -> HttpResponse:
        return HttpResponse("ok", content_type="text/plain")

    # ------------------------------------------------------------------ parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        kind = data["type"]
        if kind == "message_new":
            obj = data["object"] if isinstance(data.get("object"), dict) else {}
            client_info = obj.get("client_info") if isinstance(obj, dict) else None
            return [self._message(channel, _message_of(data), client_info)]
        if kind == "message_edit":
            message = _message_of(data)
            if message.get("out") == 1 or message["from_id"] < 0:
                return [Ignored(reason="edit of our own message")]
            # An edit carries the whole message, so it also stands in for a message_new that
            # has not arrived yet: the message is stored with its latest text (a duplicate,
            # changing nothing, when we have it), and then the edit applies to it.
            current = self._message(channel, message, None)
            if not isinstance(current, InboundMessage):
                return [current]
            edit = Edit(
                channel_id=channel.pk,
                platform_message_id=_message_id(message),
                text=str(message.get("text") or ""),
                at=_when(message.get("update_time") or message.get("date")),
            )
            return [current, edit]
        if kind == "message_reply":
            _message_of(data)
            return [Ignored(reason="echo of our own message")]
        if kind == "message_event":
            return [self._callback_button(channel, data)]
        return [Ignored(reason=f"event {kind}")]

    def _is_chat(self, peer_id: int) -> bool:
        return peer_id >= CHAT_PEER_OFFSET

    def _message(self, channel: Channel, message: dict[str, Any], client_info: Any) -> Parsed:
        peer_id, from_id = message["peer_id"], message["from_id"]
        if from_id < 0:
            return Ignored(reason="message from a community")
        is_chat = self._is_chat(peer_id)
        if is_chat and not channel.settings.get("groups"):
            return Ignored(reason="group message")
        text = str(message.get("text") or "")
        kind, payload, attachments = "text", {}, []
        for attachment in message.get("attachments") or []:
            if not isinstance(attachment, dict):
                continue
            found = _attachment(attachment)
            if found is None:
                continue
            attachment_kind, item, extra = found
            if kind == "text":
                kind = attachment_kind
            if item is not None:
                attachments.append(item)
            payload.update(extra)
            if attachment_kind == "sticker" and not text:
                text = "[sticker]"
        geo = message.get("geo")
        if isinstance(geo, dict):
            kind = "location"
            coordinates = geo.get("coordinates") or {}
            place = geo.get("place") or {}
            payload["location"] = {
                "latitude": coordinates.get("latitude"),
                "longitude": coordinates.get("longitude"),
                "title": str(place.get("title") or ""),
            }
        button = _button(message.get("payload"))
        if button is not None:
            kind = "postback"
            payload["button"] = button
        if message.get("fwd_messages"):
            payload["forwarded"] = [
                str(m.get("text") or "") for m in message["fwd_messages"] if isinstance(m, dict)
            ]
        reply = message.get("reply_message")
        reply_to: tuple[str, ...] = ()
        if isinstance(reply, dict) and isinstance(reply.get("conversation_message_id"), int):
            reply_to = (f"{reply.get('peer_id', peer_id)}:{reply['conversation_message_id']}",)
        if is_chat:
            payload["reply_to_address"] = str(peer_id)
        language = ""
        if isinstance(client_info, dict) and isinstance(client_info.get("lang_id"), int):
            language = _LANGUAGES.get(client_info["lang_id"], "")
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=_message_id(message),
            # Callbacks carry ids only; a name needs users.get, which parsing may not call.
            sender=Sender(kind="vk", value=str(from_id), language=language),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_when(message.get("date")),
            reply_to=reply_to,
            thread_key=f"chat:{peer_id}" if is_chat else "",
        )

    def _callback_button(self, channel: Channel, data: dict[str, Any]) -> Parsed:
        obj = data.get("object")
        if not isinstance(obj, dict) or not obj.get("event_id") or not obj.get("user_id"):
            raise PayloadError("a message_event needs object.event_id and object.user_id")
        peer_id = int(obj.get("peer_id") or obj["user_id"])
        if self._is_chat(peer_id) and not channel.settings.get("groups"):
            return Ignored(reason="group message")
        button = _button(obj.get("payload")) or ""
        payload: dict[str, Any] = {"button": button}
        if self._is_chat(peer_id):
            payload["reply_to_address"] = str(peer_id)
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=f"event:{obj['event_id']}",
            sender=Sender(kind="vk", value=str(obj["user_id"])),
            text=button,
            kind="postback",
            payload=payload,
            thread_key=f"chat:{peer_id}" if self._is_chat(peer_id) else "",
        )

    # ------------------------------------------------------------------ sending

    def send(self, channel: Channel, out: Outbound) -> str:
        token = str(channel.credentials.get("access_token") or "")
        if not token:
            raise SendError("the VK channel has no access_token", permanent=True)
        try:
            peer_id = int(out.recipient)
        except ValueError as exc:
            raise SendError(f"{out.recipient!r} is not a VK peer id", permanent=True) from exc
        text = out.text
        if out.attachments:
            # Links rather than uploads (an upload is three API calls and a photo server).
            text = "\n".join([text, *(a.url for a in out.attachments)]).strip()
        random_id = idempotency_key(channel, out)
        form: dict[str, str] = {
            "access_token": token,
            "v": str(channel.settings.get("vk_api_version") or API_VERSION),
            "peer_id": str(peer_id),
            "random_id": str(random_id),
        }
        keyboard = _keyboard(list(out.buttons))
        if keyboard is not None:
            form["keyboard"] = json.dumps(keyboard, ensure_ascii=False, separators=(",", ":"))
        elif out.buttons:
            lines = [f"{n}. {b.label}" for n, b in enumerate(out.buttons, start=1)]
            text = "\n".join([text, "", *lines])
        if len(text) > MAX_TEXT:
            raise SendError(
                f"a VK message holds {MAX_TEXT} characters; this one has {len(text)}",
                permanent=True,
                code="too_long",
            )
        form["message"] = text
        # POSTed as a form (the API takes no JSON bodies: https://dev.vk.com/en/api/api-requests)
        # so the token is not in a URL, and so not in any access log.
        response = client().post(f"{base_url('vk')}/messages.send", data=form)
        classify(response, "VK messages.send")
        try:
            data = response.json()
        except ValueError as exc:
            raise SendError("VK messages.send: the answer is not JSON", permanent=False) from exc
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            raise _api_error(data["error"])
        result = data.get("response") if isinstance(data, dict) else None
        if isinstance(result, int) and not isinstance(result, bool) and result > 0:
            return str(result)
        # In chats a community gets message id 0: keep a unique id of our own.
        return f"random:{random_id}"


def idempotency_key(channel: Channel, out: Outbound) -> int:
    """random_id for messages.send. VK refuses to deliver a second message with a random_id
    it has seen from this community (checked over the whole history), so a retry of the same
    Delivery never double-sends. Derived from our Message id plus the channel row's identity,
    so a rebuilt database does not reuse the ids of an earlier one; 63 bits (VK takes int64)."""
    created = channel.created_at.isoformat() if channel.created_at else ""
    which = str(out.message_id) if out.message_id else f"{out.ticket_id}:{out.text}"
    seed = f"{channel.pk}:{created}:{which}"
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") >> 1


def _button(raw: Any) -> str | None:
    """The button id from a message payload (a JSON string, or an object in message_event)."""
    if raw is None or raw == "":
        return None
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw[:MAX_PAYLOAD]
    if isinstance(value, dict):
        if "button" in value:
            return str(value["button"])
        if "command" in value:  # the "Start" button: {"command": "start"}
            return str(value["command"])
        return json.dumps(value, ensure_ascii=False)[:MAX_PAYLOAD]
    return str(value)[:MAX_PAYLOAD]


def _keyboard(buttons: list[Any]) -> dict[str, Any] | None:
    if not buttons or len(buttons) > MAX_BUTTONS:
        return None
    payloads = [json.dumps({"button": b.id}, ensure_ascii=False) for b in buttons]
    if any(len(p) > MAX_PAYLOAD for p in payloads):
        return None
    per_row = min(MAX_PER_ROW, max(1, -(-len(buttons) // MAX_ROWS)))
    cells = [
        {
            "action": {"type": "text", "label": b.label[:MAX_LABEL], "payload": payload},
            "color": "secondary",
        }
        for b, payload in zip(buttons, payloads, strict=True)
    ]
    # one_time: the keyboard goes away once the customer has chosen.
    return {
        "one_time": True,
        "buttons": [cells[i : i + per_row] for i in range(0, len(cells), per_row)],
    }


def _api_error(error: dict[str, Any]) -> SendError:
    code = error.get("error_code")
    detail = str(error.get("error_msg") or "")
    if isinstance(code, int) and code in _TRANSIENT:
        return SendError(
            f"VK could not send the message now: {detail} ({code})",
            permanent=False,
            code=str(code),
        )
    return SendError(f"VK refused the message: {detail} ({code})", permanent=True, code=str(code))


def _largest(sizes: Any) -> dict[str, Any]:
    candidates = [s for s in sizes or [] if isinstance(s, dict) and s.get("url")]
    if not candidates:
        return {}
    return max(candidates, key=lambda s: int(s.get("width") or 0) * int(s.get("height") or 0))


def _attachment(
    attachment: dict[str, Any],
) -> tuple[str, InboundAttachment | None, dict[str, Any]] | None:
    kind = attachment.get("type")
    item = attachment.get(kind) if isinstance(kind, str) else None
    if not isinstance(item, dict):
        return None
    if kind == "photo":
        size = _largest(item.get("sizes"))
        name = f"photo{item.get('owner_id')}_{item.get('id')}.jpg"
        item_out = InboundAttachment(
            name=name, content_type="image/jpeg", source_url=str(size.get("url") or "")
        )
        return "image", item_out, {}
    if kind == "doc":
        ext = str(item.get("ext") or "")
        title = str(item.get("title") or f"doc{item.get('owner_id')}_{item.get('id')}")
        return (
            "document",
            InboundAttachment(
                name=title if not ext or title.endswith(f".{ext}") else f"{title}.{ext}",
                content_type=_doc_type(ext),
                size=int(item.get("size") or 0),
                source_url=str(item.get("url") or ""),
            ),
            {},
        )
    if kind == "audio_message":
        ogg = bool(item.get("link_ogg"))
        url = str(item.get("link_ogg") or item.get("link_mp3") or "")
        content_type = "audio/ogg" if ogg else "audio/mpeg"
        name = f"voice{item.get('owner_id')}_{item.get('id')}.{'ogg' if ogg else 'mp3'}"
        extra: dict[str, Any] = {"duration": item.get("duration")}
        if item.get("transcript"):
            extra["transcript"] = str(item["transcript"])
        return (
            "audio",
            InboundAttachment(name=name, content_type=content_type, source_url=url),
            extra,
        )
    if kind == "sticker":
        image = _largest(item.get("images"))
        name = f"sticker{item.get('sticker_id')}.png"
        attachment_item = InboundAttachment(
            name=name, content_type="image/png", source_url=str(image.get("url") or "")
        )
        return "sticker", attachment_item, {"sticker_id": item.get("sticker_id")}
    if kind == "wall":
        owner = item.get("owner_id") or item.get("to_id") or item.get("from_id")
        return (
            "text",
            None,
            {
                "wall_post": {
                    "url": f"https://vk.com/wall{owner}_{item.get('id')}",
                    "text": str(item.get("text") or ""),
                }
            },
        )
    if kind == "link":
        return (
            "text",
            None,
            {"link": {"url": str(item.get("url") or ""), "title": str(item.get("title") or "")}},
        )
    return None


def _doc_type(ext: str) -> str:
    return {
        "pdf": "application/pdf",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "txt": "text/plain",
    }.get(ext.lower(), "application/octet-stream")
