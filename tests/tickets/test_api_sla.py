"""SLA configuration over the API and in the admin: every staff member reads policies and
business hours, admins change them, and a bad value is a specific 400 that writes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tickets import sla
from tickets.models import Agent, BusinessHours, Holiday, Priority, SlaPolicy, Team

pytestmark = pytest.mark.django_db

PERSONAS = ["alice", "bob", "carol", "ada", "mallory", "anonymous"]
VILNIUS = ZoneInfo("Europe/Vilnius")
OFFICE_WEEK = {day: [["08:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _forget_sla_configuration() -> Any:
    yield
    sla.invalidate()


@pytest.fixture
def as_(request: pytest.FixtureRequest, api: Any) -> Any:
    def _client(name: str) -> APIClient:
        return api(None if name == "anonymous" else request.getfixturevalue(name))

    return _client


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


@pytest.fixture
def office(outages: Team) -> BusinessHours:
    hours = BusinessHours.objects.create(name="Vilnius office", week=OFFICE_WEEK)
    Holiday.objects.create(calendar=hours, date="2025-12-24", name="Kūčios")
    outages.business_hours = hours
    outages.save()
    return hours


@pytest.fixture
def urgent_policy(outages: Team) -> SlaPolicy:
    return SlaPolicy.objects.create(
        name="Urgent outages",
        priority=Priority.URGENT,
        team=outages,
        first_response_minutes=15,
        resolution_minutes=240,
        escalation={"at_risk_minutes": 5, "on_breach": ["notify_supervisor", "reassign"]},
    )


@pytest.fixture
def objects(office: BusinessHours, urgent_policy: SlaPolicy) -> dict[str, Any]:
    return {"business-hours": office, "sla-policies": urgent_policy}


CREATE = {
    "sla-policies": {
        "name": "WhatsApp business hours",
        "channel_kind": "whatsapp",
        "priority": "normal",
        "first_response_minutes": 120,
        "resolution_minutes": 960,
        "business_hours_only": True,
        "escalation": {"on_breach": ["notify_supervisor", "raise_priority"]},
    },
    "business-hours": {
        "name": "Billing desk",
        "timezone": "Europe/Lisbon",
        "week": {"mon": [["09:00", "18:00"]], "sat": [["09:00", "13:00"]]},
        "holidays": [{"date": "2025-12-25", "name": "Natal"}],
    },
}
CHANGE = {
    "sla-policies": {"resolution_minutes": 300},
    "business-hours": {"name": "Vilnius office (winter)"},
}
RESOURCES = list(CREATE)


# --------------------------------------------------------------------------- who may


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("alice", 200),
        ("bob", 200),
        ("carol", 200),
        ("ada", 200),
        ("mallory", 403),
        ("anonymous", 401),
    ],
)
def test_it_lets_every_staff_member_read_sla_configuration(
    as_: Any, objects: dict[str, Any], resource: str, persona: str, status: int
) -> None:
    client = as_(persona)
    listing = client.get(f"/api/v1/{resource}/")
    detail = client.get(f"/api/v1/{resource}/{objects[resource].pk}/")
    assert listing.status_code == detail.status_code == status
    if status == 200:
        assert [row["id"] for row in listing.json()["results"]] == [objects[resource].pk]
        assert detail.json()["id"] == objects[resource].pk
    else:
        assert error(listing)["message"] and error(detail)["message"]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_it_lets_only_admins_change_sla_configuration(
    as_: Any, objects: dict[str, Any], resource: str, persona: str
) -> None:
    client = as_(persona)
    model = type(objects[resource])
    before = model.objects.count()
    if persona == "anonymous":
        expected = (401, 401, 401)
    else:
        expected = (201, 200, 204) if persona == "ada" else (403, 403, 403)

    created = client.post(f"/api/v1/{resource}/", CREATE[resource], format="json")
    assert created.status_code == expected[0], created.content
    changed = client.patch(
        f"/api/v1/{resource}/{objects[resource].pk}/", CHANGE[resource], format="json"
    )
    assert changed.status_code == expected[1], changed.content
    target = created.json()["id"] if created.status_code == 201 else objects[resource].pk
    deleted = client.delete(f"/api/v1/{resource}/{target}/")
    assert deleted.status_code == expected[2], deleted.content
    if persona != "ada":
        assert error(created)["message"] and error(deleted)["message"]
        assert model.objects.count() == before
        objects[resource].refresh_from_db()
        assert objects[resource].name != CHANGE[resource].get("name")


def test_it_tells_a_supervisor_why_sla_configuration_is_read_only(as_: Any) -> None:
    response = as_("carol").post("/api/v1/sla-policies/", CREATE["sla-policies"], format="json")
    assert response.status_code == 403
    assert error(response)["message"] == "only admins may change the configuration"


# --------------------------------------------------------------------------- shapes


def test_it_shows_a_policy_with_named_levels(as_: Any, urgent_policy: SlaPolicy) -> None:
    body = as_("alice").get(f"/api/v1/sla-policies/{urgent_policy.pk}/").json()
    assert body == {
        "id": urgent_policy.pk,
        "name": "Urgent outages",
        "position": 0,
        "is_active": True,
        "priority": "urgent",
        "channel_kind": "",
        "team": urgent_policy.team_id,
        "first_response_minutes": 15,
        "resolution_minutes": 240,
        "business_hours_only": False,
        "escalation": {"at_risk_minutes": 5, "on_breach": ["notify_supervisor", "reassign"]},
    }


def test_it_creates_a_policy_that_applies_at_once(as_: Any) -> None:
    response = as_("ada").post("/api/v1/sla-policies/", CREATE["sla-policies"], format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["priority"] == "normal" and body["channel_kind"] == "whatsapp"
    assert sla.targets(Priority.NORMAL, channel_kind="whatsapp") == (
        timedelta(minutes=120),
        timedelta(minutes=960),
    )
    policy = sla.select_policy(Priority.NORMAL, "whatsapp")
    assert policy.on_breach == ("notify_supervisor", "raise_priority")
    assert policy.on_at_risk == ("notify_supervisor",)  # the site's default for a missing key


def test_it_shows_business_hours_with_holidays_and_teams(
    as_: Any, office: BusinessHours, outages: Team, django_assert_max_num_queries: Any
) -> None:
    BusinessHours.objects.create(name="Night desk", week={"sun": [["00:00", "06:00"]]})
    client = as_("bob")
    # The page, the holidays and the teams of all its rows: no query per row.
    with django_assert_max_num_queries(3):
        listing = client.get("/api/v1/business-hours/").json()["results"]
    assert listing[0] == {
        "id": office.pk,
        "name": "Vilnius office",
        "timezone": "Europe/Vilnius",
        "week": OFFICE_WEEK,
        "holidays": [{"date": "2025-12-24", "name": "Kūčios"}],
        "teams": [outages.pk],
    }
    assert listing[1]["holidays"] == [] and listing[1]["teams"] == []


def test_it_creates_business_hours_for_teams_and_their_clocks_follow(
    as_: Any, billing: Team, outages: Team
) -> None:
    payload = {**CREATE["business-hours"], "teams": [billing.pk]}
    response = as_("ada").post("/api/v1/business-hours/", payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["week"]["mon"] == [["09:00", "18:00"]] and body["week"]["sun"] == []
    assert body["holidays"] == [{"date": "2025-12-25", "name": "Natal"}]
    assert body["teams"] == [billing.pk]
    lisbon = ZoneInfo("Europe/Lisbon")
    # Saturday 13:00 in Lisbon is closing time; the next open minute is Monday 09:00.
    assert not sla.in_business_hours(billing, datetime(2025, 3, 8, 13, 30, tzinfo=lisbon))
    assert sla.add_business_time(
        billing, datetime(2025, 3, 8, 12, 30, tzinfo=lisbon), timedelta(hours=1)
    ) == datetime(2025, 3, 10, 9, 30, tzinfo=lisbon)
    assert sla.in_business_hours(outages, datetime(2025, 3, 8, 13, 30, tzinfo=lisbon))


def test_it_replaces_holidays_and_teams_on_update(
    as_: Any, office: BusinessHours, outages: Team, billing: Team
) -> None:
    response = as_("ada").patch(
        f"/api/v1/business-hours/{office.pk}/",
        {
            "holidays": [{"date": "2026-01-01", "name": "Naujieji metai"}],
            "teams": [billing.pk],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["holidays"] == [{"date": "2026-01-01", "name": "Naujieji metai"}]
    assert response.json()["teams"] == [billing.pk]
    outages.refresh_from_db()
    billing.refresh_from_db()
    assert outages.business_hours_id is None and billing.business_hours_id == office.pk
    # The clocks see it in this process at once (bulk updates send no signals).
    assert sla.in_business_hours(outages, datetime(2025, 3, 8, 12, tzinfo=VILNIUS))
    assert not sla.in_business_hours(billing, datetime(2025, 3, 8, 12, tzinfo=VILNIUS))
    assert sla.in_business_hours(billing, datetime(2025, 12, 24, 12, tzinfo=VILNIUS))
    assert not sla.in_business_hours(billing, datetime(2026, 1, 1, 12, tzinfo=VILNIUS))


def test_it_refuses_to_delete_business_hours_a_team_uses(
    as_: Any, office: BusinessHours, outages: Team
) -> None:
    response = as_("ada").delete(f"/api/v1/business-hours/{office.pk}/")
    assert response.status_code == 409
    assert error(response)["message"] == (
        "business hours 'Vilnius office' are used by Outages; give those teams other hours "
        "(or none) first"
    )
    assert BusinessHours.objects.filter(pk=office.pk).exists()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"week": {"monday": [["08:00", "17:00"]]}}, "week", "unknown weekday 'monday'"),
        ({"week": {"mon": [["08:00", "25:00"]]}}, "week", "'25:00' is not a time of day"),
        (
            {"week": {"mon": [["17:00", "08:00"]]}},
            "week",
            "mon[0]: ends at 08:00, not after it starts at 17:00",
        ),
        (
            {"week": {"tue": [["08:00", "12:00"], ["11:30", "17:00"]]}},
            "week",
            "tue: 08:00–12:00 overlaps 11:30–17:00",
        ),
        ({"week": {"mon": []}}, "week", "the week has no open hours"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone 'Europe/Atlantis'"),
        (
            {"holidays": [{"date": "2025-12-24"}, {"date": "2025-12-24", "name": "again"}]},
            "holidays",
            "2025-12-24 is listed twice",
        ),
        ({"holidays": [{"date": "24.12.2025"}]}, "holidays", "Date has wrong format"),
        ({"teams": [987654]}, "teams", "team 987654 does not exist"),
        ({"weekdays": {}}, "weekdays", "unknown field"),
    ],
)
def test_it_rejects_bad_business_hours_with_a_specific_message(
    as_: Any, office: BusinessHours, change: dict[str, Any], field: str, message: str
) -> None:
    client = as_("ada")
    created = client.post(
        "/api/v1/business-hours/", {**CREATE["business-hours"], **change}, format="json"
    )
    updated = client.patch(f"/api/v1/business-hours/{office.pk}/", change, format="json")
    for response in (created, updated):
        assert response.status_code == 400, response.content
        body = error(response)
        assert body["code"] == "invalid"
        assert field in body["fields"], body
        assert message in str(body["fields"][field]), body
    assert BusinessHours.objects.count() == 1
    office.refresh_from_db()
    assert office.week == OFFICE_WEEK and office.timezone == "Europe/Vilnius"
    assert list(office.holidays.values_list("name", flat=True)) == ["Kūčios"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"first_response_minutes": -5}, "first_response_minutes", "must be at least 1 minute"),
        ({"resolution_minutes": 0}, "resolution_minutes", "must be at least 1 minute"),
        ({"first_response_minutes": "soon"}, "first_response_minutes", "whole number"),
        (
            {"first_response_minutes": 600, "resolution_minutes": 60},
            "resolution_minutes",
            "the resolution target (60 min) is shorter than the first-response target (600 min)",
        ),
        (
            {"escalation": {"on_breach": ["page_the_ceo"]}},
            "escalation",
            "unknown escalation step 'page_the_ceo' in on_breach",
        ),
        (
            {"escalation": {"at_risk_minutes": -1}},
            "escalation",
            "at_risk_minutes cannot be negative",
        ),
        ({"escalation": {"on_risk": []}}, "escalation", "unknown key 'on_risk'"),
        ({"priority": "critical"}, "priority", "priority must be one of low, normal, high"),
        ({"channel_kind": "fax"}, "channel_kind", "channel_kind must be one of telegram"),
        ({"team": 987654}, "team", "team 987654 does not exist"),
        ({"first_response": 5}, "first_response", "unknown field"),
    ],
)
def test_it_rejects_bad_policies_with_a_specific_message(
    as_: Any, urgent_policy: SlaPolicy, change: dict[str, Any], field: str, message: str
) -> None:
    client = as_("ada")
    created = client.post(
        "/api/v1/sla-policies/", {**CREATE["sla-policies"], **change}, format="json"
    )
    updated = client.patch(f"/api/v1/sla-policies/{urgent_policy.pk}/", change, format="json")
    for response in (created, updated):
        assert response.status_code == 400, response.content
        body = error(response)
        assert field in body["fields"], body
        assert message in str(body["fields"][field]), body
    assert SlaPolicy.objects.count() == 1
    urgent_policy.refresh_from_db()
    assert urgent_policy.first_response_minutes == 15 and urgent_policy.resolution_minutes == 240


def test_it_answers_an_unknown_id_with_a_json_404(as_: Any) -> None:
    for resource in RESOURCES:
        response = as_("ada").get(f"/api/v1/{resource}/987654/")
        assert response.status_code == 404
        assert "does not exist" in error(response)["message"]


# --------------------------------------------------------------------------- admin


@pytest.mark.parametrize("persona", PERSONAS)
def test_it_keeps_the_sla_admin_for_site_administrators(
    request: pytest.FixtureRequest, client: Client, persona: str, office: BusinessHours
) -> None:
    # The Django admin is for superusers (the demo's admin account); helpdesk roles, even
    # the helpdesk admin role, configure through the API.
    if persona != "anonymous":
        who = request.getfixturevalue(persona)
        client.force_login(who.user if isinstance(who, Agent) else who)
    for url in (
        reverse("admin:tickets_slapolicy_changelist"),
        reverse("admin:tickets_businesshours_change", args=[office.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def _hours_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Call centre",
        "timezone": "Europe/Vilnius",
        "week": '{"mon": [["08:00", "20:00"]]}',
        "holidays-TOTAL_FORMS": "1",
        "holidays-INITIAL_FORMS": "0",
        "holidays-MIN_NUM_FORMS": "0",
        "holidays-MAX_NUM_FORMS": "1000",
        "holidays-0-date": "2025-12-24",
        "holidays-0-name": "Kūčios",
        **fields,
    }


def test_it_saves_business_hours_with_holidays_in_the_admin(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:tickets_businesshours_add"), _hours_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    hours = BusinessHours.objects.get(name="Call centre")
    assert hours.week["mon"] == [["08:00", "20:00"]] and hours.week["sun"] == []
    assert list(hours.holidays.values_list("name", flat=True)) == ["Kūčios"]
    listing = admin_client.get(reverse("admin:tickets_businesshours_changelist"))
    assert listing.status_code == 200 and "Call centre" in listing.content.decode()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"week": '{"mon": [["08:00", "25:00"]]}'}, "&#x27;25:00&#x27; is not a time of day"),
        ({"week": '{"funday": [["08:00", "17:00"]]}'}, "unknown weekday &#x27;funday&#x27;"),
        ({"week": '{"mon": [["18:00", "08:00"]]}'}, "ends at 08:00, not after it starts"),
        ({"timezone": "Moon/Base"}, "unknown time zone &#x27;Moon/Base&#x27;"),
    ],
)
def test_it_explains_bad_business_hours_in_the_admin(
    admin_client: Client, fields: dict[str, str], message: str
) -> None:
    response = admin_client.post(reverse("admin:tickets_businesshours_add"), _hours_form(**fields))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not BusinessHours.objects.exists()


def _policy_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Email",
        "position": "1",
        "is_active": "on",
        "priority": "",
        "channel_kind": "email",
        "team": "",
        "first_response_minutes": "240",
        "resolution_minutes": "1440",
        "escalation": '{"on_breach": ["notify_supervisor"]}',
        **fields,
    }


def test_it_saves_a_policy_in_the_admin(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:tickets_slapolicy_add"), _policy_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = SlaPolicy.objects.get(name="Email")
    assert policy.channel_kind == "email"
    assert policy.escalation == {"on_breach": ["notify_supervisor"]}
    assert sla.targets(Priority.LOW, channel_kind="email") == (
        timedelta(minutes=240),
        timedelta(minutes=1440),
    )
    assert admin_client.get(reverse("admin:tickets_slapolicy_changelist")).status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"escalation": '{"on_breach": ["call_the_mayor"]}'},
            "unknown escalation step &#x27;call_the_mayor&#x27; in on_breach",
        ),
        ({"escalation": '{"at_risk_minutes": -3}'}, "at_risk_minutes cannot be negative"),
        ({"first_response_minutes": "0"}, "a target must be at least 1 minute"),
        ({"resolution_minutes": "30"}, "is shorter than the first-response target"),
    ],
)
def test_it_explains_bad_policies_in_the_admin(
    admin_client: Client, fields: dict[str, str], message: str
) -> None:
    response = admin_client.post(reverse("admin:tickets_slapolicy_add"), _policy_form(**fields))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SlaPolicy.objects.exists()
