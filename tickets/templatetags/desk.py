"""Small display helpers for the agent pages: waiting times, SLA state, channel labels."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from channels_in.models import ChannelKind
from tickets.models import IdentityKind

register = template.Library()

# Short marks for the channel chip: readable at 11px and distinct without brand logos.
CHANNEL_MARKS = {
    "telegram": "TG",
    "whatsapp": "WA",
    "messenger": "FB",
    "instagram": "IG",
    "x": "X",
    "viber": "VB",
    "vk": "VK",
    "sms": "SMS",
    "email": "@",
    "widget": "WEB",
    "phone": "TEL",
}
CHANNEL_LABELS = {**dict(ChannelKind.choices), **dict(IdentityKind.choices)}

LANGUAGE_NAMES = {
    "en": "English",
    "pt": "Português",
    "ru": "Русский",
    "zh": "中文",
    "lt": "Lietuvių",
}

# Within this many minutes of its SLA deadline a ticket turns amber.
SLA_SOON_MINUTES = 15


def humanize_seconds(seconds: float) -> str:
    """12 min, 3 h 5 min, 2 d 4 h: what an agent reads at a glance."""
    seconds = int(abs(seconds))
    minutes = seconds // 60
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        # Past ten hours the minutes are noise and only widen the column.
        return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def since(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago `value` was ("12 min"); empty when unknown."""
    if value is None:
        return ""
    return humanize_seconds(((now or timezone.now()) - value).total_seconds())


@register.filter
def sla_state(value: datetime | None, now: datetime | None = None) -> str:
    """overdue, soon (within 15 min) or ok: the class of the SLA cell."""
    if value is None:
        return ""
    left = (value - (now or timezone.now())).total_seconds()
    if left < 0:
        return "overdue"
    if left <= SLA_SOON_MINUTES * 60:
        return "soon"
    return "ok"


@register.filter
def sla_label(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    left = (value - (now or timezone.now())).total_seconds()
    if -60 < left < 0:
        return "due now"
    if left < 0:
        # A minus sign on red says "overdue" in the width of a number.
        return f"\u2212{humanize_seconds(left)}"
    return f"in {humanize_seconds(left)}"


TIER_MARKS = {"vip": "VIP", "business": "Biz", "life_support": "Medical"}


@register.filter
def tier_mark(tier: str | None) -> str:
    """A short label for the customer's tier; life support matters most in an outage."""
    return TIER_MARKS.get(tier or "", "")


@register.filter
def channel_mark(kind: str | None) -> str:
    return CHANNEL_MARKS.get(kind or "", (kind or "?")[:3].upper())


@register.filter
def channel_label(kind: str | None) -> str:
    return CHANNEL_LABELS.get(kind or "", kind or "")


@register.filter
def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(code or "", code or "")


@register.filter
def initials(name: str | None) -> str:
    # First letter or digit of the first and last words: "<b>Ana</b> Silva" gives "BS", not "<S".
    letters = [next((ch for ch in word if ch.isalnum()), "") for word in (name or "").split()]
    letters = [ch for ch in letters if ch]
    if not letters:
        return "?"
    return (letters[0] + (letters[-1] if len(letters) > 1 else "")).upper()


@register.filter
def duration(seconds: int | None) -> str:
    """A call length: 4:05, 1:02:03."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: object) -> str:
    """The current query string with some parameters replaced (None/"" removes them); the
    filters survive pagination and tab changes."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
