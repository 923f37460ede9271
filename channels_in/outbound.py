"""Outbound delivery: the edge sends what `tickets.actions` queued in the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def dispatch_delivery(delivery_id: int) -> None:
    """Called after commit with each new Delivery id (settings.HELPDESK_DELIVERY_DISPATCHER).
    If the broker is down the row stays queued and the delivery sweeper sends it later."""
    from .tasks import send_delivery  # imported late: tasks pull in Celery

    send_delivery.delay(delivery_id)


def check_reply(
    channel_id: int,
    last_customer_message_at: datetime | None,
    *,
    text: str = "",
    last_inbound: dict[str, Any] | None = None,
) -> str | None:
    """Why a reply on this channel cannot go out now, or None (settings.HELPDESK_REPLY_CHECK).
    The core asks before writing the reply, so the agent sees the reason at once."""
    from .models import Channel  # imported late: the core calls this by dotted path
    from .registry import adapter_for

    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return "the ticket's channel no longer exists"
    if not channel.is_active:
        return f"the {channel.name} channel is switched off"
    adapter = adapter_for(channel.kind)
    if adapter is None:
        return f"no adapter can send on {channel.kind}"
    return adapter.check_reply(
        channel, last_customer_message_at, text=text, last_inbound=last_inbound or {}
    )
