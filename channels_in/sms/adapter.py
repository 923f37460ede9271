"""SMS through Twilio Programmable Messaging.

Inbound (https://www.twilio.com/docs/messaging/guides/webhook-request): Twilio POSTs
`application/x-www-form-urlencoded` parameters (MessageSid, From, To, Body, NumMedia,
MediaUrl{N}, MediaContentType{N}, ...) to the number's webhook and expects TwiML back; we answer
an empty `<Response/>` (the reply comes later, from an agent or a bot, through the REST API).

Status callbacks (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks)
come to the same URL: we pass it as `StatusCallback` on every send. They carry the MessageSid of
our message, `MessageStatus` and, when it failed, `ErrorCode`.

Signature (https://www.twilio.com/docs/usage/webhooks/webhooks-security): `X-Twilio-Signature`
is the base64 HMAC-SHA1, keyed with the auth token, of the full URL Twilio called followed by
every POST parameter, sorted by name, as name + value with no separators.

Dedupe on MessageSid; a status callback on MessageSid + status (one message reports "sent",
then "delivered").

Outbound (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):
`POST /Accounts/{AccountSid}/Messages.json` with To, From, Body, HTTP basic auth
account_sid:auth_token. Twilio takes at most 1600 characters per message, so a longer reply is
split into several messages at sentence or word boundaries (never truncated: an agent's answer
arrives whole). SMS has no buttons: they are written as a numbered list; attachments as links
(MMS reaches only some countries).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import mimetypes
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from tickets.errors import InvalidInput
from tickets.identities import normalize_phone

from .. import meta as text_tools
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
    constant_time_equal,
)
from ..http import base_url, classify, client
from ..media import download, origin
from ..models import Channel
from ..registry import register

SIGNATURE_HEADER = "X-Twilio-Signature"
_SIGNATURE_META = "HTTP_X_TWILIO_SIGNATURE"
# "The maximum length of a message body is 1600 characters" (Message resource, Body).
MAX_BODY = 1600
MAX_MEDIA = 10
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# MessageStatus values of a status callback, and what they mean for our message
# (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
# Statuses before the hand-off to the carrier: we already call the message "sent" (accepted).
_EARLY_STATUSES = {"accepted", "queued", "sending", "scheduled", "partially_delivered"}
_INBOUND_STATUSES = {"received", "receiving"}

# Twilio error codes in plain words (https://www.twilio.com/docs/api/errors).
EXPLAIN = {
    "21211": "the customer's number is not a valid phone number",
    "21408": "this Twilio account may not send SMS to that country",
    "21610": "the customer has unsubscribed from this number (they replied STOP); they must "
    "text START before we can write again",
    "21612": "Twilio cannot route a message from this number to that one",
    "21614": "the customer's number cannot receive SMS (not a mobile number)",
    "21617": "the message is over Twilio's 1600-character limit",
    "20003": "the channel's account_sid or auth_token is wrong",
    "30003": "the customer's phone is switched off or unreachable",
    "30004": "the message was blocked (the customer may have blocked this number)",
    "30005": "the customer's number is unknown or no longer in service",
    "30006": "the number is a landline or its carrier cannot take SMS",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier reported an unknown error",
}
# Permanent whatever the HTTP status: retrying the same request cannot succeed.
PERMANENT_CODES = {"21211", "21408", "21610", "21612", "21614", "21617", "20003"}


def _params(body: bytes, *, strict: bool) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8") if strict else body.decode("utf-8", errors="replace")
        return parse_qsl(text, keep_blank_values=True, errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the form body is not UTF-8: {exc}") from exc


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's signature of a request: base64(HMAC-SHA1(auth_token, url + sorted params)).
    Repeated names contribute every value, sorted, as Twilio's own helper libraries do."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for name, value in params:
        grouped[name].add(value)
    data = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _with_and_without_port(url: str) -> list[str]:
    """Twilio signs the URL as configured; for https it may or may not have included :443
    (its helper libraries check both), and likewise :80 for http."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default is None or not parts.hostname:
        return variants
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    return variants


def candidate_urls(request: HttpRequest) -> list[str]:
    """The URLs Twilio may have signed. First settings.SITE_URL + the path: behind a proxy or
    load balancer the public scheme and host are the configured ones, not what Django sees.
    Also what Django reconstructs (request.build_absolute_uri), for deployments that talk to
    Twilio directly or through a tunnel whose host differs from SITE_URL (development). Both are
    checked against an HMAC keyed with the secret auth token, so accepting either lets no one
    in who could not sign; it only stops a stale SITE_URL from rejecting every message."""
    urls = _with_and_without_port(settings.SITE_URL.rstrip("/") + request.get_full_path())
    with contextlib.suppress(DisallowedHost):
        urls += _with_and_without_port(request.build_absolute_uri())
    return list(dict.fromkeys(urls))


def _first(params: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in params:
        values.setdefault(name, value)
    return values


def _values(body: bytes) -> dict[str, str]:
    """The parameters of a Twilio request (the first value of each), checked for what every
    messaging request has: a malformed body is refused at the door (400), never half-read."""
    values = _first(_params(body, strict=True))
    if not (values.get("MessageSid") or values.get("SmsSid")):
        raise PayloadError("a Twilio messaging request needs MessageSid")
    if not (values.get("NumMedia") or "0").isdigit():
        raise PayloadError("NumMedia is not a number")
    return values


def _media_name(url: str, content_type: str, n: int) -> str:
    media_sid = PurePosixPath(urlsplit(url).path).name or f"media-{n}"
    extension = mimetypes.guess_extension(content_type) or ""
    return media_sid if "." in media_sid else f"{media_sid}{extension}"


@register
class SmsAdapter(Adapter):
    kind = "sms"
    credential_names = ("account_sid", "auth_token", "from_number")
    max_text = MAX_BODY

    # ----------------------------------------------------------------------- the request

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        given = request.META.get(_SIGNATURE_META, "").strip()
        if not given:
            raise SignatureError(f"missing {SIGNATURE_HEADER}", status=401)
        token = str(channel.credentials.get("auth_token") or "")
        if not token:
            raise SignatureError(f"the channel has no auth_token to check {SIGNATURE_HEADER}")
        params = _params(body, strict=False)
        for url in candidate_urls(request):
            if constant_time_equal(given, signature(token, url, params)):
                return
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the URL and parameters")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        token = str(channel.credentials.get("auth_token") or "")
        return {SIGNATURE_HEADER: signature(token, url, _params(body, strict=False))}

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        values = _values(body)
        sid = values.get("MessageSid") or values.get("SmsSid")
        status = self._callback_status(values)
        return f"status:{sid}:{status}" if status else f"sms:{sid}"

    def ack(self, channel: Channel) -> HttpResponse:
        # Empty TwiML: Twilio sends nothing back by itself; our reply comes through the API.
        return HttpResponse(TWIML_EMPTY, content_type="text/xml")

    @staticmethod
    def _callback_status(values: dict[str, str]) -> str:
        """The status of a status callback, or "" for an incoming message."""
        status = values.get("MessageStatus") or values.get("SmsStatus") or ""
        return "" if status in _INBOUND_STATUSES else status

    # ----------------------------------------------------------------------- parsing

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        values = _values(body)
        sid = values["MessageSid"] if values.get("MessageSid") else values["SmsSid"]
        status = self._callback_status(values)
        if status:
            return [self._status(channel, sid, status, values)]
        sender = values.get("From", "")
        try:
            normalize_phone(sender)
        except InvalidInput:
            # Short codes and alphanumeric senders (carriers, banks): nobody to answer.
            return [Ignored(reason=f"sender {sender!r} is not a phone number")]
        attachments = []
        for n in range(min(int(values.get("NumMedia") or 0), MAX_MEDIA)):
            url = values.get(f"MediaUrl{n}", "")
            if not url:
                continue
            content_type = values.get(f"MediaContentType{n}") or "application/octet-stream"
            attachments.append(
                InboundAttachment(
                    name=_media_name(url, content_type, n),
                    content_type=content_type,
                    # Twilio keeps the media; the worker fetches it (with basic auth if the
                    # account requires it for media).
                    source_url=url,
                )
            )
        kind = "text"
        if attachments:
            family = attachments[0].content_type.split("/")[0]
            kind = family if family in ("image", "video", "audio") else "document"
        payload: dict[str, Any] = {"to": values.get("To", "")}
        place = {
            key: values[f"From{key.capitalize()}"]
            for key in ("city", "state", "country", "zip")
            if values.get(f"From{key.capitalize()}")
        }
        if place:
            payload["place"] = place
        if values.get("OptOutType"):
            # Advanced Opt-Out: Twilio already answered STOP/START/HELP and blocks sends.
            payload["opt_out"] = values["OptOutType"]
        return [
            InboundMessage(
                channel_id=channel.pk,
                platform_message_id=sid,
                sender=Sender(kind="phone", value=sender, phone=sender),
                text=values.get("Body", ""),
                kind=kind,
                attachments=tuple(attachments),
                payload=payload,
            )
        ]

    def _status(self, channel: Channel, sid: str, status: str, values: dict[str, str]) -> Parsed:
        state = _STATUSES.get(status)
        if state is None:
            reason = "before hand-off" if status in _EARLY_STATUSES else "unknown"
            return Ignored(reason=f"status {status} ({reason})")
        error = ""
        if state == "failed":
            code = values.get("ErrorCode", "")
            error = f"Twilio reported the message {status}"
            if code:
                error += f": {EXPLAIN.get(code, 'error')} (error {code})"
        return StatusUpdate(
            channel_id=channel.pk, platform_message_id=sid, status=state, error=error
        )

    # ----------------------------------------------------------------------- replying

    def send(self, channel: Channel, out: Outbound) -> str:
        account = str(channel.credentials.get("account_sid") or "")
        token = str(channel.credentials.get("auth_token") or "")
        sender = str(channel.credentials.get("from_number") or "")
        if not account or not token or not sender:
            raise SendError(
                "the channel needs account_sid, auth_token and from_number", permanent=True
            )
        text = text_tools.numbered_text(out.text, out.buttons) if out.buttons else out.text
        text = text_tools.links_text(text, [a.url for a in out.attachments])
        if not text.strip():
            raise SendError("nothing to send: the reply is empty", permanent=True)
        callback = settings.SITE_URL.rstrip("/") + reverse(
            "webhook", kwargs={"kind": self.kind, "channel_key": channel.key}
        )
        url = f"{base_url('sms')}/Accounts/{account}/Messages.json"
        sid = ""
        # Parts go in order; receipts update the message by its last part. A transient error
        # after the first part resends the earlier ones on retry (at-least-once).
        for part in text_tools.split_text(text, MAX_BODY):
            response = client().post(
                url,
                data={
                    "To": out.recipient,
                    "From": sender,
                    "Body": part,
                    "StatusCallback": callback,
                },
                auth=(account, token),
            )
            self._raise_for_twilio(response)
            try:
                sid = str(response.json()["sid"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SendError(f"Twilio answered without a sid: {exc}", permanent=True) from exc
        return sid

    @staticmethod
    def _raise_for_twilio(response: Any) -> None:
        if response.is_success:
            return
        try:
            data = response.json()
        except ValueError:
            data = None
        code = str(data.get("code") or "") if isinstance(data, dict) else ""
        if not code:
            classify(response, "Twilio send")
            return
        message = EXPLAIN.get(code) or str(data.get("message") or "unknown error")
        transient = response.status_code == 429 or response.status_code >= 500
        raise SendError(
            f"Twilio send: {message} (error {code}, HTTP {response.status_code})",
            permanent=code in PERMANENT_CODES or not transient,
            code=code,
        )

    def fetch_media(self, channel: Channel, source_url: str) -> tuple[bytes, str, str | None]:
        """MediaUrlN points at the Message's Media resource on api.twilio.com, which answers
        with a redirect to the file; with "HTTP Basic Auth for media" on, it wants the
        account's credentials (https://www.twilio.com/docs/messaging/api/media-resource).
        They go to Twilio's own origin only: never to another host a payload names, and
        never across the redirect to the file's storage."""
        account = str(channel.credentials.get("account_sid") or "")
        token = str(channel.credentials.get("auth_token") or "")
        if not account or not token or origin(source_url) != origin(base_url("sms")):
            return super().fetch_media(channel, source_url)
        basic = base64.b64encode(f"{account}:{token}".encode()).decode()
        return download(source_url, auth=lambda _url: {"Authorization": f"Basic {basic}"})
