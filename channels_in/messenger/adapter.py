"""Messenger and Instagram messaging: one Meta webhook envelope (`object: page` or
`object: instagram`, `entry[].messaging[]`), one Send API (`POST /me/messages`).

Both kinds live in this module because the registry imports `channels_in.messenger.adapter`
and has no `instagram` folder; `InstagramAdapter` is registered here for the "instagram" kind.

Wire formats, from the Messenger Platform webhook reference
(https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events
and its pages messages, messaging_postbacks, message_echoes, message_deliveries, message_reads,
message_edits, message_reactions) and the Instagram examples
(https://developers.facebook.com/documentation/instagram-platform/webhooks/examples):

- Senders are page-scoped ids (PSID) on Messenger and Instagram-scoped ids (IGSID) on Instagram.
  Neither reveals a name, phone or email: the core can only unify them through other channels.
- Echoes of what the page sent (`is_echo`) are ignored: our own sends are already on the ticket.
- Delivery receipts name the delivered message ids when Meta has them; Messenger read receipts
  only give a watermark (a time), which cannot be matched to a message without the database, so
  they are kept in the event's record (see the report for the core change that would map them).
  Instagram's `messaging_seen` names the message id and becomes a read receipt.
- Instagram comments (`changes[].field = comments`) are public: `is_public=True`, one ticket per
  commenter and post; the reply goes back as a public reply to the comment.

Verification is Meta's (channels_in/meta.py). Dedupe on message ids (`mid`), and for events
without one on what identifies them (sender, time, watermark).
"""

from __future__ import annotations

import json
import mimetypes
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .. import meta as graph
from ..base import (
    Adapter,
    Button,
    Edit,
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
from ..models import Channel
from ..registry import register

# The standard messaging window (24 hours after the person's last message), and the HUMAN_AGENT
# message tag that lets a person (not a bot) answer up to 7 days after it
# (https://developers.facebook.com/documentation/business-messaging/messenger-platform/policy/,
# https://developers.facebook.com/docs/messenger-platform/send-messages). The tag needs Meta's
# approval of the app, so it is off unless the channel's settings say {"human_agent_tag": true}.
WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)

# Quick replies: at most 13, titles up to 20 characters, payloads up to 1000
# (https://developers.facebook.com/docs/messenger-platform/send-messages/quick-replies).
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_QUICK_REPLY_PAYLOAD = 1000
# Instagram comments are at most 2200 characters.
MAX_COMMENT = 2200

_MEDIA_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "document"}
_DEFAULT_TYPES = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mp4",
    "file": "application/octet-stream",
}
_OUTBOUND_MEDIA = {"image": "image", "video": "video", "audio": "audio"}
_ENVELOPE_KEYS = {"sender", "recipient", "timestamp"}


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise PayloadError("a Meta notification is an object with an entry array")
    if not isinstance(data.get("object"), str):
        raise PayloadError("a Meta notification names its object")
    for entry in data["entry"]:
        if not isinstance(entry, dict):
            raise PayloadError("each entry must be an object")
        for key in ("messaging", "standby", "changes"):
            items = entry.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise PayloadError(f"entry.{key} must be an array of objects")
    return data


def _event_key(event: dict[str, Any]) -> str:
    """What identifies one messaging event, for dedupe."""
    sender = str((event.get("sender") or {}).get("id") or "")
    at = str(event.get("timestamp") or "")
    if isinstance(event.get("message"), dict):
        mid = event["message"].get("mid")
        if not mid:
            raise PayloadError("a message needs its mid")
        return f"m:{mid}"
    if isinstance(event.get("postback"), dict):
        return f"pb:{event['postback'].get('mid') or sender + ':' + at}"
    if isinstance(event.get("delivery"), dict):
        delivery = event["delivery"]
        return f"dlv:{sender}:{delivery.get('watermark')}:{','.join(delivery.get('mids') or [])}"
    if isinstance(event.get("read"), dict):
        read = event["read"]
        return f"read:{sender}:{read.get('mid') or read.get('watermark')}"
    if isinstance(event.get("message_edit"), dict):
        edit = event["message_edit"]
        return f"edit:{edit.get('mid')}:{edit.get('num_edit')}"
    name = next((k for k in sorted(event) if k not in _ENVELOPE_KEYS), "event")
    return f"{name}:{sender}:{at}"


def _keys(data: dict[str, Any]) -> set[str]:
    """The ids of every event in a body, for dedupe; raises PayloadError on what Meta never
    sends (a message without its mid, a comment without its id or author)."""
    keys: set[str] = set()
    for entry in data["entry"]:
        keys.update(_event_key(e) for e in entry.get("messaging", []))
        keys.update("standby:" + _event_key(e) for e in entry.get("standby", []))
        for change in entry.get("changes", []):
            value = change.get("value") if isinstance(change.get("value"), dict) else {}
            if change.get("field") in ("comments", "live_comments") and not (
                value.get("id") and isinstance(value.get("from"), dict) and value["from"].get("id")
            ):
                raise PayloadError("a comment needs id and from.id")
            ident = value.get("id") or value.get("comment_id") or value.get("media_id")
            if ident:
                keys.add(f"{change.get('field')}:{ident}")
    return keys


def _when(milliseconds: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _attachment_name(url: str, attachment_type: str, n: int) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    if name and "." in name:
        return name
    extension = mimetypes.guess_extension(_DEFAULT_TYPES.get(attachment_type, "")) or ""
    return f"{attachment_type}-{n + 1}{extension}"


def _content_type(name: str, attachment_type: str) -> str:
    """The type by the file name, in the family Meta says it is: voice clips are
    `audioclip-....mp4`, which is audio although ".mp4" guesses video."""
    guessed = mimetypes.guess_type(name)[0] or _DEFAULT_TYPES[attachment_type]
    family = {"image": "image", "video": "video", "audio": "audio"}.get(attachment_type)
    if family and not guessed.startswith(family + "/"):
        return f"{family}/{guessed.split('/', 1)[1]}"
    return guessed


@register
class MessengerAdapter(Adapter):
    kind = "messenger"
    credential_names = ("page_access_token", "app_secret", "verify_token")
    # "text ... has a 2000 character limit"
    # (https://developers.facebook.com/docs/messenger-platform/reference/send-api/).
    max_text = 2000
    object_name: ClassVar[str] = "page"
    platform: ClassVar[str] = "Messenger"
    # Optional: the page (or Instagram account) this channel is; entries for others are ignored.
    account_setting: ClassVar[str] = "page_id"

    # Meta error codes an agent should read in plain words
    # (https://developers.facebook.com/docs/messenger-platform/error-codes).
    explain: ClassVar[graph.Explanations] = {
        (10, 2018278): "the reply is outside the 24-hour messaging window",
        (10, 2534022): "the reply is outside the 24-hour messaging window",
        551: "this person isn't available right now (they blocked the page or left)",
        (100, 2018001): "no person with this id can be messaged by this page",
        190: "the channel's page_access_token has expired or was revoked",
    }

    def text_size(self, text: str) -> int:
        """How the platform measures max_text."""
        return len(text)

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
        if len(keys) == 1 and len(next(iter(keys))) <= 255:
            return keys.pop()
        return "batch:" + body_hash("\n".join(sorted(keys)).encode())

    # ----------------------------------------------------------------------- parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        _keys(data)  # the same checks as at the door, for an event replayed from the store
        if data["object"] != self.object_name:
            # One app may send page and instagram objects to one URL: not this channel's.
            return [Ignored(reason=f"object {data['object']} on a {self.kind} channel")]
        mine = str(channel.settings.get(self.account_setting) or "")
        items: list[Parsed] = []
        for entry in data["entry"]:
            account = str(entry.get("id") or "")
            if mine and account and account != mine:
                items.append(Ignored(reason=f"for account {account}, not this channel's"))
                continue
            before = len(items)
            for event in entry.get("messaging", []):
                items.extend(self._event(channel, account, event))
            items.extend(
                Ignored(reason="standby: another app owns this conversation")
                for _ in entry.get("standby", [])
            )
            items.extend(self._change(channel, account, c) for c in entry.get("changes", []))
            if len(items) == before:
                items.append(Ignored(reason="empty entry"))
        return items

    def _event(self, channel: Channel, account: str, event: dict[str, Any]) -> list[Parsed]:
        sender = str((event.get("sender") or {}).get("id") or "")
        at = event.get("timestamp")
        if isinstance(event.get("message"), dict):
            message = event["message"]
            if message.get("is_echo") or (sender and sender == account):
                return [Ignored(reason="echo of a message this account sent")]
            if message.get("is_deleted"):
                return [Ignored(reason=f"the customer deleted message {message.get('mid')}")]
            if not sender:
                return [Ignored(reason="message from a sender without a scoped id")]
            return [self._message(channel, sender, at, message)]
        if isinstance(event.get("postback"), dict):
            if not sender:
                # Chat-plugin guests are named by user_ref, which the Send API cannot reach.
                return [Ignored(reason="postback from a sender without a scoped id")]
            return [self._postback(channel, sender, at, event["postback"])]
        if isinstance(event.get("delivery"), dict):
            mids = [str(m) for m in event["delivery"].get("mids") or [] if m]
            if not mids:
                return [Ignored(reason="delivery watermark without message ids")]
            return [
                StatusUpdate(
                    channel.pk, mid, "delivered", at=_when(event["delivery"].get("watermark"))
                )
                for mid in mids
            ]
        if isinstance(event.get("read"), dict):
            read = event["read"]
            if read.get("mid"):  # Instagram's messaging_seen names the message
                return [StatusUpdate(channel.pk, str(read["mid"]), "read", at=_when(at))]
            # Messenger says "everything before this time": matching it needs the messages
            # we sent to this person, which parse (pure, no database) cannot look up.
            return [Ignored(reason=f"read watermark {read.get('watermark')}")]
        if isinstance(event.get("message_edit"), dict):
            edit = event["message_edit"]
            return [
                Edit(channel.pk, str(edit.get("mid") or ""), str(edit.get("text") or ""), _when(at))
            ]
        if isinstance(event.get("reaction"), dict):
            # Not a request for help: it must not reopen a ticket or restart its SLA clock.
            reaction = event["reaction"]
            emoji = reaction.get("emoji") or reaction.get("reaction") or ""
            return [
                Ignored(
                    reason=f"{reaction.get('action', 'react')} {emoji} on {reaction.get('mid')}"
                )
            ]
        name = next((k for k in sorted(event) if k not in _ENVELOPE_KEYS), "empty")
        return [Ignored(reason=f"{name} event")]

    def _sender(self, sender: str, name: str = "") -> Sender:
        return Sender(kind=self.kind, value=sender, display_name=name)

    def _message(
        self, channel: Channel, sender: str, at: Any, message: dict[str, Any]
    ) -> InboundMessage:
        text = str(message.get("text") or "")
        kind = "text"
        attachments: list[InboundAttachment] = []
        # When the customer wrote, in Meta's milliseconds: send() chooses RESPONSE or the
        # HUMAN_AGENT tag by it.
        payload: dict[str, Any] = {"timestamp": at}
        quick_reply = message.get("quick_reply")
        if isinstance(quick_reply, dict):
            kind = "postback"
            payload["button"] = str(quick_reply.get("payload") or text)
            payload["label"] = text
        shared: list[dict[str, Any]] = []
        for n, attachment in enumerate(message.get("attachments") or []):
            if not isinstance(attachment, dict):
                continue
            attachment_type = str(attachment.get("type") or "")
            data = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
            url = str(data.get("url") or "")
            if attachment_type in _MEDIA_KINDS and url:
                media_kind = _MEDIA_KINDS[attachment_type]
                if data.get("sticker_id"):  # stickers and the "like" thumb are images
                    media_kind = "sticker"
                    payload["sticker_id"] = data["sticker_id"]
                name = _attachment_name(url, attachment_type, n)
                attachments.append(
                    InboundAttachment(
                        name=name,
                        content_type=_content_type(name, attachment_type),
                        source_url=url,
                    )
                )
                if kind == "text":
                    kind = media_kind
            elif attachment_type == "location":
                coordinates = data.get("coordinates") or {}
                kind = "location"
                payload["location"] = {
                    "latitude": coordinates.get("lat"),
                    "longitude": coordinates.get("long"),
                    "title": str(attachment.get("title") or ""),
                    "address": "",
                }
            elif attachment_type == "story_mention":
                # The customer mentioned the account in their story: the media is theirs and
                # ephemeral (Instagram forbids storing it), so only its URL is kept.
                kind = "mention"
                payload["story_mention"] = {"url": url, "id": data.get("id")}
            else:
                # Shared links (fallback), posts, reels, templates: references, not files.
                shared.append(
                    {
                        "type": attachment_type,
                        "url": url,
                        "title": str(attachment.get("title") or data.get("title") or ""),
                    }
                )
        if shared:
            payload["shared"] = shared
            if kind == "text" and not text:
                kind = "share"
        reply_to: tuple[str, ...] = ()
        replied = message.get("reply_to")
        if isinstance(replied, dict):
            if replied.get("mid"):
                reply_to = (str(replied["mid"]),)
            if isinstance(replied.get("story"), dict):
                payload["story_reply"] = {
                    "url": replied["story"].get("url"),
                    "id": replied["story"].get("id"),
                }
        if isinstance(message.get("referral"), dict):
            payload["referral"] = message["referral"]
        if message.get("is_unsupported") or (
            kind == "text" and not text and not attachments and len(payload) == 1
        ):
            kind = "unsupported"
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=str(message["mid"]),
            sender=self._sender(sender),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_when(at),
            reply_to=reply_to,
        )

    def _postback(
        self, channel: Channel, sender: str, at: Any, postback: dict[str, Any]
    ) -> InboundMessage:
        title = str(postback.get("title") or "")
        payload: dict[str, Any] = {
            "button": str(postback.get("payload") or title),
            "label": title,
            "timestamp": at,
        }
        if isinstance(postback.get("referral"), dict):
            payload["referral"] = postback["referral"]
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=str(postback.get("mid") or f"postback:{sender}:{at}"),
            sender=self._sender(sender),
            text=title,
            kind="postback",
            payload=payload,
            sent_at=_when(at),
        )

    def _change(self, channel: Channel, account: str, change: dict[str, Any]) -> Parsed:
        return Ignored(reason=f"{change.get('field', 'unknown')} change")

    # ----------------------------------------------------------------------- replying

    def _human_agent(self, channel: Channel) -> bool:
        return bool(channel.settings.get("human_agent_tag"))

    def check_reply(
        self,
        channel: Channel,
        last_customer_message_at: datetime | None,
        *,
        text: str = "",
        last_inbound: dict[str, Any] | None = None,
    ) -> str | None:
        if (last_inbound or {}).get("comment_id"):
            return None  # a public reply to a comment: no messaging window applies
        window = HUMAN_AGENT_WINDOW if self._human_agent(channel) else WINDOW
        if last_customer_message_at is not None and (
            timezone.now() - last_customer_message_at <= window
        ):
            return None
        if self._human_agent(channel):
            return (
                f"{self.platform} only allows a person to reply within 7 days of the customer's "
                "last message (24 hours, extended by the HUMAN_AGENT tag); wait for the customer "
                "to write again"
            )
        return (
            f"{self.platform} only allows replies within 24 hours of the customer's last "
            "message; wait for the customer to write again"
        )

    def _messaging_type(self, channel: Channel, last_inbound: dict[str, Any]) -> dict[str, str]:
        """RESPONSE inside the 24-hour window; after it, the HUMAN_AGENT tag if the channel may
        use it (check_reply has already refused what neither allows)."""
        written = _when(last_inbound.get("timestamp"))
        if (
            self._human_agent(channel)
            and written is not None
            and timezone.now() - written > WINDOW - timedelta(minutes=5)
        ):
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        return {"messaging_type": "RESPONSE"}

    def _token(self, channel: Channel) -> str:
        token = str(channel.credentials.get("page_access_token") or "")
        if not token:
            raise SendError("the channel has no page_access_token", permanent=True)
        return token

    def _post(self, channel: Channel, path: str, body: dict[str, Any], id_key: str) -> str:
        response = client().post(
            f"{base_url(self.kind)}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token(channel)}"},
        )
        graph.raise_for_graph(response, f"{self.platform} send", self.explain)
        try:
            return str(response.json()[id_key])
        except (ValueError, KeyError, TypeError) as exc:
            raise SendError(
                f"{self.platform} answered without a {id_key}: {exc}", permanent=True
            ) from exc

    def send(self, channel: Channel, out: Outbound) -> str:
        self._token(channel)
        last_inbound = out.extra.get("last_inbound") or {}
        if last_inbound.get("comment_id"):
            return self._reply_to_comment(channel, out, str(last_inbound["comment_id"]))
        if not out.recipient:
            raise SendError("the customer has no id on this channel", permanent=True)
        envelope = {
            "recipient": {"id": out.recipient},
            **self._messaging_type(channel, last_inbound),
        }
        buttons = list(out.buttons)
        native = bool(buttons) and self._quick_replies_fit(buttons) and bool(out.text.strip())
        text = out.text if native or not buttons else graph.numbered_text(out.text, buttons)
        parts = graph.split_text(text, self.max_text, size=self.text_size) if text.strip() else []
        primary = ""
        for n, part in enumerate(parts):
            message: dict[str, Any] = {"text": part}
            if native and n == len(parts) - 1:
                message["quick_replies"] = [
                    {"content_type": "text", "title": b.label or b.id, "payload": b.id}
                    for b in buttons
                ]
            primary = self._post(
                channel, "me/messages", {**envelope, "message": message}, "message_id"
            )
        for attachment in out.attachments:
            media_type = _OUTBOUND_MEDIA.get(attachment.content_type.split("/")[0], "file")
            message = {
                "attachment": {
                    "type": media_type,
                    "payload": {"url": attachment.url, "is_reusable": False},
                }
            }
            sent = self._post(
                channel, "me/messages", {**envelope, "message": message}, "message_id"
            )
            primary = primary or sent
        if not primary:
            raise SendError(
                "nothing to send: the reply has no text and no attachments", permanent=True
            )
        return primary

    def _quick_replies_fit(self, buttons: list[Button]) -> bool:
        return len(buttons) <= MAX_QUICK_REPLIES and all(
            0 < len(b.label or b.id) <= MAX_QUICK_REPLY_TITLE
            and 0 < len(b.id) <= MAX_QUICK_REPLY_PAYLOAD
            for b in buttons
        )

    def _reply_to_comment(self, channel: Channel, out: Outbound, comment_id: str) -> str:
        raise SendError(f"{self.platform} comments cannot be answered here", permanent=True)


@register
class InstagramAdapter(MessengerAdapter):
    kind = "instagram"
    # "text ... must be UTF-8 and less than 1000 bytes" (Instagram messaging Send API).
    max_text = 1000
    object_name = "instagram"
    platform = "Instagram"
    account_setting = "instagram_id"
    explain = MessengerAdapter.explain

    def text_size(self, text: str) -> int:
        return len(text.encode())

    def _change(self, channel: Channel, account: str, change: dict[str, Any]) -> Parsed:
        field = str(change.get("field") or "")
        value = change.get("value") if isinstance(change.get("value"), dict) else {}
        if field in ("comments", "live_comments"):
            return self._comment(channel, account, value)
        if field == "mentions":
            # Meta sends only comment_id and media_id: who wrote what needs a Graph API call,
            # which parsing (pure) cannot make.
            return Ignored(reason=f"@mention in comment {value.get('comment_id')} (not fetched)")
        return Ignored(reason=f"{field or 'unknown'} change")

    def _comment(self, channel: Channel, account: str, value: dict[str, Any]) -> Parsed:
        author = value.get("from") if isinstance(value.get("from"), dict) else {}
        author_id = str(author.get("id") or "")
        if author_id == account:
            return Ignored(reason="a comment by this account")
        media = value.get("media") if isinstance(value.get("media"), dict) else {}
        username = str(author.get("username") or "")
        payload: dict[str, Any] = {
            "comment_id": str(value["id"]),
            "media_id": str(media.get("id") or ""),
            "media_product_type": str(media.get("media_product_type") or ""),
        }
        if username:
            payload["username"] = username
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=f"comment:{value['id']}",
            sender=self._sender(author_id, f"@{username}" if username else ""),
            text=str(value.get("text") or ""),
            payload=payload,
            reply_to=(f"comment:{value['parent_id']}",) if value.get("parent_id") else (),
            # Every comment of one person under one post is one conversation.
            thread_key=f"ig-media:{media.get('id') or value['id']}",
            is_public=True,
        )

    def _reply_to_comment(self, channel: Channel, out: Outbound, comment_id: str) -> str:
        """A public reply under the customer's comment (POST /{ig-comment-id}/replies,
        https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-comment/replies).
        A comment cannot carry buttons or files: they become numbered text and links."""
        text = graph.numbered_text(out.text, out.buttons) if out.buttons else out.text
        text = graph.links_text(text, [a.url for a in out.attachments])
        if not text.strip():
            raise SendError("nothing to send: the reply is empty", permanent=True)
        primary = ""
        for part in graph.split_text(text, MAX_COMMENT):
            primary = self._post(channel, f"{comment_id}/replies", {"message": part}, "id")
        return f"comment:{primary}"
