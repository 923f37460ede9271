from __future__ import annotations

from celery import shared_task

from . import actions


@shared_task(ignore_result=True)
def close_resolved_tickets() -> int:
    """Close tickets resolved longer ago than the reopen window."""
    return actions.do_close_resolved_tickets()
