"""Priority scoring: each signal, floors and caps, five languages, the configuration as
versioned data (validated, cached per process, noticed by every process), the receive path
(sentiment, repeated contact, customer value, no extra queries) and aging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tickets import actions, priority
from tickets.errors import Forbidden, InvalidInput, NotFound
from tickets.inbound import InboundMessage, Sender
from tickets.models import Contact, Priority, ScoringConfig, Status, Ticket, TicketEvent, Tier
from tickets.priority import (
    ConfigError,
    classify_topic,
    compile_config,
    current_config,
    default_compiled,
    default_config,
    score_text,
    validate_config,
)

DEFAULT = default_compiled()


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    """Every test starts from the built-in dictionary, and leaves no version behind in this
    process or in the shared cache for the tests that follow."""
    priority.reset_config_cache()
    yield
    priority.reset_config_cache()


def score(text: str, **kwargs: Any) -> priority.Score:
    return score_text(text, config=DEFAULT, **kwargs)


def signals(result: priority.Score) -> dict[str, int]:
    return {r["signal"]: r["points"] for r in result.reasons}


# --------------------------------------------------------------------------- each signal


def test_it_scores_an_outage_phrase_as_urgency() -> None:
    result = score("Sem luz desde ontem")
    assert signals(result) == {"urgency": 30}
    assert result.level == Priority.NORMAL
    assert "sem luz" in result.reasons[0]["detail"]


def test_it_caps_an_urgency_group_at_the_urgency_cap() -> None:
    data = default_config()
    data["urgency"]["groups"][1]["points"] = 90  # outage
    result = score_text("no power here", config=compile_config(data))
    assert signals(result) == {"urgency": 45}


def test_it_counts_negative_terms_up_to_the_cap_and_sets_sentiment() -> None:
    one = score("this is ridiculous")
    assert signals(one) == {"negativity": 8}
    assert one.sentiment == 8
    three = score("useless, terrible, awful")
    assert signals(three) == {"negativity": 15}
    assert three.sentiment == 15
    assert score("Could you explain my bill?").sentiment == 0


@pytest.mark.parametrize(
    "text",
    ["WHY IS THE POWER STILL OUT HERE", "when will it be back!!", "什么时候来电！！"],
)
def test_it_counts_shouting(text: str) -> None:
    assert signals(score(text)).get("shouting") == 5


def test_it_does_not_count_one_capitalised_word_as_shouting() -> None:
    assert "shouting" not in signals(score("My NIF is in the email, thanks"))


@pytest.mark.parametrize(
    ("tier", "points"),
    [(Tier.STANDARD, 0), (Tier.BUSINESS, 10), (Tier.VIP, 15), (Tier.LIFE_SUPPORT, 35)],
)
def test_it_adds_the_customer_tier(tier: str, points: int) -> None:
    assert signals(score("hello", tier=tier)).get("tier", 0) == points


def test_it_adds_customer_value_from_the_threshold() -> None:
    assert "value" not in signals(score("hello", value=4999))
    assert signals(score("hello", value=5000))["value"] == 5


def test_it_adds_repeated_contact_from_the_configured_count() -> None:
    assert "history" not in signals(score("no power", recent_tickets=2))
    result = score("no power", recent_tickets=3)
    assert signals(result)["history"] == 8
    assert result.reasons[-1]["tickets"] == 3


def test_it_adds_influence_capped_and_verified() -> None:
    assert signals(score("hi", followers=9))["influence"] == 3
    assert signals(score("hi", followers=10_000_000))["influence"] == 12
    result = score("hi", followers=100, verified=True)
    assert [r["points"] for r in result.reasons if r["signal"] == "influence"] == [6, 4]


def test_it_adds_public_visibility() -> None:
    assert signals(score("no power", is_public=True))["public"] == 8


def test_it_scores_routine_requests_below_zero() -> None:
    result = score("Хочу передать показания счетчика")
    assert signals(result) == {"routine": -10}
    assert result.level == Priority.LOW


def test_it_does_not_call_a_request_routine_when_something_else_counts() -> None:
    result = score("Хочу передать показания счетчика, это безобразие")
    assert "routine" not in signals(result)


# --------------------------------------------------------------------------- floors and caps


def test_a_safety_phrase_is_urgent_whatever_else_the_score_says() -> None:
    data = default_config()
    data["urgency"]["groups"][0]["points"] = 0  # safety worth nothing...
    data["levels"] = {"urgent": 500, "high": 400, "normal": 300}  # ...and levels out of reach
    result = score_text(
        "Хочу передать показания, но у счетчика искрит", config=compile_config(data)
    )
    assert result.safety
    assert result.level == Priority.URGENT


def test_a_safety_phrase_outscored_by_another_group_still_sets_the_floor() -> None:
    data = default_config()
    data["urgency"]["groups"][0]["points"] = 5
    data["urgency"]["cap"] = 60
    data["urgency"]["groups"][1]["points"] = 60
    result = score_text("no power and sparks", config=compile_config(data))
    assert result.level == Priority.URGENT
    assert [r["signal"] for r in result.reasons[:2]] == ["urgency", "safety"]


def test_influence_alone_never_makes_a_ticket_urgent() -> None:
    famous = score(
        "No power AGAIN, you are useless!!",
        followers=50_000_000,
        verified=True,
        is_public=True,
    )
    # 30 + 15 + 5 + 8 = 58 (high) before influence; +16 would be 74, urgent.
    assert famous.points == 74
    assert famous.level == Priority.HIGH
    assert famous.reasons[-1]["signal"] == "cap"

    sparks = score("a wire is sparking on our street")
    assert sparks.level == Priority.URGENT
    assert sparks.level > famous.level


def test_influence_does_not_lower_what_other_signals_earned() -> None:
    result = score("no power again", tier=Tier.LIFE_SUPPORT, followers=250_000, verified=True)
    assert result.level == Priority.URGENT  # 30 + 8 + 35 = 73 without influence
    assert "cap" not in signals(result)


# --------------------------------------------------------------------------- five languages


@pytest.mark.parametrize(
    ("text", "signal", "level"),
    [
        # outage
        ("There is no power in our building", "urgency", Priority.NORMAL),
        ("Estamos sem energia na rua toda", "urgency", Priority.NORMAL),
        ("У нас нет света с утра", "urgency", Priority.NORMAL),
        ("我们小区停电了", "urgency", Priority.NORMAL),
        ("Nėra elektros visame name", "urgency", Priority.NORMAL),
        # safety
        ("A power line is down and sparking near the school", "safety", Priority.URGENT),
        ("Há um fio caído e faíscas perto da escola", "safety", Priority.URGENT),
        ("Провода оборваны и искрят возле школы", "safety", Priority.URGENT),
        ("学校附近电线掉下来了，有火花", "safety", Priority.URGENT),
        ("Prie mokyklos nutrūkęs laidas, kibirkščiuoja", "safety", Priority.URGENT),
        # negativity
        ("Your service is terrible and unacceptable", "negativity", Priority.NORMAL),
        ("Isto é uma vergonha, um absurdo", "negativity", Priority.NORMAL),
        ("Это безобразие и издевательство", "negativity", Priority.NORMAL),
        ("你们的服务太差了，无法接受", "negativity", Priority.NORMAL),
        ("Tai gėda ir nesąmonė", "negativity", Priority.NORMAL),
        # routine
        ("I want to send my meter reading", "routine", Priority.LOW),
        ("Quero enviar a leitura do contador", "routine", Priority.LOW),
        ("Передаю показания счётчика: 12345", "routine", Priority.LOW),
        ("我要提交电表读数", "routine", Priority.LOW),
        ("Siunčiu skaitiklio rodmenis", "routine", Priority.LOW),
    ],
)
def test_it_scores_every_signal_kind_in_all_five_languages(
    text: str, signal: str, level: int
) -> None:
    result = score(text)
    assert signal in signals(result), result.reasons
    assert result.level == level


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("провода оборваны", "провод оборван"),  # both words inflected, Russian stemmer
        ("Kibirkštys prie stulpo", "kibirkšt"),
        ("fios caídos na estrada", "fios caídos"),
        ("the wires are sparking", "spark"),
    ],
)
def test_it_matches_inflected_forms(text: str, phrase: str) -> None:
    result = score(text)
    assert result.safety
    assert phrase in result.reasons[0]["detail"]


@pytest.mark.parametrize(
    "text",
    [
        "I was fired from my job, can I get a payment plan?",  # "=fire" is not "fired"
        "Vėliau parašysiu",  # "vėl" (again) is not "vėliau" (later)
        "Šviesa jau dega, ačiū",  # "the light is on again": not a fire
        "свет горит, спасибо",
    ],
)
def test_it_keeps_exact_words_exact(text: str) -> None:
    result = score(text)
    assert result.level != Priority.URGENT
    assert "negativity" not in signals(result)


def test_it_matches_traditional_chinese_with_simplified_phrases() -> None:
    assert score("學校附近有電線掉下來了").safety
    assert signals(score("我們這裡停電了")) == {"urgency": 30}


def test_it_classifies_topics_with_the_dictionary_in_all_five_languages() -> None:
    assert classify_topic("Нет света на улице Ленина", config=DEFAULT) == "outage"
    assert classify_topic("Minha fatura deste mês está errada", config=DEFAULT) == "billing"
    assert classify_topic("電表讀數 12345", config=DEFAULT) == "meter_reading"
    assert classify_topic("Kokie tarifai naktį?", config=DEFAULT) == "tariff"
    assert classify_topic("How do I terminate my contract?", config=DEFAULT) == "contract"
    assert classify_topic("hello", config=DEFAULT) == "other"


# --------------------------------------------------------------------------- validation


def test_the_default_configuration_is_valid() -> None:
    assert validate_config(default_config())["schema"] == "helpdesk.scoring/1"


def _broken(change: Any) -> dict[str, Any]:
    data = default_config()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "config: must be an object"),
        (_broken(lambda d: d.pop("tiers")), "config.tiers: is missing"),
        (_broken(lambda d: d.update(weights={})), "config.weights: unknown key"),
        (
            _broken(lambda d: d["levels"].update(high=80)),
            "config.levels: must rise: normal < high < urgent",
        ),
        (
            _broken(lambda d: d["urgency"]["groups"][0].update(points="70")),
            "config.urgency.groups[0].points: must be a whole number",
        ),
        (
            _broken(lambda d: d["urgency"]["groups"][1]["phrases"]["en"].append("no*power")),
            "config.urgency.groups[1].phrases.en[9]: 'no*power' has 'no*power': '=' may only",
        ),
        (
            _broken(lambda d: d["negativity"]["terms"]["ru"].append("   ")),
            "config.negativity.terms.ru[9]: '   ' is empty",
        ),
        (
            _broken(lambda d: d["negativity"]["terms"].update(English=["bad"])),
            "config.negativity.terms.English: a language code is 2 or 3 lower-case letters",
        ),
        (
            _broken(lambda d: d["influence"].update(max_level="urgent")),
            "config.influence.max_level: must be low, normal or high",
        ),
        (
            _broken(lambda d: d["topics"][0].update(topic="weather")),
            "config.topics[0].topic: must be one of",
        ),
        (
            _broken(lambda d: d["urgency"]["groups"][1].update(name="safety")),
            "config.urgency.groups[1].name: 'safety' is used by another group",
        ),
        (
            _broken(lambda d: d["aging"].update(low=0)),
            "config.aging.low: must be from 1 to 43200; got 0",
        ),
    ],
)
def test_it_refuses_a_malformed_configuration_saying_where(data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(data)
    assert any(e.startswith(expected) for e in caught.value.errors), caught.value.errors


def test_it_lists_every_problem_at_once() -> None:
    data = default_config()
    data["public"]["points"] = -1
    data["shouting"]["caps_ratio"] = 3
    with pytest.raises(ConfigError) as caught:
        validate_config(data)
    assert len(caught.value.errors) == 2


# --------------------------------------------------------------------------- versions


def _with_outage_points(points: int) -> dict[str, Any]:
    data = default_config()
    data["urgency"]["cap"] = 100
    data["urgency"]["groups"][1]["points"] = points
    return data


@pytest.mark.django_db
def test_a_new_version_changes_the_scores_of_new_messages(
    telegram: Any, receive: Any, ada: Any, django_capture_on_commit_callbacks: Any
) -> None:
    before = receive(telegram, "нет света", sender="1").ticket
    assert (before.priority, before.priority_score) == (Priority.NORMAL, 30)

    with django_capture_on_commit_callbacks(execute=True):
        config = actions.do_save_scoring_config(_with_outage_points(45), actor=ada, note="storm")
    assert (config.version, config.note, config.created_by) == (1, "storm", ada)

    after = receive(telegram, "нет света", sender="2").ticket
    assert (after.priority, after.priority_score) == (Priority.HIGH, 45)
    before.refresh_from_db()
    assert before.priority_score == 30  # tickets already scored keep their score


@pytest.mark.django_db
def test_every_process_notices_a_new_version_within_the_check_interval(
    settings: Any, django_assert_num_queries: Any
) -> None:
    settings.HELPDESK_SCORING_CHECK_SECONDS = 3600
    assert current_config().version == 0
    # Another process saves version 1 and announces it in the shared cache.
    ScoringConfig.objects.create(version=1, data=_with_outage_points(50))
    cache.set(priority.CACHE_KEY, 1, None)

    with django_assert_num_queries(0):  # between checks: no query, no cache read
        for _ in range(100):
            assert current_config().version == 0

    settings.HELPDESK_SCORING_CHECK_SECONDS = 0  # the interval has passed
    with django_assert_num_queries(1):
        assert current_config().version == 1
    with django_assert_num_queries(0):  # the version matches the cache: nothing to load
        assert current_config().version == 1
    assert signals(score_text("no power"))["urgency"] == 50


@pytest.mark.django_db
def test_it_refuses_an_invalid_version_and_keeps_the_one_in_force(ada: Any) -> None:
    data = default_config()
    data["levels"]["urgent"] = "seventy"
    with pytest.raises(InvalidInput) as caught:
        actions.do_save_scoring_config(data, actor=ada)
    assert "config.levels.urgent: must be a whole number" in caught.value.message
    assert not ScoringConfig.objects.exists()


@pytest.mark.django_db
def test_only_admins_save_versions(carol: Any, alice: Any) -> None:
    for who in (carol, alice):
        with pytest.raises(Forbidden):
            actions.do_save_scoring_config(default_config(), actor=who)
    assert not ScoringConfig.objects.exists()


@pytest.mark.django_db
def test_it_restores_an_old_version_as_the_newest(
    ada: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_save_scoring_config(_with_outage_points(40), actor=ada)
        actions.do_save_scoring_config(_with_outage_points(60), actor=ada)
        restored = actions.do_restore_scoring_config(1, actor=ada)
    assert restored.version == 3
    assert restored.note == "restored version 1"
    assert restored.data == ScoringConfig.objects.get(version=1).data
    assert signals(score_text("no power"))["urgency"] == 40
    with pytest.raises(NotFound):
        actions.do_restore_scoring_config(9, actor=ada)


# --------------------------------------------------------------------------- receiving


@pytest.mark.django_db
def test_it_sets_the_ticket_sentiment_from_its_most_negative_message(
    telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "нет света, это безобразие", sender="7").ticket
    assert ticket.sentiment == 8
    receive(telegram, "спасибо", sender="7")
    ticket.refresh_from_db()
    assert ticket.sentiment == 8  # a calm follow-up does not erase the complaint
    receive(telegram, "опять, сколько можно, позор", sender="7")
    ticket.refresh_from_db()
    assert ticket.sentiment == 15


@pytest.mark.django_db
def test_it_adds_customer_value_and_tier_from_the_contact(telegram: Any, receive: Any) -> None:
    first = receive(telegram, "hello", sender="8").ticket
    Contact.objects.filter(pk=first.contact_id).update(value=12000, tier=Tier.VIP)
    Ticket.objects.filter(pk=first.pk).update(status=Status.CLOSED)
    ticket = receive(telegram, "no power", sender="8").ticket
    assert {r["signal"]: r["points"] for r in ticket.priority_reasons} == {
        "urgency": 30,
        "tier": 15,
        "value": 5,
    }


@pytest.mark.django_db
def ticket_counts(captured: CaptureQueriesContext) -> list[str]:
    """The statements that counted tickets (the hot path writes them in lower case)."""
    return [
        q["sql"]
        for q in captured.captured_queries
        if "count(*) from tickets_ticket" in q["sql"].lower()
    ]


def test_it_counts_a_contacts_recent_tickets_once_when_a_ticket_opens(
    telegram: Any, receive: Any
) -> None:
    old = receive(telegram, "hello", sender="9").ticket
    Ticket.objects.filter(pk=old.pk).update(
        status=Status.CLOSED, created_at=timezone.now() - timedelta(days=8)
    )
    for _ in range(2):
        ticket = receive(telegram, "no power", sender="9").ticket
        Ticket.objects.filter(pk=ticket.pk).update(status=Status.CLOSED)
    # The third ticket in 7 days (the one 8 days old does not count).
    with CaptureQueriesContext(connection) as opening:
        third = receive(telegram, "no power", sender="9").ticket
    counts = ticket_counts(opening)
    assert len(counts) == 1
    history = [r for r in third.priority_reasons if r["signal"] == "history"]
    assert history == [
        {"signal": "history", "detail": "3 tickets in 7 days", "points": 8, "tickets": 3}
    ]

    # A follow-up that scores higher keeps the count, without counting again.
    with CaptureQueriesContext(connection) as follow_up:
        receive(telegram, "no power, this is unacceptable!!", sender="9")
    assert not ticket_counts(follow_up)
    third.refresh_from_db()
    assert "history" in {r["signal"] for r in third.priority_reasons}
    assert third.priority_score == 30 + 8 + 5 + 8


@pytest.mark.django_db
def test_a_new_contact_and_a_follow_up_read_no_configuration_and_count_nothing(
    telegram: Any, receive: Any
) -> None:
    with CaptureQueriesContext(connection) as first:
        receive(telegram, "нет света", sender="10")
    # A contact created by this very message has no other tickets: nothing to count.
    assert not ticket_counts(first)
    with CaptureQueriesContext(connection) as captured:
        for text in ("до сих пор нет света!!!", "ok", "это безобразие"):
            receive(telegram, text, sender="10")
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert "tickets_scoringconfig" not in sql
    assert "count(*) from tickets_ticket" not in sql.lower()


@pytest.mark.django_db
def test_it_scores_influence_and_public_posts_from_the_platform(telegram: Any) -> None:
    message = InboundMessage(
        channel_id=telegram.pk,
        platform_message_id="post-1",
        sender=Sender(kind="telegram", value="11", followers=250_000, verified=True),
        text="No power on Main Street since noon",
        is_public=True,
    )
    ticket = actions.do_receive_inbound(message).ticket
    assert [r["signal"] for r in ticket.priority_reasons] == [
        "urgency",
        "influence",
        "influence",
        "public",
    ]
    assert ticket.priority == Priority.HIGH


# --------------------------------------------------------------------------- aging


def _waiting(ticket: Ticket, hours: float) -> Ticket:
    Ticket.objects.filter(pk=ticket.pk).update(
        waiting_since=timezone.now() - timedelta(hours=hours)
    )
    ticket.refresh_from_db()
    return ticket


@pytest.mark.django_db
def test_aging_raises_a_long_waiting_low_ticket_one_level_and_says_why(
    telegram: Any, receive: Any
) -> None:
    ticket = _waiting(receive(telegram, "Передаю показания счетчика", sender="20").ticket, 5)
    assert ticket.priority == Priority.LOW
    due = (ticket.first_response_due, ticket.resolution_due)

    assert actions.do_age_waiting_tickets() == 1

    ticket.refresh_from_db()
    assert ticket.priority == Priority.NORMAL
    assert ticket.priority_reasons[-1]["signal"] == "aging"
    assert ticket.priority_reasons[-1]["detail"] == "waiting 5 h: low → normal"
    assert (ticket.first_response_due, ticket.resolution_due) == due  # deadlines as promised
    event = TicketEvent.objects.get(ticket=ticket, verb="ticket.priority")
    assert (event.from_value, event.to_value, event.actor_kind) == ("low", "normal", "system")
    assert event.data["reason"] == "aging"


@pytest.mark.django_db
def test_aging_raises_one_level_per_run_and_never_to_urgent_by_default(
    telegram: Any, receive: Any
) -> None:
    ticket = _waiting(receive(telegram, "Передаю показания счетчика", sender="21").ticket, 30)
    levels = []
    for _ in range(3):
        actions.do_age_waiting_tickets()
        ticket.refresh_from_db()
        levels.append(ticket.priority)
    assert levels == [Priority.NORMAL, Priority.HIGH, Priority.HIGH]


@pytest.mark.django_db
def test_aging_leaves_fresh_pending_and_person_chosen_levels_alone(
    telegram: Any, receive: Any, carol: Any
) -> None:
    _waiting(receive(telegram, "Передаю показания", sender="22").ticket, 1)
    pending = _waiting(receive(telegram, "Передаю показания", sender="23").ticket, 9)
    Ticket.objects.filter(pk=pending.pk).update(status=Status.PENDING, waiting_since=None)
    locked = _waiting(receive(telegram, "Передаю показания", sender="24").ticket, 9)
    actions.do_set_priority(locked, "low", actor=carol)

    assert actions.do_age_waiting_tickets() == 0
    assert set(Ticket.objects.values_list("priority", flat=True)) == {Priority.LOW}


@pytest.mark.django_db
def test_the_aging_reason_survives_a_higher_scoring_follow_up(telegram: Any, receive: Any) -> None:
    ticket = _waiting(receive(telegram, "Передаю показания счетчика", sender="25").ticket, 5)
    actions.do_age_waiting_tickets()
    receive(telegram, "и ещё: это безобразие", sender="25")
    ticket.refresh_from_db()
    assert ticket.priority == Priority.NORMAL
    assert [r["signal"] for r in ticket.priority_reasons] == ["aging", "negativity"]


@pytest.mark.django_db
def test_the_aging_job_runs_as_a_celery_task(telegram: Any, receive: Any) -> None:
    _waiting(receive(telegram, "Передаю показания счетчика", sender="26").ticket, 5)
    assert priority.age_waiting_tickets.apply().get() == 1


@pytest.mark.django_db
def test_aging_follows_the_configured_minutes(
    telegram: Any, receive: Any, ada: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = _waiting(receive(telegram, "Передаю показания счетчика", sender="27").ticket, 1)
    data = default_config()
    data["aging"]["low"] = 30
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_save_scoring_config(data, actor=ada)
    assert actions.do_age_waiting_tickets() == 1
    ticket.refresh_from_db()
    assert ticket.priority == Priority.NORMAL
