"""The email channel: decoding, threading, trimming, auto-replies and bounces, the raw-MIME
webhook end to end, and replies as MIME messages (Django's locmem backend: mailoutbox)."""

from __future__ import annotations

import smtplib
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

import pytest
from django.core import mail

from channels_in.base import (
    Ignored,
    InboundMessage,
    Outbound,
    PayloadError,
    SendError,
    StatusUpdate,
    body_hash,
)
from channels_in.email import outbound as email_outbound
from channels_in.email.charsets import decode_bytes, decode_header
from channels_in.email.text import html_to_text, trim_quoted
from channels_in.models import Channel, InboundEvent
from channels_in.registry import adapter_for
from tests.channels_in.conftest import FIXTURES, fixture_bytes
from tickets import actions
from tickets.models import Attachment, Identity, Message, Ticket

pytestmark = pytest.mark.django_db

TOKEN = "inbound-s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
OUR_ADDRESS = "support@energy.example"
EML = sorted(p.name for p in (FIXTURES / "email").glob("*.eml"))


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def mailbox(email_channel: Channel) -> Channel:
    email_channel.credentials = {"inbound_token": TOKEN, "from_address": OUR_ADDRESS}
    email_channel.save(update_fields=["credentials"])
    return email_channel


def eml(name: str) -> bytes:
    return fixture_bytes("email", name)


def parse(channel: Channel, body: bytes) -> list[Any]:
    return adapter_for("email").parse(channel, body, {"content_type": "message/rfc822"})


def parse_one(channel: Channel, name: str) -> Any:
    [item] = parse(channel, eml(name))
    return item


def post(hook: Any, body: bytes, **headers: str) -> Any:
    return hook("email", "mail", body, content_type="message/rfc822", **(headers or BEARER))


def simple_email(
    *,
    sender: str = "Olga Smirnova <olga.smirnova@mail.example.ru>",
    subject: str = "Question",
    message_id: str = "<simple-1@mail.example.ru>",
    headers: str = "",
    body: str = "Hello, a question about my bill.",
) -> bytes:
    head = (
        f"From: {sender}\r\nTo: {OUR_ADDRESS}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 3 Nov 2025 10:00:00 +0000\r\n"
        + (f"Message-ID: {message_id}\r\n" if message_id else "")
        + headers
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return head.encode() + body.encode() + b"\r\n"


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("name", [n for n in EML if n != "malformed.eml"])
def test_it_parses_every_fixture(mailbox, name):
    items = parse(mailbox, eml(name))
    assert len(items) == 1
    assert isinstance(items[0], InboundMessage | Ignored | StatusUpdate)


def test_it_refuses_a_body_that_is_not_an_email(mailbox):
    adapter = adapter_for("email")
    with pytest.raises(PayloadError, match="header"):
        adapter.event_id(mailbox, eml("malformed.eml"), {})
    with pytest.raises(PayloadError):
        adapter.parse(mailbox, eml("malformed.eml"), {})
    with pytest.raises(PayloadError, match="empty"):
        adapter.event_id(mailbox, b"\r\n", {})
    with pytest.raises(PayloadError, match="From"):
        adapter.event_id(mailbox, b"Subject: hi\r\n\r\nno sender\r\n", {})


@pytest.mark.parametrize(
    ("name", "name_expected", "subject", "text_parts"),
    [
        (
            "ru_windows1251_outlook.eml",
            "Ольга Смирнова",
            "Нет света на улице Садовая",
            ["Здравствуйте!", "улица Садовая 12", "Лицевой счёт 1234567"],
        ),
        (
            "ru_koi8r_thebat.eml",
            "Пётр Иванов",
            "Показания счётчика за октябрь",
            ["Добрый день.", "48213 кВт·ч", "Иванов Пётр Сергеевич"],
        ),
        (
            "zh_gb2312_gbk_foxmail.eml",
            "张喆堃",
            "停电报修（朱镕路）",
            ["您好！", "朱镕路18号，户主张喆堃。"],
        ),
        ("zh_big5.eml", "許志明", "停電報修", ["您好，", "許先生家裡停電了，功能表顯示電表故障。"]),
        (
            "pt_iso88591_qp.eml",
            "Maria Conceição",
            "Fatura de outubro não está correta",
            ["245,30 €", "Não percebo porquê", "Conta n.º 5566778"],
        ),
        (
            "lt_iso885913.eml",
            "Rūta Žemaitytė",
            "Nėra elektros Ąžuolų g.",
            ["Laba diena,", "Ąžuolų g. 7, Šiauliai", "Ačiū, Rūta Žemaitytė"],
        ),
        (
            "lt_windows1257.eml",
            "Jonas Petrauskas",
            "Sąskaita už spalį",
            ["Laba diena,", "sąskaita už spalį per didelė: 312,40 €."],
        ),
        (
            "lt_utf8_thunderbird_flowed.eml",
            "Gintarė Kazlauskienė",
            "Sutarties pakeitimas",
            ["norėčiau pakeisti sutartį į vyro vardą"],
        ),
        (
            "raw_8bit_headers_cp1251.eml",
            "Сергей Попов",
            "Долг по счёту",
            ["Почему у меня долг? Я всё оплатил."],
        ),
    ],
)
def test_it_decodes_each_charset_exactly(mailbox, name, name_expected, subject, text_parts):
    item = parse_one(mailbox, name)
    assert item.sender.display_name == name_expected
    assert item.subject == subject
    for part in text_parts:
        assert part in item.text
    assert "\ufffd" not in item.text + item.subject + item.sender.display_name


def test_it_decodes_gb2312_labelled_parts_as_gb18030_without_a_fallback_note(mailbox):
    item = parse_one(mailbox, "zh_gb2312_gbk_foxmail.eml")
    # 镕, 喆 and 堃 are not in GB 2312: a strict gb2312 decoder fails on them.
    assert "朱镕路" in item.text and "decoding" not in item.payload


def test_it_joins_format_flowed_lines(mailbox):
    item = parse_one(mailbox, "lt_utf8_thunderbird_flowed.eml")
    assert "Ar galiu tai padaryti elektroniniu būdu?" in item.text


def test_it_decodes_rfc2047_subjects_with_mixed_charsets_and_broken_folding(mailbox):
    item = parse_one(mailbox, "subject_rfc2047_mixed.eml")
    # A UTF-8 "ё" split across two encoded-words, then ISO-8859-1, GB 2312 and windows-1251
    # words, the last one folded in the middle of its base64.
    assert item.subject == "Счёт за ноябрь / fatura não paga / 电费 и долг"
    assert item.sender.display_name == "Сергей Кузнецов"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?Q?Ol=C3=A1_n=C3=A3o?=", "Olá não"),
        ("Re: =?UTF-8?B?0J/RgNC40LLQtdGC?= world", "Re: Привет world"),
        ("=?utf-8?b?0J/RgNC4?=\r\n =?utf-8?b?0LLQtdGC?=", "Привет"),  # whitespace dropped
        ("=?utf-8?q?a?==?utf-8?q?b?=", "ab"),  # no whitespace at all between words
        ("=?utf-8?B?0J/RgNC40LLQtdGC?", "=?utf-8?B?0J/RgNC40LLQtdGC?"),  # unterminated: kept
        ("=?x-unknown?Q?caf=C3=A9?=", "café"),
        ("=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"),  # RFC 2231 section 5 language
        ("plain 8-bit caf\udcc3\udca9", "plain 8-bit café"),
    ],
)
def test_it_decodes_encoded_words_leniently(raw, expected):
    assert decode_header(raw)[0] == expected


def test_it_decodes_rfc2231_continued_filenames(mailbox):
    item = parse_one(mailbox, "rfc2231_filename_ru.eml")
    names = [a.name for a in item.attachments]
    assert names == ["Квитанция за электроэнергию ноябрь 2025.pdf", "Акт сверки.xlsx"]
    pdf = item.attachments[0]
    assert pdf.content_type == "application/pdf" and pdf.content.startswith(b"%PDF-1.4")
    assert item.text == "Во вложении квитанция и акт сверки."


def test_it_records_a_wrong_charset_label_instead_of_mangling(mailbox):
    item = parse_one(mailbox, "webform_wrong_charset_reply_to.eml")
    assert "Сообщение: Прошу выслать акт сверки." in item.text
    notes = " | ".join(item.payload["decoding"])
    assert "declared utf-8 does not decode these bytes; detected cp1251" in notes


@pytest.mark.parametrize(
    ("text", "encoding", "declared", "how"),
    [
        ("Здравствуйте, нет света", "cp1251", "koi8-r", "reads as cp1251"),
        ("Здравствуйте, нет света", "koi8-r", "windows-1251", "reads as koi8-r"),
        ("Здравствуйте, нет света", "cp1251", "iso-8859-1", "reads as cp1251"),
        ("Olá, não temos luz", "utf-8", "iso-8859-1", "the bytes are UTF-8"),
        ("您好，我們家停電了，請派人來", "big5", "gb2312", "reads as cp950"),
        ("Laba diena, sąskaita už spalį", "cp1257", "x-unknown-charset", "detected cp1257"),
        ("您好，停电了", "gb18030", None, "detected gb18030"),
    ],
)
def test_it_falls_back_when_the_declared_charset_is_wrong(text, encoding, declared, how):
    decoded = decode_bytes(text.encode(encoding), declared)
    assert decoded.text == text
    assert how in decoded.note


def test_it_never_decodes_with_an_escape_codec():
    # django-helpdesk's unicode_escape decode turned "\\n" and non-ASCII into garbage.
    decoded = decode_bytes("Привет \\n".encode(), "unicode_escape")
    assert decoded.text == "Привет \\n"
    assert "unknown charset" in decoded.note


def test_it_replaces_undecodable_bytes_and_says_so():
    decoded = decode_bytes(b"\x81\x8d\x8f\x90\x9d", "us-ascii")
    assert decoded.note and decoded.text  # something readable, and a record of why


# --------------------------------------------------------------------------- HTML, inline images


def test_it_derives_text_from_an_html_only_email_and_leaves_sanitizing_to_the_core(mailbox):
    item = parse_one(mailbox, "html_only_script.eml")
    assert item.text == (
        "Hello,\n\nMy meter number 99887766 shows a reading of 12\u00a0345\u00a0kWh, which is "
        "wrong.\n\nClick for the photo\n\nThanks,\nJames Smith"
    )
    assert "fetch(" not in item.text and "p{color" not in item.text
    assert "<script>" in item.html  # raw: the core sanitizes before storing


def test_it_keeps_the_content_id_of_inline_images(mailbox):
    item = parse_one(mailbox, "alternative_related_cid.eml")
    assert item.text == "Segue a foto do contador.\n\nLeitura: 48213\n\nAna"
    assert 'src="cid:F1A2B3C4-D5E6-7890@icloud.example"' in item.html
    [image] = item.attachments
    assert image.name == "contador.png" and image.content_type == "image/png"
    assert image.source_url == "cid:F1A2B3C4-D5E6-7890@icloud.example"
    assert item.payload["inline_images"] == {"F1A2B3C4-D5E6-7890@icloud.example": "contador.png"}


def test_it_turns_html_blocks_into_lines():
    html = "<div>One<br>two</div><ul><li>a</li><li>b</li></ul><script>x()</script><p>end</p>"
    assert html_to_text(html) == "One\ntwo\n\na\nb\n\nend"


# --------------------------------------------------------------------------- threading


def test_it_reads_threading_headers(mailbox):
    item = parse_one(mailbox, "reply_gmail_en.eml")
    root = "<AM0PR07MB5891C3E1F0B4A7C2E1D9A4B1C7E12@AM0PR07MB5891.eurprd07.prod.outlook.com>"
    parent = "<20251103120000.1.t1.m2@energy.example>"
    assert item.platform_message_id == (
        "<CAJ8s3k+Lq0Zr5n=K0t4c4u3bHz5xYgF8mUO2s0V0f3p6hXr0Vw@mail.gmail.example>"
    )
    assert item.reply_to == (parent, root)
    assert item.thread_key == root
    assert item.ticket_ref == 1


def test_it_takes_the_ticket_number_from_the_subject(mailbox):
    assert parse_one(mailbox, "subject_ticket_tag.eml").ticket_ref == 123
    item = parse(mailbox, simple_email(subject="Re: bill [Ticket #77]"))[0]
    assert item.ticket_ref == 77
    assert parse(mailbox, simple_email(subject="Re: bill #77"))[0].ticket_ref is None


def test_it_uses_the_message_id_or_a_hash_of_the_bytes_as_the_event_id(mailbox):
    adapter = adapter_for("email")
    assert adapter.event_id(mailbox, eml("zh_big5.eml"), {}) == (
        "<000a01dc4e2f$5b8e3c40$12aab4c0$@hinet.example>"
    )
    body = eml("no_message_id.eml")
    assert adapter.event_id(mailbox, body, {}) == "sha256:" + body_hash(body)
    [item] = parse(mailbox, body)
    assert item.platform_message_id == "sha256:" + body_hash(body)
    folded = simple_email(message_id="\r\n <folded-id@mail.example.ru>")
    assert adapter.event_id(mailbox, folded, {}) == "<folded-id@mail.example.ru>"
    bare = simple_email(message_id="no-brackets@mail.example.ru")
    assert adapter.event_id(mailbox, bare, {}) == "<no-brackets@mail.example.ru>"


def test_it_prefers_the_reply_to_address_for_answers(mailbox):
    item = parse_one(mailbox, "webform_wrong_charset_reply_to.eml")
    assert item.sender.value == "no-reply@energy-site.example"
    assert item.payload["reply_to_address"] == "anna.sokolova@mail.example.ru"


# --------------------------------------------------------------------------- trimming


@pytest.mark.parametrize(
    ("name", "trimmed", "quoted"),
    [
        ("reply_gmail_en.eml", "The power is back, thank you!\n\nOlga", "A crew is on its way"),
        (
            "reply_outlook_ru.eml",
            "Свет снова пропал, уже второй раз за день.\n\nОльга",
            "Бригада выехала",
        ),
        (
            "reply_pt_gmail.eml",
            "Obrigada, mas ainda não recebi a fatura corrigida.",
            "vamos verificar",
        ),
        ("reply_zh.eml", "电已经恢复了，谢谢！", "维修人员已经出发"),
        ("reply_lt.eml", "Ačiū, elektra jau yra.", "Brigada jau išvyko"),
        (
            "ru_koi8r_thebat.eml",
            "Добрый день.\n\nПередаю показания счётчика: 48213 кВт·ч.\n"
            "Лицевой счёт 7654321, Иванов Пётр Сергеевич.",
            "mailto:petr.ivanov@yandex.example",
        ),
    ],
)
def test_it_trims_quoted_replies_but_keeps_the_full_text(mailbox, name, trimmed, quoted):
    item = parse_one(mailbox, name)
    assert item.text == trimmed
    assert item.payload["full_text"].startswith(trimmed)
    assert quoted in item.payload["full_text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Thanks!\n\n-----Original Message-----\nFrom: Support\nSent: Monday\n\nOld text",
            "Thanks!",
        ),
        ("Ok\n\n--- Original Message ---\nold", "Ok"),
        (
            "Got it.\n\n________________________________\nFrom: Energy Support\n"
            "Sent: Monday, 3 November 2025 12:00\nTo: Olga\nSubject: Re: Power cut\n\nOld",
            "Got it.",
        ),
        ("Olá\n\nDe: Apoio\nEnviado: segunda-feira\nPara: Maria\n\nAntigo", "Olá"),
        ("Спасибо\n\n-----Исходное сообщение-----\nОт: Support", "Спасибо"),
        (
            "Спасибо!\n\nпн, 3 нояб. 2025 г. в 12:00, Energy Support <support@energy.example>:\n"
            "> Бригада выехала",
            "Спасибо!",
        ),
        (
            "Answer one\n> quoted question\nAnswer two\n> quoted tail",
            "Answer one\n> quoted question\nAnswer two",
        ),
        ("> only a quote\n> nothing else", "> only a quote\n> nothing else"),
        (
            "From: my neighbour told me\nthe power is out",
            "From: my neighbour told me\nthe power is out",
        ),
    ],
)
def test_it_recognises_quote_styles(text, expected):
    assert trim_quoted(text) == expected


# --------------------------------------------------------------------------- automatic mail


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-replied\r\n", "auto-reply"),
        ("Auto-Submitted: auto-generated\r\n", "auto-generated"),
        ("Auto-Submitted: auto-notified; owner-email=x@y.example\r\n", "auto-generated"),
        ("X-Autoreply: yes\r\n", "auto-reply"),
        ("X-Autorespond: Out of office\r\n", "auto-reply"),
        ("X-Auto-Response-Suppress: OOF\r\n", "auto-reply"),
        ("Precedence: bulk\r\n", "bulk"),
        ("Precedence: junk\r\n", "bulk"),
        ("Precedence: list\r\n", "mailing list"),
        ("Precedence: auto_reply\r\n", "auto-reply"),
        ("Return-Path: <>\r\n", "auto-generated"),
    ],
)
def test_it_ignores_automatic_mail(mailbox, headers, reason):
    [item] = parse(mailbox, simple_email(headers=headers))
    assert item == Ignored(reason=reason)


def test_it_takes_a_message_that_says_it_is_not_automatic(mailbox):
    [item] = parse(mailbox, simple_email(headers="Auto-Submitted: no\r\n"))
    assert isinstance(item, InboundMessage)


def test_it_ignores_out_of_office_replies_newsletters_and_mailer_daemons(mailbox):
    assert parse_one(mailbox, "ooo_auto_replied.eml") == Ignored(reason="auto-reply")
    assert parse_one(mailbox, "newsletter_bulk.eml") == Ignored(reason="bulk")
    daemon = simple_email(sender="MAILER-DAEMON@mx.example.ru", body="Something went wrong.")
    assert parse(mailbox, daemon) == [Ignored(reason="bounce for a message we cannot identify")]
    postmaster = simple_email(sender="postmaster@mx.example.ru", body="hi")
    assert isinstance(parse(mailbox, postmaster)[0], Ignored)


def test_it_ignores_its_own_mail_coming_back(mailbox):
    [item] = parse(mailbox, simple_email(sender=f"Energy Support <{OUR_ADDRESS.upper()}>"))
    assert item == Ignored(reason="loop: sent from this channel's own address")


def test_it_reads_a_delivery_status_notification(mailbox):
    item = parse_one(mailbox, "dsn_bounce.eml")
    assert item == StatusUpdate(
        channel_id=mailbox.pk,
        platform_message_id="<176217120401.7.3102954512818262410.t1.m2@energy.example>",
        status="failed",
        error=(
            "smtp; 550 5.1.1 <olga.old@mail.example.ru>: Recipient address rejected: User unknown"
        ),
        at=item.at,
    )


def test_it_reads_a_plain_text_bounce(mailbox):
    item = parse_one(mailbox, "bounce_plain_qmail.eml")
    assert isinstance(item, StatusUpdate)
    assert item.platform_message_id == "<176217120999.7.1.t5.m9@energy.example>"
    assert item.error == "550 5.1.1 mailbox unavailable"


def test_it_ignores_a_bounce_for_someone_elses_message_and_a_delay_report(mailbox):
    other = eml("dsn_bounce.eml").replace(
        b"From: Energy Support <support@energy.example>", b"From: someone@else.example"
    )
    assert parse(mailbox, other) == [
        Ignored(reason="bounce for a message this channel did not send")
    ]
    delayed = eml("dsn_bounce.eml").replace(b"Action: failed", b"Action: delayed")
    assert parse(mailbox, delayed) == [Ignored(reason="delivery report: delayed")]


# --------------------------------------------------------------------------- the webhook


def test_it_turns_a_raw_mime_post_into_a_ticket(mailbox, hook):
    response = post(hook, eml("ru_windows1251_outlook.eml"))

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.status == "processed" and event.result == {"message": 1}
    assert event.platform_id.startswith("<AM0PR07MB5891C3E1F0B4A7C2E1D9A4B1C7E12@")
    ticket = Ticket.objects.get()
    assert ticket.subject == "Нет света на улице Садовая"
    assert ticket.language == "ru" and ticket.team.slug == "billing"
    message = Message.objects.get()
    assert message.text.startswith("Здравствуйте!\n\nУ нас нет света с 7 утра")
    assert message.payload["from"] == "olga.smirnova@mail.example.ru"
    identity = Identity.objects.get(kind="email")
    assert identity.value == "olga.smirnova@mail.example.ru"
    assert identity.contact.display_name == "Ольга Смирнова"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"bearer {TOKEN}x"}, 403),
    ],
)
def test_it_rejects_a_missing_or_wrong_token_and_stores_nothing(mailbox, hook, headers, status):
    response = hook("email", "mail", eml("zh_big5.eml"), content_type="message/rfc822", **headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "bad_signature"
    assert not InboundEvent.objects.exists()


def test_it_accepts_the_scheme_in_any_case(mailbox, hook):
    response = post(hook, eml("zh_big5.eml"), Authorization=f"BEARER {TOKEN}")
    assert response.status_code == 200 and Ticket.objects.count() == 1


def test_it_rejects_everything_when_the_channel_has_no_token(email_channel, hook):
    response = post(hook, eml("zh_big5.eml"))
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_it_ignores_a_duplicate_delivery(mailbox, hook):
    body = eml("pt_iso88591_qp.eml")
    assert post(hook, body).status_code == 200
    assert post(hook, body).status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_it_stores_a_malformed_body_as_a_failed_event(mailbox, hook):
    response = post(hook, eml("malformed.eml"))
    assert response.status_code == 400
    event = InboundEvent.objects.get()
    assert event.status == "failed" and "header" in event.error
    assert not Ticket.objects.exists()


def test_it_stores_a_message_without_message_id_once(mailbox, hook):
    body = eml("no_message_id.eml")
    post(hook, body)
    post(hook, body)
    message = Message.objects.get()
    assert message.platform_message_id == "sha256:" + body_hash(body)
    assert message.text == "Meter 99887766 reading 48213 kWh"


def test_it_sanitizes_the_html_of_an_email_when_storing_it(mailbox, hook):
    post(hook, eml("html_only_script.eml"))
    message = Message.objects.get()
    html = message.html.lower()
    assert "<script" not in html and "fetch(" not in html
    assert "onerror" not in html and "onload" not in html
    assert "track.example" not in html
    assert "javascript:" not in html
    assert "99887766" in message.html
    assert message.text.startswith("Hello,\n\nMy meter number 99887766")


def test_it_stores_attachments_with_their_decoded_names(mailbox, hook):
    post(hook, eml("rfc2231_filename_ru.eml"))
    names = sorted(Attachment.objects.values_list("name", flat=True))
    assert names == ["Акт сверки.xlsx", "Квитанция за электроэнергию ноябрь 2025.pdf"]
    pdf = Attachment.objects.get(content_type="application/pdf")
    assert pdf.file.read().startswith(b"%PDF-1.4")


def test_it_keeps_the_message_when_an_attachment_is_over_the_limit(mailbox, hook, settings):
    settings.HELPDESK_MAX_ATTACHMENT_BYTES = 16 * 1024
    post(hook, eml("big_attachment.eml"))
    message = Message.objects.get()
    assert message.text == "Siunčiu skaitiklio nuotrauką."
    [rejected] = message.payload["rejected_attachments"]
    assert rejected["name"] == "skaitiklis.jpg" and rejected["size"] == 65540
    assert list(message.attachments.values_list("name", flat=True)) == ["note.txt"]


def test_it_stores_inline_images_with_their_content_id(mailbox, hook):
    post(hook, eml("alternative_related_cid.eml"))
    message = Message.objects.get()
    image = message.attachments.get()
    assert image.source_url == "cid:F1A2B3C4-D5E6-7890@icloud.example"
    assert 'src="cid:F1A2B3C4-D5E6-7890@icloud.example"' in message.html


@pytest.mark.parametrize(
    ("name", "result"),
    [
        ("ooo_auto_replied.eml", {"ignored:auto-reply": 1}),
        ("newsletter_bulk.eml", {"ignored:bulk": 1}),
    ],
)
def test_it_never_opens_a_ticket_for_automatic_mail(mailbox, hook, name, result):
    assert post(hook, eml(name)).status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.result) == ("processed", result)
    assert not Ticket.objects.exists()
    assert not Identity.objects.exists()


@pytest.mark.parametrize("name", ["dsn_bounce.eml", "bounce_plain_qmail.eml"])
def test_it_never_opens_a_ticket_for_a_bounce_and_waits_for_the_message_it_reports(
    mailbox, hook, name
):
    assert post(hook, eml(name)).status_code == 200
    event = InboundEvent.objects.get()
    # A bounce can beat our record of the send: the core keeps the event pending a while.
    assert event.result == {"receipt_unmatched": 1}
    assert event.status == "pending" and event.error.startswith("deferred")
    assert not Ticket.objects.exists()
    assert not Identity.objects.exists()


# --------------------------------------------------------------------------- threading, end to end


def test_it_threads_a_reply_by_in_reply_to_and_references(mailbox, hook):
    post(hook, eml("ru_windows1251_outlook.eml"))
    # Its In-Reply-To is one of our replies we do not know here; References names the root.
    post(hook, eml("reply_outlook_ru.eml"))
    ticket = Ticket.objects.get()
    assert ticket.message_count == 2
    latest = ticket.messages.order_by("-id").first()
    assert latest.text == "Свет снова пропал, уже второй раз за день.\n\nОльга"
    assert "Бригада выехала на вашу улицу." in latest.payload["full_text"]


def test_it_threads_a_reply_that_arrives_before_the_message_it_answers(mailbox, hook):
    post(hook, eml("reply_outlook_ru.eml"))
    post(hook, eml("ru_windows1251_outlook.eml"))
    assert Ticket.objects.count() == 1


def test_it_threads_by_the_ticket_number_in_the_subject(mailbox, hook):
    post(hook, eml("ru_windows1251_outlook.eml"))
    ticket = Ticket.objects.get()
    tagged = eml("subject_ticket_tag.eml").replace(b"[#123]", f"[#{ticket.pk}]".encode())
    post(hook, tagged)
    assert Ticket.objects.count() == 1
    assert ticket.messages.count() == 2


def test_it_does_not_thread_onto_someone_elses_ticket_by_subject(mailbox, hook):
    post(hook, eml("ru_windows1251_outlook.eml"))
    ticket = Ticket.objects.get()
    stranger = simple_email(sender="mallory@evil.example", subject=f"Re: Power cut [#{ticket.pk}]")
    post(hook, stranger)
    assert Ticket.objects.count() == 2


def test_it_marks_our_reply_failed_when_a_bounce_reports_it(
    mailbox, hook, bob, mailoutbox, django_capture_on_commit_callbacks
):
    post(hook, eml("ru_windows1251_outlook.eml"))
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(ticket, bob, "Бригада выехала.")
    reply.refresh_from_db()
    ours = reply.platform_message_id
    assert ours and mailoutbox[0].extra_headers["Message-ID"] == ours

    bounce = eml("dsn_bounce.eml").replace(
        b"<176217120401.7.3102954512818262410.t1.m2@energy.example>", ours.encode()
    )
    post(hook, bounce)

    reply.refresh_from_db()
    assert reply.delivery_status == "failed"
    assert "550 5.1.1" in reply.delivery_error
    assert Ticket.objects.count() == 1
    assert InboundEvent.objects.get(platform_id__contains="mx.energy.example").result == {
        "receipt": 1
    }


# --------------------------------------------------------------------------- outbound


def test_it_sends_a_reply_with_threading_headers_and_the_customer_reply_threads_back(
    mailbox, hook, bob, mailoutbox, django_capture_on_commit_callbacks
):
    post(hook, eml("ru_windows1251_outlook.eml"))
    ticket = Ticket.objects.get()
    customer_id = "<AM0PR07MB5891C3E1F0B4A7C2E1D9A4B1C7E12@AM0PR07MB5891.eurprd07.prod.outlook.com>"
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(ticket, bob, "Бригада выехала, свет будет к 15:00.")

    [sent] = mailoutbox
    parsed = message_from_bytes(sent.message().as_bytes(), policy=default_policy)
    assert parsed["From"].addresses[0].addr_spec == OUR_ADDRESS
    assert parsed["To"] == "olga.smirnova@mail.example.ru"
    # (Django folds an encoded Subject after the colon; readers strip that space.)
    assert parsed["Subject"].strip() == f"Re: Нет света на улице Садовая [#{ticket.pk}]"
    assert parsed["In-Reply-To"].strip() == customer_id
    assert parsed["References"].strip() == customer_id
    assert parsed.get_content().strip() == "Бригада выехала, свет будет к 15:00."
    reply.refresh_from_db()
    assert reply.delivery_status == "sent"
    assert reply.platform_message_id == parsed["Message-ID"].strip()  # long ids get folded
    assert parsed["Message-ID"].endswith("@energy.example>")

    # The customer answers from a client that keeps only In-Reply-To.
    answer = simple_email(
        subject=f"Re: Нет света на улице Садовая [#{ticket.pk}]",
        message_id="<answer-1@mail.example.ru>",
        headers=f"In-Reply-To: {reply.platform_message_id}\r\n",
        body="Спасибо, свет дали!",
    )
    post(hook, answer)
    assert Ticket.objects.count() == 1
    assert ticket.messages.filter(direction="in").count() == 2

    # The next reply answers that message and carries the whole chain.
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_reply(ticket, bob, "Рады помочь.")
    second = message_from_bytes(mailoutbox[1].message().as_bytes(), policy=default_policy)
    assert second["In-Reply-To"].strip() == "<answer-1@mail.example.ru>"
    assert second["References"].split() == [
        customer_id,
        reply.platform_message_id,
        "<answer-1@mail.example.ru>",
    ]


def test_it_replies_to_the_reply_to_address(
    mailbox, hook, bob, mailoutbox, django_capture_on_commit_callbacks
):
    post(hook, eml("webform_wrong_charset_reply_to.eml"))
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_reply(ticket, bob, "Акт сверки во вложении.")
    assert mailoutbox[0].to == ["anna.sokolova@mail.example.ru"]


def test_it_never_repeats_the_ticket_tag_or_reply_prefixes():
    assert email_outbound.reply_subject("RE: Re: Fwd: Power cut [#12]", 12) == (
        "Re: Power cut [#12]"
    )
    assert email_outbound.reply_subject("回复：停电", 7) == "Re: 停电 [#7]"


def test_it_attaches_files_from_their_local_paths(mailbox, tmp_path, mailoutbox):
    receipt = tmp_path / "receipt.pdf"
    receipt.write_bytes(b"%PDF-1.4 receipt")
    from channels_in.base import OutboundAttachment

    out = Outbound(
        channel_id=mailbox.pk,
        recipient="olga.smirnova@mail.example.ru",
        text="Квитанция во вложении.",
        ticket_id=5,
        subject="Квитанция",
        attachments=(
            OutboundAttachment(
                name="Квитанция.pdf",
                content_type="application/pdf",
                url="",
                path=str(receipt),
            ),
        ),
    )
    message_id = adapter_for("email").send(mailbox, out)
    [sent] = mailoutbox
    assert sent.attachments == [("Квитанция.pdf", b"%PDF-1.4 receipt", "application/pdf")]
    assert sent.extra_headers["Message-ID"] == message_id
    assert "In-Reply-To" not in sent.extra_headers


class _FailingBackend:
    error: Exception

    def __init__(self, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: Any) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"x@y.example": (550, b"no such user")}), True),
        (smtplib.SMTPRecipientsRefused({"x@y.example": (451, b"try later")}), False),
        (smtplib.SMTPDataError(554, b"rejected as spam"), True),
        (smtplib.SMTPSenderRefused(452, b"insufficient storage", "support@energy.example"), False),
        (smtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(111, "refused"), False),
    ],
)
def test_it_classifies_smtp_errors(mailbox, monkeypatch, error, permanent):
    _FailingBackend.error = error
    monkeypatch.setattr(email_outbound, "get_connection", lambda **kw: _FailingBackend())
    out = Outbound(channel_id=mailbox.pk, recipient="x@y.example", text="hi", subject="s")
    with pytest.raises(SendError) as caught:
        email_outbound.send_email(mailbox, out)
    assert caught.value.permanent is permanent


def test_it_cannot_send_without_a_from_address(email_channel):
    out = Outbound(channel_id=email_channel.pk, recipient="x@y.example", text="hi")
    with pytest.raises(SendError) as caught:
        email_outbound.send_email(email_channel, out)
    assert caught.value.permanent
    assert not mail.outbox
