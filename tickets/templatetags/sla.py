"""The SLA clock of a ticket on the agent pages, from tickets.sla.sla_state: one definition
of ok / risk / breached / paused for the queue, the ticket page and the live client.

The badge carries what the live client needs to re-evaluate it as time passes without asking
the server: data-sla-due (the deadline) and data-sla-risk-at (when it turns "risk"); the
state at render time is data-sla-state and the class sla-<state>.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tickets import sla
from tickets.models import Ticket
from tickets.templatetags.desk import humanize_seconds

register = template.Library()

# The classes the stylesheet styled before the states had these names (amber "soon", red
# "overdue"); emitted alongside until static/css/app.css styles .sla-risk, .sla-breached
# and .sla-paused itself.
LEGACY_CLASSES = {"ok": "", "risk": "sla-soon", "breached": "sla-overdue", "paused": "sla-ok"}
DEADLINE_NAMES = {
    "first_response": "First response",
    "next_reply": "Reply",
    "resolution": "Resolution",
}


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def short_when(value: datetime) -> str:
    """ "22 Nov 17:05" in the current time zone: Django's `date` filter, for this one format,
    at a tenth of the cost (it runs for every row of every queue page)."""
    local = timezone.localtime(value)
    return f"{local.day} {MONTHS[local.month - 1]} {local.hour:02d}:{local.minute:02d}"


@register.filter
def sla_clock(ticket: Ticket, now: datetime | None = None) -> str:
    """ok, risk, breached, paused, or "" (no clock: resolved or closed)."""
    return sla.sla_state(ticket, now)


@register.simple_tag
def sla_badge(ticket: Ticket, now: datetime | None = None, long: bool = False) -> SafeString:
    """The SLA badge: "in 2 h", "in 12 min" (risk), "−5 min" (breached), "Paused"; `long`
    for the ticket page ("SLA in 2 h", "SLA overdue 5 min")."""
    now = now or timezone.now()
    state = sla.sla_state(ticket, now)
    if not state:
        return SafeString("")
    due = ticket.sla_due_at
    left = (due - now).total_seconds()
    what = DEADLINE_NAMES[sla.deadline_kind(ticket)]
    when = short_when(due)
    if state == "paused":
        label = "SLA paused" if long else "Paused"
        title = "Pending: the resolution clock is paused until the customer answers"
    elif state == "breached":
        if long:
            label = f"SLA overdue {humanize_seconds(left)}"
        else:
            label = "due now" if left > -60 else f"\u2212{humanize_seconds(left)}"
        title = f"{what} overdue since {when}"
    else:
        label = f"{'SLA ' if long else ''}in {humanize_seconds(left)}"
        title = f"{what} due {when}"
    classes = " ".join(c for c in ("sla", f"sla-{state}", LEGACY_CLASSES[state]) if c)
    return format_html(
        '<span class="{}" data-sla-state="{}" data-sla-due="{}" data-sla-risk-at="{}" '
        'title="{}">{}</span>',
        classes,
        state,
        due.isoformat(),
        sla.risk_at(ticket).isoformat(),
        title,
        label,
    )
