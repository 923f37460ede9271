"""Filters of the API's other lists (tickets use the shared `tickets.filters.TicketFilter`)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.db.models import Q, QuerySet

from tickets.errors import InvalidInput
from tickets.filters import CONTACT_MATCH_LIMIT, CSVFilter, is_id
from tickets.identities import normalize_phone
from tickets.models import AccountNumber, CannedResponse, Contact, ContactMerge, Identity


def _ids(values: list[str], *, what: str, allow: tuple[str, ...] = ()) -> list[int]:
    ids = []
    for value in values:
        if value in allow:
            continue
        if not is_id(value) or int(value) < 1:
            extra = f" or {', '.join(allow)}" if allow else ""
            raise forms.ValidationError({what: f"{what} must be ids{extra}; got {value!r}"})
        ids.append(int(value))
    return ids


def contact_search(text: str) -> Q:
    """Contacts by name, identity value (phone, email, username) or account number.

    The identities and accounts that match are looked up first (trigram and btree indexes),
    so the final condition is `name LIKE ... OR id IN (...)`: a BitmapOr of two index scans
    rather than subqueries evaluated on every contact. A phone number also matches written
    any way (`8 612 34567` finds `+37061234567`).
    """
    text = text.strip()
    others = [
        Identity.objects.filter(value__icontains=text).values("contact_id"),
        AccountNumber.objects.filter(number=text).values("contact_id"),
    ]
    digits = sum(ch.isdigit() for ch in text)
    if digits >= 6 and all(ch.isdigit() or ch in "+-() ." for ch in text):
        try:
            phone = normalize_phone(text)
        except InvalidInput:
            pass  # not a phone number after all: the plain text search stands
        else:
            others.append(Identity.objects.filter(value=phone).values("contact_id"))
    condition = Q(display_name__icontains=text)
    ids = list(
        others[0].union(*others[1:]).values_list("contact_id", flat=True)[: CONTACT_MATCH_LIMIT + 1]
    )
    if len(ids) <= CONTACT_MATCH_LIMIT:
        return condition | Q(pk__in=ids)
    # Very many match (a fragment of a phone number): the complete subqueries, slower.
    for subquery in others:
        condition |= Q(pk__in=subquery)
    return condition


class ContactFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_text",
        max_length=200,
        help_text="Name, phone, email or other identity, or account number.",
    )

    class Meta:
        model = Contact
        fields: list[str] = []

    def filter_text(self, qs: QuerySet[Contact], name: str, value: str) -> QuerySet[Contact]:
        if not value.strip():
            return qs
        return qs.filter(contact_search(value))


class CannedResponseFilter(django_filters.FilterSet):
    language = CSVFilter(
        method="filter_language",
        help_text="Comma-separated language codes; `any` for responses in no particular "
        "language (e.g. `ru,any`).",
    )
    team = CSVFilter(
        method="filter_team",
        help_text="Comma-separated team ids; `none` for responses shared by all teams.",
    )
    q = django_filters.CharFilter(
        method="filter_text", max_length=200, help_text="Text in the shortcut, title or body."
    )

    class Meta:
        model = CannedResponse
        fields: list[str] = []

    def filter_language(
        self, qs: QuerySet[CannedResponse], name: str, value: list[str]
    ) -> QuerySet[CannedResponse]:
        allowed = [*settings.HELPDESK_LANGUAGES, "any"]
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise forms.ValidationError(
                {"language": f"unknown language {unknown[0]!r}; expected: {', '.join(allowed)}"}
            )
        return qs.filter(language__in=["" if v == "any" else v for v in value])

    def filter_team(
        self, qs: QuerySet[CannedResponse], name: str, value: list[str]
    ) -> QuerySet[CannedResponse]:
        condition = Q(team_id__in=_ids(value, what="team", allow=("none",)))
        if "none" in value:
            condition |= Q(team__isnull=True)
        return qs.filter(condition)

    def filter_text(
        self, qs: QuerySet[CannedResponse], name: str, value: str
    ) -> QuerySet[CannedResponse]:
        text = value.strip().lstrip("/")
        if not text:
            return qs
        return qs.filter(
            Q(shortcut__icontains=text) | Q(title__icontains=text) | Q(body__icontains=text)
        )


class ContactMergeFilter(django_filters.FilterSet):
    contact = django_filters.CharFilter(
        method="filter_contact", help_text="Merges into or out of this contact id."
    )

    class Meta:
        model = ContactMerge
        fields: list[str] = []

    def filter_contact(
        self, qs: QuerySet[ContactMerge], name: str, value: Any
    ) -> QuerySet[ContactMerge]:
        (contact_id,) = _ids([value.strip()], what="contact")
        return qs.filter(Q(target_id=contact_id) | Q(source_id=contact_id))
