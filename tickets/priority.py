"""Priority score and topic of a customer message: additive, explainable, every part stored.

score = urgency (strongest matched group, capped) + negativity + shouting + customer tier
      + social influence (capped) + public post. Safety phrases (a fallen wire, sparks, fire,
smell of gas) always make a ticket urgent, whatever else the score says. Aging is applied by
the queue order (waiting time), never stored. See ../shared/BOTS-ROUTING.md "Priority scoring".
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .models import Priority, Tier, Topic

# A message with no signal at all is "normal"; routine requests (a meter reading) score below
# zero and are "low": high volume, low value, first in line for self-service.
LEVEL_THRESHOLDS = ((70, Priority.URGENT), (40, Priority.HIGH), (0, Priority.NORMAL))
ROUTINE_POINTS = -10
ROUTINE_TOPICS = {Topic.METER_READING: "meter reading"}
URGENCY_CAP = 45
NEGATIVITY_PER_TERM = 8
NEGATIVITY_CAP = 15
SHOUTING_POINTS = 5
TIER_POINTS = {Tier.STANDARD: 0, Tier.BUSINESS: 10, Tier.VIP: 15, Tier.LIFE_SUPPORT: 35}
INFLUENCE_CAP = 12
VERIFIED_POINTS = 4
PUBLIC_POINTS = 8

# group -> (points, {language: phrases}). Phrases are matched on case- and accent-folded text,
# so "sem luz" also matches "SEM LUZ" and "nera elektros" matches "nėra elektros"; as whole
# words ("dega" is not in "nedega", "fire" is not in "fired"), except that a trailing "*"
# marks a stem ("kibirkšt*" matches "kibirkštys", "kibirkščiuoja" needs its own entry) and
# Chinese, written without spaces, matches anywhere.
URGENCY_GROUPS: dict[str, tuple[int, dict[str, list[str]]]] = {
    "safety": (
        70,
        {
            "en": [
                "fallen wire",
                "wire down",
                "downed line",
                "power line down",
                "sparks",
                "sparking",
                "spark*",
                "fire",
                "smoke",
                "smell of gas",
                "electric shock",
                "electrocuted",
            ],
            "pt": [
                "fio caído",
                "fio caido",
                "fios caídos",
                "faísca",
                "faiscas",
                "faíscas",
                "incêndio",
                "incendio",
                "fogo",
                "fumaça",
                "cheiro de gás",
                "choque elétrico",
            ],
            "ru": [
                "оборван провод",
                "оборвался провод",
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
                "запах газа",
                "ударило током",
            ],
            "zh": ["电线掉", "电线断", "火花", "着火", "起火", "冒烟", "煤气味", "触电"],
            "lt": [
                "nutrūkęs laidas",
                "nutrukes laidas",
                "nukritęs laidas",
                "kibirkšt*",
                "kibirkšči*",
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
    ),
    "outage": (
        30,
        {
            "en": [
                "no power",
                "power out",
                "power outage",
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
                "нет электричества",
                "отключили свет",
                "пропал свет",
                "отключение электроэнергии",
                "без света",
            ],
            "zh": ["停电", "没电", "断电"],
            "lt": [
                "nėra elektros",
                "dingo elektra",
                "nėra šviesos",
                "atjungė elektrą",
                "be elektros",
                "šviesa nedega",
                "nedega šviesa",
            ],
        },
    ),
    "vulnerable": (
        25,
        {
            "en": ["oxygen", "life support", "dialysis", "ventilator", "disabled", "newborn"],
            "pt": ["oxigénio", "oxigênio", "aparelho respiratório", "diálise", "acamado"],
            "ru": ["кислород*", "аппарат ивл", "диализ*", "инвалид*", "лежач*", "грудной ребенок"],
            "zh": ["氧气", "呼吸机", "透析", "残疾"],
            "lt": ["deguon*", "dializ*", "neįgal*", "kūdik*"],
        },
    ),
    "disconnection": (
        15,
        {
            "en": ["disconnection notice", "cut off", "disconnected"],
            "pt": ["aviso de corte", "corte de luz", "cortaram"],
            "ru": ["отключат", "уведомление об отключении", "отключили за долг"],
            "zh": ["断电通知", "欠费停电"],
            "lt": ["atjungs*", "įspėjimas dėl atjungimo"],
        },
    ),
}

NEGATIVE_TERMS: dict[str, list[str]] = {
    "en": [
        "useless",
        "terrible",
        "awful",
        "angry",
        "ridiculous",
        "disgrace",
        "worst",
        "unacceptable",
        "again",
        "still no",
        "still not",
    ],
    "pt": [
        "absurdo",
        "vergonha",
        "péssimo",
        "pessimo",
        "ridículo",
        "inaceitável",
        "de novo",
        "ainda sem",
        "ainda não",
    ],
    "ru": [
        "безобразие",
        "ужас",
        "позор",
        "издевательство",
        "сколько можно",
        "до сих пор",
        "опять",
        "надоело",
    ],
    "zh": ["太差", "垃圾", "气死", "又停电", "还是没", "无法接受"],
    "lt": ["baisu", "gėda", "nesąmonė", "vėl", "vis dar", "kiek galima", "nepriimtina"],
}

TOPIC_TERMS: dict[str, dict[str, list[str]]] = {
    Topic.OUTAGE: {
        "en": ["no power", "outage*", "blackout", "power out", "no electricity", "wire*", "spark*"],
        "pt": ["sem luz", "sem energia", "falta de luz", "apagão", "fio caído", "queda de energia"],
        "ru": ["нет света", "отключ*", "электричеств*", "провод*", "свет", "света"],
        "zh": ["停电", "没电", "断电", "电线"],
        "lt": ["nėra elektros", "dingo elektra", "elektros nėra", "laid*", "atjung*"],
    },
    Topic.BILLING: {
        "en": ["bill*", "invoice*", "payment*", "paid", "debt*", "charge*", "balance", "refund*"],
        "pt": ["fatura*", "factura*", "conta de luz", "pagamento*", "paguei", "dívida*", "saldo"],
        "ru": [
            "счет",
            "счёт",
            "счета",
            "квитанц*",
            "оплат*",
            "долг*",
            "задолженн*",
            "баланс*",
            "платеж*",
            "платёж*",
        ],
        "zh": ["账单", "缴费", "付款", "欠费", "余额", "电费"],
        "lt": ["sąskait*", "mokėj*", "apmokė*", "skol*", "balans*", "sumokėjau"],
    },
    Topic.METER_READING: {
        "en": ["meter reading*", "reading*", "meter"],
        "pt": ["leitura*", "contador*", "medidor*"],
        "ru": ["показани*", "счетчик*", "счётчик*"],
        "zh": ["电表读数", "读数", "电表", "抄表"],
        "lt": ["rodmen*", "skaitikl*"],
    },
    Topic.TARIFF: {
        "en": ["tariff*", "rate plan", "price per kwh", "night rate"],
        "pt": ["tarifa*", "preço do kwh", "bi-horário"],
        "ru": ["тариф*"],
        "zh": ["电价", "峰谷", "阶梯"],
        "lt": ["tarif*", "kaina už kwh"],
    },
    Topic.CONTRACT: {
        "en": ["contract*", "new connection", "move in", "moving out", "terminate"],
        "pt": ["contrato*", "ligação nova", "mudança", "titularidade"],
        "ru": ["договор*", "подключени*", "переоформ*"],
        "zh": ["合同", "过户", "开户", "新装"],
        "lt": ["sutart*", "prijungim*", "perraš*"],
    },
    Topic.MAINTENANCE: {
        "en": ["maintenance", "planned work*", "scheduled outage", "repair*"],
        "pt": ["manutenção", "obras", "trabalhos programados", "reparação"],
        "ru": ["плановые работы", "ремонт*", "профилактик*"],
        "zh": ["检修", "维修", "计划停电"],
        "lt": ["planiniai darbai", "remont*", "priežiūr*"],
    },
}


def fold(text: str) -> str:
    """Lower-case and strip accents (ё->е, ė->e) so spelling variants meet."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _pattern(phrase: str) -> re.Pattern[str]:
    key = fold(phrase)
    stem = key.endswith("*")
    key = key.rstrip("*")
    if any("\u3400" <= ch <= "\u9fff" for ch in key):
        return re.compile(re.escape(key))
    return re.compile(rf"(?<!\w){re.escape(key)}" + ("" if stem else r"(?!\w)"))


def _compile(phrases: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(phrase.rstrip("*"), _pattern(phrase)) for phrase in phrases]


_URGENCY = {
    group: (points, [p for lang in langs.values() for p in _compile(lang)])
    for group, (points, langs) in URGENCY_GROUPS.items()
}
_NEGATIVE = [p for lang in NEGATIVE_TERMS.values() for p in _compile(lang)]
_TOPICS = {
    topic: [p for lang in langs.values() for p in _compile(lang)]
    for topic, langs in TOPIC_TERMS.items()
}
_CAPS_WORD = re.compile(r"\b[^\W\d_]{3,}\b", re.UNICODE)


@dataclass
class Score:
    points: int = 0
    safety: bool = False
    reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def level(self) -> int:
        if self.safety:
            return Priority.URGENT
        for threshold, level in LEVEL_THRESHOLDS:
            if self.points >= threshold:
                return level
        return Priority.LOW

    def add(self, signal: str, detail: str, points: int) -> None:
        if points:
            self.points += points
            self.reasons.append({"signal": signal, "detail": detail, "points": points})


def _matches(folded: str, phrases: list[tuple[str, re.Pattern[str]]]) -> list[str]:
    return [original for original, pattern in phrases if pattern.search(folded)]


def _is_shouting(text: str) -> bool:
    if "!!" in text or "！！" in text:
        return True
    words = _CAPS_WORD.findall(text)
    letters = [w for w in words if any(ch.isalpha() and ch.lower() != ch.upper() for ch in w)]
    if len(letters) < 3:
        return False
    upper = sum(1 for w in letters if w.isupper())
    return upper / len(letters) > 0.6


def score_text(
    text: str,
    *,
    tier: str = Tier.STANDARD,
    followers: int = 0,
    verified: bool = False,
    is_public: bool = False,
) -> Score:
    score = Score()
    folded = fold(text or "")
    best_group, best_points, best_phrase = "", 0, ""
    for group, (points, phrases) in _URGENCY.items():
        hits = _matches(folded, phrases)
        if hits and points > best_points:
            best_group, best_points, best_phrase = group, points, hits[0]
        if hits and group == "safety":
            score.safety = True
    if best_group:
        score.add(
            "safety" if best_group == "safety" else "urgency",
            f"{best_group}: “{best_phrase}”",
            min(best_points, URGENCY_CAP if best_group != "safety" else best_points),
        )
    negatives = _matches(folded, _NEGATIVE)
    if negatives:
        score.add(
            "negativity",
            ", ".join(f"“{n}”" for n in negatives[:3]),
            min(NEGATIVITY_CAP, NEGATIVITY_PER_TERM * len(negatives)),
        )
    if text and _is_shouting(text):
        score.add("shouting", "capitals or repeated exclamation marks", SHOUTING_POINTS)
    tier_points = TIER_POINTS.get(Tier(tier) if tier in Tier.values else Tier.STANDARD, 0)
    score.add("tier", Tier(tier).label if tier in Tier.values else tier, tier_points)
    if followers > 0:
        influence = min(INFLUENCE_CAP, round(3 * math.log10(1 + followers)))
        score.add("influence", f"{followers:,} followers", influence)
    if verified:
        score.add("influence", "verified account", VERIFIED_POINTS)
    if is_public:
        score.add("public", "public post, visible to everyone", PUBLIC_POINTS)
    if not score.reasons or all(r["signal"] == "tier" for r in score.reasons):
        routine = ROUTINE_TOPICS.get(Topic(classify_topic(text)))
        if routine:
            score.add("routine", routine, ROUTINE_POINTS)
    return score


def classify_topic(text: str) -> str:
    """The topic with the most matched terms; ties go to the order of TOPIC_TERMS."""
    folded = fold(text or "")
    best, best_hits = Topic.OTHER, 0
    for topic, phrases in _TOPICS.items():
        hits = len(_matches(folded, phrases))
        if hits > best_hits:
            best, best_hits = topic, hits
    return str(best)
