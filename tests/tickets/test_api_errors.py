"""No input makes the API answer 500 or HTML: malformed bodies, wrong types, odd ids, unknown
paths. And the OpenAPI schema and docs are served, from our own static files."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rest_framework.test import APIClient

from tickets.models import Agent, CannedResponse, Contact, ContactMerge, Tag, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Every test creates its personas; the production password hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(telegram, receive, ada, carol) -> dict[str, Any]:
    ticket = receive(telegram, "нет света", sender="1").ticket
    other = receive(telegram, "и у меня", sender="2").ticket.contact
    from tickets import actions

    merge = actions.do_merge_contacts(ticket.contact, other, actor=carol)
    actions.do_unmerge_contacts(merge, actor=carol)
    tag = Tag.objects.create(name="storm")
    canned = CannedResponse.objects.create(shortcut="eta", title="ETA", body="Soon")
    return {
        "ticket": ticket,
        "contact": ticket.contact,
        "merge": merge,
        "tag": tag,
        "canned": canned,
        "team": ticket.team,
        "agent": carol,
        "channel": telegram,
    }


def write_endpoints(w: dict[str, Any]) -> list[tuple[str, str]]:
    t, c = w["ticket"].pk, w["contact"].pk
    return [
        ("post", "/api/v1/auth/token/"),
        ("post", f"/api/v1/tickets/{t}/reply/"),
        ("post", f"/api/v1/tickets/{t}/notes/"),
        ("post", f"/api/v1/tickets/{t}/assign/"),
        ("post", f"/api/v1/tickets/{t}/transfer/"),
        ("post", f"/api/v1/tickets/{t}/status/"),
        ("post", f"/api/v1/tickets/{t}/priority/"),
        ("post", f"/api/v1/tickets/{t}/tags/"),
        ("patch", f"/api/v1/contacts/{c}/"),
        ("post", f"/api/v1/contacts/{c}/merge/"),
        ("post", f"/api/v1/contacts/{c}/calls/"),
        ("post", "/api/v1/teams/"),
        ("patch", f"/api/v1/teams/{w['team'].pk}/"),
        ("post", "/api/v1/agents/"),
        ("patch", f"/api/v1/agents/{w['agent'].pk}/"),
        ("post", "/api/v1/tags/"),
        ("patch", f"/api/v1/tags/{w['tag'].pk}/"),
        ("post", "/api/v1/canned-responses/"),
        ("patch", f"/api/v1/canned-responses/{w['canned'].pk}/"),
        ("post", "/api/v1/channels/"),
        ("patch", f"/api/v1/channels/{w['channel'].pk}/"),
    ]


NUL = "\x00"
WEIRD_BODIES: list[Any] = [
    [],
    ["text"],
    "text",
    123,
    None,
    True,
    {"": 1},
    {"text": None, "status": None, "assignee": None, "team": None, "source": None},
    {"text": 12, "status": 12, "assignee": "12", "add": "x", "remove": {"a": 1}},
    {"text": {"nested": [1, 2]}, "priority": ["urgent"], "reason": 5},
    {"text": NUL, "reason": NUL, "name": NUL, "display_name": NUL, "note": NUL, "add": [NUL]},
    {"attributes": {NUL: NUL}},
    {"settings": {"a": NUL}},
    {"credentials": {"k": NUL}},
    {"attributes": {"a": "\\u0000"}, "settings": {"a": ["\\u0000"]}},
    {"assignee": 2**64, "team": -1, "agent": 1.5, "source": 2**63, "ticket": 0},
    {"name": "x" * 10000, "slug": "x" * 100, "shortcut": "x" * 100, "key": "x" * 100},
    {"username": "x" * 1000, "password": "x" * 5000},
    {"started_at": "0001-01-01T00:00:00+05:00", "duration_seconds": 10**20},
    {"started_at": "9999-12-31T23:59:59-12:00", "phone": "+" + "9" * 60},
    {"value": "1e400", "tier": None, "language": 7, "accounts": [None, 1, ""]},
    {"teams": [None], "skills": [None, {"id": None}], "languages": None, "capacity": 10**10},
    {"parent": [], "default_team": {}, "kind": None, "is_active": "maybe"},
    {"color": None, "body": None, "title": [], "team": "none"},
    {"status": "resolved", "text": "ok", "attachments": [None]},
]


@pytest.mark.parametrize("body_index", range(len(WEIRD_BODIES)))
def test_it_never_answers_500_to_a_weird_json_body(api, world, ada, body_index):
    client = api(ada)
    body = WEIRD_BODIES[body_index]
    for method, url in write_endpoints(world):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code < 500, (method, url, body, response.content)
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/json", (url, response.content)
            assert response.json()["error"]["message"], url


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "resource,body,field,message",
    [
        ("contact", {"attributes": {"a": NUL}}, "attributes", "contains a NUL character"),
        ("contact", {"attributes": {NUL: 1}}, "attributes", "contains a NUL character"),
        ("contact", {"attributes": _nested(40)}, "attributes", "nested too deeply"),
        ("channel", {"settings": {"a": [NUL]}}, "settings", "contains a NUL character"),
        ("channel", {"credentials": {"k": NUL}}, "credentials", "contains a NUL character"),
        ("channel", {"credentials": {NUL: "v"}}, "credentials", "contains a NUL character"),
    ],
)
def test_it_refuses_json_that_postgresql_cannot_store(
    api, world, ada, resource, body, field, message
):
    url = {
        "contact": f"/api/v1/contacts/{world['contact'].pk}/",
        "channel": f"/api/v1/channels/{world['channel'].pk}/",
    }[resource]
    response = api(ada).patch(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw,content_type,status,code",
    [
        ('{"text": "hi",', "application/json", 400, "parse_error"),
        ("{'text': 'hi'}", "application/json", 400, "parse_error"),
        ('{"text": NaN}', "application/json", 400, "parse_error"),
        ("[" * 100000 + "]" * 100000, "application/json", 400, "parse_error"),
        ("\xff\xfe garbage", "application/json", 400, "parse_error"),
        ("text=hi", "text/plain", 415, "unsupported_media_type"),
        ("<xml/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_it_answers_an_unreadable_body_with_a_json_4xx(
    api, world, ada, raw, content_type, status, code
):
    client = api(ada)
    for method, url in write_endpoints(world):
        response = client.generic(
            method.upper(),
            url,
            raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw,
            content_type=content_type,
        )
        assert response.status_code == status, (url, response.content[:200])
        assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "bad_id", ["abc", "0", "-1", "1.5", "99999999999999999999999", "%C2%B2", "1e3"]
)
@pytest.mark.parametrize(
    "path",
    [
        "tickets/{}/",
        "tickets/{}/messages/",
        "tickets/{}/reply/",
        "contacts/{}/",
        "contacts/{}/timeline/",
        "contacts/merges/{}/",
        "contacts/merges/{}/undo/",
        "teams/{}/",
        "agents/{}/",
        "tags/{}/",
        "canned-responses/{}/",
        "channels/{}/",
    ],
)
def test_it_answers_a_malformed_id_in_a_path_with_a_json_404(api, world, carol, path, bad_id):
    url = "/api/v1/" + path.format(bad_id)
    method = "post" if url.endswith(("reply/", "undo/")) else "get"
    response = getattr(api(carol), method)(url, {}, format="json")
    assert response.status_code == 404, (url, response.content)
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "model,path",
    [
        (Ticket, "tickets"),
        (Contact, "contacts"),
        (ContactMerge, "contacts/merges"),
        (Agent, "agents"),
        (Tag, "tags"),
    ],
)
def test_it_answers_an_unknown_id_with_a_json_404_naming_it(api, world, carol, model, path):
    missing = (model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000
    response = api(carol).get(f"/api/v1/{path}/{missing}/")
    assert response.status_code == 404
    assert str(missing) in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path,message",
    [
        ("/api/v1/nothing-here/", "no API endpoint at /api/v1/nothing-here/"),
        ("/api/v1/tickets", "did you mean /api/v1/tickets/ ?"),
        ("/api/v1/bot-flows/", "no API endpoint"),
        ("/api/v1/tickets/1/unknown-op/", "no API endpoint"),
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_answers_an_unknown_api_path_with_a_json_404(api, carol, path, message, method):
    response = getattr(api(carol), method)(path)
    assert response.status_code == 404
    assert message in response.json()["error"]["message"]


def test_it_answers_a_wrong_method_with_a_json_405(api, world, carol):
    response = api(carol).delete(f"/api/v1/tickets/{world['ticket'].pk}/")
    assert response.status_code == 405
    assert response.json()["error"] == {
        "code": "method_not_allowed",
        "message": 'Method "DELETE" not allowed.',
    }


NESTED_CURSOR = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/tickets/?cursor={NESTED_CURSOR}",
        f"/api/v1/contacts/?cursor={NESTED_CURSOR}",
        f"/api/v1/teams/?cursor={NESTED_CURSOR}",
        "/api/v1/tickets/?status=new&status=%00",
        "/api/v1/tickets/?q=%ED%A0%80",
        "/api/v1/tickets/?created_after=2024-02-30",
        "/api/v1/tickets/?page_size=1e2",
        "/api/v1/tickets/?page_size=-5",
        "/api/v1/tickets/?cursor=%00",
        "/api/v1/tickets/?cursor=WyJuIiwxLDIsMyw0XQ",
        "/api/v1/tickets/?cursor=WyJuIiw5OTk5OTk5OTk5OTk5OTk5OTk5OSwiMjAyNC0wMS0wMVQwMDowMDowMFoiLG51bGwsMV0",
        "/api/v1/tickets/?cursor=WyJwIiwxLCIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIixudWxsLDFd",
        "/api/v1/contacts/?q=%00",
        "/api/v1/contacts/?cursor=WyJuIiwxZTQwMF0",
        "/api/v1/contacts/merges/?contact=abc",
        "/api/v1/canned-responses/?team=%C2%B2",
        "/api/v1/agents/?page_size=100000",
    ],
)
def test_it_never_answers_500_to_odd_query_strings(api, world, carol, path):
    response = api(carol).get(path)
    assert response.status_code in (200, 400), (path, response.content)
    assert response["Content-Type"] == "application/json"


# --------------------------------------------------------------------------- schema and docs


def test_it_serves_the_openapi_schema_to_anyone():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/api/v1/auth/token/",
        "/api/v1/tickets/",
        "/api/v1/tickets/{id}/messages/",
        "/api/v1/tickets/{id}/reply/",
        "/api/v1/tickets/{id}/assign/",
        "/api/v1/tickets/take-next/",
        "/api/v1/contacts/{id}/timeline/",
        "/api/v1/contacts/merges/{id}/undo/",
        "/api/v1/channels/{id}/",
        "/api/v1/canned-responses/",
    ):
        assert path in paths, path
    channel = schema["components"]["schemas"]["Channel"]
    assert "credentials" not in channel["properties"]  # the read shape never has it
    assert schema["components"]["schemas"]["ChannelRequest"]["properties"]["credentials"][
        "writeOnly"
    ]
    list_params = {p["name"] for p in paths["/api/v1/tickets/"]["get"]["parameters"]}
    assert {
        "status",
        "priority",
        "channel",
        "team",
        "assignee",
        "tag",
        "language",
        "topic",
        "contact",
        "created_after",
        "created_before",
        "q",
        "cursor",
        "page_size",
    } <= list_params


def test_it_serves_the_docs_page_from_local_static_files():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com"):
        assert cdn not in html
