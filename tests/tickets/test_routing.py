"""Routing: rule evaluation and validation, the ranking, the overrides, widening, re-routing,
reconciliation and the agents' rolling figures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_in.models import Channel
from channels_in.processing import apply_item
from tests.conftest import inbound, make_agent
from tickets import actions, routing
from tickets.models import (
    Agent,
    AgentSkill,
    BusinessHours,
    Holiday,
    Priority,
    RoutingRule,
    SatisfactionRating,
    Skill,
    Status,
    Team,
    Ticket,
    TicketEvent,
)
from tickets.routing import Candidate, Need, RuleError, TicketFacts, holds

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_rules() -> Iterator[None]:
    # Rules are cached per process for a few seconds; each test starts from its own.
    routing.clear_rules_cache()
    yield
    routing.clear_rules_cache()


def agent(
    name: str,
    *teams: Team,
    languages: tuple[str, ...] = ("ru", "lt", "en"),
    capacity: int = 10,
    skills: tuple[str, ...] = (),
    **fields: Any,
) -> Agent:
    """An online agent; `fields` sets Agent columns directly (open_count, csat_score, ...)."""
    made = make_agent(name, teams=teams, languages=languages, capacity=capacity)
    if fields:
        Agent.objects.filter(pk=made.pk).update(**fields)
    for slug in skills:
        skill, _ = Skill.objects.get_or_create(slug=slug, defaults={"name": slug.upper()})
        AgentSkill.objects.create(agent=made, skill=skill)
    return Agent.objects.get(pk=made.pk)


def rule(name: str, conditions: dict[str, Any], acts: dict[str, Any], **kw: Any) -> RoutingRule:
    """A rule stored as the API would: validated first."""
    return RoutingRule.objects.create(
        name=name,
        conditions=routing.validate_conditions(conditions),
        actions=routing.validate_actions(acts),
        **kw,
    )


def verbs(ticket: Ticket, prefix: str = "routing.") -> list[str]:
    return list(
        TicketEvent.objects.filter(ticket=ticket, verb__startswith=prefix)
        .order_by("id")
        .values_list("verb", flat=True)
    )


def events(ticket: Ticket, verb: str) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(ticket=ticket, verb=verb).order_by("id"))


def fresh(obj: Any) -> Any:
    return type(obj).objects.get(pk=obj.pk)


@pytest.fixture
def new_ticket(telegram: Channel, receive: Callable[..., Any]) -> Callable[..., Ticket]:
    """new_ticket(text, sender=..., sentiment=0, priority=None): an unassigned Outages ticket."""
    counter = iter(range(10_000, 99_999))

    def _make(
        text: str = "нет света",
        *,
        sender: str | None = None,
        sentiment: int = 0,
        priority: int | None = None,
        channel: Channel | None = None,
    ) -> Ticket:
        made = receive(channel or telegram, text, sender=sender or str(next(counter))).ticket
        changes: dict[str, Any] = {"sentiment": sentiment}
        if priority is not None:
            changes["priority"] = priority
        Ticket.objects.filter(pk=made.pk).update(**changes)
        return fresh(made)

    return _make


# --------------------------------------------------------------------------- conditions

FACTS = TicketFacts(
    channel="whatsapp",
    language="ru",
    topic="outage",
    tags=frozenset({"storm"}),
    priority=Priority.HIGH,
    tier="vip",
    sentiment=0,
    team="outages",
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({}, True),
        ({"channel": ["whatsapp", "sms"]}, True),
        ({"channel": ["telegram"]}, False),
        ({"language": ["ru"]}, True),
        ({"language": ["lt", "en"]}, False),
        ({"topic": ["outage"]}, True),
        ({"topic": ["billing"]}, False),
        ({"tag": ["heat", "storm"]}, True),
        ({"tag": ["heat"]}, False),
        ({"priority": ["high", "urgent"]}, True),
        ({"priority": ["low"]}, False),
        ({"tier": ["vip", "life_support"]}, True),
        ({"tier": ["standard"]}, False),
        ({"team": ["outages"]}, True),
        ({"team": ["billing"]}, False),
        ({"sentiment": "neutral"}, True),
        ({"sentiment": "negative"}, False),
        # Several keys: all must hold.
        ({"channel": ["whatsapp"], "language": ["ru"]}, True),
        ({"channel": ["whatsapp"], "language": ["lt"]}, False),
        ({"all": [{"channel": ["whatsapp"]}, {"tier": ["vip"]}]}, True),
        ({"all": [{"channel": ["whatsapp"]}, {"tier": ["business"]}]}, False),
        ({"any": [{"channel": ["sms"]}, {"tier": ["vip"]}]}, True),
        ({"any": [{"channel": ["sms"]}, {"tier": ["business"]}]}, False),
        ({"not": {"language": ["ru"]}}, False),
        ({"not": {"language": ["lt"]}}, True),
        ({"any": [{"not": {"tag": ["storm"]}}, {"all": [{"topic": ["outage"]}]}]}, True),
    ],
)
def test_it_evaluates_each_condition_and_combinator(condition: dict, expected: bool) -> None:
    assert holds(condition, FACTS) is expected


def test_it_reads_negative_sentiment_from_the_threshold(settings: Any) -> None:
    settings.HELPDESK_NEGATIVE_SENTIMENT = 5
    assert holds({"sentiment": "negative"}, replace(FACTS, sentiment=5))
    assert holds({"sentiment": "neutral"}, replace(FACTS, sentiment=4))


def test_it_asks_the_teams_business_hours_for_the_business_hours_condition() -> None:
    open_now = replace(FACTS, business_hours=lambda team: team == "outages")
    closed = replace(FACTS, team="billing", business_hours=lambda team: team == "outages")
    assert holds({"business_hours": True}, open_now)
    assert not holds({"business_hours": False}, open_now)
    assert holds({"business_hours": False}, closed)


def test_it_reads_business_hours_from_the_teams_calendar(outages: Team, billing: Team) -> None:
    calendar = BusinessHours.objects.create(
        name="Office",
        timezone="Europe/Vilnius",
        week={day: [["08:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    )
    Holiday.objects.create(calendar=calendar, date=datetime(2025, 12, 24).date(), name="Eve")
    outages.business_hours = calendar
    outages.save()
    rules = routing.load_ruleset()

    def lookup(at: datetime) -> Callable[[str | None], bool]:
        return routing.business_hours_lookup(rules, at)

    monday_10_local = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)  # 10:00 in Vilnius
    monday_20_local = datetime(2025, 12, 1, 18, 0, tzinfo=UTC)
    sunday_noon = datetime(2025, 11, 30, 10, 0, tzinfo=UTC)
    holiday_noon = datetime(2025, 12, 24, 10, 0, tzinfo=UTC)
    assert lookup(monday_10_local)("outages") is True
    assert lookup(monday_20_local)("outages") is False
    assert lookup(sunday_noon)("outages") is False
    assert lookup(holiday_noon)("outages") is False
    # A team without a calendar, or no team, is always open.
    assert lookup(sunday_noon)("billing") is True
    assert lookup(sunday_noon)(None) is True


# --------------------------------------------------------------------------- rule actions


def _rules(*specs: tuple[dict, dict] | tuple[dict, dict, bool]) -> list[routing.Rule]:
    out = []
    for i, spec in enumerate(specs, start=1):
        conditions, acts = spec[0], spec[1]
        stop = bool(spec[2]) if len(spec) > 2 else False
        out.append(routing.Rule(id=i, name=f"r{i}", conditions=conditions, actions=acts, stop=stop))
    return out


def test_it_lets_later_rules_see_what_earlier_ones_changed() -> None:
    rules = _rules(
        ({"language": ["ru"]}, {"team": "billing"}),
        ({"team": ["billing"]}, {"tags": ["moved"], "skills": ["hv"]}),
    )
    decision = routing.evaluate(rules, FACTS)
    assert decision.team == "billing"
    assert decision.tags == ["moved"]
    assert decision.skills == ["hv"]
    assert [m["name"] for m in decision.matched] == ["r1", "r2"]


def test_it_stops_after_a_matching_rule_with_stop() -> None:
    rules = _rules(
        ({"tier": ["vip"]}, {"priority": "urgent"}, True),
        ({}, {"priority": "low"}),
    )
    decision = routing.evaluate(rules, FACTS)
    assert decision.priority == Priority.URGENT
    assert [m["name"] for m in decision.matched] == ["r1"]


def test_it_moves_priority_by_steps_within_the_levels_and_once_per_rule() -> None:
    up = _rules(({}, {"priority": "+2"}))
    assert routing.evaluate(up, FACTS).priority == Priority.URGENT  # high + 2 stops at urgent
    assert routing.evaluate(_rules(({}, {"priority": "-1"})), FACTS).priority == Priority.NORMAL
    # The same rule already moved this ticket on an earlier routing: not again.
    assert routing.evaluate(up, replace(FACTS, moved_by=frozenset({1}))).priority is None


def test_it_leaves_a_priority_a_person_chose() -> None:
    decision = routing.evaluate(
        _rules(({}, {"priority": "urgent"})), replace(FACTS, priority_locked=True)
    )
    assert decision.priority is None
    assert "a person chose it" in decision.notes[0]


def test_it_keeps_optional_skills_apart_from_required_ones() -> None:
    decision = routing.evaluate(
        _rules(({}, {"optional_skills": ["crane", "hv"]}), ({}, {"skills": ["hv"]})), FACTS
    )
    assert decision.skills == ["hv"]
    assert decision.optional_skills == ["crane"]


# --------------------------------------------------------------------------- validation


@pytest.fixture
def known(outages: Team, billing: Team, alice: Agent) -> None:
    Skill.objects.create(name="High voltage", slug="hv")


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ([], "conditions: expected an object"),
        ({"colour": ["red"]}, "conditions.colour: unknown condition"),
        ({"language": ["xx"]}, "conditions.language: unknown language 'xx'"),
        ({"language": "ru"}, "conditions.language: expected a list of strings"),
        ({"channel": []}, "conditions.channel: an empty list matches nothing"),
        ({"channel": ["fax"]}, "conditions.channel: unknown channel 'fax'"),
        ({"topic": ["weather"]}, "conditions.topic: unknown topic 'weather'"),
        ({"priority": ["critical"]}, "conditions.priority: unknown priority 'critical'"),
        ({"tier": ["gold"]}, "conditions.tier: unknown tier 'gold'"),
        ({"team": ["water"]}, "conditions.team: no team with slug 'water'"),
        ({"sentiment": "angry"}, 'conditions.sentiment: expected "negative" or "neutral"'),
        ({"business_hours": "yes"}, "conditions.business_hours: expected true or false"),
        ({"any": []}, "conditions.any: expected a non-empty list of conditions"),
        ({"any": [{"tier": ["vip"]}, {"tier": ["gold"]}]}, "conditions.any[1].tier: unknown"),
        ({"not": {"not": {"language": ["xx"]}}}, "conditions.not.not.language: unknown"),
        ({"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {}}}}}}}}}},
         "nested deeper than 8 levels"),
    ],
)  # fmt: skip
def test_it_refuses_bad_conditions_saying_where(known: None, conditions: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        routing.validate_conditions(conditions)
    assert err.value.field == "conditions"


@pytest.mark.parametrize(
    ("acts", "message"),
    [
        ({}, "actions: a rule needs at least one action"),
        ({"colour": "red"}, "actions.colour: unknown action"),
        ({"team": "water"}, "actions.team: no team with slug 'water'"),
        ({"team": 3}, "actions.team: expected a team slug"),
        ({"skills": ["crane"]}, "actions.skills: no skill with slug 'crane'"),
        ({"optional_skills": "hv"}, "actions.optional_skills: expected a list of strings"),
        ({"priority": "critical"}, "actions.priority: expected one of low, normal, high, urgent"),
        ({"priority": "+4"}, "actions.priority: a step moves 1 to 3 levels"),
        ({"assign_to": "mallory"}, "actions.assign_to: no agent with username 'mallory'"),
        ({"tags": ["  "]}, "actions.tags: a tag cannot be empty"),
        ({"skills": ["hv"], "optional_skills": ["hv"]}, "skill 'hv' is both required and optional"),
    ],
)
def test_it_refuses_bad_actions_saying_where(known: None, acts: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message) as err:
        routing.validate_actions(acts)
    assert err.value.field == "actions"


def test_it_normalizes_a_valid_rule(known: None) -> None:
    assert routing.validate_conditions({"tag": ["Frozen Pipes"], "language": ["ru", "ru"]}) == {
        "tag": ["frozen-pipes"],
        "language": ["ru"],
    }
    assert routing.validate_actions({"tags": ["Storm", "storm"], "assign_to": "alice"}) == {
        "tags": ["storm"],
        "assign_to": "alice",
    }


# --------------------------------------------------------------------------- ranking


def cand(pk: int, **kw: Any) -> Candidate:
    return Candidate(id=pk, team_ids=frozenset({1}), **kw)


NEED = Need(team_ids=frozenset({1}), language="ru")


def test_it_ranks_by_spare_capacity() -> None:
    busy, free = cand(1, open_count=6, capacity=10), cand(2, open_count=1, capacity=10)
    assert [c.id for c, _, _ in routing.rank([busy, free], NEED)] == [2, 1]


def test_it_ranks_by_average_first_response() -> None:
    slow, fast = cand(1, avg_first_response=1500.0), cand(2, avg_first_response=60.0)
    assert [c.id for c, _, _ in routing.rank([slow, fast], NEED)] == [2, 1]


def test_it_ranks_by_smoothed_satisfaction() -> None:
    meh, loved = cand(1, csat=3.1), cand(2, csat=4.7)
    assert [c.id for c, _, _ in routing.rank([meh, loved], NEED)] == [2, 1]


def test_it_breaks_ties_by_the_longest_idle() -> None:
    now = timezone.now()
    recent = cand(1, last_assigned_at=now)
    earlier = cand(2, last_assigned_at=now - timedelta(hours=1))
    never = cand(3)
    assert [c.id for c, _, _ in routing.rank([recent, earlier, never], NEED)] == [3, 2, 1]


def test_it_never_ranks_ineligible_agents() -> None:
    need = replace(NEED, skills=frozenset({7}), exclude=frozenset({5}))
    pool = [
        cand(1, skills={7: 3}, open_count=10, capacity=10),  # full
        Candidate(id=2, team_ids=frozenset({9}), skills={7: 3}),  # other team
        cand(3, skills={7: 3}, languages=("pt", "zh")),  # no Russian
        cand(4),  # lacks the skill
        cand(5, skills={7: 3}),  # the agent the ticket moves away from
        Candidate(id=6, team_ids=frozenset(), skills={7: 3}),  # in no team
        cand(8, skills={7: 3}, languages=()),  # speaks everything
    ]
    assert [c.id for c, _, _ in routing.rank(pool, need)] == [8]
    assert routing.rank(pool, replace(need, team_ids=None))[0][0].id in (2, 8)


# --------------------------------------------------------------------------- assignment


def test_it_gives_a_new_ticket_to_an_eligible_online_agent(alice: Agent, bob: Agent, new_ticket):
    ticket = new_ticket()

    result = actions.do_route_ticket(ticket.pk)

    ticket = fresh(ticket)
    assert result.outcome == "assigned" and result.agent_id == alice.pk
    assert ticket.assignee_id == alice.pk and ticket.assigned_at is not None
    assert fresh(alice).open_count == 1 and fresh(alice).last_assigned_at is not None
    assert verbs(ticket) == ["routing.assigned"]
    (assigned,) = events(ticket, "ticket.assigned")
    assert assigned.to_value == alice.pk and assigned.data["via"] == "routing"


def test_it_routes_a_ticket_once(alice: Agent, new_ticket) -> None:
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    again = actions.do_route_ticket(ticket.pk)
    assert again.outcome == "unchanged"
    assert fresh(alice).open_count == 1
    assert len(events(ticket, "ticket.assigned")) == 1


def test_it_leaves_pending_and_resolved_tickets_alone(alice: Agent, new_ticket) -> None:
    ticket = new_ticket()
    Ticket.objects.filter(pk=ticket.pk).update(status=Status.PENDING)
    assert actions.do_route_ticket(ticket.pk).outcome == "not_routable"
    assert fresh(ticket).assignee_id is None


def test_it_never_chooses_offline_away_full_or_opted_out_agents(outages: Team, new_ticket):
    agent("offline", outages, presence="offline", csat_score=5.0)
    agent("away", outages, presence="away", csat_score=5.0)
    agent("full", outages, capacity=2, open_count=2, csat_score=5.0)
    agent("manual", outages, auto_assign=False, csat_score=5.0)
    ticket = new_ticket()

    result = actions.do_route_ticket(ticket.pk)

    assert result.outcome == "queued"
    assert fresh(ticket).assignee_id is None
    (widened,) = events(ticket, "routing.step")
    assert widened.data["because"] == "no online agent with spare capacity among agents of Outages"
    (queued,) = events(ticket, "routing.queued")
    assert queued.data["because"] == (
        "no online agent with spare capacity among agents of any team speaking ru"
    )
    assert queued.data["team"] == outages.pk

    ready = agent("ready", outages)
    assert actions.do_route_ticket(ticket.pk).agent_id == ready.pk


def test_it_prefers_the_agent_with_more_spare_capacity(outages: Team, new_ticket) -> None:
    agent("busy", outages, open_count=7)
    free = agent("free", outages, open_count=1)
    assert actions.do_route_ticket(new_ticket().pk).agent_id == free.pk


def test_it_prefers_the_faster_agent(outages: Team, new_ticket) -> None:
    agent("slow", outages, avg_first_response_seconds=1500)
    quick = agent("quick", outages, avg_first_response_seconds=45)
    assert actions.do_route_ticket(new_ticket().pk).agent_id == quick.pk


def test_it_prefers_the_better_rated_agent(outages: Team, new_ticket) -> None:
    agent("meh", outages, csat_score=3.2)
    liked = agent("liked", outages, csat_score=4.6)
    assert actions.do_route_ticket(new_ticket().pk).agent_id == liked.pk


def test_it_gives_equals_to_the_longest_idle(outages: Team, new_ticket) -> None:
    now = timezone.now()
    agent("recent", outages, last_assigned_at=now - timedelta(minutes=1))
    idle = agent("idle", outages, last_assigned_at=now - timedelta(hours=2))
    first = actions.do_route_ticket(new_ticket().pk)
    assert first.agent_id == idle.pk


def test_it_gives_a_negative_ticket_to_the_best_rated_agent(outages: Team, new_ticket) -> None:
    roomy = agent("roomy", outages, open_count=0, csat_score=3.4)
    star = agent("star", outages, open_count=6, csat_score=4.9)

    calm = actions.do_route_ticket(new_ticket(sentiment=0).pk)
    upset = new_ticket("это безобразие, третий день нет света", sentiment=8)
    angry = actions.do_route_ticket(upset.pk)

    assert calm.agent_id == roomy.pk
    assert angry.agent_id == star.pk
    (why,) = events(upset, "routing.assigned")
    assert why.data["negative"] is True and "best CSAT" in why.data["why"]


def test_it_prefers_the_contacts_previous_agent_when_eligible(
    outages: Team, new_ticket, receive, telegram
) -> None:
    best = agent("best", outages, csat_score=4.9)
    usual = agent("usual", outages, csat_score=3.0, open_count=5)
    earlier = new_ticket(sender="555")
    Ticket.objects.filter(pk=earlier.pk).update(assignee=usual, status=Status.CLOSED)

    again = new_ticket("снова нет света", sender="555")
    assert again.pk != earlier.pk
    result = actions.do_route_ticket(again.pk)

    assert result.agent_id == usual.pk
    assert "previous agent" in events(again, "routing.assigned")[0].data["why"]
    # When the previous agent may not take it, the ranking decides.
    Agent.objects.filter(pk=usual.pk).update(presence="offline")
    third = new_ticket("и опять", sender="556")
    Ticket.objects.filter(pk=third.pk).update(contact=again.contact)
    assert actions.do_route_ticket(third.pk).agent_id == best.pk


def test_it_applies_the_rules_before_assigning(
    outages: Team, billing: Team, new_ticket, alice: Agent
) -> None:
    Skill.objects.create(name="Billing disputes", slug="disputes")
    rule("Bills to billing", {"language": ["ru"]}, {"team": "billing", "skills": ["disputes"]})
    rule(
        "Billing priority",
        {"team": ["billing"]},
        {"priority": "+1", "tags": ["Moved By Rule"]},
        position=1,
    )
    billing_agent = agent("bill", billing, skills=("disputes",))
    ticket = new_ticket(priority=Priority.NORMAL)
    due_before = ticket.first_response_due

    result = actions.do_route_ticket(ticket.pk)

    ticket = fresh(ticket)
    assert result.agent_id == billing_agent.pk
    assert ticket.team_id == billing.pk
    assert ticket.priority == Priority.HIGH
    assert ticket.first_response_due != due_before  # SLA follows the new level
    assert list(ticket.required_skills.values_list("slug", flat=True)) == ["disputes"]
    assert list(ticket.tags.values_list("name", flat=True)) == ["moved-by-rule"]
    (applied,) = events(ticket, "routing.rules")
    assert [r["name"] for r in applied.data["rules"]] == ["Bills to billing", "Billing priority"]
    assert applied.data["changes"]["team"] == "billing"
    assert events(ticket, "ticket.transferred")[0].to_value["team"] == billing.pk
    assert any(r.get("signal") == "routing" for r in ticket.priority_reasons)

    # Routed again (re-assigned): the "+1" rule does not raise the level a second time.
    actions.do_route_ticket(ticket.pk, reassign=True)
    assert fresh(ticket).priority == Priority.HIGH


def test_it_skips_inactive_rules(outages: Team, billing: Team, alice: Agent, new_ticket) -> None:
    rule("Off", {}, {"team": "billing"}, is_active=False)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    assert fresh(ticket).team_id == outages.pk
    assert verbs(ticket) == ["routing.assigned"]


def test_it_assigns_to_the_agent_a_rule_names_when_they_can_take_it(
    outages: Team, new_ticket
) -> None:
    agent("best", outages, csat_score=5.0)
    named = agent("named", outages, csat_score=2.0)
    rule("VIP desk", {"language": ["ru"]}, {"assign_to": "named"})

    ticket = new_ticket()
    assert actions.do_route_ticket(ticket.pk).agent_id == named.pk
    assert events(ticket, "routing.assigned")[0].data["step"] == "rule"

    Agent.objects.filter(pk=named.pk).update(presence="offline")
    other = new_ticket()
    result = actions.do_route_ticket(other.pk)
    assert result.agent_id != named.pk
    (step,) = events(other, "routing.step")
    assert "named is offline, at capacity" in step.data["because"]


# --------------------------------------------------------------------------- widening


@pytest.fixture
def field_team(outages: Team) -> Team:
    parent = Team.objects.create(name="Field operations", slug="field")
    Team.objects.filter(pk=outages.pk).update(parent=parent)
    Skill.objects.create(name="High voltage", slug="hv")
    Skill.objects.create(name="Crane", slug="crane")
    rule("Wires", {"topic": ["outage"]}, {"skills": ["hv"], "optional_skills": ["crane"]})
    return parent


def test_it_drops_optional_skills_first(outages: Team, field_team: Team, new_ticket) -> None:
    hv_only = agent("hv_only", outages, skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")
    assert ticket.topic == "outage"

    result = actions.do_route_ticket(ticket.pk)

    assert result.agent_id == hv_only.pk and result.step == "drop_optional_skills"
    (step,) = events(ticket, "routing.step")
    assert step.data["step"] == "drop_optional_skills"
    assert "1 lacks a skill" in step.data["because"]
    assert verbs(ticket) == ["routing.rules", "routing.step", "routing.assigned"]


def test_it_widens_to_the_parent_team(outages: Team, field_team: Team, new_ticket) -> None:
    agent("no_hv", outages)
    lineman = agent("lineman", field_team, skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")

    result = actions.do_route_ticket(ticket.pk)

    assert result.agent_id == lineman.pk and result.step == "parent_team"
    assert [e.data["step"] for e in events(ticket, "routing.step")] == [
        "drop_optional_skills",
        "parent_team",
    ]
    # The ticket follows its agent up to the parent team.
    assert fresh(ticket).team_id == field_team.pk


def test_it_widens_to_any_agent_speaking_the_language(
    outages: Team, billing: Team, field_team: Team, new_ticket
) -> None:
    agent("english_only", billing, languages=("en",), skills=("hv",))
    speaks_ru = agent("speaks_ru", billing, languages=("ru",), skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")

    result = actions.do_route_ticket(ticket.pk)

    assert result.agent_id == speaks_ru.pk and result.step == "any_team"
    assert [e.data["step"] for e in events(ticket, "routing.step")] == [
        "drop_optional_skills",
        "parent_team",
        "any_team",
    ]
    assert fresh(ticket).team_id == billing.pk


def test_it_queues_when_nobody_is_eligible_after_every_step(
    outages: Team, billing: Team, field_team: Team, new_ticket
) -> None:
    agent("no_ru", billing, languages=("pt",), skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")

    result = actions.do_route_ticket(ticket.pk)

    assert result.outcome == "queued"
    assert verbs(ticket) == [
        "routing.rules",
        "routing.step",
        "routing.step",
        "routing.step",
        "routing.queued",
    ]
    assert "1 does not speak ru" in events(ticket, "routing.queued")[0].data["because"]
    ticket = fresh(ticket)
    assert ticket.assignee_id is None and ticket.team_id == outages.pk  # waits in its queue
    assert [s.slug for s in ticket.required_skills.all()] == ["hv"]  # take-next honours it


def candidate_reads(run: Callable[[], Any]) -> tuple[Any, int]:
    """What `run` returns, and how many times routing read a pool of candidates on its own
    (routing.load_candidates' statement, outside the lock query)."""
    with CaptureQueriesContext(connection) as captured:
        result = run()
    return result, sum(q["sql"].startswith("SELECT (SELECT") for q in captured.captured_queries)


def test_it_reads_the_agents_once_when_nobody_anywhere_has_spare_capacity(
    outages: Team, billing: Team, field_team: Team, new_ticket
) -> None:
    # A storm: every agent of every team at capacity, every step of the widening empty.
    agent("full_here", outages, capacity=2, open_count=2, skills=("hv",))
    agent("full_above", field_team, capacity=1, open_count=1, skills=("hv",))
    agent("full_elsewhere", billing, capacity=3, open_count=3, skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")

    result, reads = candidate_reads(lambda: actions.do_route_ticket(ticket.pk))

    assert result.outcome == "queued"
    assert reads == 1
    # The history says why at every step, as when each pool was read on its own.
    assert [e.data["because"] for e in events(ticket, "routing.step")] == [
        "no online agent with spare capacity among agents of Outages",
        "no online agent with spare capacity among agents of Outages without optional skills",
        "no online agent with spare capacity among agents of Outages and its parent "
        "Field operations",
    ]
    assert events(ticket, "routing.queued")[0].data["because"] == (
        "no online agent with spare capacity among agents of any team speaking ru"
    )


def test_it_still_finds_the_one_agent_with_spare_capacity_in_another_team(
    outages: Team, billing: Team, field_team: Team, new_ticket
) -> None:
    agent("full_here", outages, capacity=2, open_count=2, skills=("hv",))
    free = agent("free_elsewhere", billing, skills=("hv",))
    ticket = new_ticket("оборван провод, нет света")

    result, reads = candidate_reads(lambda: actions.do_route_ticket(ticket.pk))

    assert result.agent_id == free.pk and result.step == "any_team"
    # The widest pool first (not empty), then the team's and the parent's, each once.
    assert reads == 3


# --------------------------------------------------------------------------- inbound hook


def test_it_routes_a_ticket_an_inbound_message_creates(telegram: Channel, alice: Agent) -> None:
    outcome = apply_item(telegram, inbound(telegram, "нет света на улице Ленина", sender="77"))
    assert outcome == "message"
    ticket = Ticket.objects.get(contact__identities__value="77")
    assert ticket.assignee_id == alice.pk
    assert verbs(ticket) == ["routing.assigned"]

    # A follow-up on the assigned ticket does no routing work.
    apply_item(telegram, inbound(telegram, "всё ещё нет", sender="77"))
    assert verbs(ticket) == ["routing.assigned"]


def test_it_keeps_the_message_when_routing_fails(
    telegram: Channel, alice: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("routing exploded")

    monkeypatch.setattr(routing, "parse_candidates", broken)
    assert apply_item(telegram, inbound(telegram, "нет света", sender="78")) == "message"
    ticket = Ticket.objects.get(contact__identities__value="78")
    assert ticket.messages.count() == 1 and ticket.assignee_id is None
    assert verbs(ticket) == []
    assert fresh(alice).open_count == 0


# --------------------------------------------------------------------------- re-routing


def _age(ticket: Ticket, minutes: int) -> None:
    past = timezone.now() - timedelta(minutes=minutes)
    Ticket.objects.filter(pk=ticket.pk).update(assigned_at=past, waiting_since=past)


def test_it_reroutes_the_tickets_of_an_agent_who_went_offline(outages: Team, new_ticket) -> None:
    leaving = agent("leaving", outages, csat_score=5.0)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    assert fresh(ticket).assignee_id == leaving.pk
    staying = agent("staying", outages)
    Agent.objects.filter(pk=leaving.pk).update(presence="offline")

    results = actions.do_reroute_stale()

    assert [(r.ticket_id, r.outcome, r.agent_id) for r in results] == [
        (ticket.pk, "assigned", staying.pk)
    ]
    assert fresh(ticket).assignee_id == staying.pk
    assert (fresh(leaving).open_count, fresh(staying).open_count) == (0, 1)
    moved = events(ticket, "ticket.assigned")[-1]
    assert (moved.from_value, moved.to_value) == (leaving.pk, staying.pk)
    assert moved.data["reason"] == "the agent went offline"


def test_it_queues_an_offline_agents_ticket_when_nobody_else_can_take_it(
    outages: Team, new_ticket
) -> None:
    leaving = agent("leaving", outages)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    Agent.objects.filter(pk=leaving.pk).update(presence="offline")

    (result,) = actions.do_reroute_stale()

    assert result.outcome == "queued"
    assert fresh(ticket).assignee_id is None
    assert fresh(leaving).open_count == 0
    assert events(ticket, "ticket.unassigned")[0].data["reason"] == "the agent went offline"


def test_it_reroutes_a_ticket_its_agent_has_not_answered(
    outages: Team, new_ticket, settings: Any
) -> None:
    settings.HELPDESK_REROUTE_AFTER_MINUTES = 10
    slow = agent("slow", outages, csat_score=5.0)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    other = agent("other", outages)

    _age(ticket, 9)
    assert actions.do_reroute_stale() == []  # not yet

    _age(ticket, 11)
    (result,) = actions.do_reroute_stale()

    assert (result.outcome, result.agent_id) == ("assigned", other.pk)
    assert fresh(ticket).assignee_id == other.pk
    assert (fresh(slow).open_count, fresh(other).open_count) == (0, 1)
    assert "no reply within 10 minutes" in events(ticket, "routing.assigned")[-1].data["reason"]


def test_it_lets_an_online_agent_keep_a_late_ticket_when_nobody_else_can_take_it(
    outages: Team, new_ticket
) -> None:
    only = agent("only", outages)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    _age(ticket, 30)

    (result,) = actions.do_reroute_stale()

    assert (result.outcome, result.agent_id) == ("kept", only.pk)
    assert fresh(ticket).assignee_id == only.pk and fresh(only).open_count == 1
    assert len(events(ticket, "routing.kept")) == 1
    # Not looked at again until another N minutes have passed.
    assert actions.do_reroute_stale() == []


def test_it_reroutes_on_request_away_from_the_current_agent(outages: Team, new_ticket) -> None:
    first = agent("first", outages, csat_score=5.0)
    second = agent("second", outages)
    ticket = new_ticket()
    actions.do_route_ticket(ticket.pk)
    assert fresh(ticket).assignee_id == first.pk

    result = actions.do_route_ticket(ticket.pk, reassign=True)

    assert result.agent_id == second.pk
    assert (fresh(first).open_count, fresh(second).open_count) == (0, 1)


# --------------------------------------------------------------------------- pull and counts


def test_it_gives_an_agent_who_comes_online_the_most_urgent_waiting_tickets(
    outages: Team, new_ticket
) -> None:
    low = new_ticket("вопрос", priority=Priority.LOW)
    urgent = new_ticket("искрит провод", priority=Priority.URGENT)
    high = new_ticket("нет света", priority=Priority.HIGH)
    for t in (low, urgent, high):
        assert actions.do_route_ticket(t.pk).outcome == "queued"
    late = agent("late", outages, capacity=2, presence="offline")

    assert actions.do_route_waiting_for(late) == []  # offline: nothing
    Agent.objects.filter(pk=late.pk).update(presence="online")
    given = actions.do_route_waiting_for(late)

    assert [t.pk for t in given] == [urgent.pk, high.pk]
    assert fresh(late).open_count == 2
    assert fresh(low).assignee_id is None
    assert actions.do_route_waiting_for(late) == []  # at capacity now


def test_it_sweeps_waiting_tickets_to_agents_with_spare_capacity(outages: Team, new_ticket) -> None:
    waiting = [new_ticket() for _ in range(3)]
    one, two = agent("one", outages, capacity=1), agent("two", outages, capacity=1)
    assert actions.do_route_waiting() == 2
    assigned = sorted(Ticket.objects.filter(pk__in=[t.pk for t in waiting]).exclude(
        assignee=None).values_list("assignee_id", flat=True))  # fmt: skip
    assert assigned == sorted([one.pk, two.pk])


def test_it_reconciles_drifted_open_counts(outages: Team, alice: Agent, new_ticket) -> None:
    for _ in range(2):
        actions.do_route_ticket(new_ticket().pk)
    bob_like = agent("drifter", outages)
    Agent.objects.filter(pk=alice.pk).update(open_count=7)
    Agent.objects.filter(pk=bob_like.pk).update(open_count=-1)

    changes = actions.do_reconcile_open_counts()

    assert sorted((c["agent"], c["from"], c["to"]) for c in changes) == sorted(
        [(alice.pk, 7, 2), (bob_like.pk, -1, 0)]
    )
    assert fresh(alice).open_count == 2 and fresh(bob_like).open_count == 0
    recorded = TicketEvent.objects.filter(verb="agent.open_count").order_by("id")
    assert [(e.data["agent"], e.from_value, e.to_value) for e in recorded] == [
        (c["agent"], c["from"], c["to"]) for c in changes
    ]
    assert actions.do_reconcile_open_counts() == []


# --------------------------------------------------------------------------- stats


def test_it_recomputes_first_response_times_and_smoothed_csat(
    outages: Team, new_ticket, settings: Any
) -> None:
    settings.HELPDESK_CSAT_PRIOR_WEIGHT = 5
    fast = agent("fast", outages)
    newbie = agent("newbie", outages)
    now = timezone.now()
    routed = new_ticket()
    claimed = new_ticket()
    Ticket.objects.filter(pk=routed.pk).update(created_at=now - timedelta(hours=1))
    Ticket.objects.filter(pk=claimed.pk).update(created_at=now - timedelta(minutes=10))
    TicketEvent.objects.bulk_create(
        [
            # Routed to `fast` 5 minutes ago, answered 2 minutes later: 120 s.
            TicketEvent(ticket=routed, actor=fast, actor_kind="agent", verb="ticket.assigned",
                        to_value=fast.pk, data={"via": "routing"},
                        created_at=now - timedelta(minutes=5)),
            TicketEvent(ticket=routed, actor=fast, actor_kind="agent", verb="message.sent",
                        data={"first_response": True}, created_at=now - timedelta(minutes=3)),
            # Claimed by replying, 10 minutes after creation: 600 s.
            TicketEvent(ticket=claimed, actor=fast, actor_kind="agent", verb="ticket.assigned",
                        to_value=fast.pk, data={"via": "reply"}, created_at=now),
            TicketEvent(ticket=claimed, actor=fast, actor_kind="agent", verb="message.sent",
                        data={"first_response": True}, created_at=now),
            # Not a first response; and one older than the 7-day window.
            TicketEvent(ticket=claimed, actor=fast, actor_kind="agent", verb="message.sent",
                        data={"first_response": False}, created_at=now),
            TicketEvent(ticket=routed, actor=newbie, actor_kind="agent", verb="message.sent",
                        data={"first_response": True}, created_at=now - timedelta(days=8)),
        ]
    )  # fmt: skip
    for score in (5, 5, 5, 5, 4):
        SatisfactionRating.objects.create(ticket=routed, agent=fast, score=score)
    SatisfactionRating.objects.create(ticket=claimed, agent=newbie, score=1)

    assert actions.do_recompute_agent_stats() == Agent.objects.count()

    fast, newbie = fresh(fast), fresh(newbie)
    assert fast.avg_first_response_seconds == pytest.approx(360, abs=1)
    assert newbie.avg_first_response_seconds is None
    mean = (5 + 5 + 5 + 5 + 4 + 1) / 6
    assert fast.csat_score == pytest.approx((24 + 5 * mean) / (5 + 5))
    assert newbie.csat_score == pytest.approx((1 + 5 * mean) / (1 + 5))
    assert (fast.csat_count, newbie.csat_count) == (5, 1)
    # One bad survey does not sink a new agent below someone with many middling ones.
    assert 3.0 < newbie.csat_score < fast.csat_score
    assert fast.stats_updated_at is not None


def test_it_says_why_nobody_in_the_team_was_eligible(outages: Team, new_ticket) -> None:
    agent("portuguese", outages, languages=("pt",))
    agent("busy", outages, capacity=1, open_count=1)
    ticket = new_ticket()

    assert actions.do_route_ticket(ticket.pk).outcome == "queued"

    (widened,) = events(ticket, "routing.step")
    assert widened.data == {
        "step": "any_team",
        "pool": "agents of any team speaking ru",
        "because": "1 online with spare capacity among agents of Outages: 1 does not speak ru",
    }
