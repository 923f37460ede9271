"""Routing over the API: rules (admins write, supervisors read), skills (admins write, staff
read), the dry run, and routing a ticket now (supervisors)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from tickets import actions, routing
from tickets.models import Agent, AgentSkill, RoutingRule, Skill, Status, Team, Ticket

pytestmark = pytest.mark.django_db

PERSONAS = ["alice", "bob", "carol", "ada", "mallory", "anonymous"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_rules() -> Iterator[None]:
    routing.clear_rules_cache()
    yield
    routing.clear_rules_cache()


@pytest.fixture
def as_(request: pytest.FixtureRequest, api: Any) -> Any:
    def _client(name: str) -> APIClient:
        return api(None if name == "anonymous" else request.getfixturevalue(name))

    return _client


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


@pytest.fixture
def a_rule(outages: Team, billing: Team) -> RoutingRule:
    return RoutingRule.objects.create(
        name="Russian to outages",
        conditions={"language": ["ru"]},
        actions={"team": "outages"},
    )


@pytest.fixture
def hv(db: Any) -> Skill:
    return Skill.objects.create(name="High voltage", slug="hv")


GOOD_RULE = {
    "name": "VIP on WhatsApp",
    "position": 5,
    "conditions": {"channel": ["whatsapp"], "any": [{"tier": ["vip"]}, {"tag": ["VIP"]}]},
    "actions": {"team": "billing", "priority": "+1", "tags": ["vip-desk"]},
}

# ---------------------------------------------------------------------- rules: permissions


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("alice", 403),
        ("bob", 403),
        ("carol", 200),
        ("ada", 200),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_shows_routing_rules_to_supervisors_and_admins_only(
    as_: Any, a_rule: RoutingRule, who: str, status: int
) -> None:
    listing = as_(who).get("/api/v1/routing-rules/")
    one = as_(who).get(f"/api/v1/routing-rules/{a_rule.pk}/")
    assert (listing.status_code, one.status_code) == (status, status), listing.content
    if status == 200:
        assert listing.json()["results"][0]["conditions"] == {"language": ["ru"]}
        assert one.json()["actions"] == {"team": "outages"}
    else:
        assert error(listing)["code"] in ("permission_denied", "not_authenticated")


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("alice", 403),
        ("bob", 403),
        ("carol", 403),
        ("ada", 201),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_lets_only_admins_create_rules(
    as_: Any, outages: Team, billing: Team, who: str, status: int
) -> None:
    response = as_(who).post("/api/v1/routing-rules/", GOOD_RULE, format="json")
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert body["conditions"]["any"][1] == {"tag": ["vip"]}  # normalized
        assert body["actions"]["tags"] == ["vip-desk"]
        assert RoutingRule.objects.get().name == "VIP on WhatsApp"
    else:
        assert not RoutingRule.objects.exists()


@pytest.mark.parametrize("who", PERSONAS)
def test_it_lets_only_admins_change_and_delete_rules(as_: Any, a_rule: RoutingRule, who: str):
    change = as_(who).patch(
        f"/api/v1/routing-rules/{a_rule.pk}/", {"is_active": False}, format="json"
    )
    delete = as_(who).delete(f"/api/v1/routing-rules/{a_rule.pk}/")
    if who == "ada":
        assert (change.status_code, delete.status_code) == (200, 204)
        assert not RoutingRule.objects.exists()
    else:
        expected = 401 if who == "anonymous" else 403
        assert (change.status_code, delete.status_code) == (expected, expected)
        assert RoutingRule.objects.get().is_active is True


# ---------------------------------------------------------------------- rules: validation


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"conditions": {"language": ["xx"]}}, "conditions", "unknown language 'xx'"),
        ({"conditions": {"any": [{"tier": ["gold"]}]}}, "conditions", "conditions.any[0].tier"),
        ({"conditions": {"sentiment": "angry"}}, "conditions", 'expected "negative"'),
        ({"actions": {"team": "water"}}, "actions", "no team with slug 'water'"),
        ({"actions": {"skills": ["crane"]}}, "actions", "no skill with slug 'crane'"),
        ({"actions": {"assign_to": "nobody"}}, "actions", "no agent with username 'nobody'"),
        ({"actions": {"priority": "critical"}}, "actions", "expected one of low, normal"),
        ({"actions": {}}, "actions", "a rule needs at least one action"),
        ({"actions": {"tags": ["a\u0000b"]}}, "actions", "NUL"),
        ({"name": "  "}, "name", "a rule needs a name"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_it_refuses_a_bad_rule_with_a_specific_error_and_stores_nothing(
    as_: Any, outages: Team, billing: Team, body: dict, field: str, message: str
) -> None:
    response = as_("ada").post("/api/v1/routing-rules/", {**GOOD_RULE, **body}, format="json")
    assert response.status_code == 400, response.content
    err = error(response)
    assert message in " ".join(err["fields"][field])
    assert not RoutingRule.objects.exists()


def test_it_refuses_a_rule_without_actions(as_: Any, outages: Team) -> None:
    response = as_("ada").post("/api/v1/routing-rules/", {"name": "Nothing"}, format="json")
    assert response.status_code == 400
    assert "actions" in error(response)["fields"]


def test_it_uses_a_new_rule_at_once(as_: Any, alice: Agent, bob: Agent, receive, telegram):
    ticket = receive(telegram, "нет света", sender="1").ticket  # Outages, Russian
    Agent.objects.filter(pk=bob.pk).update(languages=["ru"])
    response = as_("ada").post(
        "/api/v1/routing-rules/",
        {"name": "All to billing", "actions": {"team": "billing"}},
        format="json",
    )
    assert response.status_code == 201
    assert actions.do_route_ticket(ticket.pk).agent_id == bob.pk


# ---------------------------------------------------------------------- preview


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("alice", 403),
        ("bob", 403),
        ("carol", 200),
        ("ada", 200),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_previews_the_rules_on_a_ticket_without_changing_it(
    as_: Any, a_rule: RoutingRule, receive, telegram, billing: Team, who: str, status: int
) -> None:
    RoutingRule.objects.create(
        name="Move", conditions={"team": ["outages"]}, actions={"team": "billing"}, position=1
    )
    ticket = receive(telegram, "нет света", sender="1").ticket
    response = as_(who).post("/api/v1/routing-rules/preview/", {"ticket": ticket.pk}, format="json")
    assert response.status_code == status, response.content
    if status == 200:
        body = response.json()
        assert [m["name"] for m in body["matched"]] == ["Russian to outages", "Move"]
        assert body["team"] == "billing"
    assert Ticket.objects.get(pk=ticket.pk).team_id == ticket.team_id
    assert Ticket.objects.get(pk=ticket.pk).version == ticket.version


def test_it_answers_404_for_a_preview_of_a_missing_ticket(as_: Any, carol: Agent) -> None:
    response = as_("carol").post("/api/v1/routing-rules/preview/", {"ticket": 999}, format="json")
    assert response.status_code == 404
    assert error(response)["message"] == "ticket 999 does not exist"


# ---------------------------------------------------------------------- skills


@pytest.mark.parametrize(
    ("who", "read", "write"),
    [
        ("alice", 200, 403),
        ("bob", 200, 403),
        ("carol", 200, 403),
        ("ada", 200, 201),
        ("mallory", 403, 403),
        ("anonymous", 401, 401),
    ],
)
def test_it_lets_staff_read_skills_and_admins_create_them(
    as_: Any, hv: Skill, who: str, read: int, write: int
) -> None:
    assert as_(who).get("/api/v1/skills/").status_code == read
    created = as_(who).post("/api/v1/skills/", {"name": "Crane operator"}, format="json")
    assert created.status_code == write, created.content
    if write == 201:
        assert created.json()["slug"] == "crane-operator"
    assert Skill.objects.filter(slug="crane-operator").exists() is (write == 201)


def test_it_refuses_to_delete_or_rename_a_skill_a_rule_uses(as_: Any, hv: Skill, outages) -> None:
    RoutingRule.objects.create(name="Wires", actions={"skills": ["hv"]})
    rename = as_("ada").patch(f"/api/v1/skills/{hv.pk}/", {"slug": "high-v"}, format="json")
    delete = as_("ada").delete(f"/api/v1/skills/{hv.pk}/")
    assert (rename.status_code, delete.status_code) == (409, 409)
    assert "routing rule 'Wires' names skill 'hv'" in error(delete)["message"]
    assert Skill.objects.get(pk=hv.pk).slug == "hv"


def test_it_refuses_to_delete_a_skill_active_tickets_require(
    as_: Any, hv: Skill, receive, telegram
) -> None:
    ticket = receive(telegram, "нет света", sender="1").ticket
    ticket.required_skills.add(hv)
    response = as_("ada").delete(f"/api/v1/skills/{hv.pk}/")
    assert response.status_code == 409
    assert "1 active tickets require skill" in error(response)["message"]


def test_it_edits_an_agents_skills_with_proficiency(as_: Any, alice: Agent, hv: Skill) -> None:
    response = as_("ada").patch(
        f"/api/v1/agents/{alice.pk}/",
        {"skills": [{"id": hv.pk, "proficiency": 5}], "capacity": 3, "auto_assign": False},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert AgentSkill.objects.get(agent=alice).proficiency == 5
    fresh = Agent.objects.get(pk=alice.pk)
    assert (fresh.capacity, fresh.auto_assign) == (3, False)


# ---------------------------------------------------------------------- route a ticket now


@pytest.fixture
def waiting(receive: Any, telegram: Any) -> Ticket:
    return receive(telegram, "нет света", sender="1").ticket


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("alice", 403),
        ("bob", 403),
        ("carol", 200),
        ("ada", 200),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_lets_supervisors_route_a_ticket_now(
    as_: Any, alice: Agent, waiting: Ticket, who: str, status: int
) -> None:
    response = as_(who).post(f"/api/v1/tickets/{waiting.pk}/route/", {}, format="json")
    assert response.status_code == status, response.content
    ticket = Ticket.objects.get(pk=waiting.pk)
    if status == 200:
        body = response.json()
        assert body["outcome"] == "assigned"
        assert body["assignee"] == {"id": alice.pk, "name": alice.name}
        assert body["ticket"]["id"] == waiting.pk
        assert ticket.assignee_id == alice.pk
        assert ticket.events.filter(verb="routing.assigned", actor__user__username=who).exists()
    else:
        assert ticket.assignee_id is None


def test_it_says_when_nobody_can_take_the_ticket(as_: Any, carol: Agent, waiting: Ticket) -> None:
    response = as_("carol").post(f"/api/v1/tickets/{waiting.pk}/route/", format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "queued" and body["assignee"] is None
    assert "no online agent with spare capacity" in body["reason"]


def test_it_reroutes_an_assigned_ticket_only_when_asked(
    as_: Any, alice: Agent, carol: Agent, outages: Team, waiting: Ticket
) -> None:
    actions.do_route_ticket(waiting.pk)
    other = Agent.objects.create(user=type(alice.user).objects.create(username="dan"))
    other.teams.set([outages])
    Agent.objects.filter(pk=other.pk).update(presence="online", languages=["ru"])

    again = as_("carol").post(f"/api/v1/tickets/{waiting.pk}/route/", {}, format="json")
    assert again.status_code == 409
    assert "send reassign: true" in error(again)["message"]

    moved = as_("carol").post(
        f"/api/v1/tickets/{waiting.pk}/route/", {"reassign": True}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["assignee"]["id"] == other.pk
    assert Agent.objects.get(pk=alice.pk).open_count == 0


def test_it_refuses_to_route_a_resolved_ticket(as_: Any, carol: Agent, waiting: Ticket) -> None:
    Ticket.objects.filter(pk=waiting.pk).update(status=Status.RESOLVED)
    response = as_("carol").post(f"/api/v1/tickets/{waiting.pk}/route/", {}, format="json")
    assert response.status_code == 409
    assert "only new and open tickets are routed" in error(response)["message"]


@pytest.mark.parametrize("raw", ["999999", "abc", "0"])
def test_it_answers_404_for_a_ticket_that_does_not_exist(as_: Any, carol: Agent, raw: str):
    response = as_("carol").post(f"/api/v1/tickets/{raw}/route/", {}, format="json")
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


def test_it_refuses_unknown_fields_when_routing(as_: Any, carol: Agent, waiting: Ticket) -> None:
    response = as_("carol").post(
        f"/api/v1/tickets/{waiting.pk}/route/", {"reasign": True}, format="json"
    )
    assert response.status_code == 400
    assert "reasign" in error(response)["fields"]
    assert Ticket.objects.get(pk=waiting.pk).assignee_id is None
