"""Typed live events, published to channel-layer groups after the transaction commits.

Only `tickets.actions` calls `publish_on_commit`. The action chooses the recipients (groups),
never the consumer: an agent's socket joins its own group, its teams' groups and the pages it
has open; supervisors join the whole queue. Every event carries the ticket's version so a
client can drop what it has already rendered and re-sync after a gap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import Message, Ticket

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"  # supervisors: every ticket


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


def agent_group(agent_id: int) -> str:
    return f"agent-{agent_id}"


def ticket_group(ticket_id: int) -> str:
    return f"ticket-{ticket_id}"


def ticket_groups(
    ticket: Ticket, *also_teams: int | None, also_agents: Iterable[int | None] = ()
) -> set[str]:
    """Everyone who may see this ticket now, plus former team/assignee (so it leaves their
    view)."""
    groups = {QUEUE_GROUP, ticket_group(ticket.pk)}
    for team_id in (ticket.team_id, *also_teams):
        if team_id:
            groups.add(team_group(team_id))
    for agent_id in (ticket.assignee_id, *also_agents):
        if agent_id:
            groups.add(agent_group(agent_id))
    return groups


def ticket_payload(ticket: Ticket) -> dict[str, Any]:
    """The queue row of a ticket: the same fields the list API returns."""
    return {
        "id": ticket.pk,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority_name,
        "priority_score": ticket.priority_score,
        "priority_reasons": ticket.priority_reasons,
        "topic": ticket.topic,
        "language": ticket.language,
        "channel_id": ticket.channel_id,
        "contact_id": ticket.contact_id,
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
        "sla_due_at": ticket.sla_due_at.isoformat() if ticket.sla_due_at else None,
        "waiting_since": ticket.waiting_since.isoformat() if ticket.waiting_since else None,
        "last_message_at": ticket.last_message_at.isoformat(),
        "preview": ticket.preview,
        "version": ticket.version,
    }


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "ticket_id": message.ticket_id,
        "direction": message.direction,
        "author_kind": message.author_kind,
        "author_id": message.author_id,
        "kind": message.kind,
        "text": message.text,
        "is_internal": message.is_internal,
        "delivery_status": message.delivery_status,
        "created_at": message.created_at.isoformat(),
    }


def ticket_event(op: str, ticket: Ticket, **extra: Any) -> dict[str, Any]:
    return {
        "type": "ticket",
        "op": op,
        "ticket": ticket_payload(ticket),
        "version": ticket.version,
        **extra,
    }


def publish_on_commit(groups: Iterable[str], event: dict[str, Any]) -> None:
    targets = sorted(set(groups))
    transaction.on_commit(lambda: _publish(targets, event))


def _publish(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "helpdesk.event", "event": event}
    try:
        async_to_sync(_send_all)(layer, groups, message)
    except Exception:
        # The change is committed; a client that misses this re-syncs by version.
        log.exception("live event %s.%s not published", event.get("type"), event.get("op"))


async def _send_all(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    # One event loop hop for all groups: async_to_sync per group costs a thread switch each.
    for group in groups:
        await layer.group_send(group, message)
