from __future__ import annotations

from celery import shared_task

from . import actions


@shared_task(ignore_result=True)
def close_resolved_tickets() -> int:
    """Close tickets resolved longer ago than the reopen window."""
    return actions.do_close_resolved_tickets()


# --------------------------------------------------------------------------- sla


@shared_task(ignore_result=True)
def escalate_sla() -> dict[str, int]:
    """Escalate tickets at risk of or past their SLA deadline (beat: every minute)."""
    return actions.do_escalate_sla()


# --------------------------------------------------------------------------- routing


@shared_task(ignore_result=True)
def route_ticket(ticket_id: int) -> str:
    """Run routing on one ticket now (idempotent: an assigned ticket is left alone)."""
    return actions.do_route_ticket(ticket_id).outcome


@shared_task(ignore_result=True)
def route_waiting_for(agent_id: int) -> int:
    """An agent came online or freed capacity: give them waiting tickets they may work."""
    return len(actions.do_route_waiting_for(agent_id))


@shared_task(ignore_result=True)
def route_waiting_tickets() -> int:
    """Give waiting tickets to online agents with spare capacity (beat: every 30 s)."""
    return actions.do_route_waiting()


@shared_task(ignore_result=True)
def reroute_stale_tickets() -> int:
    """Re-route tickets whose agent went offline or has not answered (beat: every minute)."""
    return len(actions.do_reroute_stale())


@shared_task(ignore_result=True)
def reconcile_open_counts() -> int:
    """Correct drifted Agent.open_count values (beat: every 10 minutes)."""
    return len(actions.do_reconcile_open_counts())


@shared_task(ignore_result=True)
def recompute_agent_stats() -> int:
    """Average first response and smoothed CSAT per agent (beat: every 15 minutes)."""
    return actions.do_recompute_agent_stats()
