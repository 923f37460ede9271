"""Routing: ordered rules, then load-aware assignment to an online agent.

Everything here reads; `tickets.actions` (its "routing" section) writes, under the locks.

Rules
=====
A `RoutingRule` has `conditions` and `actions` (JSON objects), a `position`, `is_active` and
`stop`. Active rules are evaluated in (position, id) order; a rule whose conditions hold
applies its actions, and later rules see the result (a rule that moved the ticket to
"outages" makes a later `{"team": ["outages"]}` hold). A matching rule with `stop` ends the
evaluation.

Conditions: an object whose keys must *all* hold; `{}` always holds.

    "channel":  ["whatsapp", "sms"]     the ticket's channel kind is one of these
    "language": ["ru", "lt"]            the ticket's language ("" matches an undetected one)
    "topic":    ["outage"]              the ticket's topic
    "tag":      ["storm"]               the ticket has at least one of these tags
    "priority": ["urgent", "high"]      the ticket's level (as earlier rules left it)
    "tier":     ["vip", "life_support"] the contact's tier
    "team":     ["outages"]             the ticket's team, by slug (as earlier rules left it)
    "sentiment": "negative"|"neutral"   negative: Ticket.sentiment >= HELPDESK_NEGATIVE_SENTIMENT
    "business_hours": true|false        now is within the business hours of the ticket's team
                                        (tickets.sla.in_business_hours: the team's calendar
                                        and holidays; no calendar: always open)
    "all": [condition, ...]             every one holds
    "any": [condition, ...]             at least one holds
    "not": condition                    it does not hold

Actions: an object with any of

    "team": "outages"                   move the ticket to this team (slug)
    "skills": ["hv"]                    required skills (slugs), added to the ticket, so
                                        take-next honours them too
    "optional_skills": ["crane"]        preferred skills: dropped in the first widening step
    "priority": "high" | "+1" | "-2"    set the level, or move it up/down by steps (each rule
                                        moves a ticket at most once); never when a person
                                        chose the level
    "tags": ["storm"]                   add these tags
    "assign_to": "alice"                give the ticket to this agent (username) when they are
                                        online, accept auto-assignment, have spare capacity and
                                        belong to the ticket's team; otherwise assignment
                                        proceeds as usual. Language and skills are the rule
                                        author's call.

Assignment
==========
1. Eligibility: online, `auto_assign`, `open_count < capacity`, a member of the ticket's team
   (an agent in no team is never auto-assigned; supervisors join a team to get tickets),
   speaks the ticket's language (an agent without languages speaks all), has every
   required and optional skill, and is not excluded (the agent a ticket is re-routed away
   from).
2. Ranking: `w_cap * spare share + w_speed * (1 - min(avg first response, T) / T)
   + w_csat * (smoothed CSAT - 1) / 4`, missing figures counting as the middle (0.5); ties go
   to whoever has been idle longest (`last_assigned_at`, never assigned first).
3. Overrides: a negative ticket goes to the eligible agent with the best CSAT; otherwise the
   contact's previous agent is preferred when eligible.
4. Widening, when nobody is eligible: drop the optional skills, then add the parent team's
   agents, then any agent (any team) speaking the language with the required skills.
   Each step is logged ("routing.step"); with nobody at the end the ticket waits in its
   team's queue for take-next ("routing.queued").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from channels_in.models import ChannelKind

from .errors import InvalidInput
from .models import (
    Agent,
    AgentSkill,
    Presence,
    Priority,
    RoutingRule,
    Skill,
    Team,
    Ticket,
    Tier,
    Topic,
)
from .sla import in_business_hours

MAX_DEPTH = 8
MAX_LIST = 100
MAX_PRIORITY_STEP = 3
PRIORITY_NAMES = {p.label: p.value for p in Priority}
CONDITION_LISTS = ("channel", "language", "topic", "tag", "priority", "tier", "team")
COMBINATORS = ("all", "any", "not")
CONDITION_KEYS = (*CONDITION_LISTS, "sentiment", "business_hours", *COMBINATORS)
ACTION_KEYS = ("team", "skills", "optional_skills", "priority", "tags", "assign_to")
RELATIVE_PRIORITY = re.compile(r"^[+-][0-9]$")


class RuleError(InvalidInput):
    """A rule that cannot be stored: `field` is "conditions" or "actions", the message names
    the exact place (`conditions.any[1].language`)."""


# --------------------------------------------------------------------------- validation


def _languages() -> list[str]:
    return list(settings.HELPDESK_LANGUAGES)


def _allowed(key: str) -> list[str]:
    if key == "channel":
        return list(ChannelKind.values)
    if key == "language":
        return [*_languages(), ""]
    if key == "topic":
        return list(Topic.values)
    if key == "priority":
        return list(PRIORITY_NAMES)
    if key == "tier":
        return list(Tier.values)
    return []  # tag and team: free text, checked elsewhere


def _string_list(value: Any, where: str, field_name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{where}: expected a list of strings", field=field_name)
    if not value:
        raise RuleError(f"{where}: an empty list matches nothing; remove the key", field=field_name)
    if len(value) > MAX_LIST:
        raise RuleError(f"{where}: at most {MAX_LIST} values", field=field_name)
    if any(len(v) > 100 or "\x00" in v for v in value):
        raise RuleError(f"{where}: a value is too long or contains NUL", field=field_name)
    return list(dict.fromkeys(value))


def _check_condition(value: Any, where: str, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise RuleError(f"{where}: nested deeper than {MAX_DEPTH} levels", field="conditions")
    if not isinstance(value, dict):
        raise RuleError(f"{where}: expected an object", field="conditions")
    out: dict[str, Any] = {}
    for key, want in value.items():
        at = f"{where}.{key}"
        if key not in CONDITION_KEYS:
            raise RuleError(
                f"{at}: unknown condition; expected one of {', '.join(CONDITION_KEYS)}",
                field="conditions",
            )
        if key in ("all", "any"):
            if not isinstance(want, list) or not want:
                raise RuleError(
                    f"{at}: expected a non-empty list of conditions", field="conditions"
                )
            if len(want) > MAX_LIST:
                raise RuleError(f"{at}: at most {MAX_LIST} conditions", field="conditions")
            out[key] = [
                _check_condition(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(want)
            ]
        elif key == "not":
            out[key] = _check_condition(want, at, depth + 1)
        elif key == "sentiment":
            if want not in ("negative", "neutral"):
                raise RuleError(f'{at}: expected "negative" or "neutral"', field="conditions")
            out[key] = want
        elif key == "business_hours":
            if not isinstance(want, bool):
                raise RuleError(f"{at}: expected true or false", field="conditions")
            out[key] = want
        else:
            values = _string_list(want, at, "conditions")
            if key == "tag":
                values = [_normalize_tag(v, at, "conditions") for v in values]
            elif key == "team":
                _check_teams_exist(values, at, "conditions")
            else:
                allowed = _allowed(key)
                unknown = [v for v in values if v not in allowed]
                if unknown:
                    shown = ", ".join(repr(a) if a == "" else a for a in allowed)
                    raise RuleError(
                        f"{at}: unknown {key} {unknown[0]!r}; expected some of: {shown}",
                        field="conditions",
                    )
            out[key] = list(dict.fromkeys(values))
    return out


def _normalize_tag(name: str, where: str, field_name: str) -> str:
    cleaned = "-".join(name.strip().lower().split())
    if not cleaned:
        raise RuleError(f"{where}: a tag cannot be empty", field=field_name)
    if len(cleaned) > 50:
        raise RuleError(f"{where}: tag {cleaned[:20]!r}… is longer than 50 characters", field_name)
    return cleaned


def _check_teams_exist(slugs: Sequence[str], where: str, field_name: str) -> None:
    found = set(Team.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    missing = [s for s in slugs if s not in found]
    if missing:
        raise RuleError(f"{where}: no team with slug {missing[0]!r}", field=field_name)


def validate_conditions(value: Any) -> dict[str, Any]:
    """The conditions of a rule, checked and normalized, or RuleError naming the place."""
    return _check_condition(value if value is not None else {}, "conditions", 0)


def validate_actions(value: Any) -> dict[str, Any]:
    """The actions of a rule, checked (teams, skills and agents must exist) and normalized."""
    if not isinstance(value, dict):
        raise RuleError("actions: expected an object", field="actions")
    if not value:
        raise RuleError(
            "actions: a rule needs at least one action; expected some of: "
            + ", ".join(ACTION_KEYS),
            field="actions",
        )
    out: dict[str, Any] = {}
    for key, want in value.items():
        at = f"actions.{key}"
        if key not in ACTION_KEYS:
            raise RuleError(
                f"{at}: unknown action; expected one of {', '.join(ACTION_KEYS)}", field="actions"
            )
        if key == "team":
            if not isinstance(want, str) or not want:
                raise RuleError(f"{at}: expected a team slug", field="actions")
            _check_teams_exist([want], at, "actions")
            out[key] = want
        elif key in ("skills", "optional_skills"):
            slugs = _string_list(want, at, "actions")
            found = set(Skill.objects.filter(slug__in=slugs).values_list("slug", flat=True))
            missing = [s for s in slugs if s not in found]
            if missing:
                raise RuleError(f"{at}: no skill with slug {missing[0]!r}", field="actions")
            out[key] = slugs
        elif key == "priority":
            if not isinstance(want, str) or not (
                want in PRIORITY_NAMES or RELATIVE_PRIORITY.match(want)
            ):
                raise RuleError(
                    f"{at}: expected one of {', '.join(PRIORITY_NAMES)} or a step like "
                    f'"+1" or "-1"; got {want!r}',
                    field="actions",
                )
            if want[0] in "+-" and not 1 <= abs(int(want)) <= MAX_PRIORITY_STEP:
                raise RuleError(
                    f"{at}: a step moves 1 to {MAX_PRIORITY_STEP} levels; got {want!r}",
                    field="actions",
                )
            out[key] = want
        elif key == "tags":
            out[key] = list(
                dict.fromkeys(
                    _normalize_tag(t, at, "actions") for t in _string_list(want, at, "actions")
                )
            )
        elif key == "assign_to":
            if not isinstance(want, str) or not want:
                raise RuleError(f"{at}: expected a username", field="actions")
            if not Agent.objects.filter(user__username=want).exists():
                raise RuleError(f"{at}: no agent with username {want!r}", field="actions")
            out[key] = want
    both = set(out.get("skills", ())) & set(out.get("optional_skills", ()))
    if both:
        raise RuleError(
            f"actions: skill {sorted(both)[0]!r} is both required and optional", field="actions"
        )
    return out


# --------------------------------------------------------------------------- loaded rules


@dataclass(frozen=True)
class TeamInfo:
    id: int
    slug: str
    name: str
    parent_id: int | None
    business_hours_id: int | None


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    conditions: Mapping[str, Any]
    actions: Mapping[str, Any]
    stop: bool = False


@dataclass(frozen=True)
class RuleSet:
    """The active rules and the names they use, resolved to ids once per load."""

    rules: tuple[Rule, ...] = ()
    teams: Mapping[int, TeamInfo] = field(default_factory=dict)
    team_ids: Mapping[str, int] = field(default_factory=dict)
    skill_ids: Mapping[str, int] = field(default_factory=dict)
    agent_ids: Mapping[str, int] = field(default_factory=dict)
    uses_tags: bool = False
    uses_business_hours: bool = False

    def team(self, team_id: int | None) -> TeamInfo | None:
        return self.teams.get(team_id) if team_id is not None else None


def _keys_used(condition: Mapping[str, Any]) -> set[str]:
    keys = set(condition)
    for key in ("all", "any"):
        for item in condition.get(key, ()):
            keys |= _keys_used(item)
    if "not" in condition:
        keys |= _keys_used(condition["not"])
    return keys


def load_ruleset() -> RuleSet:
    """Read the active rules, teams, skills and the agents rules name: five small queries."""
    rows = list(
        RoutingRule.objects.filter(is_active=True)
        .order_by("position", "id")
        .values_list("id", "name", "conditions", "actions", "stop")
    )
    rules = tuple(
        Rule(id=r[0], name=r[1], conditions=r[2] or {}, actions=r[3] or {}, stop=r[4]) for r in rows
    )
    teams = {
        t[0]: TeamInfo(*t)
        for t in Team.objects.values_list("id", "slug", "name", "parent_id", "business_hours_id")
    }
    usernames = {
        r.actions["assign_to"] for r in rules if isinstance(r.actions.get("assign_to"), str)
    }
    agent_ids = (
        dict(Agent.objects.filter(user__username__in=usernames).values_list("user__username", "id"))
        if usernames
        else {}
    )
    used: set[str] = set()
    for rule in rules:
        used |= _keys_used(rule.conditions)
    return RuleSet(
        rules=rules,
        teams=teams,
        team_ids={t.slug: t.id for t in teams.values()},
        skill_ids=dict(Skill.objects.values_list("slug", "id")),
        agent_ids=agent_ids,
        uses_tags="tag" in used or any("tags" in r.actions for r in rules),
        uses_business_hours="business_hours" in used,
    )


class _RuleCache:
    """The rule set, per process, for a few seconds: routing runs for every new ticket, rules
    change a few times a month. Saving a rule, team, skill or agent in this process clears it
    at once; other processes see a change within HELPDESK_ROUTING_RULES_TTL seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: RuleSet | None = None
        self._expires = 0.0

    def get(self) -> RuleSet:
        now = time.monotonic()
        value = self._value
        if value is not None and now < self._expires:
            return value
        value = load_ruleset()
        with self._lock:
            self._value = value
            self._expires = now + float(getattr(settings, "HELPDESK_ROUTING_RULES_TTL", 5.0))
        return value

    def clear(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._value = None
            self._expires = 0.0


_rules = _RuleCache()
ruleset = _rules.get
clear_rules_cache = _rules.clear

for _model in (RoutingRule, Team, Skill):
    post_save.connect(clear_rules_cache, sender=_model, dispatch_uid=f"routing-{_model.__name__}")
    post_delete.connect(
        clear_rules_cache, sender=_model, dispatch_uid=f"routing-del-{_model.__name__}"
    )
m2m_changed.connect(clear_rules_cache, sender=Agent.teams.through, dispatch_uid="routing-teams")


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class TicketFacts:
    """What rules look at, taken from the ticket (and its contact and channel) once."""

    channel: str = ""
    language: str = ""
    topic: str = Topic.OTHER
    tags: frozenset[str] = frozenset()
    priority: int = Priority.NORMAL
    priority_locked: bool = False
    tier: str = Tier.STANDARD
    sentiment: int = 0
    team: str | None = None
    # Rule ids that already moved this ticket's level (a "+1" rule raises a ticket once).
    moved_by: frozenset[int] = frozenset()
    # team slug (or None) -> is it within business hours now
    business_hours: Callable[[str | None], bool] = field(default=lambda team: True)

    @property
    def negative(self) -> bool:
        return is_negative(self.sentiment)


def facts_of(
    ticket: Ticket,
    rules: RuleSet,
    *,
    tags: Iterable[str],
    channel_kind: str,
    tier: str,
    at: datetime | None = None,
) -> TicketFacts:
    """The facts of a ticket for rule evaluation (the caller has read its tags, channel kind
    and contact tier; a rule that moved the level earlier is remembered in its reasons)."""
    moved_by: set[int] = set()
    for entry in ticket.priority_reasons or ():
        if isinstance(entry, dict) and entry.get("signal") == "routing":
            moved_by |= {r for r in entry.get("rules", ()) if isinstance(r, int)}
    team = rules.team(ticket.team_id)
    return TicketFacts(
        channel=channel_kind or "",
        language=ticket.language,
        topic=ticket.topic,
        tags=frozenset(tags),
        priority=ticket.priority,
        priority_locked=ticket.priority_locked,
        tier=tier or Tier.STANDARD,
        sentiment=ticket.sentiment,
        team=team.slug if team else None,
        moved_by=frozenset(moved_by),
        business_hours=business_hours_lookup(rules, at or timezone.now()),
    )


def is_negative(sentiment: int) -> bool:
    return sentiment >= int(getattr(settings, "HELPDESK_NEGATIVE_SENTIMENT", 1))


def holds(condition: Mapping[str, Any], facts: TicketFacts) -> bool:
    """Whether a (validated) condition holds for these facts. Pure."""
    for key, want in condition.items():
        if key == "all":
            ok = all(holds(c, facts) for c in want)
        elif key == "any":
            ok = any(holds(c, facts) for c in want)
        elif key == "not":
            ok = not holds(want, facts)
        elif key == "sentiment":
            ok = facts.negative == (want == "negative")
        elif key == "business_hours":
            ok = facts.business_hours(facts.team) == want
        elif key == "tag":
            ok = not facts.tags.isdisjoint(want)
        elif key == "priority":
            ok = Priority(facts.priority).label in want
        elif key == "team":
            ok = facts.team in want
        else:
            ok = getattr(facts, key) in want
        if not ok:
            return False
    return True


@dataclass
class Decision:
    """What the matching rules decided. `team` is a slug; None leaves things as they are."""

    team: str | None = None
    priority: int | None = None
    priority_rules: list[int] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    optional_skills: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    assign_to: str | None = None
    matched: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def evaluate(rules: Iterable[Rule], facts: TicketFacts) -> Decision:
    """Apply the rules in order to the facts. Pure: the caller writes the decision."""
    decision = Decision()
    for rule in rules:
        if not holds(rule.conditions, facts):
            continue
        decision.matched.append({"id": rule.id, "name": rule.name})
        acts = rule.actions
        if "team" in acts:
            decision.team = acts["team"]
            facts = replace(facts, team=acts["team"])
        if "priority" in acts:
            facts = _apply_priority(rule, acts["priority"], facts, decision)
        for slug in acts.get("skills", ()):
            if slug not in decision.skills:
                decision.skills.append(slug)
            if slug in decision.optional_skills:
                decision.optional_skills.remove(slug)
        for slug in acts.get("optional_skills", ()):
            if slug not in decision.optional_skills and slug not in decision.skills:
                decision.optional_skills.append(slug)
        if acts.get("tags"):
            new = [t for t in acts["tags"] if t not in facts.tags]
            decision.tags += [t for t in new if t not in decision.tags]
            facts = replace(facts, tags=facts.tags | set(acts["tags"]))
        if "assign_to" in acts:
            decision.assign_to = acts["assign_to"]
        if rule.stop:
            break
    return decision


def _apply_priority(rule: Rule, want: str, facts: TicketFacts, decision: Decision) -> TicketFacts:
    if facts.priority_locked:
        decision.notes.append(f"rule {rule.name!r} left the priority alone: a person chose it")
        return facts
    if want in PRIORITY_NAMES:
        level = PRIORITY_NAMES[want]
    else:
        if rule.id in facts.moved_by:
            return facts  # this rule moved the level on an earlier routing of the ticket
        level = facts.priority + int(want)
    level = min(max(level, min(Priority.values)), max(Priority.values))
    if level == facts.priority:
        return facts
    decision.priority = level
    if want not in PRIORITY_NAMES:
        decision.priority_rules.append(rule.id)
    return replace(facts, priority=level, moved_by=facts.moved_by | {rule.id})


# --------------------------------------------------------------------------- business hours


def business_hours_lookup(rules: RuleSet, at: datetime) -> Callable[[str | None], bool]:
    """A memoized team-slug -> open-at-`at` function for one evaluation; it asks the team's
    calendar (tickets.sla.in_business_hours) only when a rule looks. No team, or a team
    without business hours: always open."""
    memo: dict[str | None, bool] = {}

    def lookup(slug: str | None) -> bool:
        if slug not in memo:
            team_id = rules.team_ids.get(slug) if slug else None
            memo[slug] = True if team_id is None else in_business_hours(team_id, at)
        return memo[slug]

    return lookup


# --------------------------------------------------------------------------- assignment


# Not frozen, though never changed (dataclasses.replace makes the variants): a frozen
# dataclass sets each field through object.__setattr__, and a team's ~125 candidates are
# built for every ticket routed — half of parse_candidates' time.
@dataclass(slots=True)
class Candidate:
    """An online agent with spare capacity, as read (without a lock) for ranking."""

    id: int
    team_ids: frozenset[int]
    languages: tuple[str, ...] = ()
    skills: Mapping[int, int] = field(default_factory=dict)  # skill id -> proficiency
    capacity: int = 10
    open_count: int = 0
    avg_first_response: float | None = None
    csat: float | None = None
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Need:
    """Who may take the ticket at one widening step."""

    team_ids: frozenset[int] | None  # None: any team
    language: str = ""
    skills: frozenset[int] = frozenset()
    optional_skills: frozenset[int] = frozenset()
    negative: bool = False
    previous_agent: int | None = None
    exclude: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Step:
    name: str  # exact, drop_optional_skills, parent_team, any_team
    need: Need
    description: str


def why_not(candidate: Candidate, need: Need) -> str | None:
    """Why this agent may not take the ticket at this step (None: eligible)."""
    if candidate.id in need.exclude:
        return "is the agent it is moving away from"
    if candidate.open_count >= candidate.capacity:
        return "is at capacity"
    if need.team_ids is not None and candidate.team_ids.isdisjoint(need.team_ids):
        return "is not in the team"
    if not candidate.team_ids:
        return "is in no team"
    if need.language and candidate.languages and need.language not in candidate.languages:
        return f"does not speak {need.language}"
    if (need.skills or need.optional_skills) and not (need.skills | need.optional_skills).issubset(
        candidate.skills
    ):
        return "lacks a skill"
    return None


def weights() -> dict[str, float]:
    default = {"capacity": 0.5, "speed": 0.25, "csat": 0.25}
    return {**default, **getattr(settings, "HELPDESK_ROUTING_WEIGHTS", {})}


def _frt_cap_seconds() -> float:
    return float(getattr(settings, "HELPDESK_ROUTING_FRT_CAP_SECONDS", 1800))


def score(
    candidate: Candidate, w: Mapping[str, float] | None = None, cap_seconds: float | None = None
) -> float:
    """Higher is better: spare capacity, fast first responses, satisfied customers."""
    w = w or weights()
    if cap_seconds is None:
        cap_seconds = _frt_cap_seconds()
    spare = 1 - candidate.open_count / candidate.capacity if candidate.capacity else 0.0
    frt = candidate.avg_first_response
    speed = 0.5 if frt is None else 1 - min(max(frt, 0.0), cap_seconds) / cap_seconds
    csat = 0.5 if candidate.csat is None else (min(max(candidate.csat, 1.0), 5.0) - 1) / 4
    return w["capacity"] * spare + w["speed"] * speed + w["csat"] * csat


_NEVER = datetime.min.replace(tzinfo=timezone.get_fixed_timezone(0))


def rank(candidates: Iterable[Candidate], need: Need) -> list[tuple[Candidate, float, str]]:
    """The eligible agents, best first, each with its score and why it is where it is."""
    w = weights()
    cap = _frt_cap_seconds()  # read once, not once per candidate
    eligible = [(c, score(c, w, cap)) for c in candidates if why_not(c, need) is None]

    def idle(c: Candidate) -> datetime:
        return c.last_assigned_at or _NEVER

    if need.negative:
        # The customer is upset: the best-rated agent first, the usual score among equals.
        eligible.sort(key=lambda cs: (-(cs[0].csat or 3.0), -cs[1], idle(cs[0]), cs[0].id))
        return [(c, s, "negative sentiment: best CSAT") for c, s in eligible]
    eligible.sort(key=lambda cs: (-cs[1], idle(cs[0]), cs[0].id))
    ranked = [(c, s, "best score") for c, s in eligible]
    at = next((i for i, r in enumerate(ranked) if r[0].id == need.previous_agent), None)
    if at is not None:
        chosen, points, _ = ranked.pop(at)
        ranked.insert(0, (chosen, points, "the contact's previous agent"))
    return ranked


def widening(need: Need, team: TeamInfo | None, teams: Mapping[int, TeamInfo]) -> list[Step]:
    """The steps from the exact need to the widest pool, each one including the last."""
    name = team.name if team else "any team"
    steps = [Step("exact", need, f"agents of {name}")]
    if need.optional_skills:
        need = replace(need, optional_skills=frozenset())
        steps.append(
            Step("drop_optional_skills", need, f"agents of {name} without optional skills")
        )
    parent = teams.get(team.parent_id) if team and team.parent_id else None
    if need.team_ids is not None and parent is not None:
        need = replace(need, team_ids=need.team_ids | {parent.id})
        steps.append(Step("parent_team", need, f"agents of {name} and its parent {parent.name}"))
    if need.team_ids is not None:
        need = replace(need, team_ids=None)
        lang = f" speaking {need.language}" if need.language else ""
        steps.append(Step("any_team", need, f"agents of any team{lang}"))
    return steps


def explain(candidates: Sequence[Candidate], need: Need, pool: str) -> str:
    """One line on why nobody in this pool was eligible, for the ticket's history."""
    if not candidates:
        return f"no online agent with spare capacity among {pool}"
    reasons: dict[str, int] = {}
    for c in candidates:
        why = why_not(c, need)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    parts = [f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return f"{len(candidates)} online with spare capacity among {pool}: " + ", ".join(parts)


# --------------------------------------------------------------------------- reads (SQL)
# Routing runs for every new ticket. Its reads are written in SQL (the same on PostgreSQL and
# SQLite but for the JSON aggregate's name): one statement each and no ORM compilation, which
# bench/routing.py measured as most of the cost of a routing.


def json_agg() -> str:
    return "json_agg" if connection.vendor == "postgresql" else "json_group_array"


def json_value(value: Any) -> Any:
    """A JSON column or aggregate from a raw query: text on SQLite and for jsonb (Django
    loads it as text), already decoded for json on PostgreSQL; NULL for an empty aggregate."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str | bytes) else value


def _moment(value: Any) -> datetime | None:
    """A timestamp from a JSON aggregate: ISO text (with an offset on PostgreSQL, naive UTC
    on SQLite)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


def candidates_sql(
    team_condition: str,
    *,
    ticket: str | None = None,
    required_skills: bool = True,
    best: int | None = None,
    order: str = "",
) -> str:
    """A scalar subquery: one JSON array of the online agents accepting auto-assignment with
    spare capacity whose team membership satisfies `team_condition` (SQL on `m.team_id`),
    one element per (agent, team), each with the agent's skills.

    With `ticket` (the alias of a ticket row in the enclosing query) only agents speaking
    the ticket's language and holding its required skills are listed, and their skills are
    left out: the lock query embeds it for the ticket's team, so the common routing reads
    its few candidates in the same statement. `load_candidates` runs it alone, unfiltered,
    for the wider pools and to explain an empty one. Without `required_skills` the ticket's
    required skills are not looked up: a ticket not written yet has none (a probe of the
    skills table per candidate, ~150 at 500 agents, for rows that cannot exist). With `best`
    only the first `best` in `order` (SQL, rank_sql) are listed."""
    postgres = connection.vendor == "postgresql"
    array = "json_build_array" if postgres else "json_array"
    languages = "a.languages" if postgres else "json(a.languages)"
    agg = json_agg()
    agent = Agent._meta.db_table
    member = Agent.teams.through._meta.db_table
    skill = AgentSkill._meta.db_table
    skills = (
        f"(SELECT {agg}({array}(s.skill_id, s.proficiency)) "  # noqa: S608
        f"FROM {skill} s WHERE s.agent_id = a.id)"
    )
    extra = ""
    if ticket is not None:
        skills = "NULL"
        if postgres:
            # `?`: the language is one of the array's strings. Half the cost of the
            # equivalent `@> jsonb_build_array(...)`, which builds a jsonb value per agent:
            # 0.54 against 0.98 ms per new ticket's candidates at 500 agents.
            speaks = f"a.languages ? {ticket}.language"
        else:
            speaks = "EXISTS (SELECT 1 FROM json_each(a.languages) j "
            speaks += f"WHERE j.value = {ticket}.language)"
        required = Ticket.required_skills.through._meta.db_table
        extra = f" AND ({ticket}.language = '' OR {languages} = '[]' OR {speaks})"
        if required_skills:
            extra += (
                f" AND NOT EXISTS (SELECT 1 FROM {required} rs WHERE rs.ticket_id = {ticket}.id"  # noqa: S608
                f" AND NOT EXISTS (SELECT 1 FROM {skill} s WHERE s.agent_id = a.id"
                " AND s.skill_id = rs.skill_id))"
            )
    row = (
        f"{array}(a.id, m.team_id, {languages}, a.capacity, a.open_count, "
        f"a.avg_first_response_seconds, a.csat_score, a.last_assigned_at, {skills})"
    )
    rows = (
        f"FROM {agent} a JOIN {member} m ON m.agent_id = a.id "
        f"WHERE a.presence = '{Presence.ONLINE.value}' AND a.auto_assign = TRUE "
        f"AND a.open_count < a.capacity AND {team_condition}{extra}"
    )
    # Table names, conditions and an order of ours; no value from outside.
    if best is None:
        return f"(SELECT {agg}({row}) {rows})"
    first = f"SELECT {row} AS r {rows} ORDER BY {order} LIMIT {int(best)}"
    return f"(SELECT {agg}(c.r) FROM ({first}) c)"  # noqa: S608


def rank_sql(*, negative: bool, previous: str) -> str:
    """rank()'s order as a PostgreSQL ORDER BY on the agent row `a`, `previous` the SQL of
    the contact's previous agent: score() with this moment's weights and cap (the same
    float8 operations in the same order, so the same values), then who waited longest since
    an assignment, then the id; the previous agent first, or with a negative sentiment the
    best-rated first. A new ticket's routing reads only the first few in this order: at 500
    agents its team had ~150 candidates, and building, decoding and ranking them all was a
    sixth of the worker's CPU. Python ranks those few again (rank() stays the rule), and
    reads the whole team when none of them can be claimed."""
    w = weights()
    cap = _frt_cap_seconds()

    def lit(value: float) -> str:
        return f"({float(value)!r}::float8)"

    score = (
        f"{lit(w['capacity'])} * (CASE WHEN a.capacity <> 0"
        " THEN 1 - a.open_count::float8 / a.capacity ELSE 0 END)"
        f" + {lit(w['speed'])} * (CASE WHEN a.avg_first_response_seconds IS NULL THEN 0.5"
        f" ELSE 1 - LEAST(GREATEST(a.avg_first_response_seconds, 0), {lit(cap)}) / {lit(cap)} END)"
        f" + {lit(w['csat'])} * (CASE WHEN a.csat_score IS NULL THEN 0.5"
        " ELSE (LEAST(GREATEST(a.csat_score, 1), 5) - 1) / 4 END)"
    )
    then = f"({score}) DESC, a.last_assigned_at ASC NULLS FIRST, a.id"
    if negative:
        # `csat or 3.0` in rank(): no rating, or 0, counts as 3.
        return f"COALESCE(NULLIF(a.csat_score, 0), 3.0) DESC, {then}"
    return f"(a.id = {previous}) IS TRUE DESC, {then}"


def parse_candidates(value: Any, *, skills: Iterable[int] | None = None) -> list[Candidate]:
    """The candidates from `candidates_sql`'s JSON array. `skills`: the required skills a
    ticket-filtered list was filtered on (its rows carry no skills of their own)."""
    by_id: dict[int, list[Any]] = {}
    teams_of: dict[int, set[int]] = {}
    for row in json_value(value):
        by_id.setdefault(row[0], row)
        teams_of.setdefault(row[0], set()).add(row[1])
    assumed = dict.fromkeys(skills, 0) if skills is not None else None
    return [
        Candidate(
            id=pk,
            team_ids=frozenset(teams_of[pk]),
            languages=tuple(json_value(row[2])),
            skills=assumed
            if assumed is not None
            else {int(skill): int(level) for skill, level in json_value(row[8])},
            capacity=row[3],
            open_count=row[4],
            avg_first_response=row[5],
            csat=row[6],
            last_assigned_at=_moment(row[7]),
        )
        for pk, row in by_id.items()
    ]


def load_candidates(team_ids: frozenset[int] | None) -> list[Candidate]:
    """Online agents accepting auto-assignment with spare capacity in these teams (None: in
    any team). Read without locks; the chosen one is locked and checked again."""
    if team_ids is None:
        condition, params = "m.team_id IS NOT NULL", []
    else:
        condition = f"m.team_id IN ({', '.join(['%s'] * len(team_ids))})"
        params = sorted(team_ids)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + candidates_sql(condition), params)
        row = cursor.fetchone()
    return parse_candidates(row[0] if row else None)
