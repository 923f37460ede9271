"""Configuration over the API: teams, agents, tags, canned responses and channels. Every staff
member reads; admins write (canned responses: supervisors too); channel credentials never
leave the server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels_in.models import Channel
from tests.conftest import PASSWORD, make_agent
from tickets import actions
from tickets.models import Agent, AgentSkill, CannedResponse, Role, Skill, Tag, Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Every test creates its personas; the production password hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_(request: pytest.FixtureRequest, api: Any) -> Any:
    def _client(name: str) -> APIClient:
        return api(None if name == "anonymous" else request.getfixturevalue(name))

    return _client


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


@pytest.fixture
def canned(outages: Team, carol: Agent) -> CannedResponse:
    return CannedResponse.objects.create(
        shortcut="outage-eta",
        title="Outage: crew on the way",
        body="Здравствуйте, {{contact.name}}! Бригада уже выехала.",
        language="ru",
        team=outages,
        created_by=carol,
    )


@pytest.fixture
def config(outages, billing, telegram, canned) -> dict[str, Any]:
    """One of each configuration object."""
    return {
        "teams": outages,
        "agents": make_agent("dan", teams=(outages,)),
        "tags": Tag.objects.create(name="storm"),
        "canned-responses": canned,
        "channels": telegram,
    }


CREATE = {
    "teams": {"name": "Water", "slug": "water", "description": "Water supply"},
    "agents": {"username": "erin", "first_name": "Erin", "password": "s3cure-passw0rd"},
    "tags": {"name": "Frozen Pipes", "color": "#00AAFF"},
    "canned-responses": {"shortcut": "thanks", "title": "Thanks", "body": "Thank you!"},
    "channels": {"kind": "viber", "key": "viber-main", "name": "Viber"},
}
CHANGE = {
    "teams": {"description": "Power outages and wires down"},
    "agents": {"capacity": 3},
    "tags": {"color": "#ff0000"},
    "canned-responses": {"title": "Crew on the way"},
    "channels": {"name": "Telegram (main)"},
}
RESOURCES = list(CREATE)


# --------------------------------------------------------------------------- who may


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize(
    "persona,status",
    [
        ("alice", 200),
        ("bob", 200),
        ("carol", 200),
        ("ada", 200),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_lets_every_staff_member_read_configuration(as_, config, resource, persona, status):
    client = as_(persona)
    listing = client.get(f"/api/v1/{resource}/")
    detail = client.get(f"/api/v1/{resource}/{config[resource].pk}/")
    assert listing.status_code == detail.status_code == status
    if status == 200:
        assert config[resource].pk in [row["id"] for row in listing.json()["results"]]
        assert detail.json()["id"] == config[resource].pk
    else:
        assert error(listing)["message"] and error(detail)["message"]


def _writer_status(resource: str, persona: str) -> tuple[int, int, int]:
    """Expected (create, update, delete) statuses."""
    if persona == "anonymous":
        return 401, 401, 401
    may_write = persona == "ada" or (resource == "canned-responses" and persona == "carol")
    return (201, 200, 204) if may_write else (403, 403, 403)


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("persona", ["alice", "bob", "carol", "ada", "mallory", "anonymous"])
def test_it_lets_only_admins_change_configuration(as_, config, resource, persona):
    client = as_(persona)
    create, update, delete = _writer_status(resource, persona)

    created = client.post(f"/api/v1/{resource}/", CREATE[resource], format="json")
    assert created.status_code == create, created.content
    changed = client.patch(
        f"/api/v1/{resource}/{config[resource].pk}/", CHANGE[resource], format="json"
    )
    assert changed.status_code == update, changed.content
    if created.status_code == 201:
        deleted = client.delete(f"/api/v1/{resource}/{created.json()['id']}/")
    else:
        deleted = client.delete(f"/api/v1/{resource}/{config[resource].pk}/")
    assert deleted.status_code == delete, deleted.content
    if delete != 204:
        assert error(deleted)["message"]
        assert type(config[resource]).objects.filter(pk=config[resource].pk).exists()


def test_it_tells_an_agent_why_configuration_is_read_only(as_, config):
    response = as_("alice").post("/api/v1/teams/", CREATE["teams"], format="json")
    assert error(response)["message"] == "only admins may change the configuration"
    response = as_("mallory").post("/api/v1/teams/", CREATE["teams"], format="json")
    assert error(response)["message"] == "this account is not a helpdesk agent"
    response = as_("bob").post("/api/v1/canned-responses/", CREATE["canned-responses"])
    assert error(response)["message"] == "only supervisors and admins may change this"


# --------------------------------------------------------------------------- teams


def test_it_creates_a_team_deriving_the_slug_from_the_name(as_, outages):
    response = as_("ada").post(
        "/api/v1/teams/", {"name": "Meter Readings", "parent": outages.pk}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["slug"] == "meter-readings"
    assert response.json()["parent"] == outages.pk


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({"name": "Outages"}, "name", "already exists"),
        ({"name": "Аварии"}, "slug", "give a slug"),
        ({"name": "X", "slug": "not a slug!"}, "slug", 'Enter a valid "slug"'),
        ({"name": "X", "slug": "x", "parent": 987654}, "parent", "object does not exist"),
        ({"name": "X", "slug": "x", "parent": "outages"}, "parent", "Incorrect type"),
        ({"name": ""}, "name", "may not be blank"),
        ({"name": "X", "color": "red"}, "color", "unknown field"),
    ],
)
def test_it_rejects_a_bad_team_with_a_specific_400(as_, outages, body, field, message):
    response = as_("ada").post("/api/v1/teams/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]


def test_it_refuses_to_make_a_team_its_own_ancestor(as_, outages):
    child = Team.objects.create(name="Wires", slug="wires", parent=outages)
    response = as_("ada").patch(f"/api/v1/teams/{outages.pk}/", {"parent": child.pk}, format="json")
    assert response.status_code == 400
    assert "cannot be its own ancestor" in error(response)["message"]


def test_it_refuses_to_delete_a_team_with_active_tickets(as_, telegram, receive, outages):
    receive(telegram, "нет света", sender="1")
    response = as_("ada").delete(f"/api/v1/teams/{outages.pk}/")
    assert response.status_code == 409
    assert "has 1 active tickets" in error(response)["message"]
    assert Team.objects.filter(pk=outages.pk).exists()


def test_it_refuses_to_delete_a_team_that_owns_canned_responses(as_, canned, outages):
    response = as_("ada").delete(f"/api/v1/teams/{outages.pk}/")
    assert response.status_code == 409
    assert "canned responses" in error(response)["message"]


# --------------------------------------------------------------------------- agents


def test_it_shows_agents_with_teams_skills_and_load(as_, alice, outages):
    hv = Skill.objects.create(name="High voltage", slug="hv")
    AgentSkill.objects.create(agent=alice, skill=hv, proficiency=4)
    body = as_("bob").get(f"/api/v1/agents/{alice.pk}/").json()
    assert body["username"] == "alice" and body["name"] == "Alice"
    assert body["teams"] == [outages.pk]
    assert body["skills"] == [{"id": hv.pk, "name": "High voltage", "proficiency": 4}]
    assert body["languages"] == ["ru", "lt", "en"]
    assert body["role"] == "agent" and body["open_count"] == 0
    assert "password" not in body


def test_it_lets_an_admin_change_an_agents_role_teams_skills_languages_and_load(
    as_, alice, billing, outages
):
    hv = Skill.objects.create(name="High voltage", slug="hv")
    response = as_("ada").patch(
        f"/api/v1/agents/{alice.pk}/",
        {
            "role": "supervisor",
            "teams": [outages.pk, billing.pk],
            "skills": [{"id": hv.pk, "proficiency": 5}],
            "languages": ["ru", "zh"],
            "capacity": 25,
            "auto_assign": False,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["role"] == "supervisor"
    assert sorted(body["teams"]) == sorted([outages.pk, billing.pk])
    assert body["skills"] == [{"id": hv.pk, "name": "High voltage", "proficiency": 5}]
    fresh = Agent.objects.get(pk=alice.pk)
    assert fresh.languages == ["ru", "zh"] and fresh.capacity == 25 and not fresh.auto_assign


def test_it_creates_an_agent_who_can_then_sign_in(as_, outages):
    response = as_("ada").post(
        "/api/v1/agents/",
        {
            "username": "erin",
            "first_name": "Erin",
            "email": "erin@utility.example",
            "password": "s3cure-passw0rd",
            "teams": [outages.pk],
            "languages": ["lt"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["teams"] == [outages.pk]
    assert "password" not in response.json()
    token = APIClient().post(
        "/api/v1/auth/token/", {"username": "erin", "password": "s3cure-passw0rd"}
    )
    assert token.status_code == 200


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({"role": "god"}, "role", "role must be one of agent, supervisor, admin; got 'god'"),
        ({"teams": [987654]}, "teams", "no team with id 987654"),
        ({"teams": "outages"}, "teams", "Expected a list"),
        ({"skills": [{"id": 987654}]}, "skills", "no skill with id 987654"),
        ({"skills": [{"id": 1, "proficiency": 9}]}, "skills", "less than or equal to 5"),
        ({"languages": ["klingon"]}, "languages", "unknown language 'klingon'"),
        ({"capacity": -1}, "capacity", "greater than or equal to 0"),
        ({"capacity": "many"}, "capacity", "A valid integer is required"),
        ({"auto_assign": "perhaps"}, "auto_assign", "Must be a valid boolean"),
        ({"username": "mallory2"}, "username", "a username cannot change"),
        ({"password": "new-passw0rd!"}, "non_field_errors", "belong to the login account"),
        ({"open_count": 0, "presence_x": 1}, "presence_x", "unknown field"),
    ],
)
def test_it_rejects_a_bad_agent_change_with_a_specific_400(as_, alice, body, field, message):
    response = as_("ada").patch(f"/api/v1/agents/{alice.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]


def test_it_rejects_a_new_agent_with_a_taken_username(as_, alice):
    response = as_("ada").post("/api/v1/agents/", {"username": "Alice"}, format="json")
    assert response.status_code == 400
    assert "username 'Alice' is taken" in error(response)["message"]


def test_it_keeps_at_least_one_admin(as_, ada):
    response = as_("ada").patch(f"/api/v1/agents/{ada.pk}/", {"role": "agent"}, format="json")
    assert response.status_code == 409
    assert "the last admin" in error(response)["message"]
    assert Agent.objects.get(pk=ada.pk).role == Role.ADMIN
    assert as_("ada").delete(f"/api/v1/agents/{ada.pk}/").status_code == 409


def test_it_refuses_to_delete_an_agent_who_holds_active_tickets(as_, telegram, receive, alice):
    ticket = receive(telegram, "нет света", sender="1").ticket
    actions.do_assign(ticket, alice, actor=alice)
    response = as_("ada").delete(f"/api/v1/agents/{alice.pk}/")
    assert response.status_code == 409
    assert "Alice has 1 active tickets" in error(response)["message"]


# --------------------------------------------------------------------------- tags


def test_it_normalizes_tag_names_and_refuses_duplicates(as_):
    response = as_("ada").post("/api/v1/tags/", {"name": "  Frozen Pipes "}, format="json")
    assert response.status_code == 201
    assert response.json()["name"] == "frozen-pipes" and response.json()["color"] == "#64748b"
    again = as_("ada").post("/api/v1/tags/", {"name": "FROZEN pipes"}, format="json")
    assert again.status_code == 400
    assert "tag 'frozen-pipes' already exists" in error(again)["message"]


@pytest.mark.parametrize(
    "body,message",
    [({"name": "x", "color": "red"}, "color must look like #1a2b3c"), ({"name": "  "}, "blank")],
)
def test_it_rejects_a_bad_tag(as_, body, message):
    response = as_("ada").post("/api/v1/tags/", body, format="json")
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_it_refuses_to_delete_a_tag_that_is_on_tickets(as_, telegram, receive, carol):
    ticket = receive(telegram, "нет света", sender="1").ticket
    actions.do_update_tags(ticket, actor=carol, add=["storm"])
    tag = Tag.objects.get(name="storm")
    response = as_("ada").delete(f"/api/v1/tags/{tag.pk}/")
    assert response.status_code == 409
    assert "is on 1 tickets" in error(response)["message"]


# --------------------------------------------------------------------------- canned responses


@pytest.fixture
def library(outages, billing, carol) -> dict[str, CannedResponse]:
    make = CannedResponse.objects.create
    return {
        "ru": make(shortcut="eta", title="Бригада", body="Бригада выехала", language="ru"),
        "en": make(shortcut="eta", title="Crew", body="The crew is on its way", language="en"),
        "any": make(shortcut="hello", title="Hello", body="Hello!", language=""),
        "billing": make(
            shortcut="refund", title="Refund", body="Refund issued", language="en", team=billing
        ),
    }


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"language": "ru"}, {"ru"}),
        ({"language": "ru,any"}, {"ru", "any"}),
        ({"team": "none"}, {"ru", "en", "any"}),
        ({"team": "billing"}, {"billing"}),
        ({"q": "crew"}, {"en"}),
        ({"q": "/refund"}, {"billing"}),
        ({"q": "БРИГАДА"}, {"ru"}),
        ({"language": "en", "q": "refund"}, {"billing"}),
    ],
)
def test_it_filters_canned_responses(as_, library, billing, params, expected):
    if params.get("team") == "billing":
        params = {"team": str(billing.pk)}
    response = as_("alice").get("/api/v1/canned-responses/", params)
    assert response.status_code == 200
    by_id = {c.pk: name for name, c in library.items()}
    assert {by_id[row["id"]] for row in response.json()["results"]} == expected


@pytest.mark.parametrize(
    "params,message",
    [
        ({"language": "xx"}, "unknown language 'xx'"),
        ({"team": "billing"}, "team must be ids or none; got 'billing'"),
        ({"q": "x" * 201}, "at most 200 characters"),
    ],
)
def test_it_rejects_bad_canned_response_filters(as_, library, params, message):
    response = as_("alice").get("/api/v1/canned-responses/", params)
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_it_records_who_wrote_a_canned_response(as_, carol):
    response = as_("carol").post(
        "/api/v1/canned-responses/",
        {"shortcut": "сбой", "title": "Сбой", "body": "Идут работы", "language": "ru"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["created_by"] == {"id": carol.pk, "name": "Carol"}
    assert response.json()["shortcut"] == "сбой"


def _canned(**fields: Any) -> dict[str, Any]:
    return {"shortcut": "x", "title": "x", "body": "y", **fields}


@pytest.mark.parametrize(
    "body,field,message",
    [
        (_canned(shortcut="eta", language="ru"), "shortcut", "/eta already exists for language ru"),
        (_canned(body="   "), "body", "may not be blank"),
        (_canned(language="xx"), "language", "language must be one of"),
        (_canned(shortcut="has space"), "shortcut", 'valid "slug"'),
        (_canned(team=987654), "team", "object does not exist"),
        (_canned(usage_count="x", extra=1), "extra", "unknown field"),
    ],
)
def test_it_rejects_a_bad_canned_response_with_a_specific_400(as_, library, body, field, message):
    response = as_("carol").post("/api/v1/canned-responses/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]


# --------------------------------------------------------------------------- channels


SECRETS = {"bot_token": "123456:SECRET-bot-token", "secret_token": "hush-hush-42"}


def _all_channel_responses(client: APIClient, channel_id: int) -> list[Any]:
    return [
        client.get("/api/v1/channels/"),
        client.get(f"/api/v1/channels/{channel_id}/"),
    ]


def test_it_never_returns_channel_credentials(as_, outages):
    admin = as_("ada")
    created = admin.post(
        "/api/v1/channels/",
        {
            "kind": "telegram",
            "key": "tg-night",
            "name": "Night bot",
            "credentials": SECRETS,
            "settings": {"business_hours": "08-20"},
            "default_team": outages.pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    channel_id = created.json()["id"]
    assert Channel.objects.get(pk=channel_id).credentials == SECRETS

    rotated = admin.patch(
        f"/api/v1/channels/{channel_id}/",
        {"credentials": {"secret_token": "rotated-secret-99"}},
        format="json",
    )
    assert rotated.status_code == 200
    # Merged: the bot token stays, the secret is rotated.
    assert Channel.objects.get(pk=channel_id).credentials == {
        "bot_token": "123456:SECRET-bot-token",
        "secret_token": "rotated-secret-99",
    }
    put = admin.put(
        f"/api/v1/channels/{channel_id}/",
        {"kind": "telegram", "key": "tg-night", "name": "Night bot", "credentials": SECRETS},
        format="json",
    )
    assert put.status_code == 200

    responses = [created, rotated, put]
    for persona in ("alice", "carol", "ada"):
        responses += _all_channel_responses(as_(persona), channel_id)
    for response in responses:
        raw = json.dumps(response.json())
        assert "credentials" not in _keys(response.json())
        for secret in [*SECRETS.values(), "rotated-secret-99"]:
            assert secret not in raw
    assert created.json()["credential_names"] == ["bot_token", "secret_token"]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_it_removes_a_credential_set_to_null(as_, telegram):
    response = as_("ada").patch(
        f"/api/v1/channels/{telegram.pk}/", {"credentials": {"secret_token": None}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["credential_names"] == ["bot_token"]


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({"credentials": ["token"]}, "credentials", "credentials must be a JSON object"),
        ({"credentials": "token"}, "credentials", "credentials must be a JSON object"),
        ({"credentials": {"bot_token": {"a": 1}}}, "credentials", "must be text, a number"),
        ({"settings": ["x"]}, "settings", "settings must be a JSON object"),
        ({"settings": "x"}, "settings", "settings must be a JSON object"),
        ({"kind": "viber"}, "kind", "a channel's kind cannot change"),
        ({"kind": "pigeon"}, "kind", "is not a valid choice"),
        ({"key": "has spaces"}, "key", 'valid "slug"'),
        ({"default_team": 987654}, "default_team", "object does not exist"),
    ],
)
def test_it_rejects_a_bad_channel_with_a_specific_400(as_, telegram, body, field, message):
    response = as_("ada").patch(f"/api/v1/channels/{telegram.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]
    assert "s3cret" not in json.dumps(response.json())  # the fixture's secret_token


def test_it_refuses_to_delete_a_channel_with_tickets(as_, telegram, receive):
    receive(telegram, "нет света", sender="1")
    response = as_("ada").delete(f"/api/v1/channels/{telegram.pk}/")
    assert response.status_code == 409
    assert "deactivate it" in error(response)["message"]
    assert Channel.objects.filter(pk=telegram.pk).exists()


def test_it_signs_in_and_reads_config_with_a_real_password(alice):
    # The personas' password works against the token endpoint with the fast hasher too.
    client = APIClient()
    token = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()[
        "token"
    ]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/teams/").status_code == 200
