"""/api/v1/scoring/: the configuration and its versions (supervisors read, admins save),
one version, and the preview; every bad body is a 400 that says what and where."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from tickets import priority
from tickets.models import Agent, ScoringConfig
from tickets.priority import default_config

pytestmark = pytest.mark.django_db

ROOT = "/api/v1/scoring/"
PREVIEW = "/api/v1/scoring/preview/"

Api = Callable[[Any], APIClient]


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    priority.reset_config_cache()
    yield
    priority.reset_config_cache()


@pytest.fixture
def personas(alice: Agent, bob: Agent, carol: Agent, ada: Agent, mallory: Any) -> dict[str, Any]:
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "ada": ada,
        "mallory": mallory,
        "anonymous": None,
    }


def _changed(points: int = 35) -> dict[str, Any]:
    data = default_config()
    data["urgency"]["groups"][1]["points"] = points
    return data


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    ("name", "read", "preview", "save"),
    [
        ("anonymous", 401, 401, 401),
        ("mallory", 403, 403, 403),
        ("alice", 403, 403, 403),
        ("bob", 403, 403, 403),
        ("carol", 200, 200, 403),
        ("ada", 200, 200, 201),
    ],
)
def test_who_may_read_preview_and_save(
    api: Api, personas: dict[str, Any], name: str, read: int, preview: int, save: int
) -> None:
    client = api(personas[name])
    assert client.get(ROOT).status_code == read
    assert client.get(f"{ROOT}versions/1/").status_code == (404 if read == 200 else read)
    assert client.post(PREVIEW, {"text": "нет света"}, format="json").status_code == preview
    response = client.post(ROOT, {"data": _changed(), "note": "n"}, format="json")
    assert response.status_code == save
    assert response.json().get("error", {}).get("code") != ("invalid")
    assert ScoringConfig.objects.count() == (1 if save == 201 else 0)


# --------------------------------------------------------------------------- versions


def test_it_lists_the_built_in_default_before_any_version(api: Api, carol: Agent) -> None:
    body = api(carol).get(ROOT).json()
    assert body["version"] == 0
    assert body["versions"] == []
    assert body["data"] == default_config()


def test_it_saves_lists_and_returns_versions(
    api: Api, ada: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(ada)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(ROOT, {"data": _changed(35), "note": "storm"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["version"], body["note"], body["created_by"]) == (1, "storm", "Ada")
    assert body["data"] == _changed(35)

    listing = client.get(ROOT).json()
    assert listing["version"] == 1
    assert [v["version"] for v in listing["versions"]] == [1]
    assert client.get(f"{ROOT}versions/1/").json()["data"] == _changed(35)
    assert client.get(f"{ROOT}versions/abc/").status_code == 404

    # New messages are scored with it at once in this process.
    preview = client.post(PREVIEW, {"text": "no power"}, format="json").json()
    assert (preview["version"], preview["points"]) == (1, 35)


def test_it_restores_an_old_version(
    api: Api, ada: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(ada)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ROOT, {"data": _changed(35)}, format="json")
        client.post(ROOT, {"data": _changed(40)}, format="json")
        restored = client.post(ROOT, {"restore": 1, "note": "back"}, format="json")
    assert restored.status_code == 201
    assert (restored.json()["version"], restored.json()["note"]) == (3, "back")
    assert restored.json()["data"] == _changed(35)
    missing = client.post(ROOT, {"restore": 9}, format="json")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "scoring version 9 does not exist"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"note": "x"}, "data", "send either data"),
        ({"data": default_config(), "restore": 1}, "data", "send either data"),
        ({"data": [], "note": "x"}, "data", "config: must be an object"),
        ({"data": default_config(), "colour": "red"}, "colour", "unknown field"),
        ({"data": default_config(), "note": "x" * 201}, "note", "no more than 200"),
    ],
)
def test_it_refuses_a_bad_body_saying_which_field(
    api: Api, ada: Agent, body: dict[str, Any], field: str, message: str
) -> None:
    response = api(ada).post(ROOT, body, format="json")
    assert response.status_code == 400
    errors = response.json()["error"]["fields"][field]
    assert any(message in e for e in errors), errors
    assert not ScoringConfig.objects.exists()


def test_it_refuses_an_invalid_configuration_listing_each_problem(api: Api, ada: Agent) -> None:
    data = default_config()
    data["levels"]["urgent"] = 10
    data["tiers"]["vip"] = "a lot"
    data["topics"][0]["phrases"]["ru"].append("")
    response = api(ada).post(ROOT, {"data": data}, format="json")
    assert response.status_code == 400
    errors = response.json()["error"]["fields"]["data"]
    assert errors == [
        "config.levels: must rise: normal < high < urgent",
        "config.tiers.vip: must be a whole number",
        "config.topics[0].phrases.ru[5]: '' is empty",
    ]
    assert not ScoringConfig.objects.exists()


def test_it_refuses_a_nul_character_in_the_configuration(api: Api, ada: Agent) -> None:
    data = default_config()
    data["negativity"]["terms"]["en"].append("bad\x00word")
    response = api(ada).post(ROOT, {"data": data}, format="json")
    assert response.status_code == 400
    assert not ScoringConfig.objects.exists()


# --------------------------------------------------------------------------- preview


def test_the_preview_returns_level_points_reasons_topic_and_language(
    api: Api, carol: Agent
) -> None:
    response = api(carol).post(
        PREVIEW,
        {
            "text": "You guys are useless, third outage this week",
            "followers": 250_000,
            "verified": True,
            "public": True,
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["level"] == "normal"
    assert body["points"] == 8 + 12 + 4 + 8
    assert [r["signal"] for r in body["reasons"]] == [
        "negativity",
        "influence",
        "influence",
        "public",
    ]
    assert (body["topic"], body["language"], body["language_method"]) == ("outage", "en", "lingua")
    assert body["sentiment"] == 8
    assert body["safety"] is False


def test_the_preview_scores_with_unsaved_data(api: Api, carol: Agent) -> None:
    data = _changed(44)
    body = api(carol).post(PREVIEW, {"text": "sem luz", "data": data}, format="json").json()
    assert (body["points"], body["version"]) == (44, 0)
    assert not ScoringConfig.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 20_001}, "text"),
        ({"text": "ok", "tier": "gold"}, "tier"),
        ({"text": "ok", "followers": -1}, "followers"),
        ({"text": "ok", "data": {"levels": {}}}, "data"),
        ({"text": "ok", "sender": "x"}, "sender"),
    ],
)
def test_the_preview_refuses_bad_input(
    api: Api, carol: Agent, body: dict[str, Any], field: str
) -> None:
    response = api(carol).post(PREVIEW, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_the_schema_documents_the_scoring_endpoints(api: Api) -> None:
    schema = api(None).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = schema.json()["paths"]
    assert {"/api/v1/scoring/", "/api/v1/scoring/preview/"} <= set(paths)
    assert "/api/v1/scoring/versions/{version}/" in paths
