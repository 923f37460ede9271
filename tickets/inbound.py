"""The normalized inbound message: what every channel adapter produces and the core receives.

It lives in `tickets` because dependencies point inward: `channels_in` builds these, `tickets`
never needs to know which platform they came from beyond the channel and identity kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class InboundAttachment:
    name: str
    content_type: str = "application/octet-stream"
    size: int = 0
    # Either the bytes (email, widget upload) or a platform reference fetched by the worker.
    content: bytes | None = None
    source_url: str = ""


@dataclass(frozen=True)
class Sender:
    # The platform identity: kind is an IdentityKind value, value as the platform gives it
    # (normalized by the core: phones to E.164, emails lower-cased).
    kind: str
    value: str
    display_name: str = ""
    phone: str = ""  # a phone number the platform revealed (wa_id, shared contact, From)
    email: str = ""
    language: str = ""  # the platform's hint (Telegram language_code), if any
    followers: int = 0  # social reach, for priority
    verified: bool = False
    # What the person typed about themselves where nothing proves it (a web chat pre-chat
    # form). Shown to agents as a claim; never an identity, never a reason to merge: anyone
    # can type a stranger's email into a form.
    claimed_email: str = ""
    claimed_phone: str = ""


@dataclass(frozen=True)
class InboundMessage:
    channel_id: int
    platform_message_id: str
    sender: Sender
    text: str = ""
    html: str = ""  # raw HTML (email); sanitized by the core before it is stored
    subject: str = ""
    kind: str = "text"  # text, image, document, audio, video, sticker, location, contact, postback
    attachments: tuple[InboundAttachment, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    sent_at: datetime | None = None
    # Threading hints: platform ids this message replies to (email In-Reply-To/References),
    # a conversation key (email thread root, public post thread), a ticket number from a
    # subject line ("[#123]").
    reply_to: tuple[str, ...] = ()
    thread_key: str = ""
    ticket_ref: int | None = None
    is_public: bool = False
