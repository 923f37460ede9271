"""Social listening: which public mentions become tickets.

Per channel, `settings["listening"]`:
    {"handles": ["@EnergyCo"], "hashtags": ["#energyco"],
     "trigger_words": {"en": ["help"], "pt": ["ajuda"], "ru": ["помогите"], "zh": ["帮助"],
                       "lt": ["pagalbos"]},
     "require_trigger": true}
A mention is ticketed when it names the brand (a handle or hashtag, if any are configured)
and, when `require_trigger` is on, contains a trigger word in any language. Without listening
rules every public mention delivered to the channel is a ticket. Either way it is counted.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import F
from django.utils import timezone

from tickets.inbound import InboundMessage
from tickets.priority import fold

from .models import Channel, ListeningCount

DEFAULT_TRIGGERS = {
    "en": ["help", "need assistance", "support", "no power", "outage"],
    "pt": ["ajuda", "socorro", "sem luz", "apoio"],
    "ru": ["помогите", "помощь", "нет света"],
    "zh": ["帮助", "求助", "停电"],
    "lt": ["pagalbos", "padėkite", "nėra elektros"],
}


def rules(channel: Channel) -> dict[str, Any] | None:
    value = channel.settings.get("listening") if isinstance(channel.settings, dict) else None
    return value if isinstance(value, dict) else None


_MENTION = re.compile(r"[@#][\w.]+", re.UNICODE)


def matches(config: dict[str, Any], text: str) -> bool:
    folded = fold(text)
    names = [fold(str(n)) for n in [*config.get("handles", []), *config.get("hashtags", [])]]
    if names and not any(name in folded for name in names):
        return False
    if not config.get("require_trigger", True):
        return True
    # Handles and hashtags are names, not requests: "@EnergyCoHelp" must not count as "help".
    words_only = _MENTION.sub(" ", folded)
    triggers = config.get("trigger_words") or DEFAULT_TRIGGERS
    return any(_contains(words_only, fold(str(w))) for values in triggers.values() for w in values)


def _contains(text: str, phrase: str) -> bool:
    """Whole-word match for alphabetic scripts ("help" is not in "helpful"); plain substring
    for scripts written without spaces (Chinese)."""
    if not phrase:
        return False
    if any("\u3400" <= ch <= "\u9fff" for ch in phrase):
        return phrase in text
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def should_ticket(channel: Channel, item: InboundMessage) -> bool:
    config = rules(channel)
    ticketed = True if config is None else matches(config, item.text)
    _count(channel, ticketed)
    return ticketed


def _count(channel: Channel, ticketed: bool) -> None:
    day = timezone.localdate()
    field = "ticketed" if ticketed else "counted_only"
    updated = ListeningCount.objects.filter(channel=channel, day=day).update(
        **{field: F(field) + 1}
    )
    if not updated:
        _, created = ListeningCount.objects.get_or_create(
            channel=channel, day=day, defaults={field: 1}
        )
        if not created:
            ListeningCount.objects.filter(channel=channel, day=day).update(**{field: F(field) + 1})
