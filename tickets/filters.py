"""Ticket filters shared by the REST API and the agent queue page.

Multi-valued filters take comma-separated values (`status=new,open`). Without `status` the
queue shows active tickets (new, open, pending); `status=all` shows every status.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from channels_in.models import Channel, ChannelKind

from .models import (
    ACTIVE_STATUSES,
    AccountNumber,
    Contact,
    Identity,
    Priority,
    Status,
    Team,
    Ticket,
    Topic,
)

PRIORITY_NAMES = {p.label: p.value for p in Priority}


def is_id(value: str) -> bool:
    """Could `value` be a primary key? ASCII digits only (str.isdigit() also accepts "²",
    which int() rejects) and short enough for a bigint."""
    return value.isascii() and value.isdigit() and len(value) <= 18


# Up to this many matching contacts are looked up first and passed as a list of ids.
CONTACT_MATCH_LIMIT = 1000


def matching_contacts(text: str) -> list[int] | QuerySet[Any]:
    """Ids of contacts whose name, identity (phone, email, username) or account number
    matches `text`.

    Usually a short list, fetched first with the trigram indexes: then `contact_id IN (...)`
    is one more index condition, and PostgreSQL answers the whole OR of the text search as a
    BitmapOr of index scans. A subquery (or a join on the contact's name) inside that OR would
    instead be evaluated on every ticket of the queue: seconds on a million tickets. When very
    many contacts match (a common first name), the complete subquery is returned instead.
    """
    by_identity = Identity.objects.filter(value__icontains=text.lower()).values("contact_id")
    by_account = AccountNumber.objects.filter(number=text).values("contact_id")
    by_name = Contact.objects.filter(display_name__icontains=text).values("id")
    ids = list(
        by_identity.union(by_account, by_name).values_list("contact_id", flat=True)[
            : CONTACT_MATCH_LIMIT + 1
        ]
    )
    if len(ids) <= CONTACT_MATCH_LIMIT:
        return ids
    return Contact.objects.filter(
        Q(pk__in=by_identity) | Q(pk__in=by_account) | Q(display_name__icontains=text)
    ).values("id")


def filter_status(qs: QuerySet[Ticket], value: list[str]) -> QuerySet[Ticket]:
    """`status` values: statuses, "active" (new, open, pending) or "all"."""
    if "all" in value:
        return qs
    statuses = set(value) - {"active"}
    if "active" in value:
        statuses |= set(ACTIVE_STATUSES)
    return qs.filter(status__in=sorted(statuses))


class CSVField(forms.CharField):
    def __init__(self, *, choices: list[str] | None = None, **kwargs: Any) -> None:
        self.allowed = choices
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str] | None:
        value = super().clean(value)
        if not value:
            return None
        items = [item.strip() for item in value.split(",") if item.strip()]
        if self.allowed is not None:
            unknown = [item for item in items if item not in self.allowed]
            if unknown:
                raise forms.ValidationError(
                    f"unknown value {unknown[0]!r}; expected one of: {', '.join(self.allowed)}"
                )
        return items


class CSVFilter(django_filters.Filter):
    field_class = CSVField


class TicketFilter(django_filters.FilterSet):
    status = CSVFilter(
        choices=[*Status.values, "all", "active"],
        method="filter_status",
        help_text="Comma-separated statuses, `active` (default) or `all`.",
    )
    priority = CSVFilter(
        choices=list(PRIORITY_NAMES),
        method="filter_priority",
        help_text="Comma-separated: urgent, high, normal, low.",
    )
    channel = CSVFilter(
        method="filter_channel", help_text="Channel kinds (telegram, whatsapp, ...), keys or ids."
    )
    team = CSVFilter(method="filter_team", help_text="Team ids or slugs; `none` for no team.")
    assignee = CSVFilter(
        method="filter_assignee", help_text="Agent ids, `me`, or `none` for unassigned."
    )
    tag = CSVFilter(method="filter_tag", help_text="Tickets with any of these tags.")
    language = CSVFilter(method="filter_language")
    topic = CSVFilter(choices=Topic.values, method="filter_topic")
    # A whole number within the bigint range: "1.5" must not quietly mean contact 1.
    contact = django_filters.NumberFilter(
        field_name="contact_id", decimal_places=0, min_value=1, max_value=2**63 - 1
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    q = django_filters.CharFilter(
        method="filter_text",
        max_length=200,
        help_text="Text: ticket number, subject, last message, "
        "customer name, phone, email or account number.",
    )

    class Meta:
        model = Ticket
        fields: list[str] = []

    def __init__(self, *args: Any, agent: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent

    @property
    def qs(self) -> QuerySet[Ticket]:
        qs = super().qs
        # No status filter means the working queue: active tickets only.
        if not (self.form.is_bound and self.form.cleaned_data.get("status")):
            qs = qs.filter(status__in=ACTIVE_STATUSES)
        return qs

    def filter_status(self, qs: QuerySet[Ticket], name: str, value: list[str]) -> QuerySet[Ticket]:
        return filter_status(qs, value)

    def filter_priority(
        self, qs: QuerySet[Ticket], name: str, value: list[str]
    ) -> QuerySet[Ticket]:
        return qs.filter(priority__in=[PRIORITY_NAMES[v] for v in value])

    def filter_channel(self, qs: QuerySet[Ticket], name: str, value: list[str]) -> QuerySet[Ticket]:
        kinds = [v for v in value if v in ChannelKind.values]
        ids = [int(v) for v in value if is_id(v)]
        keys = [v for v in value if v not in kinds and not is_id(v)]
        channel_ids = list(
            Channel.objects.filter(Q(kind__in=kinds) | Q(id__in=ids) | Q(key__in=keys)).values_list(
                "id", flat=True
            )
        )
        return qs.filter(channel_id__in=channel_ids)

    def filter_team(self, qs: QuerySet[Ticket], name: str, value: list[str]) -> QuerySet[Ticket]:
        condition = Q(team_id__in=[int(v) for v in value if is_id(v)])
        slugs = [v for v in value if not is_id(v) and v != "none"]
        if slugs:
            condition |= Q(
                team_id__in=list(Team.objects.filter(slug__in=slugs).values_list("id", flat=True))
            )
        if "none" in value:
            condition |= Q(team__isnull=True)
        return qs.filter(condition)

    def filter_assignee(
        self, qs: QuerySet[Ticket], name: str, value: list[str]
    ) -> QuerySet[Ticket]:
        ids: list[int] = []
        for item in value:
            if item == "me":
                if self.agent is None:
                    raise forms.ValidationError("assignee=me needs a signed-in agent")
                ids.append(self.agent.pk)
            elif is_id(item):
                ids.append(int(item))
            elif item != "none":
                self._fail(
                    "assignee", f"assignee must be an agent id, `me` or `none`; got {item!r}"
                )
        condition = Q(assignee_id__in=ids)
        if "none" in value:
            condition |= Q(assignee__isnull=True)
        return qs.filter(condition)

    def filter_tag(self, qs: QuerySet[Ticket], name: str, value: list[str]) -> QuerySet[Ticket]:
        through = Ticket.tags.through
        # Names joined in the subquery rather than looked up first: one query less per page.
        names = [v.lower() for v in value]
        return qs.filter(
            Exists(through.objects.filter(ticket_id=OuterRef("pk"), tag__name__in=names))
        )

    def filter_language(
        self, qs: QuerySet[Ticket], name: str, value: list[str]
    ) -> QuerySet[Ticket]:
        allowed = [*settings.HELPDESK_LANGUAGES, "none"]
        unknown = [v for v in value if v not in allowed]
        if unknown:
            self._fail(
                "language",
                f"unknown language {unknown[0]!r}; expected one of: {', '.join(allowed)}",
            )
        languages = ["" if v == "none" else v for v in value]
        return qs.filter(language__in=languages)

    def filter_topic(self, qs: QuerySet[Ticket], name: str, value: list[str]) -> QuerySet[Ticket]:
        return qs.filter(topic__in=value)

    def filter_text(self, qs: QuerySet[Ticket], name: str, value: str) -> QuerySet[Ticket]:
        text = value.strip()
        if not text:
            return qs
        number = text.lstrip("#")
        condition = Q(subject__icontains=text) | Q(preview__icontains=text)
        if is_id(number):
            condition |= Q(pk=int(number))
        return qs.filter(condition | Q(contact_id__in=matching_contacts(text)))

    def _fail(self, field: str, message: str) -> None:
        raise forms.ValidationError({field: message})
