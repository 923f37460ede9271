"""Normalizing identity values so the same person is found whatever way they were written."""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .errors import InvalidInput

# Kinds whose value is a phone number (WhatsApp's wa_id is the number without "+").
PHONE_KINDS = {"phone", "whatsapp"}


def normalize_phone(raw: str, region: str | None = None) -> str:
    """Return the E.164 form of a phone number, or raise InvalidInput."""
    text = raw.strip()
    if not text:
        raise InvalidInput("phone number is empty", field="phone")
    digits = "".join(ch for ch in text if ch.isdigit())
    # Platforms send international numbers without "+" (wa_id "37061234567", Viber, VK).
    if not text.startswith(("+", "0")) and len(digits) >= 10:
        text = "+" + digits
    elif text.startswith("00"):
        text = "+" + digits[2:]
    try:
        number = phonenumbers.parse(text, region or settings.HELPDESK_DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"not a phone number: {raw!r}", field="phone") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput(f"not a possible phone number: {raw!r}", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    try:
        validate_email(value)
    except ValidationError as exc:
        raise InvalidInput(f"not an email address: {raw!r}", field="email") from exc
    return value


def normalize_identity(kind: str, value: str) -> str:
    if kind in PHONE_KINDS:
        return normalize_phone(value)
    if kind == "email":
        return normalize_email(value)
    value = value.strip()
    if not value:
        raise InvalidInput(f"{kind} identity is empty", field="value")
    if kind == "x":
        # X handles are case-insensitive; numeric ids are unaffected.
        value = value.lstrip("@").lower()
    return value[:255]
