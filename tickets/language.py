"""Language of a customer message, restricted to the languages the helpdesk is configured for.

A small, dependency-free detector: script first (Han, Cyrillic), then language-specific
letters, then frequent words. It returns None when a message carries no evidence ("ok", a
number, an emoji), so a conversation's language stays what it was.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from django.conf import settings

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

_LETTERS = {
    "lt": set("ąčęėįšųūž"),
    "pt": set("ãõçâêôàáéíóú"),
}

_WORDS: dict[str, set[str]] = {
    "en": {
        "the",
        "is",
        "my",
        "no",
        "power",
        "bill",
        "please",
        "have",
        "and",
        "you",
        "hello",
        "hi",
        "meter",
        "reading",
        "outage",
        "electricity",
        "why",
        "when",
        "what",
        "there",
        "since",
        "thanks",
        "thank",
        "again",
        "our",
        "street",
        "help",
        "payment",
        "account",
        "are",
        "not",
        "with",
        "this",
        "was",
        "wire",
        "down",
    },
    "pt": {
        "não",
        "nao",
        "de",
        "que",
        "luz",
        "sem",
        "conta",
        "para",
        "energia",
        "obrigado",
        "obrigada",
        "está",
        "esta",
        "fatura",
        "factura",
        "olá",
        "ola",
        "bom",
        "dia",
        "boa",
        "tarde",
        "minha",
        "meu",
        "rua",
        "desde",
        "estamos",
        "quando",
        "leitura",
        "contador",
        "por",
        "favor",
        "ajuda",
        "com",
        "uma",
        "um",
        "da",
        "do",
        "na",
        "no",
        "já",
        "paguei",
    },
    "lt": {
        "nėra",
        "nera",
        "elektros",
        "labas",
        "laba",
        "diena",
        "ačiū",
        "aciu",
        "sąskaita",
        "saskaita",
        "kodėl",
        "kodel",
        "neturiu",
        "kada",
        "mano",
        "ir",
        "yra",
        "jau",
        "nuo",
        "gatvėje",
        "gatveje",
        "rodmenys",
        "rodmenis",
        "skaitiklio",
        "prašau",
        "prasau",
        "pagalbos",
        "sveiki",
        "dingo",
        "šviesa",
        "sviesa",
        "mūsų",
        "musu",
        "su",
    },
}


def _script_counts(text: str) -> tuple[int, int, int]:
    han = cyrillic = latin = 0
    for ch in text:
        if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
            han += 1
        elif "\u0400" <= ch <= "\u04ff":
            cyrillic += 1
        elif ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
            latin += 1
    return han, cyrillic, latin


def detect_language(text: str, allowed: Iterable[str] | None = None) -> str | None:
    """Best guess among `allowed` (default: HELPDESK_LANGUAGES), or None without evidence."""
    languages = list(allowed if allowed is not None else settings.HELPDESK_LANGUAGES)
    if not text or not languages:
        return None
    han, cyrillic, latin = _script_counts(text)
    if han and han >= latin and "zh" in languages:
        return "zh"
    if cyrillic and cyrillic >= latin and "ru" in languages:
        return "ru"
    if not latin:
        return None
    lowered = text.lower()
    scores = {lang: 0.0 for lang in languages if lang in _WORDS}
    for lang, letters in _LETTERS.items():
        if lang in scores:
            scores[lang] += 2 * sum(1 for ch in lowered if ch in letters)
    for word in _WORD.findall(lowered):
        for lang in scores:
            if word in _WORDS[lang]:
                scores[lang] += 1
    if not scores:
        return None
    best = max(scores, key=lambda lang: scores[lang])
    if scores[best] <= 0:
        return None
    # A tie between two languages is not evidence of either.
    if sum(1 for value in scores.values() if value == scores[best]) > 1:
        return None
    return best
