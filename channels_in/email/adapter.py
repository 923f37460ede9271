"""Email: raw RFC 5322 messages in (webhook, IMAP, import_mail), MIME messages out (SMTP).

Inbound, `POST /hooks/email/<key>/` takes the raw message as the body (Content-Type
message/rfc822) from an MTA pipe or a provider's inbound forward, with
`Authorization: Bearer <inbound_token>` (RFC 6750 section 2.1). IMAP polling (imap.py) and
`manage.py import_mail` store the same raw bytes through the same event store, so every path
dedupes on the Message-ID (RFC 5322 section 3.6.4) or, without one, on a hash of the bytes.

Credentials: inbound_token, from_address; optional imap_host, imap_port, imap_user,
imap_password. Settings: imap_folder (INBOX), imap_ssl (true), imap_batch, from_name.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest

from ..base import (
    Adapter,
    Ignored,
    InboundAttachment,
    InboundMessage,
    Outbound,
    Parsed,
    PayloadError,
    Sender,
    SignatureError,
    StatusUpdate,
    body_hash,
    constant_time_equal,
)
from ..models import Channel
from ..registry import register
from . import tasks as _tasks  # noqa: F401  (registers the IMAP polling tasks with Celery)
from .mime import MalformedEmail, ParsedEmail, message_id_of, parse_email
from .outbound import send_email
from .text import trim_quoted

# "[#123]" or "[Ticket #123]" in a subject: our own replies carry it (outbound.py), so a reply
# threads back even from a client that drops In-Reply-To and References. 18 digits at most:
# a bigint primary key.
TICKET_TAG = re.compile(r"\[(?:ticket\s*)?#(\d{1,18})\]", re.IGNORECASE)
# Bounded so one huge email cannot bloat a ticket; the raw message stays in the event store.
MAX_TEXT_CHARS = 100_000
MAX_REPLY_TO_IDS = 50


def own_address(channel: Channel) -> str:
    return str(channel.credentials.get("from_address") or "").strip().lower()


def event_id_for(body: bytes) -> str:
    """The dedupe key of a raw message: its Message-ID, or a hash of the bytes without one."""
    try:
        message_id = message_id_of(body)
    except MalformedEmail as exc:
        raise PayloadError(str(exc)) from exc
    return message_id or "sha256:" + body_hash(body)


@register
class EmailAdapter(Adapter):
    kind = "email"
    credential_names = ("inbound_token", "from_address")
    max_text = MAX_TEXT_CHARS

    def verify(self, channel: Channel, request: HttpRequest, body: bytes) -> None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise SignatureError("missing Authorization: Bearer <inbound_token>", status=401)
        scheme, _, token = header.partition(" ")
        # RFC 7235 section 2.1: the auth scheme is case-insensitive.
        if scheme.lower() != "bearer" or not token.strip():
            raise SignatureError("the Authorization header is not a Bearer token", status=401)
        expected = str(channel.credentials.get("inbound_token") or "")
        if not expected or not constant_time_equal(token.strip(), expected):
            raise SignatureError("the bearer token does not match this channel's inbound_token")

    def sign(self, channel: Channel, body: bytes, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {channel.credentials.get('inbound_token', '')}"}

    def event_id(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> str:
        return event_id_for(body)

    def parse(self, channel: Channel, body: bytes, meta: dict[str, Any]) -> list[Parsed]:
        try:
            email = parse_email(body)
        except MalformedEmail as exc:
            raise PayloadError(str(exc)) from exc
        own = own_address(channel)
        if email.report is not None:
            return [self._report(channel, email, own)]
        if own and email.from_address == own:
            # Our own reply came back (a forwarding loop, a Cc to the mailbox): never a ticket.
            return [Ignored(reason="loop: sent from this channel's own address")]
        if email.auto:
            return [Ignored(reason=email.auto)]
        return [self._message(channel, email, body)]

    def _report(self, channel: Channel, email: ParsedEmail, own: str) -> Parsed:
        report = email.report
        if report is None:
            return Ignored(reason="bounce")
        if not report.original_message_id:
            return Ignored(reason="bounce for a message we cannot identify")
        if report.action != "failed":
            return Ignored(reason=f"delivery report: {report.action or 'unreadable'}")
        if own and report.original_from and report.original_from != own:
            return Ignored(reason="bounce for a message this channel did not send")
        return StatusUpdate(
            channel_id=channel.pk,
            platform_message_id=report.original_message_id,
            status="failed",
            error=report.diagnostic or f"delivery failed ({report.status or 'no status'})",
            at=email.date,
        )

    def _message(self, channel: Channel, email: ParsedEmail, body: bytes) -> InboundMessage:
        message_id = email.message_id or "sha256:" + body_hash(body)
        full_text = email.text[:MAX_TEXT_CHARS]
        text = trim_quoted(full_text)
        payload: dict[str, Any] = {
            "message_id": email.message_id,
            "full_text": full_text,
            "to": email.to,
        }
        if len(email.text) > MAX_TEXT_CHARS:
            payload["truncated_chars"] = len(email.text)
        if email.cc:
            payload["cc"] = email.cc
        if email.in_reply_to:
            payload["in_reply_to"] = email.in_reply_to
        if email.references:
            payload["references"] = email.references[-MAX_REPLY_TO_IDS:]
        if email.reply_to_address and email.reply_to_address != email.from_address:
            # RFC 5322 section 3.6.2: Reply-To is where the author asks replies to go. Web
            # forms and relays send From a no-reply box with the customer in Reply-To;
            # replying to From would go nowhere. The contact stays the From address.
            payload["reply_to_address"] = email.reply_to_address
        if email.notes:
            payload["decoding"] = email.notes[:20]
        inline = {a.content_id: a.name for a in email.attachments if a.content_id}
        if inline:
            # HTML refers to inline images as cid:<Content-ID> (RFC 2392): keep the map so
            # the agent's view can point them at the stored attachments.
            payload["inline_images"] = inline
        attachments = tuple(
            InboundAttachment(
                name=a.name,
                content_type=a.content_type,
                size=len(a.content),
                content=a.content,
                source_url=f"cid:{a.content_id}" if a.content_id else "",
            )
            for a in email.attachments
        )
        kind = "text"
        if not text.strip() and attachments:
            kind = "image" if attachments[0].content_type.startswith("image/") else "document"
        match = TICKET_TAG.search(email.subject)
        return InboundMessage(
            channel_id=channel.pk,
            platform_message_id=message_id,
            sender=Sender(
                kind="email",
                value=email.from_address,
                display_name=email.from_name,
                language=email.language,
            ),
            text=text,
            html=email.html,
            subject=email.subject,
            kind=kind,
            attachments=attachments,
            payload=payload,
            sent_at=email.date,
            reply_to=_reply_ids(email),
            # RFC 5322 section 3.6.4: the first References id is the thread's root; without
            # References, In-Reply-To names the parent, the best root we can know.
            thread_key=(email.references or email.in_reply_to or [message_id])[0],
            ticket_ref=int(match.group(1)) if match else None,
        )

    def send(self, channel: Channel, out: Outbound) -> str:
        return send_email(channel, out)


def _reply_ids(email: ParsedEmail) -> tuple[str, ...]:
    """The ids this message answers: In-Reply-To first, then References (root first, then the
    most recent ones when the chain is long)."""
    ids: list[str] = []
    references = email.references
    if len(references) > MAX_REPLY_TO_IDS:
        references = [references[0], *references[-(MAX_REPLY_TO_IDS - 1) :]]
    for msg_id in (*email.in_reply_to, *references):
        if msg_id not in ids and msg_id != email.message_id:
            ids.append(msg_id)
    return tuple(ids[:MAX_REPLY_TO_IDS])
