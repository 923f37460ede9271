from __future__ import annotations

from functools import partial

import pytest

from tickets.models import Priority, Tier
from tickets.priority import classify_topic, default_compiled, score_text

# The built-in dictionary, without the database: these tests are about the matching.
score_text = partial(score_text, config=default_compiled())
classify_topic = partial(classify_topic, config=default_compiled())


@pytest.mark.parametrize(
    ("text", "level", "signal"),
    [
        ("Возле школы оборван провод, искрит!", Priority.URGENT, "safety"),
        ("学校附近有电线掉下来了，很危险！", Priority.URGENT, "safety"),
        ("Kibirkščiuoja laidas prie namo", Priority.URGENT, "safety"),
        ("There is a wire down on Church Street and sparks", Priority.URGENT, "safety"),
        ("Fio caído na rua, faíscas por todo o lado", Priority.URGENT, "safety"),
        ("до сих пор нет света!!! это безобразие", Priority.HIGH, "negativity"),
        ("Sem luz desde ontem", Priority.NORMAL, "urgency"),
        ("Recebi aviso de corte mas já paguei", Priority.NORMAL, "urgency"),
        ("Хочу передать показания счетчика", Priority.LOW, "routine"),
        ("Mano skaitiklio rodmenys 12345", Priority.LOW, "routine"),
    ],
)
def test_it_scores_messages_in_all_five_languages(text, level, signal):
    score = score_text(text)
    assert score.level == level
    assert signal in {r["signal"] for r in score.reasons}


@pytest.mark.parametrize(
    "text",
    [
        "Šviesa jau dega, ačiū",  # "the light is on again": not a fire
        "свет горит, спасибо",  # "the light is on"
        "I was fired from my job, can I get a payment plan?",
        "Vėliau parašysiu",  # "vėl" (again) is not in "vėliau" (later)
    ],
)
def test_it_does_not_mistake_ordinary_words_for_danger_or_anger(text):
    score = score_text(text)
    assert score.level != Priority.URGENT
    assert "negativity" not in {r["signal"] for r in score.reasons}


def test_it_keeps_a_plain_question_normal():
    assert score_text("Could you explain my bill?").level == Priority.NORMAL


def test_it_adds_customer_tier_influence_and_public_visibility_with_reasons():
    score = score_text(
        "no power again", tier=Tier.LIFE_SUPPORT, followers=250_000, verified=True, is_public=True
    )
    signals = [r["signal"] for r in score.reasons]
    assert signals == ["urgency", "negativity", "tier", "influence", "influence", "public"]
    assert score.points == 30 + 8 + 35 + 12 + 4 + 8
    assert score.level == Priority.URGENT


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Нет света на улице Ленина", "outage"),
        ("Minha fatura deste mês está errada", "billing"),
        ("电表读数 12345", "meter_reading"),
        ("Kokie tarifai naktį?", "tariff"),
        ("I am moving out, how do I terminate my contract?", "contract"),
        ("Когда закончится ремонт?", "maintenance"),
        ("Labas", "other"),
    ],
)
def test_it_classifies_topics(text, topic):
    assert classify_topic(text) == topic
