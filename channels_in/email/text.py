"""Readable text from email bodies: HTML to text, and the quoted history trimmed for display.

Customers reply above (or below) the whole previous conversation. Agents need the new part;
the full text is kept beside it (payload["full_text"]), because a trimmer is a heuristic and
must never be the only copy.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "trim_quoted"]

# --------------------------------------------------------------------------- HTML to text

# Blocks stand apart from what surrounds them; line-like elements just start a new line.
_BLOCK = {
    "address",
    "article",
    "blockquote",
    "div",
    "dl",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
}
_LINE = {"br", "dd", "dt", "li", "tr"}
_SKIP = {"script", "style", "head", "title", "template", "noscript", "object", "iframe", "svg"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag == "pre":
            self.pre += 1
        if tag in _BLOCK or tag in _LINE:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK or tag in _LINE:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        # Whitespace in HTML is not layout, except inside <pre>.
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(html: str) -> str:
    """The text of an HTML body, one block per line; scripts, styles and tags dropped."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    lines = [line.strip(" \t\u00a0") for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --------------------------------------------------------------------------- quote trimming

# An attribution line ("On <date>, <name> wrote:") in the languages our customers write in, as
# Gmail, Apple Mail, Thunderbird and Outlook produce them. Gmail wraps long ones, so these are
# matched against one to three joined lines.
_ATTRIBUTION = re.compile(
    r"^(?:"
    r"On\s.{1,300}\swrote:"  # en
    r"|Em\s.{1,300}\sescreveu:"  # pt
    r"|Le\s.{1,300}\sa\s+écrit\s?:"  # fr
    r"|Am\s.{1,300}\sschrieb\s.{0,200}:"  # de
    r"|.{1,300}\srašė:"  # lt
    r"|.{1,300}\s(?:писал|написал|написала|пишет)(?:\(а\))?:"  # ru
    r"|.{1,80}\d{4}\s?г\.,?\s(?:в\s)?\d{1,2}:\d{2},?\s.{1,200}:"  # ru, Gmail's date form
    r"|在.{1,300}(?:写道|寫道)[:：]"  # zh
    r")\s*$",
    re.IGNORECASE,
)
# Outlook's and others' separators before the original message.
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Forwarded message|Исходное сообщение|"
    r"Пересылаемое сообщение|Mensagem original|Mensagem encaminhada|Pradinis pranešimas|"
    r"Originalus laiškas|Persiųstas laiškas|原始邮件|原始郵件|转发的邮件)\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's header block: "From: ..." followed within a few lines by "Sent: ..." (or Date).
_FROM_LINE = re.compile(r"^\s*\*?(?:From|От|De|Nuo|Von|发件人|寄件者)\s*\*?\s*[:：]", re.I)
_SENT_LINE = re.compile(
    r"^\s*\*?(?:Sent|Date|Отправлено|Дата|Enviado|Enviada|Data|Išsiųsta|Siųsta|Gesendet|"
    r"发送时间|日期|寄件日期|時間)\s*\*?\s*[:：]",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")


def _attribution_start(lines: list[str], end: int) -> int | None:
    """If an attribution ends on line `end`, the line it starts on (the shortest match wins:
    the customer's own last line must not be mistaken for the start of one)."""
    for span in range(3):
        start = end - span
        if start < 0 or not lines[start].strip() or lines[start].lstrip().startswith(">"):
            return None
        joined = " ".join(line.strip() for line in lines[start : end + 1])
        if _ATTRIBUTION.match(joined):
            return start
    return None


def _quote_start(lines: list[str]) -> int | None:
    """The index of the first line of quoted history, or None."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):
            continue
        if _SEPARATOR.match(stripped):
            return i
        # Attributions end with a colon: test only those (the pattern is not cheap).
        if stripped.endswith((":", "：")):
            start = _attribution_start(lines, i)
            if start is not None:
                return start
        if _FROM_LINE.match(stripped) and any(
            _SENT_LINE.match(following) for following in lines[i + 1 : i + 5]
        ):
            start = i
            if start > 0 and _UNDERSCORES.match(lines[start - 1]):
                start -= 1
            return start
    return None


def trim_quoted(text: str) -> str:
    """The new part of a reply: without the quoted original (attribution lines, Outlook
    header blocks, a trailing block of "> " lines) and without a "-- " signature
    (RFC 3676 section 4.3). Returns the text unchanged when trimming would leave nothing."""
    lines = text.split("\n")
    cut = _quote_start(lines)
    if cut is not None:
        lines = lines[:cut]
    # A trailing block of quoted lines (bottom-posted history); quotes interleaved with
    # answers above it stay, they give the answers their context.
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    lines = lines[:end]
    for i, line in enumerate(lines):
        if line.rstrip("\r") in ("-- ", "--") and i > 0:
            lines = lines[:i]
            break
    trimmed = "\n".join(lines).strip()
    return trimmed or text.strip()
