"""The agent pages: queue, ticket, and the form posts behind them.

Pages read through `tickets.queue` (who sees what) and write only through `tickets.actions`;
every POST answers with a redirect (PRG) and reports the action's error, word for word, as
a flash message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from channels_in.models import ChannelKind

from . import actions, rows
from .errors import ActionError, Forbidden
from .filters import TicketFilter, filter_status
from .forms import (
    AssignForm,
    CallForm,
    ContactForm,
    MergeForm,
    PriorityForm,
    ReplyForm,
    StatusForm,
    TagsForm,
    TransferForm,
    first_error,
    language_choices,
)
from .keyset import page_size
from .models import (
    Agent,
    Call,
    CannedResponse,
    Contact,
    ContactMerge,
    Message,
    Priority,
    Status,
    Tag,
    Team,
    Ticket,
    Tier,
    Topic,
)
from .queue import can_see, team_ids, visible_filter, visible_parts

View = Callable[..., HttpResponse]

# Counting stops here: "1000+" is all an agent needs, and it keeps the tabs cheap with
# millions of tickets (a COUNT over a LIMITed subquery reads at most this many index rows).
COUNT_CAP = 1000
COUNTED_STATUSES = tuple(Status.values)
STATUS_TABS = ("active", *COUNTED_STATUSES, "all")
QUEUE_PAGE_SIZE = 25
THREAD_LIMIT = 200
TIMELINE_TICKETS = 30
TIMELINE_MESSAGES = 120
TIMELINE_MESSAGES_PER_TICKET = 20
TIMELINE_CALLS = 30


# --------------------------------------------------------------------------- access


def agent_required(view: View) -> View:
    """Anonymous: to the login page. Signed in without an Agent row: a 403 page that says
    so (never the queue). Otherwise the view gets the Agent as `me`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            # After signing in, a form post cannot be replayed: come back to its page.
            target = request.get_full_path()
            if request.method != "GET":
                pk = kwargs.get("pk")
                target = reverse("ticket", args=[pk]) if pk else reverse("queue")
            return redirect_to_login(target)
        try:
            me = actions.check_staff(request.user)
        except Forbidden as exc:
            return render(request, "403.html", {"reason": exc.message}, status=403)
        return view(request, me, *args, **kwargs)

    return wrapper


def _visible_ticket(me: Agent, pk: int, *related: str) -> Ticket:
    """The ticket, or 404 when it does not exist or `me` may not see it: the same answer,
    so nobody probes other teams' tickets."""
    return get_object_or_404(
        Ticket.objects.filter(visible_filter(me)).select_related(*related), pk=pk
    )


# --------------------------------------------------------------------------- queue


def capped_counts(
    qs: QuerySet[Ticket],
    statuses: tuple[str, ...],
    cap: int,
    *,
    parts: list[QuerySet[Ticket]] | None = None,
) -> dict[str, int]:
    """Tickets per status in `qs`, each counted up to `cap` + 1, in one query.

    Each status is `SELECT COUNT(*) FROM (SELECT id ... LIMIT cap+1)`, so a status with a
    million rows costs a thousand index entries, and all of them travel in one round trip.

    `parts`: disjoint querysets whose union is `qs` (an agent's visibility, from
    tickets.queue.visible_parts). An agent's `team_id IN (...) OR assignee_id = me` counted
    at once is a bitmap heap scan reading ~1,000 table pages per status (most of the agent
    queue page's SQL time at a million tickets); part by part, each is an index-only scan,
    and a later part is only counted while the earlier ones stay under the cap (PostgreSQL
    runs a subquery in an untaken CASE branch not at all). Same figures either way.
    """
    vendor = connections[qs.db].vendor
    sources = list(parts) if parts and vendor == "postgresql" else [qs]
    # Each source's WHERE compiled once rather than once per status (ten ORM compilations
    # were ~1 ms of an agent's page); None: the ORM compiles each count.
    wheres: list[tuple[str, list[Any]] | None] = []
    for source in list(sources):
        where = rows.where_of(source)
        try:
            wheres.append(where() if where is not None else None)
        except EmptyResultSet:
            sources.remove(source)  # matches nothing: nothing to count
    table = connections[qs.db].ops.quote_name(Ticket._meta.db_table)
    columns: list[str] = []
    params: list[Any] = []
    for index, status in enumerate(statuses):
        counts: list[tuple[str, list[Any]]] = []
        for n, (source, where) in enumerate(zip(sources, wheres, strict=True)):
            alias = f"c{index}_{n}"
            if where is not None:
                where_sql, where_params = where
                condition = f"({where_sql}) AND " if where_sql else ""
                counts.append((
                    f"SELECT COUNT(*) AS n FROM (SELECT {table}.id FROM {table} "  # noqa: S608  (our SQL, values are parameters)
                    f"WHERE {condition}{table}.status = %s LIMIT {int(cap) + 1}) AS {alias}",
                    [*where_params, status],
                ))  # fmt: skip
                continue
            sub = source.filter(status=status).order_by().values("pk")[: cap + 1]
            try:
                sql, sub_params = sub.query.sql_with_params()
            except EmptyResultSet:
                # A filter that matches nothing (a channel kind with no channel): Django
                # would skip the query; so do we.
                continue
            # Django's own compiled SQL; every value stays a bound parameter.
            counts.append((f"SELECT COUNT(*) AS n FROM ({sql}) AS {alias}", list(sub_params)))  # noqa: S608
        column, column_params = _first_under_cap(counts, int(cap), f"k{index}")
        columns.append(column)
        params.extend(column_params)
    with connections[qs.db].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(columns), params)
        row = cursor.fetchone()
    return dict(zip(statuses, row, strict=True))


def _first_under_cap(
    counts: list[tuple[str, list[Any]]], cap: int, alias: str
) -> tuple[str, list[Any]]:
    """min(cap + 1, sum of the counts), counting the later ones only while under the cap."""
    if not counts:
        return "0", []
    (first, first_params), rest = counts[0], counts[1:]
    if not rest:
        return f"({first})", first_params
    more, more_params = _first_under_cap(rest, cap, alias + "_")
    return (
        f"(SELECT CASE WHEN {alias}.n > {cap} THEN {alias}.n "  # noqa: S608  (our SQL)
        f"ELSE LEAST({cap + 1}, {alias}.n + {more}) END FROM ({first}) AS {alias})",
        [*more_params, *first_params],
    )


@dataclass
class Tab:
    key: str
    label: str
    count: str = ""
    active: bool = False


@dataclass
class QueueFilters:
    """The queue's filter bar: what the agent picked, and what they may pick from."""

    values: dict[str, str]
    teams: list[Team]
    errors: list[str] = field(default_factory=list)
    statuses: tuple[str, ...] = ()

    @property
    def is_filtered(self) -> bool:
        return any(v for k, v in self.values.items() if k != "status")


FILTER_KEYS = ("priority", "channel", "team", "assignee", "language", "topic", "tag", "q")


def _status_from(raw: str, errors: list[str]) -> str:
    if raw in ("", None):
        return "active"
    if raw not in STATUS_TABS:
        errors.append(f"unknown status {raw!r}; expected one of: {', '.join(STATUS_TABS)}")
        return "active"
    return raw


@require_GET
@agent_required
def queue(request: HttpRequest, me: Agent) -> HttpResponse:
    now = timezone.now()
    errors: list[str] = []
    values = {key: request.GET.get(key, "").strip() for key in FILTER_KEYS}
    status = _status_from(request.GET.get("status", ""), errors)

    # One filter pass over every status: the tab counts and the rows share it.
    filtered = _filtered(me, values, errors, visible=False)
    base = filtered.filter(visible_filter(me))
    split = visible_parts(me)
    counts = capped_counts(
        base,
        COUNTED_STATUSES,
        COUNT_CAP,
        parts=[filtered.filter(part) for part in split] if split else None,
    )
    tabs = [Tab(key, label, active=key == status) for key, label in _tab_labels()]
    for tab in tabs:
        if tab.key == "active":
            total = sum(counts[s] for s in ("new", "open", "pending"))
            capped = any(counts[s] > COUNT_CAP for s in ("new", "open", "pending"))
            tab.count = _count_label(min(total, COUNT_CAP + 1) if capped else total)
        elif tab.key in counts:
            tab.count = _count_label(counts[tab.key])

    if status != "all":
        base = filter_status(base, [status])
    try:
        size = page_size(request.GET.get("size"), default=QUEUE_PAGE_SIZE)
        page = rows.page(base, cursor=request.GET.get("cursor") or None, size=size)
    except ActionError as exc:
        errors.append(exc.message)
        size = QUEUE_PAGE_SIZE
        page = rows.page(base, cursor=None, size=size)
    rows.render_rows(rows.prepare(page.rows), now)
    # One string for the template: a {% for %} over 25 safe strings cost more than the join.
    rows_html = mark_safe("\n".join(t.row_html for t in page.rows))  # type: ignore[attr-defined]  # noqa: S308  (rows.row_html escapes)

    context = {
        "page": page,
        "rows_html": rows_html,
        "now": now,
        "tabs": tabs,
        "status": status,
        "filters": QueueFilters(
            values=values,
            teams=sorted(rows.REFS.current().teams.values(), key=lambda t: t.name),
            errors=errors,
        ),
        "priorities": [p.label for p in sorted(Priority, reverse=True)],
        "channel_kinds": ChannelKind.choices,
        "languages": language_choices()[1:],
        "topics": Topic.choices,
        "is_first_page": not request.GET.get("cursor"),
    }
    return render(request, "tickets/queue.html", context)


def _filtered(
    me: Agent, values: dict[str, str], errors: list[str], *, visible: bool = True
) -> QuerySet[Ticket]:
    """The visible tickets of every status (every ticket with `visible=False`: the caller
    applies visibility), narrowed by the valid filters. A bad value is reported and
    dropped; the other filters still apply."""
    visible = Ticket.objects.filter(visible_filter(me)) if visible else Ticket.objects.all()
    if not any(values.values()):
        return visible  # the plain queue: no filterset to build and validate
    for _ in range(len(FILTER_KEYS) + 1):
        data = {k: v for k, v in values.items() if v}
        data["status"] = "all"
        filterset = TicketFilter(data, queryset=visible, agent=me)
        if not filterset.is_valid():
            for name, field_errors in filterset.errors.items():
                errors.extend(f"{name}: {e}" for e in field_errors)
                values[name] = ""
        try:
            return filterset.qs
        except forms.ValidationError as exc:
            # Filter methods judge some values themselves (an unknown language).
            errors.extend(exc.messages)
            bad = set(getattr(exc, "error_dict", {})) or set(values)
            for name in bad:
                values[name] = ""
    raise AssertionError("unreachable: every filter was dropped")


def _tab_labels() -> list[tuple[str, str]]:
    return [("active", "Active"), *Status.choices, ("all", "All")]


def _count_label(count: int) -> str:
    return f"{COUNT_CAP}+" if count > COUNT_CAP else str(count)


@require_POST
@agent_required
def take_next(request: HttpRequest, me: Agent) -> HttpResponse:
    try:
        ticket = actions.do_take_next(me)
    except ActionError as exc:
        messages.error(request, exc.message)
        return redirect("queue")
    if ticket is None:
        messages.info(request, "Nothing to take: no unassigned ticket you can work is waiting.")
        return redirect("queue")
    messages.success(request, f"Took #{ticket.pk}.")
    return redirect("ticket", pk=ticket.pk)


# --------------------------------------------------------------------------- ticket page

_VARIABLE = re.compile(r"\{\{\s*(contact\.name|contact\.account|ticket\.id|agent\.name)\s*\}\}")


def fill_variables(body: str, values: dict[str, str]) -> str:
    """Put the ticket's values into a canned response's {{variables}}; unknown ones stay."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def canned_responses_for(me: Agent, ticket: Ticket, values: dict[str, str]) -> list[dict[str, Any]]:
    """Responses in the ticket's language or any language, of the agent's teams or global.

    When a shortcut exists several times, the most specific wins: the ticket's language over
    "any", the agent's team over global.
    """
    languages = {ticket.language, ""}
    rows = CannedResponse.objects.filter(
        Q(language__in=languages), Q(team__isnull=True) | Q(team_id__in=team_ids(me))
    ).only("id", "shortcut", "title", "body", "language", "team_id")
    best: dict[str, CannedResponse] = {}
    for row in sorted(rows, key=lambda r: (r.language == "", r.team_id is None, r.pk)):
        best.setdefault(row.shortcut, row)
    return [
        {
            "id": row.pk,
            "shortcut": row.shortcut,
            "title": row.title,
            "language": row.language,
            # The type-ahead lists the agent's own teams' templates before global ones.
            "team": row.team_id is not None,
            "body": fill_variables(row.body, values),
        }
        for row in sorted(best.values(), key=lambda r: r.shortcut)
    ]


@dataclass
class TimelineItem:
    kind: str  # "ticket", "call", or what a TIMELINE_SOURCES function adds (e.g. "bot")
    at: datetime
    ticket: Ticket | None = None
    visible: bool = False
    current: bool = False
    messages: list[Message] = field(default_factory=list)
    call: Call | None = None
    # For items from TIMELINE_SOURCES: a title and a text, shown escaped.
    title: str = ""
    text: str = ""


# The hook for other kinds of history on the customer timeline: each function takes the
# viewing agent and the contact and returns TimelineItems (newest first or not: the timeline
# sorts). Bot sessions go here once the bots app has them (kind "bot", title like "Bot: meter
# reading, handed to an agent", text the outcome); it appends its function at startup.
TIMELINE_SOURCES: list[Callable[[Agent, Contact], list[TimelineItem]]] = []


def contact_timeline(
    me: Agent, contact: Contact, current: Ticket
) -> tuple[list[TimelineItem], bool]:
    """Everything this customer did on every channel, newest first, in three queries.

    Tickets `me` may not see are listed with their number, subject, status and team only.
    """
    tickets = list(
        Ticket.objects.filter(contact=contact)
        .select_related("channel", "team")
        .order_by("-last_message_at", "-id")[: TIMELINE_TICKETS + 1]
    )
    more = len(tickets) > TIMELINE_TICKETS
    tickets = tickets[:TIMELINE_TICKETS]
    readable = [t.pk for t in tickets if can_see(me, t) and t.pk != current.pk]
    by_ticket: dict[int, list[Message]] = {}
    if readable:
        for message in (
            Message.objects.filter(ticket_id__in=readable)
            .select_related("author__user")
            .order_by("-id")[:TIMELINE_MESSAGES]
        ):
            by_ticket.setdefault(message.ticket_id, []).append(message)
    items = [
        TimelineItem(
            kind="ticket",
            at=t.last_message_at,
            ticket=t,
            visible=can_see(me, t),
            current=t.pk == current.pk,
            messages=list(reversed(by_ticket.get(t.pk, [])[:TIMELINE_MESSAGES_PER_TICKET])),
        )
        for t in tickets
    ]
    calls = contact.calls.select_related("agent__user").order_by("-started_at")[:TIMELINE_CALLS]
    items += [TimelineItem(kind="call", at=c.started_at, call=c) for c in calls]
    for source in TIMELINE_SOURCES:
        items += source(me, contact)
    items.sort(key=lambda i: i.at, reverse=True)
    return items, more


@require_GET
@agent_required
def ticket_detail(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk, "contact", "channel", "team", "assignee__user")
    contact = ticket.contact
    thread = list(
        ticket.messages.select_related("author__user")
        .prefetch_related("attachments")
        .order_by("-id")[: THREAD_LIMIT + 1]
    )
    older_hidden = len(thread) > THREAD_LIMIT
    thread = list(reversed(thread[:THREAD_LIMIT]))
    identities = list(contact.identities.order_by("kind", "id"))
    accounts = list(contact.accounts.order_by("number"))
    agents = list(Agent.objects.select_related("user").prefetch_related("teams"))
    teams = list(Team.objects.order_by("name"))
    values = {
        "contact.name": contact.display_name or "",
        "contact.account": accounts[0].number if accounts else "",
        "ticket.id": str(ticket.pk),
        "agent.name": me.name,
    }
    timeline, timeline_more = contact_timeline(me, contact, ticket)
    context = {
        "ticket": ticket,
        "contact": contact,
        "thread": thread,
        "older_hidden": older_hidden,
        "tags": list(ticket.tags.all()),
        "known_tags": list(Tag.objects.order_by("name").values_list("name", flat=True)[:300]),
        "identities": identities,
        "accounts": accounts,
        "timeline": timeline,
        "timeline_more": timeline_more,
        "merges": list(
            ContactMerge.objects.filter(target=contact, undone_at__isnull=True)
            .select_related("actor__user", "source")
            .order_by("-id")[:10]
        ),
        "canned": canned_responses_for(me, ticket, values),
        "teams": teams,
        "agents": agents,
        # Taking a colleague's ticket is a supervisor's call (actions.do_assign says so too).
        "can_take": ticket.is_active
        and ticket.assignee_id != me.pk
        and (ticket.assignee_id is None or me.is_supervisor),
        "team_agents": [a for a in agents if ticket.team_id in {t.pk for t in a.teams.all()}],
        "contact_form": ContactForm(
            initial={
                "display_name": contact.display_name,
                "tier": contact.tier,
                "language": contact.language,
                "accounts": "\n".join(a.number for a in accounts),
                "notes": contact.notes,
            }
        ),
        "statuses": [
            (s, Status(s).label)
            for s in (Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED)
        ],
        "priorities": [p.label for p in sorted(Priority, reverse=True)],
        "tiers": Tier.choices,
        "call_directions": Call.Direction.choices,
        "now": timezone.now(),
    }
    return render(request, "tickets/ticket.html", context)


# --------------------------------------------------------------------------- ticket posts


def _done(
    request: HttpRequest, ticket: Ticket, run: Callable[[], Any], success: str
) -> HttpResponseRedirect:
    """Run one action; its error becomes the flash message and nothing else happens."""
    try:
        run()
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return redirect("ticket", pk=ticket.pk)


def _invalid(request: HttpRequest, ticket: Ticket, form: forms.Form) -> HttpResponseRedirect:
    messages.error(request, first_error(form))
    return redirect("ticket", pk=ticket.pk)


@require_POST
@agent_required
def ticket_reply(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = ReplyForm(request.POST, request.FILES)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    data = form.cleaned_data
    files = data["attachments"]
    if data["mode"] == "note":
        return _done(
            request,
            ticket,
            lambda: actions.do_add_note(ticket, me, data["text"], attachments=files),
            "Note added.",
        )
    status = data["status"] or None
    label = f" and set to {status}" if status else ""
    return _done(
        request,
        ticket,
        lambda: actions.do_reply(ticket, me, data["text"], attachments=files, status=status),
        f"Reply sent{label}.",
    )


@require_POST
@agent_required
def ticket_status(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = StatusForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    status = form.cleaned_data["status"]
    return _done(
        request,
        ticket,
        lambda: actions.do_set_status(ticket, status, actor=me),
        f"Status set to {status}.",
    )


@require_POST
@agent_required
def ticket_assign(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = AssignForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    value = form.cleaned_data["assignee"]
    assignee: Agent | None
    if value == "me":
        assignee = me
    elif value:
        assignee = Agent.objects.select_related("user").filter(pk=int(value)).first()
        if assignee is None:
            messages.error(request, f"agent {value} does not exist")
            return redirect("ticket", pk=ticket.pk)
    else:
        assignee = None
    success = f"Assigned to {assignee.name}." if assignee else "Unassigned."
    return _done(request, ticket, lambda: actions.do_assign(ticket, assignee, actor=me), success)


@require_POST
@agent_required
def ticket_transfer(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = TransferForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    data = form.cleaned_data
    team = Team.objects.filter(pk=data["team"]).first() if data["team"] else None
    agent = (
        Agent.objects.select_related("user").filter(pk=data["agent"]).first()
        if data["agent"]
        else None
    )
    if data["team"] and team is None:
        messages.error(request, f"team {data['team']} does not exist")
        return redirect("ticket", pk=ticket.pk)
    if data["agent"] and agent is None:
        messages.error(request, f"agent {data['agent']} does not exist")
        return redirect("ticket", pk=ticket.pk)
    where = " and ".join(x for x in (team and team.name, agent and agent.name) if x)
    return _done(
        request,
        ticket,
        lambda: actions.do_transfer(ticket, actor=me, team=team, agent=agent, note=data["note"]),
        f"Transferred to {where}.",
    )


@require_POST
@agent_required
def ticket_priority(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = PriorityForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    level = form.cleaned_data["priority"]
    return _done(
        request,
        ticket,
        lambda: actions.do_set_priority(
            ticket, level, actor=me, reason=form.cleaned_data["reason"]
        ),
        f"Priority set to {level}.",
    )


@require_POST
@agent_required
def ticket_tags(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    form = TagsForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    add, remove = form.cleaned_data["add_list"], form.cleaned_data["remove_list"]
    return _done(
        request,
        ticket,
        lambda: actions.do_update_tags(ticket, actor=me, add=add, remove=remove),
        "Tags updated.",
    )


@require_POST
@agent_required
def ticket_call(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk, "contact")
    form = CallForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    data = form.cleaned_data
    return _done(
        request,
        ticket,
        lambda: actions.do_log_call(
            ticket.contact,
            actor=me,
            direction=data["direction"],
            phone=data["phone"].strip(),
            duration_seconds=data["duration"],
            summary=data["summary"],
            ticket=ticket,
        ),
        "Call logged.",
    )


@require_POST
@agent_required
def ticket_contact(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk, "contact")
    contact = ticket.contact
    form = ContactForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    data = form.cleaned_data
    # Only what changed, so the contact's history says what this agent actually edited.
    changes = {
        name: data[name]
        for name in ("display_name", "tier", "language", "notes")
        if data[name] != getattr(contact, name)
    }
    before = sorted(contact.accounts.values_list("number", flat=True))
    accounts = data["accounts"] if data["accounts"] != before else None
    if not changes and accounts is None:
        messages.info(request, "Nothing changed.")
        return redirect("ticket", pk=ticket.pk)
    return _done(
        request,
        ticket,
        lambda: actions.do_update_contact(contact, actor=me, accounts=accounts, **changes),
        "Customer updated.",
    )


@require_POST
@agent_required
def ticket_merge(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk, "contact")
    form = MergeForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    source_id = form.cleaned_data["contact"]
    return _done(
        request,
        ticket,
        lambda: actions.do_merge_contacts(
            ticket.contact,
            Contact(pk=source_id),
            actor=me,
            reason=form.cleaned_data["reason"] or f"merged by {me.name} from ticket #{ticket.pk}",
        ),
        f"Contact #{source_id} merged into this customer. Undo it under Customer → Merges.",
    )


@require_POST
@agent_required
def ticket_unmerge(request: HttpRequest, me: Agent, pk: int, merge_id: int) -> HttpResponse:
    ticket = _visible_ticket(me, pk)
    merge = ContactMerge.objects.filter(pk=merge_id, target_id=ticket.contact_id).first()
    if merge is None:
        raise Http404("no such merge on this customer")
    return _done(
        request,
        ticket,
        lambda: actions.do_unmerge_contacts(merge, actor=me),
        f"Merge undone: contact #{merge.source_id} is separate again.",
    )
