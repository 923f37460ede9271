"""Outbound delivery: the edge sends what `tickets.actions` queued in the outbox."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def dispatch_delivery(delivery_id: int) -> None:
    """Called after commit with each new Delivery id (settings.HELPDESK_DELIVERY_DISPATCHER).

    Until a channel's adapter can send, the delivery stays queued in the outbox: nothing is
    lost, and the sender task picks it up once it exists.
    """
    from .tasks import send_delivery  # imported late: tasks pull in Celery

    send_delivery.delay(delivery_id)
