"""X (Twitter): the Account Activity API delivers DMs, mentions and account events to our
webhook; we answer by DM (X API v2) or with a public reply post.

Verification (https://docs.x.com/x-api/webhooks/quickstart and
https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks):
- CRC: X GETs the webhook with `crc_token`; we answer `{"response_token": "sha256=" +
  base64(HMAC-SHA256(consumer_secret, crc_token))}` (at registration and about hourly).
- Every POST carries `x-twitter-webhooks-signature: sha256=` + base64 HMAC-SHA256 of the raw
  body with the same consumer secret.
Because both use the same key and construction, the CRC endpoint is an HMAC oracle: whoever can
make us sign an arbitrary crc_token could sign a forged body. We therefore only sign tokens
made of URL-safe/base64 characters, which no JSON object (the only body we accept) can be.

Payloads (https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/
account-activity-data-objects): one JSON object with `for_user_id` (the subscribed brand
account) and one array per activity (`direct_message_events`, `tweet_create_events`, ...), plus
`users` (hydrated user objects by id) for DMs. Tweets are v1.1 Tweet objects.

Ids: a DM's platform id is its event id, a post's is its id_str (both snowflakes from one id
space, so they never collide). A public mention is ticketed per thread: thread_key is the post
it replies to (or itself), and reply_to points at that post, so an answer to our public reply
lands on the ticket our reply belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from ..base import (
    Adapter,
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
    StatusUpdate,
    body_hash,
    constant_time_equal,
)
from ..http import base_url, classify, client
from ..media import download, origin
from ..models import Channel
from ..registry import register
from .length import MAX_WEIGHTED_LENGTH, weighted_length
from .oauth import authorization_header

SIGNATURE_HEADER = "HTTP_X_TWITTER_WEBHOOKS_SIGNATURE"
# CRC tokens X sends are short random strings; refusing anything else (in particular "{")
# keeps the CRC answer from signing a forged JSON body (see the module docstring).
CRC_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")
# A DM holds up to 10,000 characters (the endpoint:
# https://docs.x.com/x-api/direct-messages/create-dm-message-by-participant-id).
MAX_DM_CHARS = 10_000
MAX_EVENT_ID_CHARS = 200

# Activities that never need an answer from us, by the key X delivers them under.
_IGNORED_ACTIVITIES = (
    "favorite_events",
    "follow_events",
    "unfollow_events",
    "block_events",
    "unblock_events",
    "mute_events",
    "unmute_events",
    "tweet_delete_events",
    "user_event",
    "direct_message_indicate_typing_events",
)
_KNOWN_ACTIVITIES = (
    "direct_message_events",
    "tweet_create_events",
    "direct_message_mark_read_events",
    *_IGNORED_ACTIVITIES,
)
# The field that names each event, for dedupe (typing/read/follow events carry none).
_EVENT_IDS = {
    "direct_message_events": ("dm", "id"),
    "tweet_create_events": ("post", "id_str"),
    "favorite_events": ("like", "id"),
}
_MEDIA_KINDS = {"photo": "image", "video": "video", "animated_gif": "video"}


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("an Account Activity payload must be a JSON object")
    for key in _KNOWN_ACTIVITIES:
        if key in data and key != "user_event" and not isinstance(data[key], list):
            raise PayloadError(f"{key} must be an array")
    return data


def hmac_sha256_b64(consumer_secret: str, message: bytes) -> str:
    """`sha256=` + base64 HMAC-SHA256: the CRC response_token (over the crc_token) and the
    x-twitter-webhooks-signature (over the raw body) are both this."""
    digest = hmac.new(consumer_secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def _from_ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _id(value: Any) -> str:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _expand_urls(text: str, entities: dict[str, Any] | None, drop: str = "") -> str:
    """The text as the customer wrote it: v1.1 text escapes &, < and > as HTML entities (we
    store plain text and escape where it is shown), t.co links stand for the links they typed,
    and the link X appends for attached media is not theirs."""
    if drop:
        text = text.replace(drop, "")
    for item in (entities or {}).get("urls") or []:
        short, full = item.get("url"), item.get("expanded_url")
        if isinstance(short, str) and isinstance(full, str) and short:
            text = text.replace(short, full)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.strip()


def _attachment(media: dict[str, Any]) -> tuple[str, InboundAttachment]:
    kind = _MEDIA_KINDS.get(str(media.get("type") or ""), "document")
    # Photos in DMs live on ton.twitter.com, which serves them only to a request signed with
    # the brand's OAuth user token; public media and videos are plain URLs.
    url = str(media.get("media_url_https") or media.get("media_url") or "")
    variants = (media.get("video_info") or {}).get("variants") or []
    mp4 = [v for v in variants if v.get("content_type") == "video/mp4" and v.get("url")]
    if mp4:  # a video or GIF: the mp4 with the best bitrate, not its poster frame
        url = max(mp4, key=lambda v: int(v.get("bitrate") or 0))["url"]
    extension = url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower() if "." in url else ""
    content_type = {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "gif": "image/gif",
        "webp": "image/webp",
        "mp4": "video/mp4",
    }.get(extension, "application/octet-stream")
    name = f"{media.get('type') or 'media'}-{media.get('id_str') or media.get('id') or ''}"
    if extension:
        name = f"{name}.{extension}"
    return kind, InboundAttachment(name=name, content_type=content_type, source_url=url)


def _user_name(user: dict[str, Any]) -> str:
    name = str(user.get("name") or "").strip()
    return name or (f"@{user['screen_name']}" if user.get("screen_name") else "")


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def numbered_options(text: str, buttons: list[tuple[str, str]]) -> str:
    lines = [f"{n}. {label}" for n, (_, label) in enumerate(buttons, start=1)]
    return "\n".join([text, "", *lines]) if text else "\n".join(lines)


@register
class XAdapter(Adapter):
    kind = "x"
    credential_names = (
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_token_secret",
        "brand_handle",
    )
    max_text = MAX_DM_CHARS

    # ------------------------------------------------------------------ webhook

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        if request.method != "GET" or "crc_token" not in request.GET:
            return None
        token = request.GET["crc_token"]
        if not CRC_TOKEN.fullmatch(token):
            return JsonResponse(
                {"error": {"code": "bad_crc_token", "message": "crc_token has unexpected form"}},
                status=400,
            )
        secret = str(channel.credentials.get("consumer_secret") or "")
        if not secret:
            raise SignatureError("the channel has no consumer_secret to answer the CRC")
        return JsonResponse({"response_token": hmac_sha256_b64(secret, token.encode())})

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        given = request.META.get(SIGNATURE_HEADER)
        if not given:
            raise SignatureError("missing x-twitter-webhooks-signature", status=401)
        secret = str(channel.credentials.get("consumer_secret") or "")
        if not secret or not constant_time_equal(given, hmac_sha256_b64(secret, body)):
            raise SignatureError("x-twitter-webhooks-signature does not match the body")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        secret = str(channel.credentials.get("consumer_secret") or "")
        return {"x-twitter-webhooks-signature": hmac_sha256_b64(secret, body)}

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        data = _load(body)
        parts: list[str] = []
        for key, events in data.items():
            if key not in _KNOWN_ACTIVITIES or not isinstance(events, list):
                continue
            if key not in _EVENT_IDS:
                return "sha256:" + body_hash(body)  # typing, read, follows: no ids of their own
            prefix, field = _EVENT_IDS[key]
            for event in events:
                ident = _id(event.get(field)) if isinstance(event, dict) else ""
                if not ident:
                    return "sha256:" + body_hash(body)
                parts.append(f"{prefix}:{ident}")
        if not parts:
            return "sha256:" + body_hash(body)
        joined = ",".join(sorted(parts))
        if len(joined) > MAX_EVENT_ID_CHARS:
            return "ids:" + hashlib.sha256(joined.encode()).hexdigest()
        return joined

    # ------------------------------------------------------------------ parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        data = _load(body)
        brand = _id(data.get("for_user_id")) or str(channel.settings.get("user_id") or "")
        handle = str(channel.credentials.get("brand_handle") or "").lstrip("@").lower()
        users = data.get("users") if isinstance(data.get("users"), dict) else {}
        items: list[Parsed] = [
            *(
                self._direct_message(channel, event, users, brand)
                for event in data.get("direct_message_events") or []
            ),
            *(
                self._post(channel, post, brand, handle)
                for post in data.get("tweet_create_events") or []
            ),
            *(
                self._read(channel, receipt, brand)
                for receipt in data.get("direct_message_mark_read_events") or []
            ),
        ]
        for key in _IGNORED_ACTIVITIES:
            events = data.get(key)
            if isinstance(events, list):
                items.extend(Ignored(reason=key.removesuffix("_events")) for _ in events)
            elif events is not None:
                items.append(Ignored(reason=key))
        if not items:
            # An activity we do not know yet (X adds them): kept for the record, not an error.
            keys = ", ".join(sorted(k for k in data if k not in ("for_user_id", "users"))[:5])
            items.append(Ignored(reason=f"no activity we act on ({keys or 'empty'})"))
        return items

    def _direct_message(
        self, channel: Channel, event: Any, users: dict[str, Any], brand: str
    ) -> Parsed:
        if not isinstance(event, dict):
            raise PayloadError("a direct message event must be an object")
        if event.get("type") != "message_create":
            return Ignored(reason=f"direct message event {event.get('type')!r}")
        create = event.get("message_create")
        event_id = _id(event.get("id"))
        if not isinstance(create, dict) or not event_id:
            raise PayloadError("a message_create event needs id and message_create")
        sender_id = _id(create.get("sender_id"))
        if not sender_id:
            raise PayloadError("message_create needs sender_id")
        if brand and sender_id == brand:
            # DMs the brand sends (from us or from X's own app) come back as events too.
            return Ignored(reason="echo of our own direct message")
        data = create.get("message_data") or {}
        attachment = data.get("attachment") or {}
        media = attachment.get("media") if attachment.get("type") == "media" else None
        text = _expand_urls(
            str(data.get("text") or ""),
            data.get("entities"),
            drop=str(media.get("url") or "") if isinstance(media, dict) else "",
        )
        kind, attachments, payload = "text", [], {}
        if isinstance(media, dict):
            kind, item = _attachment(media)
            attachments.append(item)
        reply = data.get("quick_reply_response")
        if isinstance(reply, dict) and reply.get("metadata"):
            kind = "postback"
            payload["button"] = str(reply["metadata"])
        user = users.get(sender_id) if isinstance(users.get(sender_id), dict) else {}
        if user.get("screen_name"):
            payload["screen_name"] = str(user["screen_name"])
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=event_id,
            sender=Sender(
                kind="x",
                value=sender_id,
                display_name=_user_name(user),
                followers=_int(user.get("followers_count")),
                verified=bool(user.get("verified")),
            ),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_from_ms(event.get("created_timestamp")),
        )

    def _post(self, channel: Channel, post: Any, brand: str, handle: str) -> Parsed:
        if not isinstance(post, dict) or not _id(post.get("id_str") or post.get("id")):
            raise PayloadError("a post needs id_str")
        user = post.get("user")
        if not isinstance(user, dict) or not _id(user.get("id_str") or user.get("id")):
            raise PayloadError("a post needs its user")
        post_id = _id(post.get("id_str") or post.get("id"))
        author = _id(user.get("id_str") or user.get("id"))
        screen_name = str(user.get("screen_name") or "")
        if (brand and author == brand) or (handle and screen_name.lower() == handle):
            return Ignored(reason="our own post")
        if isinstance(post.get("retweeted_status"), dict):
            return Ignored(reason="a repost")
        # Posts over 140 characters arrive truncated, with the whole text in extended_tweet.
        extended = post.get("extended_tweet") if post.get("truncated") else None
        source = extended if isinstance(extended, dict) else post
        text = str(source.get("full_text") or source.get("text") or "")
        media_list = (source.get("extended_entities") or {}).get("media") or []
        text = _expand_urls(
            text,
            source.get("entities"),
            drop=" ".join(str(m.get("url") or "") for m in media_list[:1]),
        )
        kind, attachments = "mention", []
        for media in media_list:
            media_kind, item = _attachment(media)
            kind = media_kind if kind == "mention" else kind
            attachments.append(item)
        parent = _id(post.get("in_reply_to_status_id_str") or post.get("in_reply_to_status_id"))
        payload: dict[str, Any] = {
            "public": True,
            "tweet_id": post_id,
            "screen_name": screen_name,
            "url": f"https://x.com/{screen_name or 'i'}/status/{post_id}",
        }
        if post.get("is_quote_status") and post.get("quoted_status_id_str"):
            payload["quoted_tweet_id"] = str(post["quoted_status_id_str"])
        language = str(post.get("lang") or "")
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=post_id,
            sender=Sender(
                kind="x",
                value=author,
                display_name=_user_name(user),
                language="" if language in ("und", "qme", "zxx") else language[:2],
                followers=_int(user.get("followers_count")),
                verified=bool(user.get("verified")),
            ),
            text=text,
            kind=kind,
            attachments=tuple(attachments),
            payload=payload,
            sent_at=_from_ms(post.get("timestamp_ms")),
            reply_to=(parent,) if parent else (),
            thread_key=f"x-thread:{parent or post_id}",
            is_public=True,
        )

    def _read(self, channel: Channel, receipt: Any, brand: str) -> Parsed:
        if not isinstance(receipt, dict):
            raise PayloadError("a read event must be an object")
        reader = _id(receipt.get("sender_id"))
        last_read = _id(receipt.get("last_read_event_id"))
        if brand and reader == brand:
            return Ignored(reason="we read the customer's message")
        if not last_read:
            return Ignored(reason="read event without last_read_event_id")
        # A StatusUpdate rather than Ignored: agents see that the customer has read our answer.
        # X means "everything up to this event"; the core marks the one message it names.
        return StatusUpdate(
            channel_id=channel.pk,
            platform_message_id=last_read,
            status="read",
            at=_from_ms(receipt.get("created_timestamp")),
        )

    # ------------------------------------------------------------------ sending

    def check_reply(
        self,
        channel: Channel,
        last_customer_message_at: datetime | None,
        *,
        text: str = "",
        last_inbound: dict[str, Any] | None = None,
    ) -> str | None:
        # Said while the agent composes, not after the send fails: a public reply must fit.
        last = last_inbound or {}
        if last.get("public") and last.get("tweet_id") and text:
            length = weighted_length(text)
            if length > MAX_WEIGHTED_LENGTH:
                return (
                    f"a public reply on X may be {MAX_WEIGHTED_LENGTH} characters by X's count; "
                    f"this one is {length}. Shorten it, or ask the customer to continue by DM."
                )
        return None

    def send(self, channel: Channel, out: Outbound) -> str:
        creds = channel.credentials
        names = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
        missing = [name for name in names if not creds.get(name)]
        if missing:
            raise SendError(f"the X channel lacks {', '.join(missing)}", permanent=True)
        text = out.text
        # Quick replies exist only in the retired v1.1 DM API, so buttons are numbered lines
        # the customer answers with a number or the label.
        if out.buttons:
            text = numbered_options(text, [(b.id, b.label) for b in out.buttons])
        if out.attachments:
            text = "\n".join([text, *(a.url for a in out.attachments)]).strip()
        last = out.extra.get("last_inbound") or {}
        if last.get("public") and last.get("tweet_id"):
            return self._reply_publicly(channel, text, str(last["tweet_id"]))
        return self._send_dm(channel, out.recipient, text)

    def _reply_publicly(self, channel: Channel, text: str, tweet_id: str) -> str:
        length = weighted_length(text)
        if length > MAX_WEIGHTED_LENGTH:
            # Cutting or splitting an answer changes what the agent said in public; refuse it
            # and let the agent shorten it or move the conversation to DMs.
            raise SendError(
                f"a public reply on X may be {MAX_WEIGHTED_LENGTH} characters by X's count; "
                f"this one is {length}. Shorten it, or ask the customer to continue by DM.",
                permanent=True,
                code="too_long",
            )
        url = f"{base_url('x')}/2/tweets"
        body = {"text": text, "reply": {"in_reply_to_tweet_id": tweet_id}}
        data = self._post_json(channel, url, body, "X create post")
        post_id = _id((data.get("data") or {}).get("id"))
        if not post_id:
            raise SendError(f"X create post: no id in the answer: {data}", permanent=False)
        return post_id

    def _send_dm(self, channel: Channel, recipient: str, text: str) -> str:
        if not recipient.isdigit():
            raise SendError(f"{recipient!r} is not an X user id", permanent=True)
        if len(text) > MAX_DM_CHARS:
            raise SendError(
                f"an X direct message holds {MAX_DM_CHARS} characters; this one has {len(text)}",
                permanent=True,
                code="too_long",
            )
        url = f"{base_url('x')}/2/dm_conversations/with/{recipient}/messages"
        data = self._post_json(channel, url, {"text": text}, "X send direct message")
        event_id = _id((data.get("data") or {}).get("dm_event_id"))
        if not event_id:
            raise SendError(f"X send direct message: no dm_event_id: {data}", permanent=False)
        return event_id

    def _post_json(
        self, channel: Channel, url: str, body: dict[str, Any], what: str
    ) -> dict[str, Any]:
        creds = channel.credentials
        auth = authorization_header(
            "POST",
            url,
            consumer_key=str(creds["consumer_key"]),
            consumer_secret=str(creds["consumer_secret"]),
            token=str(creds["access_token"]),
            token_secret=str(creds["access_token_secret"]),
        )
        response = client().post(url, json=body, headers={"Authorization": auth})
        classify(response, what)
        try:
            data = response.json()
        except ValueError as exc:
            raise SendError(f"{what}: the answer is not JSON", permanent=False) from exc
        return data if isinstance(data, dict) else {}

    def fetch_media(self, channel: Channel, source_url: str) -> tuple[bytes, str, str | None]:
        """Photos in direct messages live on ton.twitter.com and are served only to a GET
        signed with the brand's OAuth 1.0a user token
        (https://developer.x.com/en/docs/direct-messages/message-attachments/guides/retrieving-media);
        other media (public posts, video variants on video.twimg.com) are plain URLs, fetched
        unsigned, so no signature is ever sent to a host a payload names."""
        parsed = origin(source_url)
        signed_hosts = {("https", "ton.twitter.com", 443), origin(base_url("x"))}
        if parsed is None or parsed not in signed_hosts:
            return super().fetch_media(channel, source_url)
        creds = channel.credentials
        names = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
        if not all(creds.get(name) for name in names):
            raise FetchError(
                "the channel needs consumer_key, consumer_secret, access_token and "
                "access_token_secret to fetch direct message media",
                permanent=True,
            )

        def sign(url: str) -> dict[str, str]:
            return {
                "Authorization": authorization_header(
                    "GET",
                    url,
                    consumer_key=str(creds["consumer_key"]),
                    consumer_secret=str(creds["consumer_secret"]),
                    token=str(creds["access_token"]),
                    token_secret=str(creds["access_token_secret"]),
                )
            }

        return download(source_url, auth=sign)
