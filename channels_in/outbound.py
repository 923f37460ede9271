"""Outbound delivery: the edge sends what `tickets.actions` queued in the outbox."""

from __future__ import annotations


def dispatch_delivery(delivery_id: int) -> None:
    """Called after commit with each new Delivery id (settings.HELPDESK_DELIVERY_DISPATCHER).
    If the broker is down the row stays queued and the delivery sweeper sends it later."""
    from .tasks import send_delivery  # imported late: tasks pull in Celery

    send_delivery.delay(delivery_id)
