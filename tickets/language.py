"""Language of a customer message, restricted to the languages the helpdesk is configured for.

Two detectors. lingua (lingua-language-detector, high-accuracy mode) decides for messages
with enough letters; it is built once per process, lazily and thread-safely, from the
configured languages (HELPDESK_LANGUAGES) PLUS their confusable neighbours (Spanish,
Ukrainian, Belarusian, Latvian, Polish, Japanese, German, French): offered only our five,
it would call Spanish Portuguese and Ukrainian Russian. A confident neighbour is "not ours"
and returns None, so the conversation keeps its language: a Ukrainian message is not
labelled Russian (agents who read Russian may still take it; routing simply does not claim
it is Russian). Short or unclear messages go to the small heuristic detector below (script
first, then language-specific letters, then frequent words), which knows only our
languages. Either way a message with no evidence ("ok", "👍", a number) is None.

A conversation's language is sticky (`conversation_language`): a short reply never changes
it; a long message confidently in another of our languages does (recorded by the caller).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

# Neighbours that look like ours; detected so they are not mistaken for ours.
CONFUSABLES = ("es", "uk", "be", "lv", "pl", "ja", "de", "fr")
# Below this many letters lingua guesses ("Labas" -> Latvian, "olá" -> Spanish): the
# heuristic's word lists know these greetings better.
LINGUA_MIN_LETTERS = 12
# lingua's confidence (0..1) in its first choice needed to trust it: one of ours at 0.5; a
# neighbour only at 0.8, because calling a message foreign loses its language ("оборван
# провод, искрит" is Ukrainian 0.53, Russian 0.46 to lingua); below that, the heuristic.
LINGUA_MIN_CONFIDENCE = 0.5
FOREIGN_MIN_CONFIDENCE = 0.8
# A message in another language switches a conversation only when it is at least this long.
SWITCH_MIN_LETTERS = 20

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


def heuristic_language(text: str, allowed: Iterable[str] | None = None) -> str | None:
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


# --------------------------------------------------------------------------- lingua


@dataclass(frozen=True)
class Detection:
    language: str | None  # one of the configured languages, or None
    method: str  # "lingua", "heuristic", "foreign" (a neighbour, not ours), "none"
    confidence: float = 0.0
    letters: int = 0
    foreign: str = ""  # the neighbour lingua saw, when method is "foreign"

    @property
    def decisive(self) -> bool:
        """Evidence strong enough to switch a conversation to this language."""
        return (
            self.language is not None
            and self.method == "lingua"
            and self.letters
            >= int(getattr(settings, "HELPDESK_LANGUAGE_SWITCH_LETTERS", SWITCH_MIN_LETTERS))
        )


class _Lingua:
    """One detector per process and language set, built on first use under a lock (building
    takes seconds and, in high-accuracy mode, a few hundred MB: never twice)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.detectors: dict[tuple[str, ...], Any] = {}
        self.failed = False

    def get(self, languages: tuple[str, ...]) -> Any:
        detector = self.detectors.get(languages)
        if detector is not None or self.failed:
            return detector
        with self.lock:
            detector = self.detectors.get(languages)
            if detector is None and not self.failed:
                detector = self._build(languages)
                if detector is not None:
                    self.detectors[languages] = detector
            return detector

    def _build(self, languages: tuple[str, ...]) -> Any:
        try:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
        except ImportError:
            self.failed = True
            log.warning("lingua-language-detector is not installed; using the heuristic")
            return None
        wanted = []
        for code in dict.fromkeys((*languages, *CONFUSABLES)):
            iso = getattr(IsoCode639_1, code.upper(), None)
            if iso is None:
                log.warning("lingua does not know the language %r", code)
                continue
            wanted.append(Language.from_iso_code_639_1(iso))
        if len(wanted) < 2:
            return None
        builder = LanguageDetectorBuilder.from_languages(*wanted).with_preloaded_language_models()
        if getattr(settings, "HELPDESK_LANGUAGE_LOW_ACCURACY", False):
            # ~45 MB instead of ~400 MB per process; worse on short texts, which the
            # heuristic handles anyway.
            builder = builder.with_low_accuracy_mode()
        return builder.build()


_lingua = _Lingua()


def warm_up() -> None:
    """Build the detector now (a worker's start) rather than on its first message."""
    _lingua.get(tuple(settings.HELPDESK_LANGUAGES))


def _letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def detect(text: str, allowed: Iterable[str] | None = None) -> Detection:
    """The language of `text` among `allowed` (default: HELPDESK_LANGUAGES), and how sure."""
    languages = tuple(allowed if allowed is not None else settings.HELPDESK_LANGUAGES)
    letters = _letters(text or "")
    if not letters or not languages:
        return Detection(None, "none", letters=letters)
    if letters >= LINGUA_MIN_LETTERS:
        detector = _lingua.get(languages)
        if detector is not None:
            values = detector.compute_language_confidence_values(text)
            if values:
                top = values[0]
                code = top.language.iso_code_639_1.name.lower()
                if code in languages and top.value >= LINGUA_MIN_CONFIDENCE:
                    return Detection(code, "lingua", top.value, letters)
                if code not in languages and top.value >= FOREIGN_MIN_CONFIDENCE:
                    return Detection(None, "foreign", top.value, letters, foreign=code)
    guess = heuristic_language(text, languages)
    return Detection(guess, "heuristic" if guess else "none", letters=letters)


def detect_language(text: str, allowed: Iterable[str] | None = None) -> str | None:
    """Best guess among `allowed` (default: HELPDESK_LANGUAGES), or None without evidence."""
    return detect(text, allowed).language


def conversation_language(current: str, detection: Detection) -> str:
    """The conversation's language after this message: set when unknown, switched only by a
    decisive message (long, lingua-confident) in another configured language."""
    if detection.language is None:
        return current
    if not current:
        return detection.language
    if detection.language != current and detection.decisive:
        return detection.language
    return current
