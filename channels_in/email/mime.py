"""One raw RFC 5322 message -> a `ParsedEmail`. Pure: no I/O, no database, no settings.

Why `email.policy.compat32` and not `email.policy.default`: the default policy decodes text
with the declared charset and errors="replace" (a "gb2312" part with GBK-only characters
comes out with U+FFFD and no trace), decodes each RFC 2047 encoded-word on its own (a UTF-8
character split across two words is lost) and is several times slower, since it builds a
structured object for every header. compat32 hands us the raw material — the transfer-decoded
bytes of each part (base64, quoted-printable, 7bit/8bit/binary; RFC 2045 section 6) and the
raw header strings (8-bit bytes kept as surrogate escapes) — and `charsets` decodes them with
a recorded fallback chain. Its RFC 2231 parameter handling (continuations, charset and
language; RFC 2231 sections 3-4) is used for filenames, with our charset decoding on top.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .charsets import codec_name, decode_bytes, decode_header
from .text import html_to_text

__all__ = [
    "DeliveryReport",
    "MalformedEmail",
    "ParsedAttachment",
    "ParsedEmail",
    "message_id_of",
    "msg_ids",
    "normalize_msgid",
    "parse_email",
]


class MalformedEmail(ValueError):
    """Not an RFC 5322 message at all (no header section, no From)."""


@dataclass(frozen=True)
class ParsedAttachment:
    name: str
    content_type: str
    content: bytes
    content_id: str = ""  # without angle brackets, as HTML refers to it ("cid:<this>")
    inline: bool = False


@dataclass(frozen=True)
class DeliveryReport:
    """What a delivery status notification (RFC 3464) or a plain bounce says."""

    action: str  # failed, delayed, delivered, relayed, expanded ("" when unknown)
    status: str  # RFC 3463 status code, e.g. 5.1.1
    diagnostic: str  # the remote server's words, e.g. "smtp; 550 5.1.1 User unknown"
    original_message_id: str  # Message-ID of the message the report is about
    original_from: str  # From address of that message, lower-cased, when the report has it


@dataclass
class ParsedEmail:
    message_id: str
    from_address: str
    from_name: str
    subject: str
    date: datetime | None
    reply_to_address: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    language: str = ""
    auto: str = ""  # why this is an automatic message ("" for a person's message)
    report: DeliveryReport | None = None
    notes: list[str] = field(default_factory=list)  # decoding fallbacks, for the record


# --------------------------------------------------------------------------- Message-IDs

# RFC 5322 allows any printable ASCII but ":" in a field name; every real one is a token of
# letters, digits and hyphens, which keeps JSON and plain text from passing for headers.
_HEADER_START = re.compile(rb"(?:From [^\r\n]*\r?\n)?[A-Za-z0-9][A-Za-z0-9-]*[ \t]*:")
_ORIGINATOR = re.compile(rb"^(?:From|Sender)[ \t]*:", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID_HEADER = re.compile(
    rb"^Message-ID[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE
)
_ANGLE = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")


_SURROGATES = re.compile("[\udc80-\udcff]")


def _unsurrogate(value: str) -> str:
    """Raw 8-bit header bytes (surrogate escapes) as text; databases refuse surrogates."""
    if _SURROGATES.search(value):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def normalize_msgid(value: str) -> str:
    """One msg-id (RFC 5322 section 3.6.4) as "<left@right>": whitespace from folding removed,
    angle brackets added when a broken client left them out. "" when there is none."""
    ids = msg_ids(value)
    return ids[0] if ids else ""


def msg_ids(value: str | None) -> list[str]:
    """Every msg-id in an In-Reply-To / References value, in order, without duplicates."""
    if not value:
        return []
    value = _unsurrogate(value.replace("\x00", ""))
    found = ["".join(inner.split()) for inner in _ANGLE.findall(value)]
    if not found:
        # Some clients write ids without brackets (or separate them with commas).
        bare = _COMMENT.sub(" ", value).replace(",", " ").split()
        found = [token.strip("<>") for token in bare if "@" in token]
    seen: set[str] = set()
    ids: list[str] = []
    for inner in found:
        if inner and inner not in seen:
            seen.add(inner)
            ids.append(f"<{inner}>")
    return ids


def _header_section(raw: bytes) -> bytes:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[: min(ends)] if ends else raw


def check_headers(raw: bytes) -> None:
    """Raise MalformedEmail unless `raw` starts with a header field (RFC 5322 section 2.2;
    an mbox "From " envelope line before it is tolerated)."""
    if not raw.strip():
        raise MalformedEmail("the message is empty")
    raw = raw.lstrip(b"\r\n")
    if not _HEADER_START.match(raw):
        raise MalformedEmail("the body does not start with a header field (not RFC 5322)")
    if not _ORIGINATOR.search(_header_section(raw)):
        # RFC 5322 section 3.6: every message has a From field.
        raise MalformedEmail("the message has no From header field")


def message_id_of(raw: bytes) -> str:
    """The normalized Message-ID of a raw message, read without parsing the MIME tree (the
    webhook calls this inside the request), or "" when it has none."""
    check_headers(raw)
    match = _MESSAGE_ID_HEADER.search(_header_section(raw.lstrip(b"\r\n")))
    if match is None:
        return ""
    return normalize_msgid(match.group(1).decode("ascii", "surrogateescape"))


# --------------------------------------------------------------------------- headers


def _raw_header(msg: Message, name: str) -> str | None:
    """The first raw value of a header (compat32 may hand out Header objects for 8-bit
    values; the raw string is what we decode ourselves)."""
    index: dict[str, str] | None = getattr(msg, "_raw_index", None)
    if index is None:
        index = {}
        for key, value in msg.raw_items():
            index.setdefault(key.lower(), value if isinstance(value, str) else str(value))
        msg._raw_index = index  # type: ignore[attr-defined]
    return index.get(name.lower())


_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:"?([^"<>,;:()\\]*?)"?\s*<([\w.+\'=-]+@[\w-]+(?:\.[\w-]+)+)>'
    r"|([\w.+'=-]+@[\w-]+(?:\.[\w-]+)+))\s*$"
)


def _addresses(raw: str | None, hints: list[str], notes: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of an address header; display names decoded
    (RFC 2047 section 5 allows encoded-words in a phrase; Outlook also puts them inside
    quotes, which we accept)."""
    if not raw:
        return []
    unfolded = re.sub(r"\r?\n[ \t]", " ", raw)
    simple = _SIMPLE_ADDRESS.match(unfolded)
    if simple:
        # The common single "Name <addr>" / "addr" form, without the general parser's cost.
        name, address = simple.group(1) or "", (simple.group(2) or simple.group(3)).lower()
        decoded, header_notes = decode_header(name, hints=hints)
        notes.extend(header_notes)
        return [(decoded.strip().strip('"').strip(), address)]
    pairs: list[tuple[str, str]] = []
    for name, address in getaddresses([unfolded]):
        address = _unsurrogate(address).strip().strip("<>").lower()
        if not address or "@" not in address:
            continue
        decoded, header_notes = decode_header(name, hints=hints)
        notes.extend(header_notes)
        pairs.append((decoded.strip().strip('"').strip(), address))
    if not pairs:
        # Broken syntax getaddresses gives up on: find an addr-spec anywhere in it.
        match = re.search(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", _unsurrogate(unfolded))
        if match:
            pairs.append(("", match.group(0).lower()))
    return pairs


def _valid(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _date(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(_unsurrogate(raw).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # RFC 5322 section 3.3: "-0000" means the zone is unknown; read it as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _token(raw: str | None) -> str:
    """The first token of a header like Auto-Submitted ("auto-replied; owner=...")."""
    if not raw:
        return ""
    return _COMMENT.sub("", _unsurrogate(raw)).split(";")[0].strip().lower()


_AUTO_LOCAL_PARTS = {"mailer-daemon", "postmaster"}


def _auto_reason(msg: Message, from_address: str) -> str:
    """Why this message was sent by a machine, or "" for a person's message."""
    local = from_address.split("@", 1)[0]
    if local in _AUTO_LOCAL_PARTS:
        return "bounce"  # RFC 5321 section 4.5.5 / RFC 3464 senders of delivery reports
    submitted = _token(_raw_header(msg, "Auto-Submitted"))
    if submitted and submitted != "no":
        # RFC 3834 section 5: auto-replied (vacation, out of office) or auto-generated.
        return "auto-reply" if submitted == "auto-replied" else "auto-generated"
    if _raw_header(msg, "X-Autoreply") is not None or _raw_header(msg, "X-Autorespond"):
        return "auto-reply"  # pre-RFC 3834 vacation programs and cPanel autoresponders
    suppress = (_raw_header(msg, "X-Auto-Response-Suppress") or "").lower()
    if "oof" in suppress or "all" in suppress:
        # Exchange marks its own out-of-office replies so that nobody answers them.
        return "auto-reply"
    precedence = _token(_raw_header(msg, "Precedence"))
    if precedence in ("bulk", "junk"):
        return "bulk"
    if precedence == "list":
        return "mailing list"
    if precedence == "auto_reply":
        return "auto-reply"
    if (_raw_header(msg, "Return-Path") or "").strip() == "<>":
        # A null reverse-path: only delivery reports and auto-responses use it (RFC 3834
        # section 3.3, RFC 5321 section 4.5.5); a person's message never does.
        return "auto-generated"
    return ""


# --------------------------------------------------------------------------- bodies


def _payload_bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def _unflow(text: str, *, delsp: bool) -> str:
    """Join format=flowed soft line breaks (RFC 3676 section 4): a line ending in a space
    continues on the next one; space-stuffing (section 4.4) is undone."""
    out: list[str] = []
    buffer = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            buffer += line[:-1] if delsp else line
            continue
        out.append(buffer + line)
        buffer = ""
    if buffer:
        out.append(buffer)
    return "\n".join(out)


def _decode_text_part(part: Message, hints: list[str], notes: list[str], where: str) -> str:
    data = _payload_bytes(part)
    declared = part.get_content_charset()
    if declared is None and part.get_content_type() == "text/html":
        meta = _META_CHARSET.search(data[:4096])
        if meta:
            declared = meta.group(1).decode("ascii", "replace")
    decoded = decode_bytes(data, declared, hints=hints)
    if decoded.note:
        notes.append(f"{where}: {decoded.note}")
    text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_type() == "text/plain" and (part.get_param("format") or "") == "flowed":
        text = _unflow(text, delsp=str(part.get_param("delsp") or "").lower() == "yes")
    return text


def _filename(part: Message, hints: list[str], notes: list[str]) -> str:
    raw = part.get_param("filename", header="content-disposition")
    if raw is None:
        raw = part.get_param("name")  # the pre-MIME-2 place (RFC 1341) many clients still use
    if raw is None:
        return ""
    if isinstance(raw, tuple):
        # RFC 2231: (charset, language, value) with the value's bytes as latin-1 characters.
        charset, _language, value = raw
        data = value.encode("latin-1", "surrogateescape")
        decoded = decode_bytes(data, charset or None, hints=hints)
        if decoded.note:
            notes.append(f"filename: {decoded.note}")
        name = decoded.text
    else:
        # RFC 2047 encoded-words inside a quoted parameter are not allowed (RFC 2047 section
        # 5) but Outlook and Thunderbird wrote them for years: decode them anyway.
        name, header_notes = decode_header(raw, hints=hints)
        notes.extend(f"filename: {n}" for n in header_notes)
    return _safe_filename(name)


def _safe_filename(name: str) -> str:
    name = re.split(r"[/\\]", name)[-1]  # a client's full path (C:\Users\...) is not a name
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip().strip(".")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 190 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:200]
    return name


def _content_id(part: Message) -> str:
    raw = _raw_header(part, "Content-ID")
    if not raw:
        return ""
    ids = msg_ids(raw)
    return ids[0][1:-1] if ids else _unsurrogate(raw).strip().strip("<>")


def _default_name(content_type: str, content_id: str, index: int) -> str:
    extension = mimetypes.guess_extension(content_type, strict=False) or ".bin"
    if content_type == "message/rfc822":
        extension = ".eml"
    stem = content_id.split("@", 1)[0] if content_id else f"attachment-{index}"
    return _safe_filename(f"{stem}{extension}") or f"attachment-{index}{extension}"


def _attached_message_bytes(part: Message) -> bytes:
    inner = part.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        return inner[0].as_bytes(policy=compat32)
    return _payload_bytes(part)


@dataclass
class _Bodies:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)


def _collect(msg: Message, hints: list[str], notes: list[str]) -> _Bodies:
    bodies = _Bodies()
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        content_type = part.get_content_type()
        if part.is_multipart() and not content_type.startswith("message/"):
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        disposition = part.get_content_disposition()
        name = _filename(part, hints, notes)
        is_body = (
            content_type in ("text/plain", "text/html") and disposition != "attachment" and not name
        )
        if is_body:
            where = f"{content_type} part"
            target = bodies.plain if content_type == "text/plain" else bodies.html
            target.append(_decode_text_part(part, hints, notes, where))
            continue
        if content_type in ("message/delivery-status", "text/rfc822-headers"):
            continue  # read by _report; not something an agent opens
        content_id = _content_id(part)
        if content_type == "message/rfc822":
            content = _attached_message_bytes(part)
            if not name:
                inner = part.get_payload(0) if part.is_multipart() else None
                subject = (
                    decode_header(_raw_header(inner, "Subject"), hints=hints)[0]
                    if isinstance(inner, Message)
                    else ""
                )
                name = _safe_filename(f"{subject[:80]}.eml") if subject else ""
        else:
            content = _payload_bytes(part)
        bodies.attachments.append(
            ParsedAttachment(
                name=name or _default_name(content_type, content_id, len(bodies.attachments) + 1),
                content_type=content_type,
                content=content,
                content_id=content_id,
                inline=disposition == "inline" or (bool(content_id) and disposition is None),
            )
        )
    return bodies


def _charset_hints(msg: Message) -> list[str]:
    """Charsets the message declares anywhere: the best guess for its undeclared parts."""
    hints: list[str] = []
    for part in msg.walk():
        charset = part.get_content_charset()
        if charset and charset not in hints and codec_name(charset) not in (None, "ascii"):
            hints.append(charset)
    for match in re.finditer(r"=\?([^?\s*]+)", _raw_header(msg, "Subject") or ""):
        if match.group(1).lower() not in hints and codec_name(match.group(1)) not in (
            None,
            "ascii",
        ):
            hints.append(match.group(1).lower())
    return hints


# --------------------------------------------------------------------------- reports

_DIAGNOSTIC_LINE = re.compile(r"\b[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b[^\n]*|\b5\d\d\s[^\n]+")
_QUOTED_MESSAGE_ID = re.compile(r"^\s*Message-ID\s*:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_QUOTED_FROM = re.compile(r"^\s*From\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def _report(msg: Message, text: str, from_address: str) -> DeliveryReport | None:
    """Read a delivery status notification: RFC 3464 (multipart/report; report-type=
    delivery-status, RFC 6522) or, from mailer-daemon/postmaster, a plain-text bounce."""
    action = status = diagnostic = original_id = original_from = ""
    is_dsn = msg.get_content_type() == "multipart/report"
    if is_dsn:
        for part in msg.walk():
            content_type = part.get_content_type()
            if content_type == "message/delivery-status":
                blocks = part.get_payload()
                # The first block is per-message fields; the rest are per-recipient fields.
                for block in blocks[1:] if isinstance(blocks, list) else []:
                    if not isinstance(block, Message):
                        continue
                    block_action = _token(_raw_header(block, "Action"))
                    if not action or block_action == "failed":
                        action = block_action
                        status = _unsurrogate(_raw_header(block, "Status") or "").strip()
                        diagnostic = " ".join(
                            _unsurrogate(_raw_header(block, "Diagnostic-Code") or "").split()
                        )
            elif content_type in ("text/rfc822-headers", "message/rfc822-headers"):
                headers = HeaderParser(policy=compat32).parsestr(
                    _payload_bytes(part).decode("utf-8", "replace")
                )
                original_id = original_id or normalize_msgid(headers.get("Message-ID") or "")
                original_from = original_from or _first_address(headers.get("From"))
            elif content_type == "message/rfc822":
                inner = part.get_payload()
                if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                    original_id = original_id or normalize_msgid(
                        _raw_header(inner[0], "Message-ID") or ""
                    )
                    original_from = original_from or _first_address(_raw_header(inner[0], "From"))
    elif from_address.split("@", 1)[0] not in _AUTO_LOCAL_PARTS:
        return None
    if not original_id:
        # Plain bounces (qmail, old Exchange) quote the original headers in the text.
        match = _QUOTED_MESSAGE_ID.search(text)
        original_id = normalize_msgid(match.group(1)) if match else ""
        if not original_from:
            quoted_from = _QUOTED_FROM.search(text)
            original_from = _first_address(quoted_from.group(1)) if quoted_from else ""
    if not diagnostic:
        line = _DIAGNOSTIC_LINE.search(text)
        diagnostic = line.group(0).strip() if line else ""
    if not action and not is_dsn:
        action = "failed" if diagnostic or original_id else ""
    return DeliveryReport(
        action=action,
        status=status,
        diagnostic=diagnostic[:500],
        original_message_id=original_id,
        original_from=original_from,
    )


def _first_address(raw: str | None) -> str:
    pairs = _addresses(raw, [], [])
    return pairs[0][1] if pairs else ""


# --------------------------------------------------------------------------- the message


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse a raw message. Raises MalformedEmail when it is not an email at all."""
    check_headers(raw)
    msg = message_from_bytes(raw.lstrip(b"\r\n"), policy=compat32)
    if not msg.keys():
        raise MalformedEmail("no header fields")
    notes: list[str] = []
    hints = _charset_hints(msg)

    senders = _addresses(_raw_header(msg, "From"), hints, notes)
    if not senders or not _valid(senders[0][1]):
        sender_field = _raw_header(msg, "Sender")  # RFC 5322 section 3.6.2: the agent
        senders = _addresses(sender_field, hints, notes) or senders
    if not senders or not _valid(senders[0][1]):
        raise MalformedEmail("the message has no valid From address")
    from_name, from_address = senders[0]

    reply_to = [a for _, a in _addresses(_raw_header(msg, "Reply-To"), hints, notes) if _valid(a)]
    subject, subject_notes = decode_header(_raw_header(msg, "Subject"), hints=hints)
    notes.extend(f"Subject: {n}" for n in subject_notes)

    bodies = _collect(msg, hints, notes)
    html = "\n".join(bodies.html)
    text = "\n\n".join(t.strip("\n") for t in bodies.plain if t.strip())
    if not text and html:
        text = html_to_text(html)
    language = _token(_raw_header(msg, "Content-Language"))[:2]

    parsed = ParsedEmail(
        message_id=normalize_msgid(_raw_header(msg, "Message-ID") or ""),
        from_address=from_address,
        from_name=from_name,
        subject=subject.replace("\x00", ""),
        date=_date(_raw_header(msg, "Date")),
        reply_to_address=reply_to[0] if reply_to else "",
        to=[a for _, a in _addresses(_raw_header(msg, "To"), hints, notes)],
        cc=[a for _, a in _addresses(_raw_header(msg, "Cc"), hints, notes)],
        in_reply_to=msg_ids(_raw_header(msg, "In-Reply-To")),
        references=msg_ids(_raw_header(msg, "References")),
        text=text.replace("\x00", ""),
        html=html.replace("\x00", ""),
        attachments=bodies.attachments,
        language=language if language.isalpha() else "",
        notes=notes,
    )
    parsed.report = _report(msg, text, from_address)
    parsed.auto = _auto_reason(msg, from_address)
    return parsed
