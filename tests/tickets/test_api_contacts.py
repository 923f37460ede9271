"""Contacts over the API: search, detail, changes, the cross-channel timeline (and what it
hides from agents of other teams), merges and their undoing, logged calls."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tickets import actions
from tickets.models import AccountNumber, Call, Contact, ContactMerge, Identity, Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Every test creates its personas; the production password hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/contacts/"
PERSONAS_OK = [("alice", 200), ("bob", 200), ("carol", 200), ("ada", 200)]
OUTSIDERS = [("mallory", 403), ("anonymous", 401)]


@pytest.fixture
def as_(request: pytest.FixtureRequest, api: Any) -> Any:
    def _client(name: str) -> APIClient:
        return api(None if name == "anonymous" else request.getfixturevalue(name))

    return _client


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


@pytest.fixture
def ivan(telegram, sms, receive) -> dict[str, Any]:
    """One person on two channels: an outage on Telegram (Outages team, alice's) and a
    billing question by SMS (Billing team, bob's)."""
    outage = receive(
        telegram, "Нет света на улице Ленина 5", sender="501", phone="+37061234567"
    ).ticket
    bill = receive(
        sms, "Вопрос по счёту\nмой код доступа 4242, не говорите никому", sender="+37061234567"
    ).ticket
    assert outage.contact_id == bill.contact_id
    contact = Contact.objects.get(pk=outage.contact_id)
    AccountNumber.objects.create(contact=contact, number="LT-000123")
    return {"contact": contact, "outage": outage, "bill": bill}


# --------------------------------------------------------------------------- list, detail


@pytest.mark.parametrize("persona,status", PERSONAS_OK + OUTSIDERS)
def test_it_lists_contacts_to_staff_only(as_, ivan, persona, status):
    response = as_(persona).get(URL)
    assert response.status_code == status
    if status == 200:
        assert [row["id"] for row in response.json()["results"]] == [ivan["contact"].pk]
    else:
        assert error(response)["message"]


@pytest.mark.parametrize(
    "q",
    ["Ivan", "ivan pet", "+37061234567", "8 612 34567", "612345", "LT-000123", "501"],
)
def test_it_finds_a_contact_by_name_identity_phone_or_account(as_, ivan, telegram, receive, q):
    receive(telegram, "hello", sender="999", name="Someone Else")
    response = as_("alice").get(URL, {"q": q})
    assert [row["id"] for row in response.json()["results"]] == [ivan["contact"].pk]


def test_it_finds_contacts_by_cyrillic_and_chinese_names(as_, telegram, receive):
    ru = receive(telegram, "нет света", sender="1", name="Иван Петров").ticket.contact
    zh = receive(telegram, "停电了", sender="2", name="王小明").ticket.contact
    client = as_("bob")
    assert [r["id"] for r in client.get(URL, {"q": "иван"}).json()["results"]] == [ru.pk]
    assert [r["id"] for r in client.get(URL, {"q": "小明"}).json()["results"]] == [zh.pk]


def test_it_leaves_merged_away_contacts_out_of_the_list(as_, ivan, telegram, receive, carol):
    other = receive(telegram, "hi", sender="777", name="Ivan P.").ticket.contact
    actions.do_merge_contacts(ivan["contact"], other, actor=carol)
    assert [r["id"] for r in as_("alice").get(URL, {"q": "Ivan"}).json()["results"]] == [
        ivan["contact"].pk
    ]


def test_it_pages_contacts_newest_first(as_, telegram, receive):
    made = [
        receive(telegram, "x", sender=str(100 + i), name=f"C{i}").ticket.contact_id
        for i in range(7)
    ]
    client = as_("alice")
    seen: list[int] = []
    link: str | None = f"http://testserver{URL}?page_size=3"
    while link:
        body = client.get(link).json()
        seen += [row["id"] for row in body["results"]]
        link = body["next"]
    assert seen == sorted(made, reverse=True)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"q": "x" * 201}, "at most 200 characters"),
        ({"q": "\x00"}, "Null characters are not allowed"),
        ({"page_size": "101"}, "between 1 and 100"),
        ({"cursor": "bm9wZQ"}, "the cursor is not valid"),
    ],
)
def test_it_rejects_bad_contact_list_parameters(as_, ivan, params, message):
    response = as_("alice").get(URL, params)
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_it_shows_a_contact_with_identities_and_account_numbers(as_, ivan):
    response = as_("bob").get(f"{URL}{ivan['contact'].pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Ivan Petrov"
    assert {(i["kind"], i["value"]) for i in body["identities"]} == {
        ("telegram", "501"),
        ("phone", "+37061234567"),
    }
    assert [a["number"] for a in body["accounts"]] == ["LT-000123"]
    assert body["merged_into"] is None


@pytest.mark.parametrize("persona,status", [("carol", 404), ("mallory", 403), ("anonymous", 401)])
@pytest.mark.parametrize("pk", ["987654", "abc", "0", "99999999999999999999999"])
def test_it_answers_404_for_a_contact_that_does_not_exist(as_, ivan, persona, status, pk):
    response = as_(persona).get(f"{URL}{pk}/")
    assert response.status_code == status
    if status == 404:
        assert (
            error(response)["message"] == f"contact {pk!r} does not exist"
            or error(response)["message"] == f"contact {pk} does not exist"
        )


# --------------------------------------------------------------------------- changes


@pytest.mark.parametrize("persona,status", PERSONAS_OK + OUTSIDERS)
def test_it_lets_staff_change_a_contact(as_, ivan, persona, status):
    contact = ivan["contact"]
    response = as_(persona).patch(
        f"{URL}{contact.pk}/",
        {
            "display_name": "Иван Петров",
            "language": "ru",
            "tier": "life_support",
            "value": "1200.50",
            "notes": "oxygen concentrator at home",
            "attributes": {"district": "Žirmūnai"},
            "accounts": ["LT-000123", "LT-000999"],
        },
        format="json",
    )
    assert response.status_code == status
    contact.refresh_from_db()
    if status == 200:
        body = response.json()
        assert body["display_name"] == "Иван Петров" and body["tier"] == "life_support"
        assert body["value"] == "1200.50"
        assert sorted(a["number"] for a in body["accounts"]) == ["LT-000123", "LT-000999"]
        assert contact.attributes == {"district": "Žirmūnai"}
    else:
        assert contact.tier == "standard"


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({}, None, "nothing to change"),
        ({"tier": "gold"}, "tier", "tier must be one of standard, business, vip, life_support"),
        ({"language": "xx"}, "language", "language must be one of"),
        ({"attributes": ["a"]}, "attributes", 'Expected a dictionary of items but got type "list"'),
        ({"value": "-1"}, "value", "greater than or equal to 0"),
        ({"value": "lots"}, "value", "A valid number is required"),
        ({"accounts": "LT-1"}, "accounts", "Expected a list"),
        ({"accounts": ["x" * 41]}, "accounts", "no more than 40 characters"),
        ({"display_name": "x" * 201}, "display_name", "no more than 200 characters"),
        ({"merged_into": 1}, "merged_into", "unknown field"),
        ({"email": "a@b.c"}, "email", "unknown field"),
    ],
)
def test_it_rejects_a_bad_contact_change_with_a_specific_400(as_, ivan, body, field, message):
    response = as_("alice").patch(f"{URL}{ivan['contact'].pk}/", body, format="json")
    assert response.status_code == 400, response.content
    if field:
        assert field in error(response)["fields"]
    assert message in error(response)["message"]


def test_it_does_not_allow_put_or_delete_on_contacts(as_, ivan):
    client = as_("ada")
    assert client.put(f"{URL}{ivan['contact'].pk}/", {}, format="json").status_code == 405
    assert client.delete(f"{URL}{ivan['contact'].pk}/").status_code == 405


# --------------------------------------------------------------------------- timeline


def _timeline(client: APIClient, contact: Contact, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    response = client.get(f"{URL}{contact.pk}/timeline/", params)
    assert response.status_code == 200, response.content
    body = response.json()
    entries += body["results"]
    while body["next"]:
        body = client.get(body["next"]).json()
        entries += body["results"]
    return entries


def test_it_shows_a_supervisor_the_whole_history_newest_first(as_, ivan, alice, carol):
    actions.do_reply(ivan["outage"], alice, "Бригада выехала")
    actions.do_log_call(ivan["contact"], actor=carol, summary="called about the bill")

    entries = _timeline(as_("carol"), ivan["contact"])

    kinds = [e["type"] for e in entries]
    assert kinds.count("ticket") == 2 and kinds.count("message") == 3 and kinds.count("call") == 1
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert all(e["ticket"]["visible"] for e in entries if e["type"] == "ticket")
    texts = {e["message"]["text"] for e in entries if e["type"] == "message"}
    assert "Вопрос по счёту\nмой код доступа 4242, не говорите никому" in texts
    channels = {e["message"]["channel"]["kind"] for e in entries if e["type"] == "message"}
    assert channels == {"telegram", "sms"}


def summary_subject_only(raw: str) -> bool:
    # The subject (the message's first line) is part of the summary; the rest is not.
    return "Вопрос по счёту" in raw and "4242" not in raw and "не говорите" not in raw


def test_it_shows_an_agent_only_a_summary_of_another_teams_ticket(as_, ivan, carol):
    actions.do_log_call(
        ivan["contact"], actor=carol, ticket=ivan["bill"], summary="account 777 in arrears"
    )
    response = as_("alice").get(f"{URL}{ivan['contact'].pk}/timeline/")

    assert response.status_code == 200
    raw = json.dumps(response.json(), ensure_ascii=False)
    assert summary_subject_only(raw)
    assert "arrears" not in raw
    entries = response.json()["results"]
    summary = next(
        e["ticket"]
        for e in entries
        if e["type"] == "ticket" and e["ticket"]["id"] == ivan["bill"].pk
    )
    assert summary["visible"] is False
    assert summary["status"] == "new"
    assert summary["channel"]["kind"] == "sms" and summary["team"]["name"] == "Billing"
    assert set(summary) == {
        "id",
        "subject",
        "status",
        "channel",
        "team",
        "created_at",
        "updated_at",
        "last_message_at",
        "resolved_at",
        "closed_at",
        "visible",
    }
    messages = [e["message"] for e in entries if e["type"] == "message"]
    assert {m["ticket"] for m in messages} == {ivan["outage"].pk}
    (call,) = [e["call"] for e in entries if e["type"] == "call"]
    assert call["summary"] is None and call["ticket"] == ivan["bill"].pk


@pytest.mark.parametrize("size", [1, 2, 5])
def test_it_pages_the_timeline_without_gaps_or_repeats(as_, ivan, telegram, receive, carol, size):
    for i in range(4):
        receive(telegram, f"ещё {i}", sender="501")
    actions.do_log_call(ivan["contact"], actor=carol, summary="call")
    # Same-instant entries are ordered by kind and id, so the cursor is exact.
    Message.objects.filter(ticket__contact=ivan["contact"]).update(created_at=timezone.now())
    everything = _timeline(as_("carol"), ivan["contact"], page_size=100)
    paged = _timeline(as_("carol"), ivan["contact"], page_size=size)
    key = [(e["type"], (e["ticket"] or e["message"] or e["call"])["id"]) for e in paged]
    assert key == [
        (e["type"], (e["ticket"] or e["message"] or e["call"])["id"]) for e in everything
    ]
    assert len(set(key)) == len(key) == 2 + 6 + 1


@pytest.mark.parametrize("persona,status", [*PERSONAS_OK, *OUTSIDERS])
def test_it_lets_staff_read_a_timeline(as_, ivan, persona, status):
    assert as_(persona).get(f"{URL}{ivan['contact'].pk}/timeline/").status_code == status


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "WyJ4Il0",  # ["x"]
        "WyIyMDI0LTAxLTAxVDAwOjAwOjAwIiwxLDFd",  # naive time
        "WyIyMDI0LTAxLTAxVDAwOjAwOjAwWiIsOSwxXQ",  # rank 9
        "WyJub3QgYSBkYXRlIiwxLDFd",  # not a date
    ],
)
def test_it_rejects_a_forged_timeline_cursor(as_, ivan, cursor):
    response = as_("carol").get(f"{URL}{ivan['contact'].pk}/timeline/", {"cursor": cursor})
    assert response.status_code == 400
    assert "cursor is not valid" in error(response)["message"]


# --------------------------------------------------------------------------- merges


@pytest.fixture
def duplicate(telegram, receive) -> Contact:
    return receive(telegram, "это снова я", sender="777", name="Ivan P.").ticket.contact


@pytest.mark.parametrize("persona,status", [*[(p, 201) for p, _ in PERSONAS_OK], *OUTSIDERS])
def test_it_lets_any_staff_member_merge_contacts(as_, ivan, duplicate, persona, status):
    response = as_(persona).post(
        f"{URL}{ivan['contact'].pk}/merge/",
        {"source": duplicate.pk, "reason": "same person"},
        format="json",
    )
    assert response.status_code == status
    duplicate.refresh_from_db()
    if status == 201:
        body = response.json()
        assert body["target"] == ivan["contact"].pk and body["source"] == duplicate.pk
        assert body["reason"] == "same person" and body["undone_at"] is None
        assert duplicate.merged_into_id == ivan["contact"].pk
        assert Identity.objects.get(kind="telegram", value="777").contact_id == ivan["contact"].pk
    else:
        assert duplicate.merged_into_id is None


def test_it_undoes_a_merge_once(as_, ivan, duplicate, alice):
    merge = actions.do_merge_contacts(ivan["contact"], duplicate, actor=alice)
    client = as_("bob")

    response = client.post(f"{URL}merges/{merge.pk}/undo/")
    assert response.status_code == 200
    assert response.json()["undone_at"] is not None
    assert response.json()["undone_by"]["name"] == "Bob"
    assert Identity.objects.get(kind="telegram", value="777").contact_id == duplicate.pk
    assert Contact.objects.get(pk=duplicate.pk).merged_into_id is None

    again = client.post(f"{URL}merges/{merge.pk}/undo/")
    assert again.status_code == 409
    assert "already undone" in error(again)["message"]


@pytest.mark.parametrize("persona,status", [*[(p, 200) for p, _ in PERSONAS_OK], *OUTSIDERS])
def test_it_lets_any_staff_member_undo_a_merge(as_, ivan, duplicate, carol, persona, status):
    merge = actions.do_merge_contacts(ivan["contact"], duplicate, actor=carol)
    response = as_(persona).post(f"{URL}merges/{merge.pk}/undo/")
    assert response.status_code == status
    assert (ContactMerge.objects.get(pk=merge.pk).undone_at is not None) == (status == 200)


def test_it_lists_the_merges_of_a_contact(as_, ivan, duplicate, telegram, receive, carol):
    merge = actions.do_merge_contacts(ivan["contact"], duplicate, actor=carol)
    unrelated = receive(telegram, "x", sender="888").ticket.contact
    third = receive(telegram, "y", sender="889").ticket.contact
    actions.do_merge_contacts(unrelated, third, actor=carol)
    response = as_("alice").get(f"{URL}merges/", {"contact": str(duplicate.pk)})
    assert [m["id"] for m in response.json()["results"]] == [merge.pk]
    assert as_("alice").get(f"{URL}merges/{merge.pk}/").json()["actor"]["name"] == "Carol"


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({}, 400, "This field is required"),
        ({"source": "abc"}, 400, "A valid integer is required"),
        ({"source": 987654}, 400, "no contact with id 987654"),
        ({"source": "self"}, 400, "cannot be merged into itself"),
        ({"source": "merged"}, 409, "was already merged into"),
    ],
)
def test_it_rejects_a_bad_merge_with_a_specific_error(
    as_, ivan, duplicate, telegram, receive, carol, body, status, message
):
    if body.get("source") == "self":
        body = {"source": ivan["contact"].pk}
    if body.get("source") == "merged":
        other = receive(telegram, "z", sender="999").ticket.contact
        actions.do_merge_contacts(other, duplicate, actor=carol)
        body = {"source": duplicate.pk}
    response = as_("alice").post(f"{URL}{ivan['contact'].pk}/merge/", body, format="json")
    assert response.status_code == status
    assert message in error(response)["message"]


def test_it_answers_404_for_an_unknown_merge(as_, ivan):
    response = as_("alice").post(f"{URL}merges/987654/undo/")
    assert response.status_code == 404
    assert error(response)["message"] == "merge 987654 does not exist"


# --------------------------------------------------------------------------- calls


@pytest.mark.parametrize("persona,status", [*[(p, 201) for p, _ in PERSONAS_OK], *OUTSIDERS])
def test_it_lets_staff_log_a_call(as_, ivan, persona, status):
    response = as_(persona).post(
        f"{URL}{ivan['contact'].pk}/calls/",
        {"direction": "outbound", "phone": "8 612 34567", "duration_seconds": 95},
        format="json",
    )
    assert response.status_code == status
    assert Call.objects.count() == (1 if status == 201 else 0)
    if status == 201:
        body = response.json()
        assert body["phone"] == "+37061234567" and body["duration_seconds"] == 95
        assert body["contact"] == ivan["contact"].pk and body["ticket"] is None


def test_it_logs_a_call_on_a_ticket_thread(as_, ivan, alice):
    response = as_("alice").post(
        f"{URL}{ivan['contact'].pk}/calls/",
        {"ticket": ivan["outage"].pk, "summary": "сказал, что бригада едет"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["agent"] == {"id": alice.pk, "name": "Alice"}
    note = Message.objects.filter(ticket=ivan["outage"], kind="call").get()
    assert note.is_internal and note.text == "сказал, что бригада едет"
    assert Ticket.objects.get(pk=ivan["outage"].pk).message_count == 2


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({"direction": "sideways"}, "direction", "direction must be one of inbound, outbound"),
        ({"duration_seconds": -1}, "duration_seconds", "greater than or equal to 0"),
        ({"duration_seconds": "long"}, "duration_seconds", "A valid integer is required"),
        ({"phone": "call me"}, "phone", "not a phone number"),
        ({"started_at": "tomorrow"}, "started_at", "Datetime has wrong format"),
        ({"started_at": "future"}, "started_at", "a call cannot start in the future"),
        ({"ticket": "bill"}, "ticket", "no ticket with id"),
        ({"ticket": 987654}, "ticket", "no ticket with id 987654"),
        ({"agent_id": 1}, "agent_id", "unknown field"),
    ],
)
def test_it_rejects_a_bad_call_with_a_specific_400(as_, ivan, body, field, message):
    if body.get("started_at") == "future":
        body = {"started_at": (timezone.now() + timedelta(hours=1)).isoformat()}
    if body.get("ticket") == "bill":  # Billing's ticket: alice may not see it
        body = {"ticket": ivan["bill"].pk}
    response = as_("alice").post(f"{URL}{ivan['contact'].pk}/calls/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]
    assert not Call.objects.exists()
