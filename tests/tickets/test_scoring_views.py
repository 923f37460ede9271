"""The scoring page: who may open, preview, save and restore; what a bad dictionary gets;
what the preview shows; and that no customer or dictionary text reaches the page unescaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tickets import actions, priority
from tickets.models import Agent, ScoringConfig
from tickets.priority import default_config

pytestmark = pytest.mark.django_db

URL = "/scoring/"
XSS = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    priority.reset_config_cache()
    yield
    priority.reset_config_cache()


@pytest.fixture
def personas(alice: Agent, bob: Agent, carol: Agent, ada: Agent, mallory: Any) -> dict[str, Any]:
    return {"alice": alice, "bob": bob, "carol": carol, "ada": ada, "mallory": mallory}


def client_for(who: Any) -> Client:
    client = Client()
    if who is not None:
        client.force_login(who.user if isinstance(who, Agent) else who)
    return client


def _save_form(data: Any, note: str = "") -> dict[str, str]:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return {"action": "save", "data": text, "note": note}


def _preview_form(text: str, **extra: str) -> dict[str, str]:
    return {"action": "preview", "text": text, "tier": "standard", "followers": "", **extra}


# --------------------------------------------------------------------------- who may do what


def test_it_sends_anonymous_visitors_to_the_login_page() -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    response = Client().post(URL, _preview_form("нет света"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["alice", "bob", "mallory"])
def test_it_refuses_agents_and_non_agents(personas: dict[str, Any], name: str) -> None:
    client = client_for(personas[name])
    assert client.get(URL).status_code == 403
    assert client.post(URL, _preview_form("нет света")).status_code == 403
    assert client.post(URL, _save_form(default_config())).status_code == 403
    assert not ScoringConfig.objects.exists()


def test_supervisors_read_and_preview_but_do_not_change(carol: Agent) -> None:
    client = client_for(carol)
    page = client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "The built-in dictionary is in force" in html
    assert "readonly" in html
    assert "Save as new version" not in html
    assert client.post(URL, _preview_form("нет света")).status_code == 200
    assert client.post(URL, _save_form(default_config())).status_code == 403
    assert client.post(URL, {"action": "restore", "version": "1"}).status_code == 403
    assert not ScoringConfig.objects.exists()


def test_admins_save_a_new_version_with_a_note(ada: Agent) -> None:
    client = client_for(ada)
    data = default_config()
    data["urgency"]["groups"][1]["points"] = 35
    response = client.post(URL, _save_form(data, note="storm season"))
    assert response.status_code == 302
    saved = ScoringConfig.objects.get()
    assert (saved.version, saved.note, saved.created_by, saved.data) == (
        1,
        "storm season",
        ada,
        data,
    )
    page = client.get(URL).content.decode()
    assert "Version 1 is in force" in page
    assert "storm season" in page


def test_the_header_links_to_the_page_for_supervisors_and_admins_only(
    alice: Agent, carol: Agent, ada: Agent
) -> None:
    assert f'href="{URL}"' not in client_for(alice).get("/").content.decode()
    assert f'href="{URL}"' in client_for(carol).get("/").content.decode()
    assert f'href="{URL}"' in client_for(ada).get("/").content.decode()


# --------------------------------------------------------------------------- bad input


def test_it_refuses_malformed_json_saying_where_and_keeps_the_text(ada: Agent) -> None:
    text = '{\n  "levels": {"urgent": 70,,}\n}'
    response = client_for(ada).post(URL, _save_form(text))
    assert response.status_code == 400
    html = response.content.decode()
    assert "not valid JSON: Expecting property name enclosed in double quotes at line 2" in html
    assert "{&quot;urgent&quot;: 70,,}" in html  # the admin's text, kept (escaped)
    assert not ScoringConfig.objects.exists()


def test_it_refuses_an_invalid_dictionary_listing_every_problem(ada: Agent) -> None:
    data = default_config()
    data["levels"]["high"] = 90
    data["negativity"]["terms"]["ru"].append("опять*позор")
    response = client_for(ada).post(URL, _save_form(data))
    assert response.status_code == 400
    html = response.content.decode()
    assert "config.levels: must rise: normal &lt; high &lt; urgent" in html
    assert "config.negativity.terms.ru[9]:" in html
    assert not ScoringConfig.objects.exists()


def test_it_refuses_an_unknown_action_and_a_bad_version(ada: Agent) -> None:
    client = client_for(ada)
    response = client.post(URL, {"action": "drop"})
    assert response.status_code == 302
    assert "unknown action 'drop'" in [str(m) for m in get_messages(response.wsgi_request)]
    response = client.post(URL, {"action": "restore", "version": "12"})
    assert "scoring version 12 does not exist" in [
        str(m) for m in get_messages(response.wsgi_request)
    ]


# --------------------------------------------------------------------------- preview


def test_the_preview_shows_level_points_every_reason_topic_and_language(carol: Agent) -> None:
    response = client_for(carol).post(
        URL,
        _preview_form(
            "Возле школы оборван провод, искрит!!", tier="life_support", followers="1000"
        ),
    )
    assert response.status_code == 200
    result = response.context["result"]
    assert result["level"] == "urgent"
    assert result["safety"] is True
    assert [r["signal"] for r in result["reasons"]] == ["safety", "shouting", "tier", "influence"]
    assert result["points"] == 70 + 5 + 35 + 9
    assert (result["topic"], result["language"]) == ("outage", "ru")
    html = response.content.decode()
    assert "safety: always urgent" in html
    assert "119 points" in html
    assert "Русский" in html


def test_the_preview_says_when_a_language_is_not_ours(carol: Agent) -> None:
    response = client_for(carol).post(
        URL, _preview_form("No tenemos luz desde ayer por la noche, ¿cuándo vuelve?")
    )
    assert "not one of ours (es)" in response.content.decode()


def test_the_preview_scores_with_the_unsaved_draft_and_keeps_it(ada: Agent) -> None:
    data = default_config()
    data["urgency"]["groups"][1]["phrases"]["en"].append("lights flicker")
    draft = json.dumps(data, ensure_ascii=False, indent=2)
    client = client_for(ada)
    without = client.post(URL, _preview_form("the lights flicker", draft=draft))
    assert without.context["result"]["points"] == 0
    assert without.context["editor"] == draft  # unsaved edits survive a preview
    drafted = client.post(URL, _preview_form("the lights flicker", use_draft="on", draft=draft))
    assert drafted.context["result"]["points"] == 30
    assert "with the unsaved draft" in drafted.content.decode()
    assert not ScoringConfig.objects.exists()


def test_the_preview_refuses_empty_text_and_a_broken_draft(carol: Agent) -> None:
    client = client_for(carol)
    response = client.post(URL, _preview_form("   "))
    assert response.status_code == 400
    assert "type a message to score" in response.content.decode()
    response = client.post(URL, _preview_form("no power", use_draft="on", draft="{"))
    assert response.status_code == 400
    assert "not valid JSON" in response.content.decode()


def test_customer_text_and_dictionary_phrases_are_escaped(
    ada: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    data = default_config()
    data["urgency"]["groups"][1]["phrases"]["en"].append(XSS)
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_save_scoring_config(data, actor=ada, note=XSS)
    response = client_for(ada).post(URL, _preview_form(f"{XSS} no power"))
    result = response.context["result"]
    assert XSS in result["reasons"][0]["detail"]  # the phrase matched...
    html = response.content.decode()
    assert XSS not in html  # ...and reached the page only escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --------------------------------------------------------------------------- history


def test_admins_view_and_restore_an_old_version(
    ada: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = default_config(), default_config()
    second["public"]["points"] = 20
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_save_scoring_config(first, actor=ada, note="first")
        actions.do_save_scoring_config(second, actor=ada, note="second")
    client = client_for(ada)
    old = client.get(URL, {"version": "1"})
    assert old.context["viewing_old"] is True
    assert json.loads(old.context["editor"]) == first
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL, {"action": "restore", "version": "1"})
    assert response.status_code == 302
    newest = ScoringConfig.objects.order_by("-version").first()
    assert (newest.version, newest.note, newest.data) == (3, "restored version 1", first)
    assert priority.current_config().data["public"]["points"] == 8
