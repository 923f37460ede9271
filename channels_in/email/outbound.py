"""Sending a reply as a MIME message through Django's configured EMAIL_BACKEND.

The headers are what makes the customer's next reply find its ticket again:
- Message-ID: ours (RFC 5322 section 3.6.4), returned as the platform id, so a reply's
  In-Reply-To/References and a bounce's quoted headers (RFC 3464) match the stored message;
- In-Reply-To: the customer's last message; References: the thread's chain;
- Subject: "Re: <subject> [#<ticket id>]", for clients that drop both headers.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import smtplib
from email.utils import formataddr, make_msgid
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection

from ..base import Outbound, SendError
from ..models import Channel

log = logging.getLogger(__name__)

# Long threads: keep the root and the most recent ids (as Thunderbird and Gmail trim them);
# some servers refuse header lines of several kilobytes.
MAX_REFERENCES = 20
# Reply and forward prefixes of the languages we answer in (pt "Res:", ru "Отв:", zh "回复:").
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|sv|vs|ha|отв|на|res|enc|回复|答复|轉寄)\s*[:：]\s*)+", re.IGNORECASE
)
_TAG = re.compile(r"\s*\[(?:ticket\s*)?#\d+\]", re.IGNORECASE)


def msgid_domain(channel: Channel) -> str:
    """The right-hand side of our Message-IDs: the site's host name, or the mailbox's domain
    when the site runs on an IP address or localhost (not a domain anyone owns)."""
    configured = str(getattr(settings, "HELPDESK_EMAIL_MSGID_DOMAIN", "") or "")
    if configured:
        return configured
    host = urlsplit(settings.SITE_URL).hostname or ""
    try:
        ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if host and not is_ip and "." in host:
        return host
    address = str(channel.credentials.get("from_address") or "")
    return address.rpartition("@")[2] or "helpdesk.invalid"


def reply_subject(subject: str, ticket_id: int) -> str:
    base = _TAG.sub("", _REPLY_PREFIX.sub("", " ".join(subject.split()))).strip()
    tag = f"[#{ticket_id}]" if ticket_id else ""
    return " ".join(part for part in ("Re:", base, tag) if part)


def references_chain(out: Outbound) -> list[str]:
    """RFC 5322 section 3.6.4: the parent's References followed by the parent's Message-ID.
    The core gives us the ids of the ticket's messages on this channel; the customer's last
    message tells us its own References. Only real msg-ids: "sha256:" keys are ours."""
    last = out.extra.get("last_inbound") or {}
    chain: list[str] = []
    for msg_id in (*last.get("references", []), *out.references, out.reply_to):
        if isinstance(msg_id, str) and msg_id.startswith("<") and msg_id not in chain:
            chain.append(msg_id)
    if out.reply_to in chain:  # the parent comes last
        chain.remove(out.reply_to)
        chain.append(out.reply_to)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


def build_email(channel: Channel, out: Outbound) -> tuple[EmailMultiAlternatives, str]:
    from_address = str(channel.credentials.get("from_address") or "")
    if not from_address:
        raise SendError("the email channel has no from_address", permanent=True)
    from_name = str(channel.settings.get("from_name") or channel.name or "")
    message_id = make_msgid(
        idstring=f"t{out.ticket_id}.m{out.message_id}", domain=msgid_domain(channel)
    )
    headers = {
        "Message-ID": message_id,
        # Ask Exchange not to answer our replies with out-of-office notes (we would ignore
        # them anyway); bounces (NDR) are still wanted.
        "X-Auto-Response-Suppress": "OOF, AutoReply",
    }
    if out.reply_to.startswith("<"):
        headers["In-Reply-To"] = out.reply_to
    chain = references_chain(out)
    if chain:
        headers["References"] = " ".join(chain)
    body = out.text
    linked = [a for a in out.attachments if not (a.path and Path(a.path).is_file())]
    if linked:
        body = body + "\n\n" + "\n".join(f"{a.name}: {a.url}" for a in linked if a.url)
    email = EmailMultiAlternatives(
        subject=reply_subject(out.subject, out.ticket_id),
        body=body,
        from_email=formataddr((from_name, from_address)) if from_name else from_address,
        to=[out.recipient],
        headers=headers,
    )
    for attachment in out.attachments:
        if attachment.path and Path(attachment.path).is_file():
            content_type = (
                attachment.content_type
                or mimetypes.guess_type(attachment.name)[0]
                or "application/octet-stream"
            )
            email.attach(attachment.name, Path(attachment.path).read_bytes(), content_type)
    return email, message_id


def send_email(channel: Channel, out: Outbound) -> str:
    """Send one reply; return its Message-ID. SMTP 5xx replies are permanent failures,
    4xx replies and connection trouble are transient (RFC 5321 section 4.2.1)."""
    email, message_id = build_email(channel, out)
    try:
        email.connection = get_connection(fail_silently=False)
        sent = email.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{r}: {c} {m!r}" for r, (c, m) in exc.recipients.items())
        raise SendError(
            f"SMTP refused the recipient: {detail}",
            permanent=bool(codes) and all(500 <= c < 600 for c in codes),
            code=str(codes[0]) if codes else "",
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise SendError(
            f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
            permanent=500 <= exc.smtp_code < 600,
            code=str(exc.smtp_code),
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP: {type(exc).__name__}: {exc}", permanent=False) from exc
    except (BadHeaderError, ValueError) as exc:
        raise SendError(f"cannot build the email: {exc}", permanent=True) from exc
    if not sent:
        raise SendError("the mail backend accepted nothing", permanent=True)
    return message_id
