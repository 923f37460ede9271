"""Small JSON endpoints behind the live pages (static/js/live.js).

The pages never build markup from data: a queue row or a message that arrives live is
rendered here by the same code the page itself uses (`tickets.rows.row_html`,
`_message.html`), escaped by Django, and the client only inserts it. The same endpoints serve
the re-sync after a reconnect (messages since the last id the page shows).

Session-authenticated, like the pages; answers are JSON, errors too
({"error": {"code", "message", "fields"}}): 401 signed out, 403 not an agent, 404 a ticket the
agent may not see (the same as one that does not exist), 400 a bad parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from . import actions
from . import rows as fast_rows
from .errors import ActionError, Forbidden, InvalidInput, NotFound
from .filters import filter_status, is_id
from .models import Agent, Attachment, Message, Presence, Ticket
from .queue import team_ids, visible_filter
from .views import (
    COUNT_CAP,
    COUNTED_STATUSES,
    FILTER_KEYS,
    _count_label,
    _filtered,
    _status_from,
    capped_counts,
)

JsonView = Callable[..., JsonResponse]

MAX_ROW_IDS = 100
MAX_MESSAGE_IDS = 50
MESSAGES_AFTER_LIMIT = 200


def error(exc: ActionError) -> JsonResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.field:
        body["fields"] = {exc.field: [exc.message]}
    return JsonResponse({"error": body}, status=exc.status)


def live_agent(view: JsonView) -> JsonView:
    """The Agent behind the session as `me`, or a JSON 401/403; an ActionError raised by the
    view becomes its JSON 4xx."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": {"code": "not_authenticated", "message": "sign in first"}}, status=401
            )
        try:
            me = actions.check_staff(request.user)
            return view(request, me, *args, **kwargs)
        except ActionError as exc:
            return error(exc)

    return wrapper


def parse_ids(raw: str, *, field: str, limit: int) -> list[int]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise InvalidInput(f"{field} needs at least one id", field=field)
    if len(parts) > limit:
        raise InvalidInput(f"at most {limit} ids in {field}", field=field)
    if not all(is_id(p) for p in parts):
        raise InvalidInput(f"{field} must be comma-separated numbers", field=field)
    return sorted({int(p) for p in parts})


# --------------------------------------------------------------------------- queue


@require_GET
@live_agent
def queue_rows(request: HttpRequest, me: Agent) -> JsonResponse:
    """`?ids=4,9&<the queue page's own query string>`: each ticket's row as the queue page
    with these filters would show it, or `html: null` when the filters (or the agent's
    visibility) now exclude it; plus the status tab counts.

    One query for the rows and one for the counts, whatever the number of ids: the client
    asks for every ticket that changed in one coalesced batch at once."""
    ids = parse_ids(request.GET.get("ids", ""), field="ids", limit=MAX_ROW_IDS)
    errors: list[str] = []
    values = {key: request.GET.get(key, "").strip() for key in FILTER_KEYS}
    status = _status_from(request.GET.get("status", ""), errors)
    base = _filtered(me, values, errors)
    counts = capped_counts(base, COUNTED_STATUSES, COUNT_CAP)
    if status != "all":
        base = filter_status(base, [status])
    # The same rows as the page's (tickets.rows): one template, one way to fetch them.
    now = timezone.now()
    fetched = list(fast_rows.row_queryset(base.filter(pk__in=ids)))
    rows = {t.pk: t for t in fast_rows.render_rows(fast_rows.prepare(fetched), now)}
    active = sum(counts[s] for s in ("new", "open", "pending"))
    capped = any(counts[s] > COUNT_CAP for s in ("new", "open", "pending"))
    labels = {key: _count_label(value) for key, value in counts.items()}
    labels["active"] = _count_label(min(active, COUNT_CAP + 1) if capped else active)
    return JsonResponse(
        {
            "rows": [
                {
                    "id": pk,
                    "version": rows[pk].version if pk in rows else None,
                    "html": str(rows[pk].row_html) if pk in rows else None,
                }
                for pk in ids
            ],
            "counts": labels,
            # Filters the page shows but the server dropped (a bad value): the page reloads.
            "errors": errors,
        }
    )


@require_GET
@live_agent
def agents(request: HttpRequest, me: Agent) -> JsonResponse:
    """Who is online: every agent for supervisors, the agent's teammates otherwise."""
    qs = Agent.objects.select_related("user").prefetch_related("teams").order_by("user__username")
    if not me.is_supervisor:
        qs = qs.filter(teams__in=team_ids(me)).distinct()
    return JsonResponse(
        {
            "agents": [
                {
                    "id": a.pk,
                    "name": a.name,
                    "presence": a.presence,
                    "since": a.presence_changed_at.isoformat(),
                    "teams": [t.name for t in a.teams.all()],
                }
                for a in qs
            ]
        }
    )


@require_POST
@live_agent
def set_presence(request: HttpRequest, me: Agent) -> JsonResponse:
    """Online, away or offline, chosen by the agent (form fields or JSON: `status`, and
    `agent` for a supervisor setting someone else's)."""
    data = _body(request)
    agent = me
    if data.get("agent") not in (None, "", me.pk, str(me.pk)):
        raw = str(data["agent"])
        if not is_id(raw):
            raise InvalidInput("agent must be an agent id", field="agent")
        if not me.is_supervisor:
            raise Forbidden("only supervisors set another agent's status")
        found = Agent.objects.select_related("user").filter(pk=int(raw)).first()
        if found is None:
            raise InvalidInput(f"no agent with id {raw}", field="agent")
        agent = found
    status = data.get("status")
    if not isinstance(status, str) or status not in Presence.values:
        raise InvalidInput(f"status must be one of {', '.join(Presence.values)}", field="status")
    changed = actions.do_set_presence(agent, status, actor=me)
    return JsonResponse({"agent": agent.pk, "status": status, "changed": changed is not None})


def _body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise InvalidInput("the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object")
        return data
    return request.POST.dict()


# --------------------------------------------------------------------------- ticket page


def _ticket(me: Agent, pk: int) -> Ticket:
    ticket = (
        Ticket.objects.filter(visible_filter(me)).select_related("contact").filter(pk=pk).first()
    )
    if ticket is None:
        raise NotFound(f"ticket {pk} does not exist")
    return ticket


@require_GET
@live_agent
def ticket_messages(request: HttpRequest, me: Agent, pk: int) -> JsonResponse:
    """`?after=<id>`: the messages newer than the last one the page shows (a new message, or
    everything missed while the socket was down), oldest first; `?ids=3,5`: those messages
    again (their delivery ticks changed). Rendered by `_message.html`, like the page."""
    ticket = _ticket(me, pk)
    qs = (
        Message.objects.filter(ticket=ticket)
        .select_related("author__user")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
        .order_by("id")
    )
    more = False
    if request.GET.get("ids"):
        rows = list(
            qs.filter(pk__in=parse_ids(request.GET["ids"], field="ids", limit=MAX_MESSAGE_IDS))
        )
    else:
        after = request.GET.get("after", "0").strip() or "0"
        if not is_id(after):
            raise InvalidInput("after must be a message id", field="after")
        rows = list(qs.filter(pk__gt=int(after))[: MESSAGES_AFTER_LIMIT + 1])
        more = len(rows) > MESSAGES_AFTER_LIMIT
        rows = rows[:MESSAGES_AFTER_LIMIT]
    return JsonResponse(
        {
            "ticket": {"id": ticket.pk, "version": ticket.version},
            "messages": [
                {
                    "id": m.pk,
                    "delivery_status": m.delivery_status,
                    "html": render_to_string(
                        "tickets/_message.html", {"m": m, "ticket": ticket}, request
                    ),
                }
                for m in rows
            ],
            # More than one answer holds: the page reloads instead of paging.
            "more": more,
        }
    )
