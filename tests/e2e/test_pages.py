"""The agent pages in a real browser at 1366x768: sign in, work the queue, answer a customer
with a canned response, and never run a customer's markup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from channels_in.models import Channel
from tests.conftest import PASSWORD, inbound, make_agent
from tickets import actions
from tickets.models import Agent, CannedResponse, Message, Team, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"


@dataclass
class Desk:
    agent: Agent
    outage_ru: Ticket
    bill_pt: Ticket
    outage_zh: Ticket
    reading_lt: Ticket
    email_en: Ticket
    xss: Ticket
    platform: Any


def _receive(channel: Channel, text: str, **kwargs: Any) -> Ticket:
    return actions.do_receive_inbound(inbound(channel, text, **kwargs)).ticket


@pytest.fixture
def desk(
    outages: Team,
    billing: Team,
    telegram: Channel,
    whatsapp: Channel,
    sms: Channel,
    email_channel: Channel,
    bob: Agent,
    platforms: Any,
) -> Desk:
    """A working morning after a storm: every ticket arrives through tickets.actions."""
    ruta = make_agent(
        "ruta",
        teams=(outages, billing),
        languages=("lt", "ru", "en", "pt", "zh"),
        first_name="Rūta",
    )
    get_user_model().objects.filter(pk=ruta.user_id).update(last_name="Kazlauskienė")
    ruta.refresh_from_db()
    viber = Channel.objects.create(kind="viber", key="viber", name="Viber", default_team=outages)
    messenger = Channel.objects.create(
        kind="messenger", key="fb", name="Facebook page", default_team=billing
    )

    outage_ru = _receive(
        telegram,
        "Добрый вечер! Нет света на улице Ленина 5 с 18:00, в подъезде искрит щиток. "
        "Когда приедет бригада?",
        sender="201",
        name="Иван Петров",
        phone="+37061234567",
    )
    _receive(telegram, "Уже третий час без света, дети мёрзнут", sender="201", name="Иван Петров")
    actions.do_update_contact(outage_ru.contact, actor=ruta, accounts=["LT-1002003004"])
    bill_pt = _receive(
        sms,
        "Olá, a minha fatura de março veio com 312 €, é o dobro do habitual. "
        "Podem verificar a leitura do contador?",
        sender="+351912345678",
        name="Ana Silva",
    )
    outage_zh = _receive(
        whatsapp,
        "你好，我们小区从昨晚开始停电，家里有老人需要用氧气机，请尽快处理！",
        sender="+37060011223",
        name="王伟",
    )
    reading_lt = _receive(
        telegram,
        "Laba diena, noriu pateikti skaitiklio rodmenis: 045872 kWh. Ačiū!",
        sender="377",
        name="Rasa Jonaitienė",
    )
    email_en = _receive(
        email_channel,
        "Hello, is there scheduled maintenance on Oak Street this Friday?",
        html="<p>Hello,</p><p>is there <b>scheduled maintenance</b> on Oak Street this Friday?"
        "</p><blockquote>Your bill for account 55501234 is ready</blockquote>",
        subject="Scheduled maintenance on Oak Street?",
        sender="john.smith@example.com",
        name="John Smith",
    )
    _receive(
        messenger,
        "Paguei a conta ontem mas recebi aviso de corte. Isto é um absurdo!",
        sender="fb-553",
        name="Carlos Souza",
    )
    _receive(
        viber,
        "Hi, I moved out on 1 March, please close my contract for meter 889123.",
        sender="viber-uk-12",
        name="Emma Brown",
    )
    xss = _receive(telegram, XSS, sender="666", name="<b>Mallory</b> <script>alert(3)</script>")

    actions.do_assign(bill_pt, bob, actor=bob)
    actions.do_update_tags(outage_ru, actor=ruta, add=["storm", "line-12"])
    actions.do_update_tags(outage_zh, actor=ruta, add=["storm", "medical"])
    actions.do_update_tags(bill_pt, actor=bob, add=["high-bill"])
    actions.do_reply(reading_lt, ruta, "Ačiū, rodmenys priimti.", status="pending")
    actions.do_add_note(outage_ru, ruta, "Line 12 feeder tripped; crew 4 dispatched at 18:40.")

    CannedResponse.objects.create(
        shortcut="outage",
        title="Outage registered",
        language="ru",
        body="Здравствуйте, {{contact.name}}! Авария зарегистрирована под номером "
        "#{{ticket.id}}, бригада уже в пути. Лицевой счёт: {{contact.account}}. — {{agent.name}}",
    )
    CannedResponse.objects.create(
        shortcut="outage",
        title="Outage registered",
        language="en",
        body="Hello {{contact.name}}, the outage is registered as #{{ticket.id}}.",
    )
    CannedResponse.objects.create(
        shortcut="thanks", title="Thanks", body="Спасибо за обращение! {{agent.name}}"
    )
    CannedResponse.objects.create(
        shortcut="reading", title="Meter reading", language="lt", body="Rodmenys priimti."
    )
    return Desk(ruta, outage_ru, bill_pt, outage_zh, reading_lt, email_en, xss, platforms)


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def no_horizontal_scroll(page: Any) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_it_works_the_queue_and_answers_with_a_canned_response(
    desk: Desk, live_server: Any, page: Any, shoot: Callable[..., Any]
) -> None:
    base = live_server.url
    page.goto(f"{base}/login/")
    shoot(page, "login")
    sign_in(page, base, "ruta")
    page.wait_for_url(f"{base}/")

    # The queue: every language, one row per ticket, most urgent first.
    rows = page.locator("tr.qrow")
    assert rows.count() == 8
    text = page.locator(".qtable").inner_text()
    for words in ("Нет света", "fatura de março", "停电", "skaitiklio rodmenis", "Oak Street"):
        assert words in text
    first = rows.first
    assert first.locator(".prio").inner_text().lower() == "urgent"
    assert page.locator(".tab.is-active .count").inner_text() == "8"
    assert no_horizontal_scroll(page)
    # The reasons behind a priority, on hover.
    first.locator(".prio").hover()
    tooltip = first.locator(".why")
    assert tooltip.is_visible()
    assert "safety" in tooltip.inner_text()
    shoot(page, "queue")

    # Filters: only Billing's Portuguese ticket.
    page.select_option("select[name=language]", "pt")
    page.wait_for_url("**/?language=pt")
    assert page.locator("tr.qrow").count() == 2
    assert "fatura" in page.locator(".qtable").inner_text()
    assert "Ленина" not in page.locator(".qtable").inner_text()
    page.goto(f"{base}/")

    # Open the Russian outage from its row.
    page.locator("tr.qrow", has_text="Ленина 5").locator(".preview").click()
    page.wait_for_url(f"{base}/tickets/{desk.outage_ru.pk}/")
    assert no_horizontal_scroll(page)
    composer = page.locator("#composer").bounding_box()
    assert composer is not None and composer["y"] + composer["height"] <= 768
    thread = page.locator("#thread")
    assert "Нет света на улице Ленина 5" in thread.inner_text()
    assert "Internal note" in page.locator(".msg-note").inner_text()
    assert "LT-1002003004" in page.locator(".customer").inner_text()
    shoot(page, "ticket")

    # "/outa" then Tab expands the Russian template with the ticket's values.
    box = page.locator("#reply-text")
    box.click()
    box.type("/outa")
    picker = page.locator("#canned")
    assert picker.is_visible()
    assert page.locator("#canned-list li").count() == 1  # the English one is not offered
    shoot(page, "ticket-canned")
    box.press("Tab")
    expected = (
        f"Здравствуйте, Иван Петров! Авария зарегистрирована под номером #{desk.outage_ru.pk}, "
        "бригада уже в пути. Лицевой счёт: LT-1002003004. — Rūta Kazlauskienė"
    )
    assert box.input_value() == expected
    assert picker.is_hidden()
    # The picker: filter and pick with Enter.
    box.type("\n")
    page.click("#canned-open")
    page.fill("#canned-filter", "спасибо")
    page.press("#canned-filter", "Enter")
    assert box.input_value().endswith("Спасибо за обращение! Rūta Kazlauskienė")

    page.click("#send")
    page.wait_for_url(f"{base}/tickets/{desk.outage_ru.pk}/")
    assert "Reply sent." in page.locator(".toasts").inner_text()
    last = page.locator(".msg-out").last
    assert "Авария зарегистрирована" in last.inner_text()
    # Sent on the customer's channel (the fake Telegram API) before the page came back.
    assert "Sent" in last.locator(".ticks").inner_text()
    sent = Message.objects.filter(ticket=desk.outage_ru, direction="out", is_internal=False).get()
    assert sent.text.startswith("Здравствуйте, Иван Петров!")
    assert sent.text in [r.json["text"] for r in desk.platform.sent("sendMessage")]
    shoot(page, "ticket-replied")

    # An internal note, then resolve with the status buttons.
    page.click("label.mode-note")
    assert page.is_checked("input[name=mode][value=note]")
    assert page.locator("button.reply-only").first.is_hidden()
    box.fill("Customer confirmed power is back at 21:05.")
    page.click("#send")
    page.wait_for_url(f"{base}/tickets/{desk.outage_ru.pk}/")
    assert "power is back" in page.locator(".msg-note").last.inner_text()
    page.click(".status-buttons button[value=resolved]")
    page.wait_for_url(f"{base}/tickets/{desk.outage_ru.pk}/")
    assert page.locator(".thead .st").inner_text() == "Resolved"

    # An email renders its (sanitized) HTML.
    page.goto(f"{base}/tickets/{desk.email_en.pk}/")
    assert page.locator(".email-html b", has_text="scheduled maintenance").count() == 1
    shoot(page, "ticket-email")


def test_it_shows_customer_markup_as_text_and_never_runs_it(
    desk: Desk, live_server: Any, page: Any, shoot: Callable[..., Any]
) -> None:
    sign_in(page, live_server.url, "ruta")
    page.wait_for_url(f"{live_server.url}/")
    row = page.locator("tr.qrow", has_text="onerror")
    assert "<img src=x onerror=alert(1)>" in row.inner_text()
    assert "<b>Mallory</b>" in row.inner_text()

    page.goto(f"{live_server.url}/tickets/{desk.xss.pk}/")
    message = page.locator(".msg-in .msg-text").first
    assert message.inner_text() == XSS
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("main script").count() == 1  # only the canned responses' JSON
    assert page.locator("main b", has_text="Mallory").count() == 0
    page.wait_for_timeout(300)  # time for an onerror to fire, were there an image
    assert page.dialogs == []
    shoot(page, "ticket-xss")


def test_it_shows_a_user_without_an_agent_row_a_clear_403(
    live_server: Any, page: Any, shoot: Callable[..., Any], mallory: Any
) -> None:
    sign_in(page, live_server.url, "mallory")
    page.wait_for_load_state()
    assert "not a helpdesk agent" in page.locator("main").inner_text()
    assert page.locator(".qtable").count() == 0
    shoot(page, "forbidden")


def test_it_keeps_only_the_newest_few_notices_on_screen(
    live_server: Any, page: Any, shoot: Callable[..., Any], bob: Agent
) -> None:
    # What a storm's SLA sweep does to a supervisor's screen: a dozen warnings at once.
    sign_in(page, live_server.url, "bob")
    page.wait_for_url(f"{live_server.url}/")
    page.evaluate(
        """() => {
            Live.toast("Signed out", "error");
            Live.toast("Assigned #1", "info");
            for (let i = 0; i < 12; i++) Live.toast("SLA at risk on #" + i, "warning");
        }"""
    )
    texts = [text.rstrip("×").strip() for text in page.locator(".toasts .toast").all_inner_texts()]
    assert texts == ["Signed out", "Assigned #1", "SLA at risk on #10", "SLA at risk on #11"]
    shoot(page, "toasts-trimmed")
