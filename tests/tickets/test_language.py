"""Language detection: lingua restricted to the configured languages plus confusable
neighbours, the heuristic for short texts, and the conversation's sticky language."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tickets import language
from tickets.language import Detection, conversation_language, detect, detect_language
from tickets.models import TicketEvent

LONG = {
    "en": "The power has been out on our street since this morning, when will it be back?",
    "pt": "Estamos sem luz desde ontem à noite, quando é que a energia volta?",
    "ru": "У нас нет света с самого утра, когда его включат обратно?",
    "zh": "我们小区从今天早上开始就停电了，请问什么时候能恢复供电？",
    "lt": "Mūsų gatvėje nuo ryto nėra elektros, kada ją vėl įjungsite?",
}


@pytest.mark.parametrize(("code", "text"), LONG.items())
def test_it_detects_each_configured_language_with_lingua(code: str, text: str) -> None:
    result = detect(text)
    assert (result.language, result.method) == (code, "lingua")
    assert result.confidence >= language.LINGUA_MIN_CONFIDENCE


@pytest.mark.parametrize(
    ("text", "code"),
    [("Labas", "lt"), ("olá", "pt"), ("спасибо", "ru"), ("停电了", "zh"), ("thanks", "en")],
)
def test_it_leaves_short_texts_to_the_heuristic(text: str, code: str) -> None:
    # lingua alone calls "Labas" Latvian and "olá" Spanish.
    result = detect(text)
    assert (result.language, result.method) == (code, "heuristic")


@pytest.mark.parametrize("text", ["", "ok", "👍", "12345", "!!!"])
def test_it_finds_no_language_without_evidence(text: str) -> None:
    assert detect_language(text) is None


@pytest.mark.parametrize(
    ("text", "neighbour"),
    [
        ("У нас немає світла з самого ранку, коли його увімкнуть?", "uk"),
        ("У нас няма святла з самай раніцы, калі яго ўключаць?", "be"),
        ("No tenemos luz desde ayer por la noche, ¿cuándo vuelve la electricidad?", "es"),
        ("Mūsu ielā kopš rīta nav elektrības, kad to ieslēgsiet?", "lv"),
    ],
)
def test_it_does_not_pass_a_neighbour_off_as_one_of_ours(text: str, neighbour: str) -> None:
    """Ukrainian and Belarusian are not Russian, Spanish is not Portuguese, Latvian is not
    Lithuanian: "not ours" means no language from this message (the conversation keeps
    whatever it had)."""
    result = detect(text)
    assert result.language is None
    assert (result.method, result.foreign) == ("foreign", neighbour)


def test_it_detects_only_among_the_languages_it_is_given() -> None:
    assert detect(LONG["pt"], allowed=("en", "ru")).language is None
    assert detect(LONG["ru"], allowed=("en", "ru")).language == "ru"


def test_it_builds_the_detector_once_however_many_threads_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh = language._Lingua()
    builds: list[tuple[str, ...]] = []
    real_build = fresh._build

    def counting_build(languages: tuple[str, ...]) -> Any:
        builds.append(languages)
        return real_build(languages)

    monkeypatch.setattr(fresh, "_build", counting_build)
    monkeypatch.setattr(language, "_lingua", fresh)
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(detect_language(LONG["lt"])))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["lt"] * 4
    assert len(builds) == 1


# --------------------------------------------------------------------------- sticky


@pytest.mark.parametrize(
    ("current", "detection", "expected"),
    [
        ("", Detection("ru", "heuristic", letters=2), "ru"),  # unknown: any evidence sets it
        ("ru", Detection(None, "none"), "ru"),
        ("ru", Detection("en", "heuristic", letters=6), "ru"),  # "thanks" does not flip it
        ("ru", Detection("en", "lingua", 0.9, letters=14), "ru"),  # too short to switch
        ("ru", Detection("en", "lingua", 0.9, letters=60), "en"),
        ("ru", Detection(None, "foreign", 0.99, letters=60, foreign="uk"), "ru"),
    ],
)
def test_the_conversation_language_is_sticky(
    current: str, detection: Detection, expected: str
) -> None:
    assert conversation_language(current, detection) == expected


@pytest.mark.django_db
def test_short_replies_never_change_a_conversations_language(telegram: Any, receive: Any) -> None:
    ticket = receive(telegram, LONG["ru"], sender="31").ticket
    assert ticket.language == "ru"
    for reply in ("ok", "👍", "да", "thanks!", "Labas", "obrigado"):
        receive(telegram, reply, sender="31")
    ticket.refresh_from_db()
    assert ticket.language == "ru"
    assert not TicketEvent.objects.filter(ticket=ticket, verb="ticket.language").exists()


@pytest.mark.django_db
def test_a_long_message_in_another_language_switches_it_and_says_so(
    telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, LONG["ru"], sender="32").ticket
    receive(telegram, LONG["en"], sender="32")
    ticket.refresh_from_db()
    assert ticket.language == "en"
    event = TicketEvent.objects.get(ticket=ticket, verb="ticket.language")
    assert (event.from_value, event.to_value) == ("ru", "en")
    assert event.data["letters"] >= language.SWITCH_MIN_LETTERS


@pytest.mark.django_db
def test_a_ukrainian_message_does_not_turn_a_conversation_russian(
    telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, LONG["lt"], sender="33").ticket
    receive(telegram, "У нас немає світла з самого ранку, коли його увімкнуть?", sender="33")
    ticket.refresh_from_db()
    assert ticket.language == "lt"


@pytest.mark.django_db
def test_a_conversation_without_a_language_takes_the_first_evidence(
    telegram: Any, receive: Any
) -> None:
    ticket = receive(telegram, "👍", sender="34").ticket
    assert ticket.language == ""
    receive(telegram, "Sem luz", sender="34")
    ticket.refresh_from_db()
    assert ticket.language == "pt"


def test_a_short_russian_text_lingua_half_thinks_ukrainian_stays_russian() -> None:
    # lingua: Ukrainian 0.53, Russian 0.46. Too unsure to call it foreign: the heuristic decides.
    result = detect("оборван провод, искрит")
    assert (result.language, result.method) == ("ru", "heuristic")
