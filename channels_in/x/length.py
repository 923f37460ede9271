"""How long a post is by X's count, to refuse a public reply over 280 before X does.

From https://docs.x.com/fundamentals/counting-characters (and twitter-text's v3 configuration it
points to): text is NFC-normalized; code points in four ranges weigh 1, every other code point
weighs 2; an emoji sequence (joined by ZWJ, with variation selectors and skin tones) weighs 2
however many code points it takes; every URL weighs 23, the length of the t.co link X puts in
its place. We approximate twitter-text's URL and emoji grammars with simple patterns: the count
can differ from X's by a character or two on exotic input, never on ordinary text.
"""

from __future__ import annotations

import re
import unicodedata

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
DEFAULT_WEIGHT = 2
# twitter-text config v3 "ranges": each counts one character.
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_URL = re.compile(r"(?i)\bhttps?://[^\s<>\"]+|\b(?:www\.)[^\s<>\"]+")
# One emoji: a pictographic code point (plus keycap/flag forms), with its modifiers and any
# ZWJ-joined followers. Flags are two regional indicators.
_EMOJI = re.compile(
    "(?:[\U0001f1e6-\U0001f1ff]{2})"
    "|(?:[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]"
    "[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\u20e3]*"
    "(?:\u200d[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]"
    "[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\u20e3]*)*)"
)


def _weight(char: str) -> int:
    code = ord(char)
    return 1 if any(lo <= code <= hi for lo, hi in _LIGHT_RANGES) else DEFAULT_WEIGHT


def weighted_length(text: str) -> int:
    normalized = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for url in _URL.finditer(normalized):
        total += _plain_length(normalized[position : url.start()]) + URL_WEIGHT
        position = url.end()
    return total + _plain_length(normalized[position:])


def _plain_length(text: str) -> int:
    total = 0
    position = 0
    for emoji in _EMOJI.finditer(text):
        total += sum(_weight(c) for c in text[position : emoji.start()]) + DEFAULT_WEIGHT
        position = emoji.end()
    return total + sum(_weight(c) for c in text[position:])
