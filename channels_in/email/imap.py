"""Polling a mailbox over IMAP (RFC 3501): every new message goes through the same event
store as the webhook, then is flagged so the next poll skips it.

Order matters for "nothing accepted is lost": a message is fetched with BODY.PEEK[] (which,
unlike RFC822 or BODY[], does not set \\Seen; RFC 3501 section 6.4.5), stored as an
InboundEvent and committed, and only then flagged \\Seen (plus our keyword, when the server
allows keywords). A crash in between leaves it unflagged: the next poll fetches it again and
the event store's unique (channel, Message-ID) makes that a no-op.

The connection is made by `open_connection` (imaplib.IMAP4_SSL, or IMAP4 with STARTTLS);
tests pass a fake with the same handful of methods instead.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from django.db import transaction

from ..base import PayloadError
from ..models import Channel
from ..webhooks import enqueue, store_event, store_malformed

log = logging.getLogger(__name__)

# Our keyword flag (RFC 3501 section 2.3.2: flag-keyword atoms; "$" marks a client's own).
IMPORTED_FLAG = "$HelpdeskImported"
DEFAULT_BATCH = 100
IMAP_TIMEOUT = 60.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class IMAPConnection(Protocol):
    """The part of imaplib.IMAP4 we use."""

    def login(self, user: str, password: str) -> tuple[str, list[Any]]: ...
    def select(self, mailbox: str = ..., readonly: bool = ...) -> tuple[str, list[Any]]: ...
    def response(self, code: str) -> tuple[str, list[Any]]: ...
    def uid(self, command: str, *args: Any) -> tuple[str, list[Any]]: ...
    def logout(self) -> tuple[str, list[Any]]: ...


Connect = Callable[[Channel], IMAPConnection]


class IMAPError(Exception):
    pass


@dataclass
class PollResult:
    found: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    flagged: int = 0
    errors: list[str] = field(default_factory=list)


def open_connection(channel: Channel) -> IMAPConnection:
    """The production connection: implicit TLS on 993 by default (RFC 8314 section 3.3),
    or plain IMAP upgraded with STARTTLS when the channel sets imap_ssl to false."""
    creds = channel.credentials
    host = str(creds.get("imap_host") or "")
    use_ssl = bool(channel.settings.get("imap_ssl", True))
    port = int(creds.get("imap_port") or (993 if use_ssl else 143))
    context = ssl.create_default_context()
    connection: imaplib.IMAP4
    if use_ssl:
        connection = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=IMAP_TIMEOUT)
    else:
        connection = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT)
        if channel.settings.get("imap_starttls", True):
            connection.starttls(ssl_context=context)
    connection.login(str(creds.get("imap_user") or ""), str(creds.get("imap_password") or ""))
    return connection


def encode_mailbox(name: str) -> str:
    """A mailbox name as IMAP wants it: modified UTF-7 for non-ASCII (RFC 3501 section
    5.1.3: "Входящие" -> "&BBIERQQ+BDQETwRJBDgENQ-"), quoted when it has spaces."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            encoded = base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{encoded}-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    if re.search(r'[\s"\\(){%*\]]', encoded) or not encoded:
        encoded = '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return encoded


def _ok(answer: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = answer
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise IMAPError(f"IMAP {what} failed: {status} {detail}")
    return data


def _keywords_allowed(connection: IMAPConnection) -> bool:
    """Whether the server stores keywords we make up: PERMANENTFLAGS contains \\* (RFC 3501
    section 7.1)."""
    try:
        _, data = connection.response("PERMANENTFLAGS")
    except Exception:  # a server (or fake) that never said: be conservative
        return False
    return any(isinstance(d, bytes) and b"\\*" in d for d in data or [])


def _imap_date(channel: Channel) -> str:
    day = channel.created_at - timedelta(days=1)
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def _fetched_bytes(data: list[Any]) -> bytes | None:
    for item in data:
        if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def poll_mailbox(
    channel: Channel,
    *,
    connect: Connect = open_connection,
    batch: int | None = None,
) -> PollResult:
    """Import up to `batch` new messages of one channel's mailbox. Raises on connection and
    protocol errors (the caller logs them per channel)."""
    from .adapter import event_id_for  # the adapter imports this module's task

    result = PollResult()
    limit = batch or int(channel.settings.get("imap_batch") or DEFAULT_BATCH)
    folder = str(channel.settings.get("imap_folder") or "INBOX")
    connection = connect(channel)
    try:
        _ok(connection.select(encode_mailbox(folder)), f"SELECT {folder}")
        keywords = _keywords_allowed(connection)
        if keywords:
            # Not yet imported, read or not: a message someone opened in webmail first is
            # still a customer's message. SINCE keeps a newly connected mailbox's years of
            # history out of the queue.
            criteria = ["UNKEYWORD", IMPORTED_FLAG, "SINCE", _imap_date(channel)]
        else:
            criteria = ["UNSEEN"]
        data = _ok(connection.uid("SEARCH", None, *criteria), "SEARCH")
        uids = [u for chunk in data if isinstance(chunk, bytes) for u in chunk.split()]
        result.found = len(uids)
        flags = f"(\\Seen {IMPORTED_FLAG})" if keywords else "(\\Seen)"
        meta = {"content_type": "message/rfc822", "source": "imap", "folder": folder}
        for uid in uids[:limit]:
            uid_text = uid.decode("ascii")
            raw = _fetched_bytes(_ok(connection.uid("FETCH", uid_text, "(BODY.PEEK[])"), "FETCH"))
            if raw is None:
                result.errors.append(f"UID {uid_text}: no message data")
                continue
            _store(channel, raw, {**meta, "uid": uid_text}, result, event_id_for)
            # Reached only once the event row is committed (store raises otherwise).
            _ok(connection.uid("STORE", uid_text, "+FLAGS", flags), "STORE")
            result.flagged += 1
    finally:
        try:
            connection.logout()
        except Exception:
            log.debug("IMAP logout failed for channel %s", channel.key, exc_info=True)
    return result


def _store(
    channel: Channel,
    raw: bytes,
    meta: dict[str, Any],
    result: PollResult,
    event_id_for: Callable[[bytes], str],
) -> None:
    try:
        platform_id = event_id_for(raw)
    except PayloadError as exc:
        store_malformed(channel, raw, meta, exc)
        result.failed += 1
        return
    with transaction.atomic():
        event_id = store_event(channel, platform_id, raw, meta)
        if event_id is not None:
            transaction.on_commit(lambda: enqueue(event_id))
    if event_id is None:
        result.duplicates += 1
    else:
        result.stored += 1
