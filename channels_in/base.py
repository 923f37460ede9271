"""What every platform adapter implements, and the normalized types it produces and consumes.

An adapter is the only code that knows a platform's wire format. The shared webhook view calls
`read_handshake`, `verify`, `event_id` and `ack` inside the request (no database writes but the
one event row); the worker calls `parse` (pure, no I/O) and `send` (HTTP to the platform).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.http import HttpRequest, HttpResponse

from tickets.inbound import InboundAttachment, InboundMessage, Sender

if TYPE_CHECKING:
    from .models import Channel

__all__ = [
    "Adapter",
    "Button",
    "Edit",
    "FetchError",
    "Ignored",
    "InboundAttachment",
    "InboundMessage",
    "Outbound",
    "Parsed",
    "PayloadError",
    "SendError",
    "Sender",
    "SignatureError",
    "StatusUpdate",
    "body_hash",
    "constant_time_equal",
]


class SignatureError(Exception):
    """The request does not prove it comes from the platform: 401 (missing) or 403 (wrong)."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class PayloadError(Exception):
    """The body is not what the platform sends: stored as a failed event, answered 400."""


class SendError(Exception):
    """Sending failed. `permanent` errors are not retried (blocked user, invalid recipient,
    outside the messaging window); the rest are retried with backoff."""

    def __init__(self, message: str, *, permanent: bool, code: str = "") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class FetchError(Exception):
    """Downloading a customer's media failed. `permanent` errors (gone, refused, too large,
    an address we never fetch) are recorded on the message at once; the rest are retried with
    backoff. The message is shown to agents: never put a secret or a tokenized URL in it."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery or read receipt for a message we sent: updates it, never opens a ticket."""

    channel_id: int
    platform_message_id: str
    status: str  # sent, delivered, read, failed
    error: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class Edit:
    """The customer edited a message they sent earlier."""

    channel_id: int
    platform_message_id: str
    text: str
    at: datetime | None = None


@dataclass(frozen=True)
class Ignored:
    """Something the platform told us that needs no action (an echo of our own send, a group
    message on a channel that ignores groups, a typing indicator); kept for the record."""

    reason: str


Parsed = InboundMessage | StatusUpdate | Edit | Ignored


@dataclass(frozen=True)
class Button:
    id: str
    label: str


@dataclass(frozen=True)
class OutboundAttachment:
    name: str
    content_type: str
    url: str  # an absolute URL the platform can fetch, or a local path for email
    path: str = ""


@dataclass(frozen=True)
class Outbound:
    """One message to send: built by the worker from a Delivery and its Message."""

    channel_id: int
    recipient: str  # the platform identity value (chat id, wa_id, PSID, phone, email)
    text: str
    message_id: int = 0
    ticket_id: int = 0
    buttons: tuple[Button, ...] = ()
    attachments: tuple[OutboundAttachment, ...] = ()
    reply_to: str = ""  # platform id of the customer message this answers, if any
    subject: str = ""  # email
    references: tuple[str, ...] = ()  # email In-Reply-To/References chain
    extra: dict[str, Any] = field(default_factory=dict)


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Adapter:
    """Base class: override what the platform needs. See channels_in/<kind>/adapter.py."""

    kind: ClassVar[str] = ""
    # Names of the credentials this kind needs (validated when a channel is created).
    credential_names: ClassVar[tuple[str, ...]] = ()
    # The most characters the platform accepts in one text message.
    max_text: ClassVar[int] = 4096

    def handshake(self, channel: Channel, request: HttpRequest, body: bytes) -> HttpResponse | None:
        """Answer a verification handshake (Meta hub.challenge, X CRC, VK confirmation), or
        return None for a normal delivery. Must verify whatever the platform lets us verify."""
        return None

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        """Raise SignatureError unless the request is signed by the platform."""
        raise NotImplementedError

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        """The platform's own id for this delivery, for dedupe; raise PayloadError if the body
        is malformed. Default: a hash of the body (a retry carries the identical body)."""
        return "sha256:" + body_hash(body)

    def redact(self, channel: Channel, body: bytes) -> bytes:
        """The body as it may be stored: remove secrets a platform puts inside it (VK's
        `secret`). Called after verification, before the event is written."""
        return body

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        """Turn one stored event into normalized items. Pure: no I/O, no database."""
        raise NotImplementedError

    def ack(self, channel: Channel) -> HttpResponse:
        """The 200 answer the platform expects."""
        return HttpResponse("ok", content_type="text/plain")

    def send(self, channel: Channel, out: Outbound) -> str:
        """Send one message; return the platform's id for it, or raise SendError."""
        raise SendError(f"sending on {self.kind} is not supported", permanent=True)

    def check_reply(
        self,
        channel: Channel,
        last_customer_message_at: datetime | None,
        *,
        text: str = "",
        last_inbound: dict[str, Any] | None = None,
    ) -> str | None:
        """Why an agent's reply cannot be sent now (outside WhatsApp's 24-hour window, too long
        for a public post), or None. Asked before the reply is written, so the agent hears it
        at once. `last_inbound` is the payload of the customer's last message (which says,
        e.g., that it was a public comment)."""
        return None

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        """The headers a genuine delivery of `body` to `url` carries (for `simulate` and
        tests: requests signed exactly as the platform signs them)."""
        return {}

    def fetch_media(self, channel: Channel, source_url: str) -> tuple[bytes, str, str | None]:
        """Download what an attachment's `source_url` refers to: (content, content type,
        file name or None). Called by the worker, never in the webhook; raise FetchError.

        Default: a plain GET of an http(s) URL (Messenger and Instagram CDN links, Viber,
        VK), streamed with a hard size cap, redirects checked hop by hop, and never to a
        private address unless it is a configured platform base URL (channels_in.media).
        Override when the platform needs a lookup or credentials (Telegram getFile, WhatsApp
        media ids, Twilio basic auth, X OAuth)."""
        from .media import download  # imported late: media needs the HTTP client

        return download(source_url)
