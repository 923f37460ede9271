from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Every test creates its personas; the production password hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


TOKEN_URL = "/api/v1/auth/token/"


def test_it_exchanges_an_agents_username_and_password_for_a_token(alice):
    response = APIClient().post(
        TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(key=key).user == alice.user
    # The same token until it is revoked: a second sign-in does not log out other clients.
    again = APIClient().post(TOKEN_URL, {"username": "alice", "password": PASSWORD})
    assert again.json()["token"] == key


@pytest.mark.parametrize(
    "username,password",
    [("alice", "wrong-password"), ("nobody", PASSWORD), ("ALICE ", PASSWORD)],
)
def test_it_refuses_wrong_credentials_with_one_message_for_all_cases(alice, username, password):
    response = APIClient().post(
        TOKEN_URL, {"username": username, "password": password}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_credentials",
        "message": "unable to sign in with that username and password",
    }
    assert not Token.objects.exists()


def test_it_refuses_a_disabled_account_like_a_wrong_password(alice):
    get_user_model().objects.filter(pk=alice.user_id).update(is_active=False)
    response = APIClient().post(TOKEN_URL, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_it_gives_no_token_to_a_user_who_is_not_a_helpdesk_agent(mallory):
    response = APIClient().post(TOKEN_URL, {"username": "mallory", "password": PASSWORD})

    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this account is not a helpdesk agent"
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "alice"}, "password"),
        ({"username": ["alice"], "password": PASSWORD}, "username"),
        ({"username": "alice", "password": PASSWORD, "otp": "1"}, "otp"),
    ],
)
def test_it_names_the_missing_or_wrong_field_of_a_token_request(alice, body, field):
    response = APIClient().post(TOKEN_URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_it_answers_malformed_json_on_the_token_endpoint_with_400(alice):
    response = APIClient().post(
        TOKEN_URL, data='{"username": "alice",', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_it_authenticates_api_requests_with_the_token(alice):
    key = APIClient().post(TOKEN_URL, {"username": "alice", "password": PASSWORD}).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/tickets/").status_code == 200


def test_it_authenticates_api_requests_with_a_session(alice):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password=PASSWORD)
    assert client.get("/api/v1/tickets/").status_code == 200
    # A session write without the CSRF token is refused: a session is a browser's.
    response = client.post("/api/v1/tickets/take-next/")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_it_answers_401_to_anonymous_and_to_a_bad_token(alice):
    anonymous = APIClient().get("/api/v1/tickets/")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"] == "Token"

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/tickets/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid token"


def test_it_answers_403_to_a_token_whose_user_is_not_an_agent(mallory):
    token = Token.objects.create(user=mallory)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/tickets/")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this account is not a helpdesk agent"


def test_it_stops_accepting_a_deleted_token_at_once(alice):
    # Nothing about a token is cached between requests (tickets.auth reads it every time).
    token = Token.objects.create(user=alice.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/tickets/").status_code == 200

    token.delete()

    response = client.get("/api/v1/tickets/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid token"


def test_it_refuses_the_token_of_a_deactivated_user_on_the_next_request(alice):
    token = Token.objects.create(user=alice.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/tickets/").status_code == 200

    get_user_model().objects.filter(pk=alice.user.pk).update(is_active=False)

    response = client.get("/api/v1/tickets/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "this account is disabled"


def test_it_shows_an_agent_their_new_teams_tickets_on_the_next_token_request(
    alice, billing, sms, receive
):
    # The token query loads the agent's team ids with the user: a changed team shows at once.
    bill = receive(sms, "Quanto devo pagar?", sender="+351900000001").ticket
    token = Token.objects.create(user=alice.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert bill.pk not in [t["id"] for t in client.get("/api/v1/tickets/").json()["results"]]

    alice.teams.add(billing)

    assert bill.pk in [t["id"] for t in client.get("/api/v1/tickets/").json()["results"]]
    mine = client.get("/api/v1/tickets/?assignee=me").json()["results"]
    assert mine == []


def test_it_signs_a_session_out_when_its_user_is_deactivated(alice):
    client = APIClient()
    assert client.login(username="alice", password=PASSWORD)
    assert client.get("/api/v1/tickets/").status_code == 200

    get_user_model().objects.filter(pk=alice.user.pk).update(is_active=False)

    assert client.get("/api/v1/tickets/").status_code in (401, 403)
