"""Supervisors' pages for what went wrong at the edge: dead letters (replies that could not be
delivered) and inbound events that failed, wait or are stuck, with their raw bodies.

Reads go through channels_in.ops; retries through tickets.actions (deliveries) and
channels_in.processing (events). Every POST answers with a redirect (PRG) and says what
happened, or the action's own error word for word, as a flash message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from tickets.errors import ActionError
from tickets.keyset import page_size
from tickets.models import Agent

from . import ops
from .models import InboundEvent

View = Callable[..., HttpResponse]

PAGE_SIZE = 50
EVENT_TABS = (
    ("failed", "Failed"),
    ("pending", "Pending"),
    ("processing", "Processing"),
    ("processed", "Processed"),
)


def supervisor_required(view: View) -> View:
    """Anonymous: to the login page. Not an agent, or an agent without a supervisor's role:
    a 403 page that says which. Otherwise the view gets the Agent as `me`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            # A form post cannot be replayed after signing in: come back to its list
            # (/ops/events/12/replay/ -> /ops/events/).
            target = request.get_full_path()
            if request.method != "GET":
                target = "/" + "/".join(request.path.strip("/").split("/")[:2]) + "/"
            return redirect_to_login(target)
        agent = getattr(request.user, "agent", None)
        if agent is None:
            return _forbidden(request, "This account is not a helpdesk agent.")
        if not agent.is_supervisor:
            return _forbidden(request, "Only supervisors and admins may open this page.")
        return view(request, agent, *args, **kwargs)

    return wrapper


def _forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "channels_in/forbidden.html", {"reason": reason}, status=403)


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """To the list page the form was posted from (its cursor and tab kept), if it is ours."""
    target = request.POST.get("next", "")
    if target.startswith("/ops/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(default)


def _page(request: HttpRequest, fetch: Callable[..., ops.Page], *args: Any) -> ops.Page:
    """One page; a bad cursor or size says so and shows the first page instead of a 500."""
    try:
        size = page_size(request.GET.get("page_size"), default=PAGE_SIZE, maximum=200)
        return fetch(*args, cursor=request.GET.get("cursor") or None, size=size)
    except ActionError as exc:
        messages.error(request, exc.message)
        return fetch(*args, cursor=None, size=PAGE_SIZE)


# --------------------------------------------------------------------------- dead letters


@require_GET
@supervisor_required
def dead_letters(request: HttpRequest, me: Agent) -> HttpResponse:
    page = _page(request, ops.delivery_page, "failed")
    return render(
        request,
        "channels_in/dead_letters.html",
        {
            "page": page,
            "now": timezone.now(),
            "is_first_page": not request.GET.get("cursor"),
            "section": "dead-letters",
        },
    )


@require_POST
@supervisor_required
def dead_letter_retry(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    try:
        delivery = ops.retry_delivery(pk, me)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        ticket_id = delivery.message.ticket_id
        if delivery.state == "sent":
            messages.success(request, f"The reply on ticket #{ticket_id} was sent.")
        else:
            messages.success(
                request, f"The reply on ticket #{ticket_id} is queued to be sent again."
            )
    return _back(request, reverse("ops:dead-letters"))


# --------------------------------------------------------------------------- inbound events


@require_GET
@supervisor_required
def events(request: HttpRequest, me: Agent) -> HttpResponse:
    status = request.GET.get("status") or "failed"
    if status not in ops.EVENT_STATUSES:
        messages.error(request, f"No event status {status!r}; showing failed events.")
        status = "failed"
    page = _page(request, ops.event_page, status)
    now = timezone.now()
    for event in page.rows:
        event.stuck = ops.is_stuck(event, now)
        event.overdue = ops.is_overdue(event, now)
    return render(
        request,
        "channels_in/events.html",
        {
            "page": page,
            "status": status,
            "tabs": [
                {"key": key, "label": label, "active": key == status} for key, label in EVENT_TABS
            ],
            "now": now,
            "is_first_page": not request.GET.get("cursor"),
            "section": "events",
        },
    )


@require_GET
@supervisor_required
def event_detail(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    event = ops.events_any().defer(None).filter(pk=pk).first()
    if event is None:
        raise Http404(f"event {pk} does not exist")
    now = timezone.now()
    event.stuck = ops.is_stuck(event, now)
    event.overdue = ops.is_overdue(event, now)
    return render(
        request,
        "channels_in/event_detail.html",
        {"event": event, "raw": ops.raw_body(event), "now": now, "section": "events"},
    )


@require_POST
@supervisor_required
def event_replay(request: HttpRequest, me: Agent, pk: int) -> HttpResponse:
    try:
        before = InboundEvent.objects.filter(pk=pk).values_list("status", flat=True).first()
        event = ops.replay_event(pk, me)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _replayed(pk, before or "", event))
    return _back(request, reverse("ops:event", args=[pk]))


def _replayed(pk: int, before: str, event: InboundEvent) -> str:
    verb = "Replayed" if before == "processed" else "Retried"
    if event.status == "processed":
        done = ", ".join(f"{count} {what}" for what, count in sorted(event.result.items()))
        return f"{verb} event {pk}: processed ({done or 'nothing to do'})."
    if event.status == "failed":
        return f"{verb} event {pk}: it failed again: {event.error}"
    if event.status == "pending" and event.error:
        return f"{verb} event {pk}: waiting to try again ({event.error})."
    return f"{verb} event {pk}: queued for the workers."
