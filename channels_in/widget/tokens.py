"""The visitor token: who this browser is, signed by the server, so a conversation survives
page reloads without cookies on the host site.

The token is `django.core.signing` output (HMAC with SECRET_KEY, a salt per channel, and the
issue time). It is signed, not encrypted: it carries only what the visitor typed into the
pre-chat form themselves. A token that is forged, expired or issued for another channel is
simply not believed and the browser becomes a fresh visitor; it can never name someone
else's conversation, because the visitor id in it is random and only the server signs it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings as django_settings
from django.core import signing

from ..models import Channel

DEFAULT_MAX_AGE_DAYS = 30
# 128 random bits as hex: unguessable, and safe in a channel-layer group name.
VISITOR_ID = re.compile(r"^[0-9a-f]{32}$")
# Tokens are a few hundred bytes; anything much longer is not ours.
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Visitor:
    id: str
    name: str = ""
    email: str = ""
    phone: str = ""

    @property
    def has_prechat(self) -> bool:
        return bool(self.name or self.email or self.phone)

    def with_prechat(self, *, name: str, email: str, phone: str) -> Visitor:
        return replace(self, name=name, email=email, phone=phone)


def new_visitor() -> Visitor:
    return Visitor(id=secrets.token_hex(16))


def _salt(channel: Channel) -> str:
    # Per channel: a token issued by one widget is worthless on another.
    return f"channels_in.widget.visitor:{channel.pk}"


def max_age_seconds(channel: Channel) -> int:
    days = widget_settings(channel).get("token_max_age_days") or getattr(
        django_settings, "HELPDESK_WIDGET_TOKEN_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS
    )
    try:
        return max(1, int(days)) * 24 * 3600
    except (TypeError, ValueError):
        return DEFAULT_MAX_AGE_DAYS * 24 * 3600


def issue(channel: Channel, visitor: Visitor) -> str:
    """A fresh token (new issue time) for this visitor: re-issued on every hello, so a visitor
    who comes back within the max age keeps their conversation indefinitely."""
    fields = (("n", visitor.name), ("e", visitor.email), ("p", visitor.phone))
    data = {"v": visitor.id} | {key: value for key, value in fields if value}
    return signing.dumps(data, salt=_salt(channel), compress=True)


def read(channel: Channel, token: Any) -> Visitor | None:
    """The visitor this token names, or None if it is missing, forged, expired or malformed."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        data = signing.loads(token, salt=_salt(channel), max_age=max_age_seconds(channel))
    except signing.BadSignature:  # includes SignatureExpired
        return None
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    visitor_id = data.get("v")
    if not isinstance(visitor_id, str) or not VISITOR_ID.match(visitor_id):
        return None
    return Visitor(
        id=visitor_id,
        name=str(data.get("n") or "")[:200],
        email=str(data.get("e") or "")[:254],
        phone=str(data.get("p") or "")[:32],
    )


def widget_settings(channel: Channel) -> dict[str, Any]:
    """The channel's `settings["widget"]` (see channels_in/widget/adapter.py for the keys)."""
    value = (channel.settings or {}).get("widget")
    return value if isinstance(value, dict) else {}
