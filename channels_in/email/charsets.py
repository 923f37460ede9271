"""Turning the bytes of an email into text without losing or silently mangling anything.

Mail in the wild lies about its charset: "gb2312" parts carry GBK-only characters, "us-ascii"
parts carry 8-bit bytes, Outlook labels UTF-8 as "iso-8859-1", web forms send windows-1251
labelled "utf-8". `decode_bytes` tries, in order:

1. the declared charset, widened to the superset every mail client actually uses for it
   (gb2312 -> gb18030, big5 -> cp950/big5-hkscs, iso-8859-1 -> windows-1252, as the WHATWG
   Encoding Standard does for the web);
2. UTF-8, when the declared charset fails or is unknown (RFC 6532 made raw UTF-8 legitimate);
3. a small plausibility heuristic over the charsets our customers write in (Cyrillic,
   Chinese, Western and Baltic Latin);
4. the best guess with undecodable bytes replaced (U+FFFD).

Every step past the first is recorded in `Decoded.note`, so an agent (and the tests) can see
what happened instead of reading mojibake.

`decode_header` implements RFC 2047 encoded-words leniently: adjacent encoded-words are joined
as bytes before decoding (a multi-byte character split across two words survives), whitespace
between them is dropped (RFC 2047 section 6.2), whitespace inside a broken encoded-word is
tolerated, and raw 8-bit header bytes are decoded by the same fallback chain.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Decoded", "codec_name", "decode_bytes", "decode_header", "decode_raw_text"]


@dataclass(frozen=True)
class Decoded:
    text: str
    charset: str  # the codec that produced `text`
    note: str = ""  # empty when the declared charset (or its superset) decoded the bytes


# Codecs Python accepts by name that are not charsets a message may choose: the escape codecs
# are how django-helpdesk mangled mail (PERF-NOTES); idna/punycode are for host names.
_FORBIDDEN = {
    "unicode-escape",
    "raw-unicode-escape",
    "idna",
    "punycode",
    "undefined",
    "mbcs",
    "oem",
    "palmos",
    "charmap",
}
# Charsets that are 7-bit on the wire: pure-ASCII bytes are not necessarily ASCII text.
_STATEFUL_7BIT = {"utf-7", "hz", "utf-16", "utf-32", "utf-16-be", "utf-16-le"}
# The superset each declared charset is decoded with (tried in order), as mail clients and
# the WHATWG Encoding Standard do.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "big5": ("cp950", "big5hkscs"),
    "cp950": ("cp950", "big5hkscs"),
    "iso8859-1": ("cp1252", "latin-1"),
    "latin-1": ("cp1252", "latin-1"),
    "iso8859-9": ("cp1254", "iso8859-9"),
    "iso8859-11": ("cp874", "iso8859-11"),
    "tis-620": ("cp874", "tis-620"),
    "euc_kr": ("cp949",),
    "shift_jis": ("cp932",),
    "ascii": ("ascii",),
}
_SINGLE_BYTE_CHECKED = {
    "cp1251",
    "koi8-r",
    "koi8-u",
    "iso8859-5",
    "cp866",
    "cp1252",
    "latin-1",
    "iso8859-1",
    "iso8859-2",
    "iso8859-13",
    "iso8859-15",
    "cp1250",
    "cp1257",
    "mac-cyrillic",
}
_SINGLE_BYTE_ALTERNATIVES = ("cp1251", "koi8-r", "cp1252", "cp1257")
_CJK = ("gb18030", "cp950", "big5hkscs")
# How much more plausible (per character, see `score`) another reading must be to override
# the declared charset: genuine text scores ~0.9, mojibake 0.3-0.75.
_SWITCH_MARGIN = 0.2
# A reading this plausible is accepted without trying others (mojibake of a sentence scores
# under 0.8; a short genuine word may too, and then the alternatives lose on the margin).
_PLAUSIBLE = 0.8
# What detection tries when the declared charset fails (UTF-8 is tried before these).
_DETECT = ("gb18030", "cp950", "big5hkscs", "cp1251", "koi8-r", "cp1252", "cp1257")
_SCORE_CHARS = 1500


def codec_name(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or not a charset."""
    if not label:
        return None
    cleaned = label.strip().strip("\"'").strip().lower()
    if not cleaned:
        return None
    return _lookup(cleaned)


@lru_cache(maxsize=256)
def _lookup(label: str) -> str | None:
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    # Non-text codecs (base64, zlib, rot13) are refused by bytes.decode itself.
    return None if name in _FORBIDDEN else name


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _clean(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def decode_bytes(data: bytes, declared: str | None, *, hints: Sequence[str] = ()) -> Decoded:
    """Decode `data` that claims to be in `declared` (a MIME charset label, or None).

    `hints` are other charsets the same message declares (a header's charset for the body and
    vice versa): they are preferred by detection when the declared charset fails.
    """
    codec = codec_name(declared)
    if not data:
        return Decoded("", codec or "ascii")
    if data.isascii() and codec not in _STATEFUL_7BIT and not (codec or "").startswith("iso2022"):
        return Decoded(data.decode("ascii"), codec or "ascii")

    note = ""
    if codec is not None and codec != "ascii":
        for candidate in _SUPERSETS.get(codec, (codec,)):
            text = _strict(data, candidate)
            if text is None:
                continue
            if candidate in _SINGLE_BYTE_CHECKED or candidate in _CJK:
                better = _second_opinion(data, text, candidate)
                if better is not None:
                    return Decoded(
                        _clean(better.text), better.charset, f"declared {declared}; {better.note}"
                    )
            return Decoded(_clean(text), candidate)
        note = f"declared {declared} does not decode these bytes"
    elif codec == "ascii":
        note = f"declared {declared} but the text has 8-bit bytes"
    elif declared:
        note = f"unknown charset {declared!r}"

    text = _strict(data, "utf-8")
    if text is not None:
        # Undeclared UTF-8 is normal (RFC 6532 headers, 8-bit bodies without a charset).
        return Decoded(_clean(text), "utf-8", f"{note}; decoded as UTF-8" if note else "")

    guess = detect(data, hints=hints)
    if guess is not None:
        charset, text = guess
        why = note or "no charset declared"
        return Decoded(_clean(text), charset, f"{why}; detected {charset}")
    fallback = codec or "utf-8"
    text = data.decode(fallback, errors="replace")
    bad = text.count("\ufffd")
    why = note or "no charset declared"
    return Decoded(_clean(text), fallback, f"{why}; {bad} undecodable bytes replaced")


def _second_opinion(data: bytes, text: str, codec: str) -> Decoded | None:
    """A single-byte charset decodes any bytes and GB 18030 decodes most double-byte text, so
    a wrong label rarely fails: check that the result is plausible, and switch only when
    another reading is clearly better."""
    if codec in _CJK:
        own = score(text)
        if own >= 0.8:
            return None
        alternatives: tuple[str, ...] = tuple(c for c in _CJK if c != codec)
    else:
        utf8 = _strict(data, "utf-8")
        if utf8 is not None:
            # Valid multi-byte UTF-8 is practically never an accident in 8-bit text.
            return Decoded(utf8, "utf-8", "the bytes are UTF-8")
        own = score(text)
        if own >= _PLAUSIBLE:
            return None  # real text: no need to read it any other way
        alternatives = tuple(c for c in _SINGLE_BYTE_ALTERNATIVES if c != codec)
    best: tuple[float, str, str] | None = None
    for other in alternatives:
        candidate = _strict(data, other)
        if candidate is None:
            continue
        points = score(candidate)
        if best is None or points > best[0]:
            best = (points, other, candidate)
    if best is not None and best[0] - own > _SWITCH_MARGIN:
        return Decoded(best[2], best[1], f"the text reads as {best[1]}")
    return None


def detect(data: bytes, *, hints: Sequence[str] = ()) -> tuple[str, str] | None:
    """The most plausible (charset, text) among our customers' charsets, or None."""
    tried: set[str] = set()
    best: tuple[float, int, str, str] | None = None
    ordered = [c for c in (codec_name(h) for h in hints) if c] + list(_DETECT)
    for rank, label in enumerate(ordered):
        for candidate in _SUPERSETS.get(label, (label,)):
            if candidate in tried:
                continue
            tried.add(candidate)
            text = _strict(data, candidate)
            if text is None:
                continue
            # Hints win ties: a message that declares koi8-r somewhere is probably koi8-r.
            points = score(text) + (0.05 if rank < len(hints) else 0.0)
            if best is None or points > best[0] or (points == best[0] and rank < best[1]):
                best = (points, rank, candidate, text)
    return (best[2], best[3]) if best is not None else None


# ----------------------------------------------------------------------------- plausibility

# Letter frequencies of Russian text, in percent: mojibake of Cyrillic through the wrong table
# is a permutation of the alphabet, and its letters are on average far rarer.
_RU_FREQ = dict(
    zip(
        "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё",
        (10.97, 8.45, 8.01, 7.35, 6.70, 6.26, 5.47, 4.73, 4.54, 4.40, 3.49, 3.21, 2.98, 2.81,
         2.62, 2.01, 1.90, 1.74, 1.70, 1.65, 1.59, 1.44, 1.21, 0.97, 0.94, 0.73, 0.64, 0.48,
         0.36, 0.32, 0.26, 0.04, 0.04),
        strict=True,
    )
)  # fmt: skip
_LATIN_COMMON = set("áàâãäçéèêëíìîïñóòôõöúùûüßÁÀÂÃÄÇÉÈÊËÍÓÒÔÕÖÚÜÑ")
_BALTIC = set("ąčęėįšųūžĄČĘĖĮŠŲŪŽ")


@lru_cache(maxsize=8192)
def _char_score(ch: str) -> tuple[float, str]:
    """(plausibility of one non-ASCII character, its script: L, C, H or '')."""
    if ch == "\ufffd":
        return -3.0, ""
    category = unicodedata.category(ch)
    if category in ("Cc", "Co", "Cn", "Cs"):
        return -3.0, ""
    code = ord(ch)
    if 0x0400 <= code <= 0x04FF:
        return min(1.2, _RU_FREQ.get(ch.lower(), 0.5) / 5.0), "C"
    if ch in _LATIN_COMMON or ch in _BALTIC:
        return 1.0, "L"
    if 0x00C0 <= code <= 0x024F and category.startswith("L"):
        return 0.2, "L"
    if 0x4E00 <= code <= 0x9FFF:
        return (1.5 if _common_han(ch) else -0.5), "H"
    if 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFFEF:
        return 0.5, ""  # CJK punctuation and full-width forms
    if category.startswith("P") or category in ("Zs", "Sc"):
        return 0.3, ""
    if 0x2500 <= code <= 0x25FF:
        return -1.0, ""  # box drawing: what cp866/koi8 tables make of letters
    return -0.3, ""


def _common_han(ch: str) -> bool:
    """In GB 2312 level 1 or Big5 level 1: the few thousand characters of everyday text."""
    try:
        if 0xB0 <= ch.encode("gb2312")[0] <= 0xD7:
            return True
    except UnicodeEncodeError:
        pass
    try:
        return 0xA4 <= ch.encode("big5")[0] <= 0xC6
    except UnicodeEncodeError:
        return False


def score(text: str) -> float:
    """Mean plausibility per non-ASCII character: ~1 for real text, low or negative for
    mojibake. Mixing scripts inside a word and flipping case mid-word cost points."""
    total = 0.0
    count = 0
    prev_script = ""
    prev_lower_cyrillic = False
    prev_non_ascii_latin = False
    for ch in text[:_SCORE_CHARS]:
        code = ord(ch)
        if code < 0x80:
            if code < 0x20 and ch not in "\t\n\r\f":
                total -= 3.0
                count += 1
            prev_script = "L" if ch.isalpha() else ""
            prev_lower_cyrillic = prev_non_ascii_latin = False
            continue
        count += 1
        points, script = _char_score(ch)
        if script and prev_script and script != prev_script:
            points -= 2.0  # "nгo": a Latin word read through a Cyrillic table, or vice versa
        if script == "C":
            if prev_lower_cyrillic and ch.isupper():
                points -= 2.0  # "зДПБЧУ": cp1251 read as koi8-r
            prev_lower_cyrillic = ch.islower()
        else:
            prev_lower_cyrillic = False
        if script == "L":
            if prev_non_ascii_latin:
                points -= 0.5  # "ÄúºÃ": runs of accented letters are rare in real words
            prev_non_ascii_latin = True
        else:
            prev_non_ascii_latin = False
        total += points
        prev_script = script
    return total / count if count else 1.0


# ----------------------------------------------------------------------------- headers

_SURROGATES = re.compile("[\udc80-\udcff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(\*[^?\s]*)?\?([BbQq])\?(.*?)\?=", re.S)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MAX_HEADER_CHARS = 16_384


def _b_decode(payload: str) -> bytes:
    raw = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    if len(raw) % 4 == 1:
        raw = raw[:-1]  # a truncated word: drop the dangling sextet rather than fail
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return b""


def _q_decode(payload: str) -> bytes:
    return binascii.a2b_qp(payload.encode("ascii", "surrogateescape"), header=True)


def decode_raw_text(value: str, *, hints: Sequence[str] = ()) -> tuple[str, str]:
    """Header text outside encoded-words: 8-bit bytes (carried as surrogate escapes by the
    parser) are decoded by the fallback chain. Returns (text, note)."""
    if not _SURROGATES.search(value):
        return value, ""
    data = value.encode("utf-8", "surrogateescape")
    decoded = decode_bytes(data, None, hints=hints)
    return decoded.text, decoded.note


def decode_header(raw: str | None, *, hints: Iterable[str] = ()) -> tuple[str, list[str]]:
    """Decode a raw header value (RFC 2047 encoded-words and raw 8-bit text); unfolded.
    Returns (text, notes about any fallback decoding)."""
    if not raw:
        return "", []
    value = _FOLD.sub("", raw[:_MAX_HEADER_CHARS]).replace("\r", "").replace("\n", "")
    hint_list = list(hints)
    if "=?" not in value:
        text, note = decode_raw_text(value, hints=hint_list)
        return text.strip(), [note] if note else []
    parts: list[str] = []
    notes: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    pending_label = ""

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is None:
            return
        decoded = decode_bytes(bytes(pending), pending_label, hints=hint_list)
        parts.append(decoded.text)
        if decoded.note:
            notes.append(decoded.note)
        pending.clear()
        pending_charset = None

    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        # RFC 2047 section 6.2: whitespace between adjacent encoded-words is not displayed.
        if between and not (pending_charset is not None and between.isspace()):
            flush()
            text, note = decode_raw_text(between, hints=hint_list)
            parts.append(text)
            if note:
                notes.append(note)
        label, _language, encoding, payload = match.groups()
        data = _b_decode(payload) if encoding in "Bb" else _q_decode(payload)
        charset = codec_name(label) or label.lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        # Same charset: join the bytes, so a character split across two words survives.
        pending.extend(data)
        pending_charset = charset
        pending_label = label
        position = match.end()
    flush()
    tail = value[position:]
    if tail:
        text, note = decode_raw_text(tail, hints=hint_list)
        parts.append(text)
        if note:
            notes.append(note)
    return "".join(parts).strip(), notes
