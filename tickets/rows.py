"""Queue rows, fast: the API list, the queue page and its live row fragments all come here.

A queue page is 25 rows of a million-ticket table. What it costs is not the data but the work
per row (measured on the 1M-ticket bench: ~20 ms of CPU for a 6-table join turned into six
model instances per row, nested serializers, and 5-7 ms of PostgreSQL planning for the join).
So a page reads the ticket table and the contact only; channels, teams and agents — a few
hundred rows that change a few times a day — come from a per-process reference cache, and
tags from one query. The rows are ordinary Ticket instances with those related objects
attached, so everything that reads a ticket (sla_state, the templates) works unchanged.
"""

from __future__ import annotations

import functools
import html
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connection, connections
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from channels_in.models import Channel

from . import keyset
from .models import Agent, Contact, Priority, Tag, Team, Ticket
from .rawrows import Columns, c_timestamps

# Ticket columns a queue row shows or the SLA badge reads; the rest stay in the database.
ROW_ONLY = (
    "id", "subject", "status", "priority", "priority_score", "priority_reasons", "topic",
    "language", "channel_id", "contact_id", "team_id", "assignee_id", "sla_due_at",
    "waiting_since", "first_response_at", "first_response_due", "resolution_due", "created_at",
    "updated_at", "last_message_at", "preview", "message_count", "version", "escalation_level",
    "is_public", "contact__id", "contact__display_name", "contact__tier",
)  # fmt: skip

# How long a process trusts its copy of channels, teams and agents: a renamed team shows
# under its new name within this time in every process (at once in the one that saved it).
REFS_SECONDS = 10.0


class _Refs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded_at = 0.0
        self.channels: dict[int, Channel] = {}
        self.teams: dict[int, Team] = {}
        self.agents: dict[int, Agent] = {}

    def current(self) -> _Refs:
        if time.monotonic() - self.loaded_at > REFS_SECONDS:
            self.load()
        return self

    def load(self) -> None:
        # Credentials are write-only and never needed to show a row: not even loaded.
        channels = {c.pk: c for c in Channel.objects.only("id", "kind", "name", "key")}
        teams = {t.pk: t for t in Team.objects.only("id", "name", "slug", "business_hours_id")}
        agents = {
            a.pk: a
            for a in Agent.objects.select_related("user").only(
                "id",
                "role",
                "presence",
                "user__id",
                "user__username",
                "user__first_name",
                "user__last_name",
            )
        }
        with self.lock:
            self.channels, self.teams, self.agents = channels, teams, agents
            self.loaded_at = time.monotonic()

    def invalidate(self, **kwargs: Any) -> None:
        self.loaded_at = 0.0


REFS = _Refs()
for _model in (Channel, Team, Agent, get_user_model()):
    post_save.connect(REFS.invalidate, sender=_model, weak=False)
    post_delete.connect(REFS.invalidate, sender=_model, weak=False)


def prepare(tickets: list[Ticket]) -> list[Ticket]:
    """Attach channel, team, assignee (from the reference cache) and tag names (one query)
    to tickets fetched with `row_queryset`."""
    if not tickets:
        return tickets
    refs = REFS.current()
    if any(
        (t.assignee_id and t.assignee_id not in refs.agents)
        or (t.team_id and t.team_id not in refs.teams)
        or (t.channel_id and t.channel_id not in refs.channels)
        for t in tickets
    ):
        refs.load()  # someone new since the last load
    tags = tag_names(t.pk for t in tickets)
    channel_field = Ticket._meta.get_field("channel")
    team_field = Ticket._meta.get_field("team")
    assignee_field = Ticket._meta.get_field("assignee")
    for t in tickets:
        channel_field.set_cached_value(t, refs.channels.get(t.channel_id) if t.channel_id else None)
        team_field.set_cached_value(t, refs.teams.get(t.team_id) if t.team_id else None)
        assignee_field.set_cached_value(
            t, refs.agents.get(t.assignee_id) if t.assignee_id else None
        )
        t.tag_names = tags.get(t.pk, [])  # type: ignore[attr-defined]
    return tickets


def row_queryset(qs: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return qs.select_related("contact").only(*ROW_ONLY)


# --------------------------------------------------------------------------- a page of rows


def page(qs: QuerySet[Ticket], *, cursor: str | None, size: int) -> keyset.Page:
    """One page of the queue rows of `qs` (the visible tickets, filtered), in queue order."""
    return keyset.paginate(qs, cursor=cursor, size=size, fetch=fetch)


def fetch(qs: QuerySet[Ticket], part: keyset.Slice, limit: int) -> list[Ticket]:
    """keyset.orm_fetch for queue rows (`row_queryset`), as SQL written once per process.

    Django compiling the page query (28 columns, the contact join, the order) cost more CPU
    than PostgreSQL running it (~3 ms of a 25-row page, twice for a cursor page), and so did
    turning rows into model instances through Model.__init__. Here only the filters (the
    WHERE of `qs`, whatever built it: visibility, django-filter, the queue page's filters)
    are compiled by Django per request; the rest is fixed text. A queryset this cannot read
    as "filters on the ticket table" (a join, annotations, DISTINCT...) goes to the ORM,
    and so does everything on SQLite.
    """
    where = where_of(qs)
    if where is None:
        return keyset.orm_fetch(row_queryset(qs), part, limit)
    try:
        where_sql, params = where()
    except EmptyResultSet:
        return []  # a filter that matches nothing (Django would not query either)
    condition, condition_params = keyset.slice_sql(part)
    conditions = [f"({c})" for c in (where_sql, condition) if c]
    reader = _row_reader()
    sql = (
        reader.select
        + (" WHERE " + " AND ".join(conditions) if conditions else "")
        + " ORDER BY "
        + (keyset.ORDER_SQL if part.forward else keyset.REVERSED_ORDER_SQL)
        + " LIMIT %s"
    )
    with connections[qs.db].cursor() as cursor:
        c_timestamps(cursor)
        cursor.execute(sql, [*params, *condition_params, limit])
        return [reader.build(row) for row in cursor.fetchall()]


def where_of(qs: QuerySet[Ticket]) -> Callable[[], tuple[str, list[Any]]] | None:
    """A function compiling the WHERE clause of `qs` ("" for none; EmptyResultSet when it
    matches nothing), or None when `qs` is more than filters on the ticket table, or not on
    PostgreSQL (the embedded SQLite demo needs no speed: the ORM's portable SQL)."""
    query = qs.query
    table = Ticket._meta.db_table
    if (
        connections[qs.db].vendor != "postgresql"
        or query.model is not Ticket
        or query.combinator
        or query.distinct
        or query.annotations
        or query.extra
        or query.extra_tables
        or query.is_sliced
        or query.select_for_update
        or query.group_by is not None
        # A join the WHERE uses (the compiler leaves out those with no references: an OR
        # on team_id / assignee_id sets some up and trims them again).
        or any(alias != table and query.alias_refcount[alias] for alias in query.alias_map)
    ):
        return None
    compiler = query.get_compiler(qs.db)

    def compile_where() -> tuple[str, list[Any]]:
        try:
            sql, params = compiler.compile(query.where)
        except FullResultSet:
            return "", []
        return sql, list(params)

    return compile_where


class _Reader:
    """SELECT of the queue row columns (ticket + contact), and rows to Ticket instances."""

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        ticket_table, contact_table = Ticket._meta.db_table, Contact._meta.db_table
        self.ticket = Columns(Ticket, ticket_table, [n for n in ROW_ONLY if "__" not in n])
        self.contact = Columns(
            Contact, contact_table, [n.split("__", 1)[1] for n in ROW_ONLY if "__" in n]
        )
        self.contact_field = Ticket._meta.get_field("contact")
        self.select = (
            f"SELECT {self.ticket.sql}, {self.contact.sql} FROM {quote(ticket_table)} "  # noqa: S608  (our names)
            f"INNER JOIN {quote(contact_table)} ON ({quote(ticket_table)}."
            f"{quote(self.contact_field.column)} = {quote(contact_table)}.{quote('id')})"
        )

    def build(self, row: tuple[Any, ...]) -> Ticket:
        ticket = self.ticket.build(row)
        self.contact_field.set_cached_value(ticket, self.contact.build(row, self.ticket.width))
        return ticket


@functools.cache
def _row_reader() -> _Reader:
    return _Reader()


def tag_names(ids: Iterable[int]) -> dict[int, list[str]]:
    """Tag names per ticket, one query. Written in SQL: the ORM's compilation of this join
    cost more than running it (~2 ms of a 25-row page)."""
    id_list = [int(i) for i in ids]
    names: dict[int, list[str]] = defaultdict(list)
    if not id_list:
        return names
    through = Ticket.tags.through._meta.db_table
    tag = Tag._meta.db_table
    placeholders = ", ".join(["%s"] * len(id_list))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT x.ticket_id, t.name FROM {through} x JOIN {tag} t ON t.id = x.tag_id "  # noqa: S608  (table names are ours; ids are parameters)
            f"WHERE x.ticket_id IN ({placeholders}) ORDER BY t.name",
            id_list,
        )
        for ticket_id, name in cursor.fetchall():
            names[ticket_id].append(name)
    return names


# --------------------------------------------------------------------------- the API's row

_PRIORITY_NAMES = {p.value: p.label for p in Priority}


def _dt(value: datetime | None, tz: Any) -> str | None:
    """What DRF's DateTimeField writes (ISO 8601 in the current time zone, "Z" for UTC),
    at a tenth of its cost: six timestamps per row add up."""
    if value is None:
        return None
    text = value.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def api_row(t: Ticket, tz: Any = None) -> dict[str, Any]:
    """The queue row of the REST API (the TicketSerializer shape), without a serializer.
    `tz`: the current time zone, looked up once per page by the caller."""
    tz = tz or timezone.get_current_timezone()
    channel, team, assignee = t.channel, t.team, t.assignee
    return {
        "id": t.pk,
        "subject": t.subject,
        "status": t.status,
        "priority": _PRIORITY_NAMES[t.priority],
        "priority_score": t.priority_score,
        "priority_reasons": [
            {
                "signal": r.get("signal", ""),
                "detail": r.get("detail", ""),
                "points": r.get("points", 0),
            }
            for r in t.priority_reasons or ()
        ],
        "topic": t.topic,
        "language": t.language,
        "channel": (
            {"id": channel.pk, "kind": channel.kind, "name": channel.name} if channel else None
        ),
        "contact": {"id": t.contact_id, "name": str(t.contact)},
        "team": {"id": team.pk, "name": team.name} if team else None,
        "assignee": {"id": assignee.pk, "name": assignee.name} if assignee else None,
        "tags": t.tag_names,  # type: ignore[attr-defined]
        "sla_due_at": _dt(t.sla_due_at, tz),
        "waiting_since": _dt(t.waiting_since, tz),
        "first_response_at": _dt(t.first_response_at, tz),
        "created_at": _dt(t.created_at, tz),
        "updated_at": _dt(t.updated_at, tz),
        "last_message_at": _dt(t.last_message_at, tz),
        "preview": t.preview,
        "message_count": t.message_count,
        "version": t.version,
    }


# --------------------------------------------------------------------------- the page's row


def row_html(t: Ticket, now: datetime, url_base: str) -> SafeString:
    """One queue row. The page and its live updates (tickets.live_views) both come here, so
    a row that arrives live looks exactly like one that came with the page.

    Plain f-strings rather than a template or format_html: a template with a filter or tag
    per cell was most of the queue page's CPU. Every value that is not one of our own
    integers goes through `e` (HTML escaping); only sla_badge's markup, which escapes its own
    values, is inserted as is.
    """
    from .templatetags.desk import channel_label, channel_mark, initials, language_name, tier_mark
    from .templatetags.desk import since as since_label
    from .templatetags.sla import sla_badge

    e = escape_text
    pk = int(t.pk)
    url = f"{url_base}{pk}/"
    name = _PRIORITY_NAMES[t.priority]
    reasons = (
        "".join(
            f'<li><span class="why-signal">{e(r.get("signal", ""))}</span>'
            f'<span class="why-detail">{e(r.get("detail", ""))}</span>'
            f'<span class="why-points">{_points(r.get("points", 0))}</span></li>'
            for r in t.priority_reasons or ()
            if isinstance(r, dict)
        )
        or '<li><span class="why-detail">No urgency signals: default level.</span></li>'
    )
    contact = t.contact
    contact_name = e(str(contact))
    if contact.tier != "standard":
        contact_title = f"{contact_name} · {e(contact.get_tier_display())}"
        contact_cell = (
            f'<span class="tier tier-{e(contact.tier)}">{e(tier_mark(contact.tier))}</span> '
            f"{contact_name}"
        )
    else:
        contact_title = contact_cell = contact_name
    channel = t.channel
    channel_cell = (
        f'<span class="ch ch-{e(channel.kind)}" title="{e(channel.name)} · '
        f'{e(channel_label(channel.kind))}">{e(channel_mark(channel.kind))}</span>'
        if channel
        else ""
    )
    waiting_cell = (
        e(since_label(t.waiting_since, now)) if t.waiting_since else '<span class="muted">–</span>'
    )
    sla_cell = (str(sla_badge(t, now)) if t.is_active else "") or (
        f'<span class="st st-{e(t.status)}">{e(t.get_status_display())}</span>'
    )
    assignee = t.assignee
    if assignee is not None:
        who = e(assignee.name)
        who_title = f' title="{who}"'
        who_cell = (
            f'<span class="who"><span class="avatar avatar-sm" aria-hidden="true">'
            f"{e(initials(assignee.name))}</span><span>{who}</span></span>"
        )
    else:
        who_title, who_cell = "", '<span class="muted">Unassigned</span>'
    team = e(t.team.name) if t.team else ""
    tags = "".join(f'<span class="tag">{e(n)}</span>' for n in t.tag_names)  # type: ignore[attr-defined]
    status = e(t.status)
    waiting_key = _micros(t.waiting_since) if t.waiting_since else ""
    return mark_safe(  # noqa: S308  (every value above is escaped or one of our integers)
        f'<tr class="qrow status-{status}" data-href="{url}" id="t{pk}" data-id="{pk}" '
        f'data-version="{int(t.version)}" data-status="{status}" '
        f'data-priority="{int(t.priority)}" data-sla="{_micros(t.sla_due_at)}" '
        f'data-waiting="{waiting_key}">'
        f'<td class="c-pri"><span class="prio prio-{name}" tabindex="0" '
        f'aria-describedby="why-{pk}">{name}</span>'
        f'<div class="why" role="tooltip" id="why-{pk}"><div class="why-head">Why {name} '
        f"<span>score {int(t.priority_score)}</span></div><ul>{reasons}</ul></div></td>"
        f'<td class="c-ticket"><a class="subject" href="{url}"><span class="num">#{pk}</span> '
        f'{e(t.subject or "(no subject)")}</a><div class="preview">{e(t.preview)}</div></td>'
        f'<td class="c-contact" title="{contact_title}">{contact_cell}</td>'
        f'<td class="c-ch">{channel_cell}</td>'
        f'<td class="c-lang" title="{e(language_name(t.language))}">{e(t.language or "–")}</td>'
        f'<td class="c-wait">{waiting_cell}</td>'
        f'<td class="c-sla">{sla_cell}</td>'
        f'<td class="c-team" title="{team}">{team or "–"}</td>'
        f'<td class="c-who"{who_title}>{who_cell}</td>'
        f'<td class="c-tags">{tags}</td></tr>'
    )


def escape_text(value: object) -> str:
    """HTML-escape (& < > " ') a value for the row markup."""
    return html.escape(str(value), quote=True)


def render_rows(tickets: list[Ticket], now: datetime) -> list[Ticket]:
    """Give each prepared ticket its row markup (`t.row_html`)."""
    from django.urls import reverse

    url_base = reverse("ticket", args=[0])[:-2]  # "/tickets/", then the id and "/"
    for t in tickets:
        t.row_html = row_html(t, now, url_base)  # type: ignore[attr-defined]
    return tickets


def _points(points: int) -> str:
    return f"+{points}" if points > 0 else (str(points) if points else "")


def _micros(value: datetime) -> str:
    # The queue order's keys for placing a live row, in epoch microseconds.
    return str(int(value.timestamp()) * 1_000_000 + value.microsecond)
