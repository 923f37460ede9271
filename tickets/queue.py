"""One queue ordering for everyone, and who may see and work which tickets."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from .models import ACTIVE_STATUSES, WORKABLE_STATUSES, Agent, Presence, Skill, Ticket

# Most urgent level first, then the nearest SLA deadline, then who has waited longest.
# Matches the partial indexes on Ticket exactly, so a page is an index range scan.
QUEUE_ORDERING = (
    F("priority").desc(),
    F("sla_due_at").asc(),
    F("waiting_since").asc(nulls_last=True),
    F("id").asc(),
)


def team_ids(agent: Agent) -> list[int]:
    cached = getattr(agent, "_team_ids", None)
    if cached is None:
        cached = list(agent.teams.values_list("id", flat=True))
        agent._team_ids = cached  # type: ignore[attr-defined]
    return cached


def skill_ids(agent: Agent) -> list[int]:
    cached = getattr(agent, "_skill_ids", None)
    if cached is None:
        cached = list(agent.skills.values_list("id", flat=True))
        agent._skill_ids = cached  # type: ignore[attr-defined]
    return cached


def visible_filter(agent: Agent) -> Q:
    """Supervisors and admins see every ticket; an agent sees their teams' tickets and
    whatever is assigned to them."""
    if agent.is_supervisor:
        return Q()
    return Q(team_id__in=team_ids(agent)) | Q(assignee_id=agent.pk)


def visible_parts(agent: Agent) -> list[Q] | None:
    """visible_filter(agent) as disjoint conditions whose union it is (None for those who
    see everything): their teams' tickets, and those assigned to them in no team of theirs.
    Counting each is an index-only scan; counting the OR is not (tickets.views)."""
    if agent.is_supervisor:
        return None
    in_teams = Q(team_id__in=team_ids(agent))
    return [in_teams, Q(assignee_id=agent.pk) & ~in_teams]


def visible_tickets(agent: Agent) -> QuerySet[Ticket]:
    return Ticket.objects.filter(visible_filter(agent))


def can_see(agent: Agent, ticket: Ticket) -> bool:
    return (
        agent.is_supervisor
        or ticket.assignee_id == agent.pk
        or (ticket.team_id is not None and ticket.team_id in team_ids(agent))
    )


def can_work_team(agent: Agent, team_id: int | None) -> bool:
    """May `agent` be the assignee of a ticket in this team?"""
    return agent.is_supervisor or team_id is None or team_id in team_ids(agent)


def is_available(agent: Agent) -> bool:
    """May this agent be given work now? Only online agents: away and offline agents get
    nothing from take-next or routing (presence is kept by tickets.actions)."""
    return agent.presence == Presence.ONLINE


def available_agents(qs: QuerySet[Agent] | None = None) -> QuerySet[Agent]:
    """The agents routing may pick from: the online ones."""
    return (Agent.objects.all() if qs is None else qs).filter(presence=Presence.ONLINE)


def workable_by(agent: Agent) -> QuerySet[Ticket]:
    """Unassigned tickets the agent may take: their teams, a language they answer in, and
    every required skill; nothing while they are away or offline."""
    if not is_available(agent):
        return Ticket.objects.none()
    qs = Ticket.objects.filter(status__in=WORKABLE_STATUSES, assignee__isnull=True)
    teams = team_ids(agent)
    if agent.is_supervisor and not teams:
        pass  # a supervisor without teams may take from anywhere
    else:
        qs = qs.filter(team_id__in=teams)
    if agent.languages:
        qs = qs.filter(Q(language__in=agent.languages) | Q(language=""))
    missing = Skill.objects.exclude(id__in=skill_ids(agent))
    return qs.exclude(required_skills__in=missing)


def active(qs: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return qs.filter(status__in=ACTIVE_STATUSES)
