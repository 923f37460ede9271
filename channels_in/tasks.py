from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def send_delivery(delivery_id: int) -> None:
    """Send one queued outbound message through its channel's adapter.

    Adapters arrive with the channels issue; until then the row stays queued in the outbox.
    """
    log.info("delivery %s queued; no sending adapter is installed yet", delivery_id)
