"""Priority score and topic of a customer message: additive, explainable, every part stored.

score = urgency (strongest matched group; safety groups uncapped, others capped)
      + negativity (per term, capped) + shouting + customer tier + customer value
      + repeated contact (tickets in the last N days) + social influence (followers, verified)
      + public post; routine requests (a meter reading) score below zero.
Floors and caps: a safety phrase (a fallen wire, sparks, fire, smell of gas) always makes a
ticket urgent, whatever else the score says; influence alone never lifts a ticket above
`influence.max_level` (high), so a famous complainer cannot jump a sparking wire. Aging is a
periodic job (`actions.do_age_waiting_tickets`), not part of the score.

Everything above is data: the newest `ScoringConfig` version, or `DEFAULT_CONFIG` while there
is none. The JSON shape (schema "helpdesk.scoring/1"):

    schema      "helpdesk.scoring/1"
    levels      {"urgent": 70, "high": 40, "normal": 0}   points at or above each; below: low
    urgency     {"cap": 45, "groups": [{"name", "points", "safety"?, "phrases": {lang: [...]}}]}
    negativity  {"per_term": 8, "cap": 15, "terms": {lang: [...]}}
    shouting    {"points": 5, "caps_ratio": 0.6}
    tiers       {"standard": 0, "business": 10, "vip": 15, "life_support": 35}
    value       {"at_least": 5000, "points": 5}          Contact.value (the CRM's figure)
    history     {"days": 7, "tickets": 3, "points": 8}   this many tickets in that many days
    influence   {"per_log10": 3, "cap": 12, "verified": 4, "max_level": "high"}
    public      {"points": 8}
    routine     {"points": -10, "topics": ["meter_reading"]}
    topics      [{"topic": "outage", "phrases": {lang: [...]}}, ...]   first wins a tie
    aging       {"low": 240, "normal": 480, "high": null}  minutes waiting before one level up

Lists keep their order (PostgreSQL's jsonb does not keep the order of object keys).

Phrases are matched on words, case- and accent-folded ("nera elektros" meets "nėra elektros"),
consecutive and in order. A word of four letters or more matches its inflected forms through
the Snowball stemmer of the phrase's language (ru, pt, lt, en, ...): "оборван провод" meets
"оборванный провода". `=word` matches that exact word only ("=fire" is not "fired"),
`word*` any word starting so ("kibirkšt*"), and shorter words are always exact. Chinese is
matched as a substring after Traditional→Simplified folding (電線 meets 电线).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from .language import detect
from .models import Priority, ScoringConfig, Tier, Topic

log = logging.getLogger(__name__)

SCHEMA = "helpdesk.scoring/1"
LEVEL_NAMES = ("low", "normal", "high", "urgent")
CACHE_KEY = "scoring:version"

# --------------------------------------------------------------------------- the default data

DEFAULT_CONFIG: dict[str, Any] = {
    "schema": SCHEMA,
    # A message with no signal at all is "normal"; routine requests score below zero ("low").
    "levels": {"urgent": 70, "high": 40, "normal": 0},
    "urgency": {
        "cap": 45,
        "groups": [
            {
                "name": "safety",
                "points": 70,
                "safety": True,
                "phrases": {
                    "en": [
                        "fallen wire",
                        "wire down",
                        "wires down",
                        "downed line",
                        "power line down",
                        "spark",
                        "=fire",
                        "=fires",
                        "on fire",
                        "smoke",
                        "smell of gas",
                        "gas smell",
                        "gas leak",
                        "burning smell",
                        "electric shock",
                        "electrocuted",
                    ],
                    "pt": [
                        "fio caído",
                        "fios caídos",
                        "fio no chão",
                        "faísca",
                        "faíscas",
                        "incêndio",
                        "fogo",
                        "fumaça",
                        "cheiro de gás",
                        "curto circuito",
                        "choque elétrico",
                    ],
                    "ru": [
                        "оборван провод",
                        "провод оборван",
                        "оборвался провод",
                        "оборвало провод",
                        "провод упал",
                        "упал провод",
                        "искрит",
                        "искры",
                        "пожар",
                        "горит провод",
                        "горит столб",
                        "горит щиток",
                        "горит дом",
                        "возгорание",
                        "дым",
                        "дымит",
                        "запах газа",
                        "пахнет газом",
                        "ударило током",
                        "удар током",
                    ],
                    "zh": ["电线掉", "电线断", "火花", "着火", "起火", "冒烟", "煤气味", "触电"],
                    "lt": [
                        "nutrūkęs laidas",
                        "nutrūko laidas",
                        "laidas nutrūko",
                        "nukritęs laidas",
                        "kibirkšt*",
                        "kibirkšč*",
                        "gaisras",
                        # "dega" alone is also "the light is on": only with what is burning.
                        "dega namas",
                        "dega stulpas",
                        "dega laidai",
                        "dega skydinė",
                        "dūmai",
                        "dujų kvap*",
                        "nutrenkė srovė",
                    ],
                },
            },
            {
                "name": "outage",
                "points": 30,
                "phrases": {
                    "en": [
                        "no power",
                        "power out",
                        "power is out",
                        "power outage",
                        "lost power",
                        "blackout",
                        "no electricity",
                        "lights are out",
                        "without power",
                    ],
                    "pt": [
                        "sem luz",
                        "sem energia",
                        "falta de luz",
                        "falta de energia",
                        "apagão",
                        "queda de energia",
                    ],
                    "ru": [
                        "нет света",
                        "нету света",
                        "света нет",
                        "нет электричества",
                        "отключили свет",
                        "пропал свет",
                        "свет пропал",
                        "отключение электроэнергии",
                        "без света",
                    ],
                    "zh": ["停电", "没电", "断电"],
                    "lt": [
                        "nėra elektros",
                        "elektros nėra",
                        "dingo elektra",
                        "nėra šviesos",
                        "atjungė elektrą",
                        "be elektros",
                        "šviesa nedega",
                        "nedega šviesa",
                    ],
                },
            },
            {
                "name": "vulnerable",
                "points": 25,
                "phrases": {
                    "en": [
                        "oxygen",
                        "life support",
                        "dialysis",
                        "ventilator",
                        "=disabled",
                        "wheelchair",
                        "newborn",
                    ],
                    "pt": [
                        "oxigénio",
                        "oxigênio",
                        "aparelho respiratório",
                        "diálise",
                        "acamado",
                        "acamada",
                    ],
                    "ru": [
                        "кислород*",
                        "аппарат ивл",
                        "ивл",
                        "диализ*",
                        "инвалид*",
                        "лежач*",
                        "грудной ребенок",
                    ],
                    "zh": ["氧气", "呼吸机", "透析", "残疾"],
                    "lt": ["deguon*", "dializ*", "neįgal*", "kūdik*"],
                },
            },
            {
                "name": "disconnection",
                "points": 15,
                "phrases": {
                    "en": ["disconnection notice", "cut off", "disconnected", "shut off notice"],
                    "pt": ["aviso de corte", "corte de luz", "cortaram"],
                    "ru": ["отключат", "уведомление об отключении", "отключили за долг"],
                    "zh": ["断电通知", "欠费停电"],
                    "lt": ["atjungs*", "įspėjimas dėl atjungimo"],
                },
            },
        ],
    },
    "negativity": {
        "per_term": 8,
        "cap": 15,
        "terms": {
            "en": [
                "useless",
                "terrible",
                "awful",
                "angry",
                "ridiculous",
                "disgrace",
                "worst",
                "unacceptable",
                "pathetic",
                "fed up",
                "again",
                "still no",
                "still not",
            ],
            "pt": [
                "absurdo",
                "vergonha",
                "péssimo",
                "ridículo",
                "inaceitável",
                "revoltante",
                "de novo",
                "ainda sem",
                "ainda não",
            ],
            "ru": [
                "безобразие",
                "ужас*",
                "позор",
                "издевательство",
                "беспредел",
                "сколько можно",
                "до сих пор",
                "опять",
                "надоело",
            ],
            "zh": ["太差", "垃圾", "气死", "又停电", "还是没", "无法接受"],
            "lt": ["baisu", "gėda", "nesąmonė", "vėl", "vis dar", "kiek galima", "nepriimtina"],
        },
    },
    "shouting": {"points": 5, "caps_ratio": 0.6},
    "tiers": {"standard": 0, "business": 10, "vip": 15, "life_support": 35},
    "value": {"at_least": 5000, "points": 5},
    "history": {"days": 7, "tickets": 3, "points": 8},
    "influence": {"per_log10": 3, "cap": 12, "verified": 4, "max_level": "high"},
    "public": {"points": 8},
    "routine": {"points": -10, "topics": ["meter_reading"]},
    "topics": [
        {
            "topic": "outage",
            "phrases": {
                "en": [
                    "no power",
                    "outage",
                    "blackout",
                    "power out",
                    "no electricity",
                    "=wire",
                    "=wires",
                ],
                "pt": [
                    "sem luz",
                    "sem energia",
                    "falta de luz",
                    "apagão",
                    "fio caído",
                    "queda de energia",
                ],
                "ru": ["нет света", "отключ*", "электричеств*", "провод", "свет"],
                "zh": ["停电", "没电", "断电", "电线"],
                "lt": ["nėra elektros", "dingo elektra", "elektros nėra", "laid*", "atjung*"],
            },
        },
        {
            "topic": "billing",
            "phrases": {
                "en": [
                    "bill*",
                    "invoice*",
                    "payment*",
                    "paid",
                    "debt",
                    "charge",
                    "balance",
                    "refund",
                ],
                "pt": [
                    "fatura",
                    "factura",
                    "conta de luz",
                    "pagamento",
                    "paguei",
                    "dívida",
                    "saldo",
                ],
                "ru": [
                    "счет",
                    "квитанц*",
                    "оплат*",
                    "=долг",
                    "=долга",
                    "=долги",
                    "задолженн*",
                    "баланс",
                    "платеж*",
                ],
                "zh": ["账单", "缴费", "付款", "欠费", "余额", "电费"],
                "lt": ["sąskait*", "mokėj*", "apmokė*", "skol*", "balans*", "sumokėjau"],
            },
        },
        {
            "topic": "meter_reading",
            "phrases": {
                "en": ["meter reading*", "reading*", "meter"],
                "pt": ["leitura", "contador", "medidor"],
                "ru": ["показани*", "счетчик"],
                "zh": ["电表读数", "读数", "电表", "抄表"],
                "lt": ["rodmen*", "skaitikl*"],
            },
        },
        {
            "topic": "tariff",
            "phrases": {
                "en": ["tariff", "rate plan", "price per kwh", "night rate"],
                "pt": ["tarifa", "preço do kwh", "bi-horário"],
                "ru": ["тариф*"],
                "zh": ["电价", "峰谷", "阶梯"],
                "lt": ["tarif*", "kaina už kwh"],
            },
        },
        {
            "topic": "contract",
            "phrases": {
                "en": ["contract", "new connection", "move in", "moving out", "terminate"],
                "pt": ["contrato", "ligação nova", "mudança", "titularidade"],
                "ru": ["договор*", "подключени*", "переоформ*"],
                "zh": ["合同", "过户", "开户", "新装"],
                "lt": ["sutart*", "prijungim*", "perraš*"],
            },
        },
        {
            "topic": "maintenance",
            "phrases": {
                "en": ["maintenance", "planned work", "scheduled outage", "repair"],
                "pt": ["manutenção", "obras", "trabalhos programados", "reparação"],
                "ru": ["плановые работы", "ремонт*", "профилактик*"],
                "zh": ["检修", "维修", "计划停电"],
                "lt": ["planiniai darbai", "remont*", "priežiūr*"],
            },
        },
    ],
    # Minutes a ticket waits (since the customer started waiting) before the periodic job
    # raises it one level; null: never. High never becomes urgent by waiting alone: urgent
    # means danger, and the SLA clock already orders waiting high tickets.
    "aging": {"low": 240, "normal": 480, "high": None},
}


def default_config() -> dict[str, Any]:
    """A copy of the built-in dictionary and weights (callers may change it freely)."""
    return copy.deepcopy(DEFAULT_CONFIG)


# --------------------------------------------------------------------------- text folding

# Snowball stemmers by the language codes the dictionary uses; other languages match exactly.
STEMMER_NAMES = {
    "en": "english",
    "pt": "portuguese",
    "ru": "russian",
    "lt": "lithuanian",
    "es": "spanish",
    "fr": "french",
    "de": "german",
    "it": "italian",
    "pl": "polish",
    "nl": "dutch",
    "sv": "swedish",
    "fi": "finnish",
    "et": "estonian",
    "tr": "turkish",
}
STEM_MIN_LETTERS = 4


def fold(text: str) -> str:
    """Lower-case and strip accents (ё->е, ė->e) so spelling variants meet."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _has_han(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


@functools.cache
def _t2s() -> Any:
    from opencc import OpenCC

    return OpenCC("t2s")


def fold_han(text: str) -> str:
    """Traditional Chinese characters as Simplified (電線 -> 电线); other text unchanged."""
    return _t2s().convert(text) if _has_han(text) else text


@functools.cache
def _stemmer(lang: str) -> Any:
    name = STEMMER_NAMES.get(lang)
    if name is None:
        return None
    import Stemmer

    return Stemmer.Stemmer(name)


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class _Doc:
    """A message prepared for matching once: folded text, folded words, and their stems per
    language computed only when a phrase of that language asks."""

    __slots__ = ("_stems", "folded", "matches", "raw", "words")

    def __init__(self, text: str) -> None:
        han = _has_han(text)
        lowered = (fold_han(text) if han else text).casefold()
        # Chinese phrases are substrings of the whole text; nothing else needs it.
        self.folded = fold(lowered) if han else ""
        self.raw = _WORD.findall(lowered)
        self.words = [_fold_word(w) for w in self.raw]
        self._stems: dict[str, list[str]] = {}
        self.matches: tuple[int, list[_Phrase]] | None = None

    def stems(self, lang: str) -> list[str]:
        stems = self._stems.get(lang)
        if stems is None:
            stems = [_stem_word(lang, w) for w in self.raw] if _stemmer(lang) else self.words
            self._stems[lang] = stems
        return stems


# Customers use a limited vocabulary: folding and stemming each word once per process
# makes both dictionary look-ups.
@functools.lru_cache(maxsize=100_000)
def _fold_word(word: str) -> str:
    return word if word.isascii() else fold(word)


@functools.lru_cache(maxsize=200_000)
def _stem_word(lang: str, word: str) -> str:
    return _fold_word(_stemmer(lang).stemWord(word))


@functools.lru_cache(maxsize=32)
def _doc(text: str) -> _Doc:
    # The receive path reads the same text for the topic and the score: prepare it once.
    return _Doc(text)


# --------------------------------------------------------------------------- phrases


class ConfigError(ValueError):
    """A scoring configuration that cannot be used; `errors` says what and where."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class _Word:
    mode: str  # "exact" | "prefix" | "stem"
    value: str


@dataclass(frozen=True)
class _Phrase:
    text: str  # as written, for the reasons agents read
    lang: str
    tag: Any  # what a match means: a group index, a topic
    words: tuple[_Word, ...]
    han: str = ""  # Chinese: a substring of the folded text


def parse_phrase(phrase: str, lang: str) -> tuple[tuple[_Word, ...], str]:
    """(words, han substring) of one dictionary phrase; ValueError says what is wrong."""
    if not isinstance(phrase, str):
        raise ValueError("must be text")
    cleaned = " ".join(phrase.split())
    if not cleaned:
        raise ValueError("is empty")
    if len(cleaned) > 100:
        raise ValueError("is longer than 100 characters")
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise ValueError("contains a control character")
    if _has_han(cleaned):
        han = fold(fold_han(cleaned)).replace(" ", "")
        if "*" in han or "=" in han:
            raise ValueError("Chinese phrases match anywhere: leave out * and =")
        return (), han
    parts = cleaned.split(" ")
    if len(parts) > 8:
        raise ValueError("has more than 8 words")
    words: list[_Word] = []
    stemmer = _stemmer(lang)
    for part in parts:
        exact = part.startswith("=")
        prefix = part.endswith("*")
        core = part.strip("=*")
        if "=" in core or "*" in core or (exact and prefix):
            raise ValueError(f"has {part!r}: '=' may only start a word, '*' only end one")
        folded_words = [fold(w) for w in _WORD.findall(core.casefold())]
        if len(folded_words) != 1 or not folded_words[0]:
            if not folded_words:
                raise ValueError(f"{part!r} has no letters or digits")
            # "bi-horário": punctuation splits words in messages too.
            if exact or prefix:
                raise ValueError(f"{part!r}: use = and * on single words")
            words.extend(_plain_word(w, lang, stemmer) for w in _WORD.findall(core.casefold()))
            continue
        word = folded_words[0]
        if prefix:
            if len(word) < 3:
                raise ValueError(f"{part!r}: a prefix needs at least 3 letters")
            words.append(_Word("prefix", word))
        elif exact:
            words.append(_Word("exact", word))
        else:
            words.append(_plain_word(core.casefold(), lang, stemmer))
    return tuple(words), ""


def _plain_word(raw: str, lang: str, stemmer: Any) -> _Word:
    word = fold(raw)
    if stemmer is None or len(word) < STEM_MIN_LETTERS:
        return _Word("exact", word)
    return _Word("stem", fold(stemmer.stemWord(raw)))


class PhraseSet:
    """Phrases compiled for lookup: indexed by their first word, so a message costs a few
    dictionary lookups per word rather than a scan of every phrase."""

    def __init__(self, items: Iterable[tuple[str, str, Any]]) -> None:
        self.exact: dict[str, list[_Phrase]] = {}
        self.stem: dict[tuple[str, str], list[_Phrase]] = {}
        self.prefix: dict[int, dict[str, list[_Phrase]]] = {}
        self.han: list[_Phrase] = []
        self.stem_langs: set[str] = set()
        self.size = 0
        for lang, text, tag in items:
            words, han = parse_phrase(text, lang)
            phrase = _Phrase(text=text.strip(), lang=lang, tag=tag, words=words, han=han)
            self.size += 1
            if han:
                self.han.append(phrase)
                continue
            first = words[0]
            if first.mode == "exact":
                self.exact.setdefault(first.value, []).append(phrase)
            elif first.mode == "prefix":
                by_len = self.prefix.setdefault(len(first.value), {})
                by_len.setdefault(first.value, []).append(phrase)
            else:
                self.stem.setdefault((lang, first.value), []).append(phrase)
            if any(w.mode == "stem" for w in words):
                self.stem_langs.add(lang)

    def find(self, doc: _Doc) -> list[_Phrase]:
        """Every phrase found in the message, each once. Phrases of one tag starting at the
        same word are one match ("оборван провод" and "оборвался провод" both meet
        "оборван провод" through their stems: counted and shown once)."""
        found: dict[int, _Phrase] = {}
        spans: set[tuple[Any, int]] = set()
        for phrase in self.han:
            at = doc.folded.find(phrase.han)
            if at >= 0 and (phrase.tag, -1 - at) not in spans:
                found[id(phrase)] = phrase
                spans.add((phrase.tag, -1 - at))
        words = doc.words
        if not words:
            return list(found.values())
        stems = {lang: doc.stems(lang) for lang in self.stem_langs}
        for i, word in enumerate(words):
            candidates: list[_Phrase] = []
            candidates.extend(self.exact.get(word, ()))
            for lang, lang_stems in stems.items():
                candidates.extend(self.stem.get((lang, lang_stems[i]), ()))
            for length, by_prefix in self.prefix.items():
                if len(word) >= length:
                    candidates.extend(by_prefix.get(word[:length], ()))
            for phrase in candidates:
                if (
                    id(phrase) not in found
                    and (phrase.tag, i) not in spans
                    and self._rest_matches(phrase, doc, i)
                ):
                    found[id(phrase)] = phrase
                    spans.add((phrase.tag, i))
        return list(found.values())

    @staticmethod
    def _rest_matches(phrase: _Phrase, doc: _Doc, start: int) -> bool:
        if start + len(phrase.words) > len(doc.words):
            return False
        for offset, expected in enumerate(phrase.words[1:], start=1):
            word = doc.words[start + offset]
            if expected.mode == "exact":
                ok = word == expected.value
            elif expected.mode == "prefix":
                ok = word.startswith(expected.value)
            else:
                ok = doc.stems(phrase.lang)[start + offset] == expected.value
            if not ok:
                return False
        return True


# --------------------------------------------------------------------------- validation

_LANG = re.compile(r"^[a-z]{2,3}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
MAX_PHRASES = 5000
MAX_CONFIG_BYTES = 1_000_000


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(f"{path}: {message}")

    def obj(
        self, value: Any, path: str, required: set[str], optional: frozenset[str] = frozenset()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, "must be an object")
            return None
        for key in sorted(required - value.keys()):
            self.error(f"{path}.{key}", "is missing")
        for key in sorted(value.keys() - required - optional):
            expected = ", ".join(sorted(required | optional))
            self.error(f"{path}.{key}", f"unknown key; expected {expected}")
        return value

    def integer(self, value: Any, path: str, low: int, high: int, *, null: bool = False) -> None:
        if value is None and null:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, "must be a whole number" + (" or null" if null else ""))
        elif not low <= value <= high:
            self.error(path, f"must be from {low} to {high}; got {value}")

    def number(self, value: Any, path: str, low: float, high: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, "must be a number")
        elif not low <= value <= high:
            self.error(path, f"must be from {low} to {high}; got {value}")

    def phrases(self, value: Any, path: str) -> int:
        """Check a {language: [phrase, ...]} map; returns how many phrases it holds."""
        if not isinstance(value, dict):
            self.error(path, "must be an object of language code -> list of phrases")
            return 0
        count = 0
        for lang, items in value.items():
            where = f"{path}.{lang}"
            if not _LANG.match(str(lang)):
                self.error(where, "a language code is 2 or 3 lower-case letters (en, pt, ru)")
                continue
            if not isinstance(items, list):
                self.error(where, "must be a list of phrases")
                continue
            seen: set[str] = set()
            for index, phrase in enumerate(items):
                try:
                    parse_phrase(phrase, lang)
                except ValueError as exc:
                    self.error(f"{where}[{index}]", f"{phrase!r} {exc}")
                    continue
                if phrase in seen:
                    self.error(f"{where}[{index}]", f"{phrase!r} is listed twice")
                seen.add(phrase)
            count += len(items)
        return count


def validate_config(data: Any) -> dict[str, Any]:
    """The configuration, checked: raises ConfigError with every problem and where it is."""
    c = _Checker()
    top = {
        "schema",
        "levels",
        "urgency",
        "negativity",
        "shouting",
        "tiers",
        "value",
        "history",
        "influence",
        "public",
        "routine",
        "topics",
        "aging",
    }
    if c.obj(data, "config", top) is None:
        raise ConfigError(c.errors)
    try:
        size = len(json.dumps(data, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"config: not JSON data ({exc})"]) from exc
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([f"config: {size} bytes; at most {MAX_CONFIG_BYTES}"])
    if "schema" in data and data["schema"] != SCHEMA:
        c.error("config.schema", f"must be {SCHEMA!r}; got {data['schema']!r}")

    levels = c.obj(data.get("levels"), "config.levels", {"urgent", "high", "normal"})
    if levels is not None:
        for name in ("urgent", "high", "normal"):
            c.integer(levels.get(name), f"config.levels.{name}", -1000, 1000)
        values = [levels.get(n) for n in ("urgent", "high", "normal")]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and not (
            values[0] > values[1] > values[2]
        ):
            c.error("config.levels", "must rise: normal < high < urgent")

    phrase_count = 0
    urgency = c.obj(data.get("urgency"), "config.urgency", {"cap", "groups"})
    if urgency is not None:
        c.integer(urgency.get("cap"), "config.urgency.cap", 0, 200)
        groups = urgency.get("groups")
        if not isinstance(groups, list) or not groups:
            c.error("config.urgency.groups", "must be a non-empty list of groups")
        else:
            names: set[str] = set()
            for index, group in enumerate(groups):
                where = f"config.urgency.groups[{index}]"
                if (
                    c.obj(group, where, {"name", "points", "phrases"}, frozenset({"safety"}))
                    is None
                ):
                    continue
                name = group.get("name")
                if not isinstance(name, str) or not _NAME.match(name):
                    c.error(f"{where}.name", "lower-case letters, digits and _, up to 30")
                elif name in names:
                    c.error(f"{where}.name", f"{name!r} is used by another group")
                else:
                    names.add(name)
                c.integer(group.get("points"), f"{where}.points", 0, 200)
                if "safety" in group and not isinstance(group["safety"], bool):
                    c.error(f"{where}.safety", "must be true or false")
                phrase_count += c.phrases(group.get("phrases"), f"{where}.phrases")

    negativity = c.obj(data.get("negativity"), "config.negativity", {"per_term", "cap", "terms"})
    if negativity is not None:
        c.integer(negativity.get("per_term"), "config.negativity.per_term", 0, 100)
        c.integer(negativity.get("cap"), "config.negativity.cap", 0, 100)
        phrase_count += c.phrases(negativity.get("terms"), "config.negativity.terms")

    shouting = c.obj(data.get("shouting"), "config.shouting", {"points", "caps_ratio"})
    if shouting is not None:
        c.integer(shouting.get("points"), "config.shouting.points", 0, 100)
        c.number(shouting.get("caps_ratio"), "config.shouting.caps_ratio", 0.1, 1.0)

    tiers = c.obj(data.get("tiers"), "config.tiers", set(Tier.values))
    if tiers is not None:
        for name in Tier.values:
            c.integer(tiers.get(name), f"config.tiers.{name}", -100, 200)

    value = c.obj(data.get("value"), "config.value", {"at_least", "points"})
    if value is not None:
        c.number(value.get("at_least"), "config.value.at_least", 0, 1e12)
        c.integer(value.get("points"), "config.value.points", 0, 100)

    history = c.obj(data.get("history"), "config.history", {"days", "tickets", "points"})
    if history is not None:
        c.integer(history.get("days"), "config.history.days", 1, 365)
        c.integer(history.get("tickets"), "config.history.tickets", 2, 1000)
        c.integer(history.get("points"), "config.history.points", 0, 100)

    influence = c.obj(
        data.get("influence"), "config.influence", {"per_log10", "cap", "verified", "max_level"}
    )
    if influence is not None:
        c.number(influence.get("per_log10"), "config.influence.per_log10", 0, 50)
        c.integer(influence.get("cap"), "config.influence.cap", 0, 100)
        c.integer(influence.get("verified"), "config.influence.verified", 0, 100)
        if influence.get("max_level") not in LEVEL_NAMES[:3]:
            c.error(
                "config.influence.max_level",
                "must be low, normal or high: influence never makes a ticket urgent",
            )

    public = c.obj(data.get("public"), "config.public", {"points"})
    if public is not None:
        c.integer(public.get("points"), "config.public.points", 0, 100)

    topic_values = [t for t in Topic.values if t != Topic.OTHER]
    routine = c.obj(data.get("routine"), "config.routine", {"points", "topics"})
    if routine is not None:
        c.integer(routine.get("points"), "config.routine.points", -100, 0)
        topics = routine.get("topics")
        if not isinstance(topics, list) or any(t not in topic_values for t in topics):
            c.error("config.routine.topics", f"must be a list of {', '.join(topic_values)}")

    topics = data.get("topics")
    if not isinstance(topics, list):
        c.error("config.topics", "must be a list of {topic, phrases}")
    else:
        seen_topics: set[str] = set()
        for index, entry in enumerate(topics):
            where = f"config.topics[{index}]"
            if c.obj(entry, where, {"topic", "phrases"}) is None:
                continue
            topic = entry.get("topic")
            if topic not in topic_values:
                c.error(f"{where}.topic", f"must be one of {', '.join(topic_values)}")
            elif topic in seen_topics:
                c.error(f"{where}.topic", f"{topic!r} is listed twice")
            else:
                seen_topics.add(topic)
            phrase_count += c.phrases(entry.get("phrases"), f"{where}.phrases")

    aging = c.obj(data.get("aging"), "config.aging", {"low", "normal", "high"})
    if aging is not None:
        for name in ("low", "normal", "high"):
            c.integer(aging.get(name), f"config.aging.{name}", 1, 60 * 24 * 30, null=True)

    if phrase_count > MAX_PHRASES:
        c.error("config", f"{phrase_count} phrases; at most {MAX_PHRASES}")
    if c.errors:
        raise ConfigError(c.errors)
    return data


# --------------------------------------------------------------------------- compiled config


_tokens = itertools.count(1)


@dataclass
class Compiled:
    """A validated configuration ready for matching. Immutable once built."""

    version: int
    data: dict[str, Any]
    # Urgency groups, negativity terms and topics in one index, so a message is walked once;
    # tags say which: ("urgency", group index), ("negativity", None), ("topic", topic).
    phrases: PhraseSet
    topic_order: list[str]
    # Identifies this compilation in the per-text match memo (ids of freed objects recur).
    token: int = field(default_factory=lambda: next(_tokens))

    def matches(self, text: str) -> dict[str, list[_Phrase]]:
        """The phrases found in `text`, by kind (remembered for the same text)."""
        doc = _doc(text or "")
        if doc.matches is None or doc.matches[0] != self.token:
            doc.matches = (self.token, self.phrases.find(doc))
        found: dict[str, list[_Phrase]] = {"urgency": [], "negativity": [], "topic": []}
        for phrase in doc.matches[1]:
            found[phrase.tag[0]].append(phrase)
        return found

    def level_for(self, points: int) -> int:
        levels = self.data["levels"]
        if points >= levels["urgent"]:
            return Priority.URGENT
        if points >= levels["high"]:
            return Priority.HIGH
        if points >= levels["normal"]:
            return Priority.NORMAL
        return Priority.LOW


def compile_config(data: Any, version: int = 0) -> Compiled:
    data = copy.deepcopy(validate_config(data))
    groups = data["urgency"]["groups"]
    items: list[tuple[str, str, Any]] = [
        (lang, phrase, ("urgency", index))
        for index, group in enumerate(groups)
        for lang, phrases in group["phrases"].items()
        for phrase in phrases
    ]
    items += [
        (lang, phrase, ("negativity", None))
        for lang, phrases in data["negativity"]["terms"].items()
        for phrase in phrases
    ]
    items += [
        (lang, phrase, ("topic", entry["topic"]))
        for entry in data["topics"]
        for lang, phrases in entry["phrases"].items()
        for phrase in phrases
    ]
    return Compiled(
        version=version,
        data=data,
        phrases=PhraseSet(items),
        topic_order=[entry["topic"] for entry in data["topics"]],
    )


@functools.cache
def default_compiled() -> Compiled:
    return compile_config(DEFAULT_CONFIG, 0)


class _Current:
    """The configuration this process scores with, re-checked at most every few seconds.

    The newest version number lives in the shared cache: a check is one cache read, and the
    database is read only when the number differs from what this process compiled (a new
    version, once per process) or when the cache lost it. Never a query per message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.compiled: Compiled | None = None
        self.checked_at = 0.0

    def get(self) -> Compiled:
        compiled = self.compiled
        interval = float(getattr(settings, "HELPDESK_SCORING_CHECK_SECONDS", 5))
        if compiled is not None and time.monotonic() - self.checked_at < interval:
            return compiled
        with self.lock:
            compiled = self.compiled
            if compiled is not None and time.monotonic() - self.checked_at < interval:
                return compiled
            try:
                announced = cache.get(CACHE_KEY)
            except Exception:  # a cache outage must not stop messages; the database decides
                log.warning("scoring: cannot read the version from the cache", exc_info=True)
                announced = None
            if compiled is None or announced is None or announced != compiled.version:
                compiled = self._load(compiled)
                try:
                    # add, not set: a save announces with set after its commit, and a reader
                    # that loaded just before that commit must not overwrite it.
                    cache.add(CACHE_KEY, compiled.version, None)
                except Exception:
                    log.warning("scoring: cannot write the version to the cache", exc_info=True)
            self.compiled = compiled
            self.checked_at = time.monotonic()
            return compiled

    @staticmethod
    def _load(compiled: Compiled | None) -> Compiled:
        row = ScoringConfig.objects.order_by("-version").values_list("version", "data").first()
        if row is None:
            return default_compiled()
        version, data = row
        if compiled is not None and compiled.version == version:
            return compiled
        try:
            return compile_config(data, version)
        except ConfigError:
            # Versions are validated when saved; one that no longer compiles (an older
            # release's format) must not stop scoring.
            log.exception("scoring config v%s is invalid; using the built-in default", version)
            return default_compiled()

    def reset(self) -> None:
        with self.lock:
            self.compiled = None
            self.checked_at = 0.0


_current = _Current()


def current_config() -> Compiled:
    """The configuration in force (cached per process; see _Current)."""
    return _current.get()


def announce_version(version: int) -> None:
    """Tell every process a new version exists (call after the commit that saved it)."""
    _current.reset()
    try:
        cache.set(CACHE_KEY, version, None)
    except Exception:
        log.warning("scoring: cannot announce version %s in the cache", version, exc_info=True)


def reset_config_cache() -> None:
    """Forget the compiled configuration and the announced version (tests)."""
    _current.reset()
    try:
        cache.delete(CACHE_KEY)
    except Exception:
        log.warning("scoring: cannot clear the cached version", exc_info=True)


# --------------------------------------------------------------------------- scoring


@dataclass
class Score:
    points: int = 0
    safety: bool = False
    reasons: list[dict[str, Any]] = field(default_factory=list)
    level: int = Priority.NORMAL
    # Negativity of the words (the points the negativity signal gave; 0 = none).
    sentiment: int = 0
    version: int = 0

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    def add(self, signal: str, detail: str, points: int, **extra: Any) -> None:
        if points:
            self.points += points
            self.reasons.append({"signal": signal, "detail": detail, "points": points, **extra})


def _is_shouting(text: str, caps_ratio: float) -> bool:
    if "!!" in text or "！！" in text:
        return True
    words = [w for w in _WORD.findall(text) if len(w) >= 3 and not w.isdigit()]
    cased = [w for w in words if any(ch.lower() != ch.upper() for ch in w)]
    if len(cased) < 3:
        return False
    upper = sum(1 for w in cased if w.isupper())
    return upper / len(cased) > caps_ratio


def _quote(phrases: Iterable[_Phrase]) -> str:
    return ", ".join(f"“{p.text.strip('=*')}”" for p in phrases)


def score_text(
    text: str,
    *,
    tier: str = Tier.STANDARD,
    followers: int = 0,
    verified: bool = False,
    is_public: bool = False,
    value: float = 0,
    recent_tickets: int = 0,
    config: Compiled | None = None,
) -> Score:
    """Score one message. `recent_tickets`: the contact's tickets in the last
    `history.days` days including this one (0: unknown)."""
    cfg = config or current_config()
    data = cfg.data
    score = Score(version=cfg.version)
    found = cfg.matches(text)

    groups = data["urgency"]["groups"]
    hits: dict[int, list[_Phrase]] = {}
    for phrase in found["urgency"]:
        hits.setdefault(phrase.tag[1], []).append(phrase)
    best: int | None = None
    for index in sorted(hits):  # the strongest group; a tie goes to the earlier group
        if best is None or groups[index]["points"] > groups[best]["points"]:
            best = index
        if groups[index].get("safety"):
            score.safety = True
    if best is not None:
        group = groups[best]
        safety = bool(group.get("safety"))
        points = group["points"] if safety else min(group["points"], data["urgency"]["cap"])
        score.add(
            "safety" if safety else "urgency",
            f"{group['name']}: {_quote(hits[best][:2])}",
            points,
        )
        if score.safety and not safety:
            # A safety phrase that a stronger group outscored still sets the floor: say so.
            first = next(i for i in sorted(hits) if groups[i].get("safety"))
            detail = f"{groups[first]['name']}: {_quote(hits[first][:2])}"
            score.reasons.append({"signal": "safety", "detail": detail, "points": 0})

    negatives = found["negativity"]
    if negatives:
        neg = data["negativity"]
        points = min(neg["cap"], neg["per_term"] * len(negatives))
        score.add("negativity", _quote(negatives[:3]), points)
        score.sentiment = points

    if text and _is_shouting(text, data["shouting"]["caps_ratio"]):
        score.add("shouting", "capitals or repeated exclamation marks", data["shouting"]["points"])

    tier_value = tier if tier in Tier.values else Tier.STANDARD
    score.add("tier", Tier(tier_value).label, data["tiers"].get(tier_value, 0))

    value_rule = data["value"]
    if value and value_rule["points"] and float(value) >= value_rule["at_least"]:
        score.add("value", f"customer value {float(value):,.0f}", value_rule["points"])

    history = data["history"]
    if recent_tickets >= history["tickets"]:
        score.add(
            "history",
            f"{recent_tickets} tickets in {history['days']} days",
            history["points"],
            tickets=recent_tickets,
        )

    influence = data["influence"]
    if followers > 0:
        reach = min(influence["cap"], round(influence["per_log10"] * math.log10(1 + followers)))
        score.add("influence", f"{followers:,} followers", reach)
    if verified:
        score.add("influence", "verified account", influence["verified"])
    if is_public:
        score.add("public", "public post, visible to everyone", data["public"]["points"])

    if not score.reasons or all(r["signal"] in ("tier", "value") for r in score.reasons):
        routine = data["routine"]
        topic = classify_topic(text, config=cfg)
        if topic in routine["topics"]:
            score.add("routine", Topic(topic).label.lower(), routine["points"])

    score.level = cfg.level_for(score.points)
    if score.safety:
        score.level = Priority.URGENT
    else:
        ceiling = LEVEL_NAMES.index(influence["max_level"])
        reach = sum(r["points"] for r in score.reasons if r["signal"] == "influence")
        without = cfg.level_for(score.points - reach)
        if score.level > max(without, ceiling):
            score.level = max(without, ceiling)
            score.reasons.append(
                {
                    "signal": "cap",
                    "detail": f"influence alone never makes a ticket {LEVEL_NAMES[ceiling + 1]}",
                    "points": 0,
                }
            )
    return score


def classify_topic(text: str, *, config: Compiled | None = None) -> str:
    """The topic with the most matched phrases; a tie goes to the earlier topic."""
    cfg = config or current_config()
    counts: dict[str, int] = {}
    for phrase in cfg.matches(text)["topic"]:
        counts[phrase.tag[1]] = counts.get(phrase.tag[1], 0) + 1
    best, best_hits = str(Topic.OTHER), 0
    for topic in cfg.topic_order:
        if counts.get(topic, 0) > best_hits:
            best, best_hits = topic, counts[topic]
    return best


def level_name(level: int) -> str:
    return LEVEL_NAMES[level]


def aging_minutes(config: Compiled | None = None) -> dict[int, int]:
    """Minutes of waiting after which a ticket at each level is raised one level."""
    cfg = config or current_config()
    return {
        Priority[name.upper()].value: minutes
        for name, minutes in cfg.data["aging"].items()
        if minutes is not None
    }


def preview(
    text: str,
    *,
    tier: str = Tier.STANDARD,
    followers: int = 0,
    verified: bool = False,
    is_public: bool = False,
    config: Compiled | None = None,
) -> dict[str, Any]:
    """What the helpdesk would make of this message: level, points, every reason, topic and
    language (the admin page's and the API's "score this text")."""
    cfg = config or current_config()
    score = score_text(
        text, tier=tier, followers=followers, verified=verified, is_public=is_public, config=cfg
    )
    detection = detect(text)
    return {
        "version": cfg.version,
        "level": score.level_name,
        "points": score.points,
        "safety": score.safety,
        "sentiment": score.sentiment,
        "reasons": score.reasons,
        "topic": classify_topic(text, config=cfg),
        "language": detection.language,
        "language_method": detection.method,
        "language_confidence": round(detection.confidence, 3),
        "foreign_language": detection.foreign or None,
    }


@shared_task(ignore_result=True)
def age_waiting_tickets() -> int:
    """The periodic aging job (beat: every minute). It lives here, with the aging
    configuration it applies, rather than in tickets.tasks, which other areas share."""
    from . import actions  # actions imports this module

    return actions.do_age_waiting_tickets()
