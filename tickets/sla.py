"""Service-level due times. Defaults per priority come from settings; policies with business
hours per team refine them (see the routing and SLA issue)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from .models import Priority, Ticket


def targets(priority: int) -> tuple[timedelta, timedelta]:
    first, resolve = settings.HELPDESK_SLA_MINUTES[Priority(priority).label]
    return timedelta(minutes=first), timedelta(minutes=resolve)


def apply_due_times(ticket: Ticket, *, since: datetime | None = None) -> None:
    """Set the first-response and resolution due times from the ticket's priority, counted
    from `since` (creation, or a reopen), and the next deadline. Mutates; the caller saves."""
    start = since or ticket.created_at
    first, resolve = targets(ticket.priority)
    if ticket.first_response_at is None:
        ticket.first_response_due = ticket.created_at + first
    ticket.resolution_due = start + resolve
    refresh_next_due(ticket)


def reprioritize_due_times(ticket: Ticket, old_priority: int) -> None:
    """Keep the start of the clock, swap the targets of the old level for the new one."""
    old_first, old_resolve = targets(old_priority)
    first, resolve = targets(ticket.priority)
    if ticket.first_response_due is not None:
        ticket.first_response_due += first - old_first
    if ticket.resolution_due is not None:
        ticket.resolution_due += resolve - old_resolve
    refresh_next_due(ticket)


def refresh_next_due(ticket: Ticket) -> None:
    """The next deadline we owe the customer: a reply while they wait ("next reply time",
    measured from when they started waiting), and always the resolution."""
    first, _ = targets(ticket.priority)
    candidates: list[datetime] = []
    if ticket.resolution_due is not None:
        candidates.append(ticket.resolution_due)
    if ticket.waiting_since is not None:
        candidates.append(ticket.waiting_since + first)
    if candidates:
        ticket.sla_due_at = min(candidates)
