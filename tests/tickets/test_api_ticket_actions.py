"""Ticket operations over the API: the thread, reply, notes, assign, transfer, status,
priority, tags and take-next. Each goes through the action; these tests check the HTTP side:
who may, what comes back, and the specific error for each bad request."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.conftest import make_agent
from tickets import actions
from tickets.models import Agent, Attachment, Delivery, Message, Status, Ticket, TicketEvent

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


@pytest.fixture
def queue(telegram, sms, receive) -> dict[str, Ticket]:
    return {
        "outage": receive(telegram, "Нет света на улице Ленина 5", sender="501").ticket,
        "wire": receive(telegram, "оборван провод, искрит", sender="502").ticket,
        "bill": receive(sms, "My bill is wrong", sender="+37060000001", name="Ana").ticket,
    }


def url(ticket: Ticket, op: str = "") -> str:
    return f"/api/v1/tickets/{ticket.pk}/{op}"


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


# --------------------------------------------------------------------------- who may


OPERATIONS = [
    ("get", "messages/", None, 200),
    ("post", "reply/", {"text": "Электрики уже выехали"}, 201),
    ("post", "notes/", {"text": "called the grid operator"}, 201),
    ("post", "assign/", {"assignee": None}, 200),
    ("post", "status/", {"status": "pending"}, 200),
    ("post", "priority/", {"priority": "high", "reason": "hospital on the street"}, 200),
    ("post", "tags/", {"add": ["storm"]}, 200),
    ("post", "transfer/", {"team": "billing"}, 200),
]


@pytest.mark.parametrize("method,op,body,ok", OPERATIONS)
@pytest.mark.parametrize(
    "persona,allowed,status",
    [
        ("alice", True, None),
        ("bob", False, 404),
        ("carol", True, None),
        ("ada", True, None),
        ("mallory", False, 403),
        ("anonymous", False, 401),
    ],
)
def test_it_lets_only_those_who_may_see_a_ticket_operate_on_it(
    as_, queue, billing, method, op, body, ok, persona, allowed, status
):
    if body is not None and body.get("team") == "billing":
        body = {"team": billing.pk}
    ticket = queue["outage"]
    before = Ticket.objects.get(pk=ticket.pk).version

    response = getattr(as_(persona), method)(url(ticket, op), body, format="json")

    assert response.status_code == (ok if allowed else status), response.content
    if not allowed:
        assert error(response)["message"]
        assert Ticket.objects.get(pk=ticket.pk).version == before, "a refused request wrote"


# --------------------------------------------------------------------------- thread


def test_it_shows_the_thread_oldest_first_with_notes_authors_and_attachments(
    as_, queue, telegram, receive, alice
):
    ticket = queue["outage"]
    receive(telegram, "уже 3 часа", sender="501")
    reply = actions.do_reply(ticket, alice, "Бригада выехала")
    photo = SimpleUploadedFile("pole.jpg", b"\xff\xd8jpeg", content_type="image/jpeg")
    note = actions.do_add_note(ticket, alice, "see photo", attachments=[photo])

    response = as_("alice").get(url(ticket, "messages/"))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == list(
        Message.objects.filter(ticket=ticket).order_by("id").values_list("id", flat=True)
    )
    assert [row["author_name"] for row in rows] == ["Ivan Petrov", "Ivan Petrov", "Alice", "Alice"]
    assert rows[0]["direction"] == "in" and rows[0]["delivery_status"] == "received"
    assert rows[0]["channel"]["kind"] == "telegram"
    assert rows[2]["id"] == reply.pk and rows[2]["delivery_status"] == "queued"
    assert rows[3]["id"] == note.pk and rows[3]["is_internal"] is True
    assert rows[3]["channel"] is None
    (attachment,) = rows[3]["attachments"]
    stored = Attachment.objects.get(message=note)
    assert attachment == {
        "id": stored.pk,
        "name": "pole.jpg",
        "content_type": "image/jpeg",
        "size": 6,
        # Served by the authorized download view, never straight from MEDIA_ROOT.
        "url": f"http://testserver/attachments/{stored.pk}/",
    }


def test_it_pages_a_long_thread_by_cursor(as_, queue, telegram, receive):
    ticket = queue["outage"]
    for i in range(6):
        receive(telegram, f"сообщение {i}", sender="501")
    expected = list(
        Message.objects.filter(ticket=ticket).order_by("id").values_list("id", flat=True)
    )
    client = as_("alice")

    seen: list[int] = []
    link = f"http://testserver{url(ticket, 'messages/')}?page_size=3"
    pages = []
    while link:
        body = client.get(link).json()
        pages.append(body)
        seen += [row["id"] for row in body["results"]]
        link = body["next"]
    assert seen == expected
    assert len(pages) == 3

    back = [row["id"] for row in pages[-1]["results"]]
    link = pages[-1]["previous"]
    while link:
        body = client.get(link).json()
        back = [row["id"] for row in body["results"]] + back
        link = body["previous"]
    assert back == expected


def test_it_rejects_a_forged_thread_cursor(as_, queue):
    for cursor in (
        "abc",
        "WyJ4IiwxXQ",
        "WyJuIiwiMSJd",
        "WyJuIiwtMV0",
    ):  # ["x",1] ["n","1"] ["n",-1]
        response = as_("alice").get(url(queue["outage"], "messages/"), {"cursor": cursor})
        assert response.status_code == 400
        assert "cursor is not valid" in error(response)["message"]


# --------------------------------------------------------------------------- reply, notes


def test_it_replies_and_can_leave_the_ticket_pending(as_, queue, alice):
    ticket = queue["outage"]
    response = as_("alice").post(
        url(ticket, "reply/"), {"text": "Бригада выехала", "status": "pending"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["text"] == "Бригада выехала"
    assert body["direction"] == "out" and body["is_internal"] is False
    assert body["author"] == {"id": alice.pk, "name": "Alice"}
    assert Delivery.objects.filter(message_id=body["id"]).exists()
    ticket.refresh_from_db()
    assert ticket.status == Status.PENDING
    assert ticket.assignee_id == alice.pk  # replying claims an unassigned ticket


def test_it_replies_with_multipart_attachments(as_, queue):
    files = [
        SimpleUploadedFile("schedule.pdf", b"%PDF-1.4", content_type="application/pdf"),
        SimpleUploadedFile("карта.png", b"\x89PNG", content_type="image/png"),
    ]
    response = as_("alice").post(
        url(queue["outage"], "reply/"),
        {"text": "Schedule attached", "attachments": files},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    names = [a["name"] for a in response.json()["attachments"]]
    assert names == ["schedule.pdf", "карта.png"]


def test_it_accepts_a_reply_that_is_only_an_attachment(as_, queue):
    photo = SimpleUploadedFile("map.png", b"\x89PNG", content_type="image/png")
    response = as_("alice").post(
        url(queue["outage"], "reply/"), {"attachments": [photo]}, format="multipart"
    )
    assert response.status_code == 201
    assert response.json()["text"] == ""


def test_it_refuses_an_attachment_over_the_size_limit_with_413(as_, queue, settings):
    settings.HELPDESK_MAX_ATTACHMENT_BYTES = 10
    big = SimpleUploadedFile("big.bin", b"x" * 11)
    response = as_("alice").post(
        url(queue["outage"], "reply/"), {"text": "see", "attachments": [big]}, format="multipart"
    )
    assert response.status_code == 413
    assert error(response)["code"] == "too_large"
    assert "the limit is 10 bytes" in error(response)["message"]
    assert not Message.objects.filter(direction="out").exists()


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({}, "text", "reply is empty"),
        ({"text": "   "}, "text", "reply is empty"),
        ({"text": "x" * 20001}, "text", "the limit is 20000"),
        ({"text": ["hi"]}, "text", "Not a valid string"),
        ({"text": "hi", "status": "new"}, "status", "open, pending, resolved; got 'new'"),
        ({"text": "hi", "status": "closed"}, "status", "got 'closed'"),
        ({"text": "hi", "attachments": "file"}, "attachments", "Expected a list"),
        ({"text": "hi", "attachments": ["file"]}, "attachments", "not a file"),
        ({"txt": "hi"}, "txt", "unknown field; expected one of: attachments, status, text"),
    ],
)
def test_it_rejects_a_bad_reply_with_a_specific_400(as_, queue, body, field, message):
    response = as_("alice").post(url(queue["outage"], "reply/"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]
    assert not Message.objects.filter(direction="out").exists()


def test_it_refuses_to_reply_on_a_closed_ticket_with_409(as_, queue, carol):
    actions.do_set_status(queue["outage"], "closed", actor=carol)
    response = as_("alice").post(url(queue["outage"], "reply/"), {"text": "hi"}, format="json")
    assert response.status_code == 409
    assert "is closed" in error(response)["message"]


def test_it_adds_an_internal_note(as_, queue, alice):
    response = as_("alice").post(
        url(queue["wire"], "notes/"), {"text": "sent to the grid operator"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["is_internal"] is True and body["delivery_status"] == "not_sent"
    assert not Delivery.objects.filter(message_id=body["id"]).exists()
    assert Ticket.objects.get(pk=queue["wire"].pk).assignee_id is None  # a note claims nothing


def test_it_refuses_an_empty_note(as_, queue):
    response = as_("alice").post(url(queue["wire"], "notes/"), {"text": ""}, format="json")
    assert response.status_code == 400
    assert error(response)["message"] == "note is empty"


# --------------------------------------------------------------------------- assign, transfer


def test_it_assigns_and_unassigns(as_, queue, alice):
    ticket = queue["outage"]
    response = as_("alice").post(url(ticket, "assign/"), {"assignee": alice.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["assignee"] == {"id": alice.pk, "name": "Alice"}
    assert Agent.objects.get(pk=alice.pk).open_count == 1

    response = as_("alice").post(url(ticket, "assign/"), {"assignee": None}, format="json")
    assert response.status_code == 200
    assert response.json()["assignee"] is None
    assert Agent.objects.get(pk=alice.pk).open_count == 0


def test_it_lets_a_supervisor_reassign_a_colleagues_ticket_but_not_an_agent(
    as_, queue, alice, outages
):
    dan = make_agent("dan", teams=(outages,))
    actions.do_assign(queue["outage"], dan, actor=dan)

    refused = as_("alice").post(
        url(queue["outage"], "assign/"), {"assignee": alice.pk}, format="json"
    )
    assert refused.status_code == 403
    assert "assigned to Dan" in error(refused)["message"]

    done = as_("carol").post(url(queue["outage"], "assign/"), {"assignee": alice.pk}, format="json")
    assert done.status_code == 200 and done.json()["assignee"]["id"] == alice.pk


@pytest.mark.parametrize(
    "body,message",
    [
        ({}, "This field is required"),
        ({"assignee": "alice"}, "A valid integer is required"),
        ({"assignee": 10**30}, "less than or equal to 9223372036854775807"),
        ({"assignee": 0}, "greater than or equal to 1"),
        ({"assignee": 987654}, "no agent with id 987654"),
    ],
)
def test_it_rejects_a_bad_assignee_with_a_specific_400(as_, queue, body, message):
    response = as_("alice").post(url(queue["outage"], "assign/"), body, format="json")
    assert response.status_code == 400
    assert "assignee" in error(response)["fields"]
    assert message in error(response)["message"]


def test_it_refuses_to_assign_outside_the_tickets_team(as_, queue, bob):
    response = as_("alice").post(
        url(queue["outage"], "assign/"), {"assignee": bob.pk}, format="json"
    )
    assert response.status_code == 400
    assert "transfer the ticket instead" in error(response)["message"]


def test_it_transfers_to_another_team_with_a_note(as_, queue, billing, carol):
    ticket = queue["outage"]
    response = as_("alice").post(
        url(ticket, "transfer/"),
        {"team": billing.pk, "note": "это вопрос по счёту"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["team"] == {"id": billing.pk, "name": "Billing"}
    # Now it is Billing's: alice no longer sees it, bob does.
    assert as_("alice").get(url(ticket)).status_code == 404
    thread = as_("bob").get(url(ticket, "messages/")).json()["results"]
    assert thread[-1]["text"] == "это вопрос по счёту" and thread[-1]["is_internal"]


def test_it_transfers_to_an_agent_of_another_team(as_, queue, bob):
    response = as_("carol").post(
        url(queue["outage"], "transfer/"), {"agent": bob.pk}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["assignee"]["id"] == bob.pk and body["team"]["name"] == "Billing"


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({}, "team", "a transfer needs a team or an agent"),
        ({"team": None, "agent": None}, "team", "a transfer needs a team or an agent"),
        ({"team": 987654}, "team", "no team with id 987654"),
        ({"agent": 987654}, "agent", "no agent with id 987654"),
        ({"team": "billing"}, "team", "A valid integer is required"),
        ({"team": 1, "note": {"why": 1}}, "note", "Not a valid string"),
    ],
)
def test_it_rejects_a_bad_transfer_with_a_specific_400(as_, queue, body, field, message):
    response = as_("alice").post(url(queue["outage"], "transfer/"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in error(response)["fields"]
    assert message in error(response)["message"]


# --------------------------------------------------------------------------- status, priority, tags


def test_it_sets_the_status_and_refuses_changes_once_closed(as_, queue):
    ticket = queue["bill"]
    client = as_("bob")
    response = client.post(url(ticket, "status/"), {"status": "resolved"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "resolved" and response.json()["resolved_at"]

    assert (
        client.post(url(ticket, "status/"), {"status": "closed"}, format="json").status_code == 200
    )
    reopened = client.post(url(ticket, "status/"), {"status": "open"}, format="json")
    assert reopened.status_code == 409
    assert "closed tickets do not change" in error(reopened)["message"]


@pytest.mark.parametrize(
    "body,message",
    [
        ({"status": "new"}, "status must be one of open, pending, resolved, closed; got 'new'"),
        ({"status": 3}, "got 3"),
        ({}, "This field is required"),
    ],
)
def test_it_rejects_a_bad_status_with_a_specific_400(as_, queue, body, message):
    response = as_("bob").post(url(queue["bill"], "status/"), body, format="json")
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_it_sets_the_priority_and_says_who_and_why(as_, queue, carol):
    response = as_("carol").post(
        url(queue["bill"], "priority/"),
        {"priority": "urgent", "reason": "life-support customer"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["priority"] == "urgent" and body["priority_locked"] is True
    assert body["priority_reasons"][-1]["detail"] == (
        "set to urgent by Carol: life-support customer"
    )


def test_it_rejects_an_unknown_priority(as_, queue):
    response = as_("bob").post(
        url(queue["bill"], "priority/"), {"priority": "extreme"}, format="json"
    )
    assert response.status_code == 400
    assert (
        "priority must be one of low, normal, high, urgent; got 'extreme'"
        in (error(response)["message"])
    )


def test_it_adds_and_removes_tags(as_, queue):
    client = as_("bob")
    response = client.post(
        url(queue["bill"], "tags/"), {"add": ["Billing Error", "vip"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["tags"] == ["billing-error", "vip"]

    response = client.post(
        url(queue["bill"], "tags/"), {"add": ["refund"], "remove": ["vip"]}, format="json"
    )
    assert response.json()["tags"] == ["billing-error", "refund"]
    assert TicketEvent.objects.filter(ticket=queue["bill"], verb="ticket.tags").count() == 2


@pytest.mark.parametrize(
    "body,message",
    [
        ({}, "give tags to `add` or `remove`"),
        ({"add": "vip"}, "Expected a list"),
        ({"add": [" "]}, "a tag cannot be empty"),
        ({"add": ["x" * 51]}, "is longer than 50 characters"),
        ({"add": ["x"] * 51}, "no more than 50 elements"),
        ({"add": [{"name": "vip"}]}, "Not a valid string"),
    ],
)
def test_it_rejects_bad_tags_with_a_specific_400(as_, queue, body, message):
    response = as_("bob").post(url(queue["bill"], "tags/"), body, format="json")
    assert response.status_code == 400
    assert message in error(response)["message"]


# --------------------------------------------------------------------------- take next


def test_it_takes_the_most_urgent_workable_ticket_then_answers_204(as_, queue, alice):
    client = as_("alice")

    first = client.post("/api/v1/tickets/take-next/")
    assert first.status_code == 200
    assert first.json()["id"] == queue["wire"].pk
    assert first.json()["assignee"]["id"] == alice.pk and first.json()["status"] == "open"

    assert client.post("/api/v1/tickets/take-next/").json()["id"] == queue["outage"].pk
    empty = client.post("/api/v1/tickets/take-next/")
    assert empty.status_code == 204
    assert empty.content == b""


def test_it_gives_each_agent_a_ticket_of_their_own_team(as_, queue):
    assert as_("bob").post("/api/v1/tickets/take-next/").json()["id"] == queue["bill"].pk


def test_it_refuses_take_next_at_capacity_with_409(as_, queue, api, outages):
    dan = make_agent("dan", teams=(outages,), capacity=1)
    client = api(dan)
    assert client.post("/api/v1/tickets/take-next/").status_code == 200
    response = client.post("/api/v1/tickets/take-next/")
    assert response.status_code == 409
    assert "your capacity is 1" in error(response)["message"]


@pytest.mark.parametrize("persona,status", [("mallory", 403), ("anonymous", 401)])
def test_it_refuses_take_next_to_non_agents(as_, queue, persona, status):
    response = as_(persona).post("/api/v1/tickets/take-next/")
    assert response.status_code == status
    assert Ticket.objects.filter(assignee__isnull=False).count() == 0


def test_it_answers_405_to_a_get_on_take_next(as_, queue):
    response = as_("alice").get("/api/v1/tickets/take-next/")
    assert response.status_code == 405
    assert error(response)["code"] == "method_not_allowed"
