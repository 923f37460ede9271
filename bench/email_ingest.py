"""Email ingest benchmark: raw MIME messages through the webhook into tickets, end to end.

    .venv/bin/python bench/email_ingest.py                    # 2,000 emails, report
    .venv/bin/python bench/email_ingest.py --profile 300      # ... then profile the worker
    .venv/bin/python bench/email_ingest.py --count 500 --no-results   # a quick look

1. Creates the PostgreSQL database `helpdesk_bench_email` afresh and migrates it; empties
   Redis database 7 (ours alone) and creates one email channel.
2. Generates the emails from the fixture templates (tests/channels_in/fixtures/email): Russian
   (windows-1251 quoted-printable as Outlook, koi8-r 8bit as The Bat!, UTF-8 base64), Chinese
   (gb2312-labelled GBK base64 as Foxmail, big5 8bit, UTF-8), Portuguese (iso-8859-1 QP with a
   windows-1252 euro sign, UTF-8), Lithuanian (iso-8859-13, windows-1257 QP, UTF-8), English
   (ASCII, HTML-only); RFC 2047 subjects and names; a third are replies with In-Reply-To,
   References and a quoted original; a few carry an RFC 2231-named attachment; ~4 % are
   out-of-office replies and newsletters that must open no ticket; 2.5 % are redelivered.
3. Starts a Celery worker (`celery -A helpdesk worker -c 2`) and gunicorn (4 sync workers)
   against that database and Redis, warms both up, then POSTs every email over real HTTP
   (message/rfc822, bearer token) from concurrent clients.
4. Measures emails/s from the first POST until every email is a message on a ticket or an
   ignored automatic mail (events no longer pending), then checks every stored message
   against what was sent: lost, duplicated, mangled (text, subject, sender name), threads split.
5. Prints a table and appends a dated section to bench/RESULTS.md (with the machine's load).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`. Put the project root there instead (as bench/queue.py does).
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)
elif str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import base64  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import quopri  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from bench import common  # noqa: E402

DB_NAME = "helpdesk_bench_email"
REDIS_URL = "redis://127.0.0.1:6379/7"
SECRET_KEY = "bench-only-secret-key-" + "e" * 40
TOKEN = "bench-inbound-token"  # noqa: S105
CHANNEL_KEY = "bench-mail"
OUR_ADDRESS = "support@energy.example"
TARGET_PER_S = 300.0
PEER_PER_S = 50.0  # django-helpdesk 2.6.1 on this machine (PERF-NOTES: ~40-58)


# =========================================================================== the emails

NAMES = {
    "ru": ["Ольга Смирнова", "Иван Петров", "Наталья Кузнецова", "Сергей Попов", "Пётр Иванов"],
    "zh": ["张喆堃", "王芳", "李娜", "朱镕", "刘洋"],
    "zht": ["許志明", "陳美玲", "林功成", "黃淑芬", "張偉"],
    "pt": ["Maria Conceição", "João Gonçalves", "Inês Araújo", "Luís Simões", "Ana Ferreira"],
    "lt": ["Rūta Žemaitytė", "Jonas Petrauskas", "Gintarė Kazlauskienė", "Tomas Šimkus"],
    "en": ["James Smith", "Olivia Brown", "Noah Wilson", "Grace Taylor", "Liam Davies"],
}
SUBJECTS = {
    "ru": ["Нет света на улице Садовая", "Показания счётчика", "Счёт за ноябрь", "Долг по счёту"],
    "zh": ["停电报修（朱镕路）", "电费账单问题", "电表读数", "停电什么时候恢复"],
    "zht": ["停電報修", "電費帳單許可問題", "電表功能故障"],
    "pt": [
        "Fatura de outubro não está correta",
        "Sem luz na rua das Flores",
        "Leitura do contador",
    ],
    "lt": ["Nėra elektros Ąžuolų g.", "Sąskaita už spalį", "Skaitiklio rodmenys"],
    "en": ["Power cut on Mill Lane", "Wrong meter reading", "Question about my bill"],
}
BODIES = {
    "ru": [
        "Здравствуйте!\n\nУ нас нет света с {hour} утра, улица Садовая {house}.\n"
        "Лицевой счёт {acct}. Когда дадут электричество?",
        "Добрый день.\n\nПередаю показания счётчика: {reading} кВт·ч.\nЛицевой счёт {acct}.",
        "Пришёл счёт в два раза больше обычного, лицевой счёт {acct}. Проверьте, пожалуйста.",
    ],
    "zh": [
        "您好！\n\n我家从今天早上{hour}点开始停电，地址是朱镕路{house}号，户主张喆堃。\n"
        "请尽快派人来检查，谢谢。",
        "您好，这个月的电费账单比平时高了一倍，户号{acct}，请帮忙核查。",
        "电表读数：{reading}度，户号{acct}。",
    ],
    "zht": [
        "您好，\n\n許先生家裡停電了，功能表顯示電表故障。\n請派人來修理，帳號{acct}。",
        "電表讀數是{reading}度，帳號{acct}，謝謝。",
    ],
    "pt": [
        "Bom dia,\n\nA minha fatura de outubro veio com o valor de {euros},30 €, o dobro do "
        "normal.\nNão percebo porquê. Conta n.º {acct}.",
        "Estamos sem luz desde as {hour}h na rua das Flores, {house}. Conta {acct}. Quando volta?",
        "Leitura do contador: {reading} kWh, conta {acct}. Obrigada!",
    ],
    "lt": [
        "Laba diena,\n\nnuo ryto neturime elektros, Ąžuolų g. {house}, Šiauliai.\n"
        "Prašau pranešti, kada bus įjungta. Sąskaita {acct}.",
        "Sąskaita už spalį per didelė: {euros},40 €. Prašau patikrinti, abonentas {acct}.",
        "Skaitiklio rodmenys: {reading} kWh. Ačiū!",
    ],
    "en": [
        "Hello,\n\nWe have had no power since {hour} am at {house} Mill Lane.\n"
        "Account {acct}. When will it be back?",
        "My meter reads {reading} kWh, not what the bill says. Account {acct}.",
    ],
}
REPLIES = {
    "ru": ["Свет снова пропал, уже второй раз за день.", "Спасибо, свет дали!"],
    "zh": ["电已经恢复了，谢谢！", "还是没有电，请再派人来。"],
    "zht": ["電已經恢復了，謝謝！", "還是沒有電。"],
    "pt": ["Obrigada, mas ainda não recebi a fatura corrigida.", "Já temos luz, obrigado!"],
    "lt": ["Ačiū, elektra jau yra.", "Vis dar neturime elektros."],
    "en": ["The power is back, thank you!", "Still nothing here, please send someone."],
}
# How each language quotes (the trimmer must cut exactly there).
ATTRIBUTION = {
    "ru": "\n\n________________________________\nОт: Energy Support <support@energy.example>\n"
    "Отправлено: 3 ноября 2025 г. 13:30\nКому: {name}\nТема: Re: {subject}\n\n{quoted}",
    "zh": "\n\n在 2025年11月6日 19:00，Energy Support<support@energy.example> 写道：\n{quoted_gt}",
    "zht": "\n\n在 2025年11月6日 19:00，Energy Support<support@energy.example> 寫道：\n{quoted_gt}",
    "pt": "\n\nEm qui., 6 de nov. de 2025 às 12:00, Apoio <support@energy.example> escreveu:\n\n"
    "{quoted_gt}",
    "lt": "\n\n2025-11-07, pn, 09:00, Energy Support <support@energy.example> rašė:\n\n{quoted_gt}",
    "en": "\n\nOn Mon, 3 Nov 2025 at 12:00, Energy Support <support@energy.example>\nwrote:\n\n"
    "{quoted_gt}",
}
# (charset label, codec, transfer encoding, client) per language.
ENCODINGS = {
    "ru": [
        ("windows-1251", "cp1251", "quoted-printable", "Microsoft Outlook 16.0"),
        ("koi8-r", "koi8-r", "8bit", "The Bat! (v9.4.5) Professional"),
        ("utf-8", "utf-8", "base64", "Mail.ru"),
    ],
    "zh": [
        ("gb2312", "gbk", "base64", "Foxmail 7.2.25.375[cn]"),
        ("utf-8", "utf-8", "8bit", "QQMail 2.x"),
    ],
    "zht": [
        ("big5", "big5", "8bit", "Microsoft Outlook 16.0"),
        ("utf-8", "utf-8", "quoted-printable", "Apple Mail (2.3774.600.62)"),
    ],
    "pt": [
        ("iso-8859-1", "cp1252", "quoted-printable", "Microsoft Outlook 16.0"),
        ("utf-8", "utf-8", "quoted-printable", "Gmail"),
    ],
    "lt": [
        ("iso-8859-13", "iso-8859-13", "8bit", "Microsoft Outlook Express 6.00.2900.5931"),
        ("windows-1257", "cp1257", "quoted-printable", "Microsoft Outlook 16.0"),
        ("utf-8", "utf-8", "8bit", "Mozilla Thunderbird"),
    ],
    "en": [
        ("us-ascii", "ascii", "7bit", "Gmail"),
        ("utf-8", "utf-8", "html", "Outlook Web App"),
    ],
}
DOMAINS = ("mail.example.ru", "qq.example", "hinet.example", "sapo.example", "omni.example")
LANG_WEIGHTS = {"ru": 25, "pt": 25, "lt": 20, "zh": 12, "zht": 6, "en": 12}


@dataclass
class Mail:
    raw: bytes
    message_id: str
    kind: str  # message, ignored
    text: str = ""
    subject: str = ""
    name: str = ""
    sender: str = ""
    thread: int = -1
    attachment: str = ""


@dataclass
class Thread:
    sender: str
    name: str
    lang: str
    encoding: tuple[str, str, str, str]
    subject: str
    ids: list[str] = field(default_factory=list)
    last_text: str = ""


def _encodable(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _ew(text: str, label: str, codec: str) -> str:
    """RFC 2047 encoded-words, whole characters per word, at most ~45 bytes each."""
    if label in ("us-ascii",) and text.isascii():
        return text
    words: list[str] = []
    chunk = ""
    for ch in text:
        if len((chunk + ch).encode(codec)) > 45:
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk:
        words.append(chunk)
    if codec in ("cp1252", "iso-8859-13", "cp1257"):
        encoded = []
        for word in words:
            data = word.encode(codec)
            q = "".join(
                chr(b) if (chr(b).isalnum() and b < 128) else ("_" if b == 32 else f"={b:02X}")
                for b in data
            )
            encoded.append(f"=?{label}?Q?{q}?=")
        return "\r\n ".join(encoded)
    return "\r\n ".join(
        f"=?{label}?B?{base64.b64encode(w.encode(codec)).decode()}?=" for w in words
    )


def _body(text: str, codec: str, cte: str) -> bytes:
    data = text.replace("\n", "\r\n").encode(codec)
    if cte == "base64":
        encoded = base64.b64encode(data).decode()
        return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)).encode()
    if cte == "quoted-printable":
        return quopri.encodestring(text.encode(codec)).replace(b"\n", b"\r\n")
    return data


def _html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n")
    )
    return (
        "<html><head><style>p{margin:0}</style><script>track()</script></head><body>"
        f'{paragraphs}<img src="https://track.example/o.gif" width=1 height=1></body></html>'
    )


def make_emails(count: int, seed: int = 20251103) -> list[Mail]:
    rng = random.Random(seed)
    langs = list(LANG_WEIGHTS)
    weights = list(LANG_WEIGHTS.values())
    threads: list[Thread] = []
    mails: list[Mail] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.03 and threads:
            mails.append(_auto_reply(rng, rng.choice(threads), i))
            continue
        if roll < 0.04:
            mails.append(_newsletter(i))
            continue
        if roll < 0.36 and threads:
            thread_no = rng.randrange(max(0, len(threads) - 200), len(threads))
            mails.append(_reply(rng, threads[thread_no], thread_no, i))
            continue
        lang = rng.choices(langs, weights)[0]
        name = rng.choice(NAMES[lang])
        subject = rng.choice(SUBJECTS[lang])
        sender = f"customer{i}@{rng.choice(DOMAINS)}"
        text = rng.choice(BODIES[lang]).format(
            hour=rng.randint(5, 11),
            house=rng.randint(1, 120),
            acct=rng.randint(1_000_000, 9_999_999),
            reading=rng.randint(10_000, 99_999),
            euros=rng.randint(40, 400),
        )
        # Only the charsets that can carry everything this thread will say (no "€" in
        # iso-8859-13, no "·" in koi8-r): a client would pick UTF-8 otherwise, so do we.
        said = "".join([name, subject, text, *REPLIES[lang], ATTRIBUTION[lang]])
        usable = [e for e in ENCODINGS[lang] if _encodable(said, e[1])]
        encoding = rng.choice(usable or [("utf-8", "utf-8", "8bit", "Gmail")])
        thread = Thread(sender, name, lang, encoding, subject)
        threads.append(thread)
        mails.append(_compose(rng, thread, len(threads) - 1, i, text, thread.subject, ""))
    return mails


def _compose(
    rng: random.Random,
    thread: Thread,
    thread_no: int,
    i: int,
    text: str,
    subject: str,
    quoted: str,
    *,
    headers: str = "",
) -> Mail:
    label, codec, cte, client = thread.encoding
    message_id = f"<bench.{i}.{rng.getrandbits(40):x}@{thread.sender.split('@')[1]}>"
    references = ""
    if thread.ids:
        references = (
            f"In-Reply-To: {thread.ids[-1]}\r\nReferences: " + "\r\n ".join(thread.ids) + "\r\n"
        )
    full = text + quoted
    name_label, name_codec = ("utf-8", "utf-8") if label == "us-ascii" else (label, codec)
    head = (
        f"From: {_ew(thread.name, name_label, name_codec)} <{thread.sender}>\r\n"
        f"To: Energy Support <{OUR_ADDRESS}>\r\n"
        f"Subject: {_ew(subject, label, codec)}\r\n"
        f"Date: Mon, 3 Nov 2025 {8 + i % 10:02d}:{i % 60:02d}:00 +0200\r\n"
        f"Message-ID: {message_id}\r\n{references}{headers}"
        f"X-Mailer: {client}\r\nMIME-Version: 1.0\r\n"
    )
    attachment = ""
    if cte == "html":
        part = (
            b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ) + _body(_html(full), "utf-8", "quoted-printable")
    else:
        part = (
            f"Content-Type: text/plain; charset={label}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        ).encode() + _body(full, codec, cte)
    if rng.random() < 0.03:
        attachment = rng.choice(["Квитанция за ноябрь.pdf", "fatura-outubro.pdf", "电费单.pdf"])
        filename = "".join(f"%{b:02X}" for b in attachment.encode())
        pdf = base64.b64encode(b"%PDF-1.4\n" + bytes(rng.getrandbits(8) for _ in range(3000)))
        pdf_lines = b"\r\n".join(pdf[k : k + 76] for k in range(0, len(pdf), 76))
        body = (
            b'Content-Type: multipart/mixed; boundary="=_bench_"\r\n\r\n--=_bench_\r\n'
            + part
            + b"\r\n--=_bench_\r\nContent-Type: application/pdf\r\n"
            + f"Content-Disposition: attachment; filename*=utf-8''{filename}\r\n".encode()
            + b"Content-Transfer-Encoding: base64\r\n\r\n"
            + pdf_lines
            + b"\r\n--=_bench_--\r\n"
        )
    else:
        body = part
    thread.ids.append(message_id)
    thread.last_text = text
    return Mail(
        raw=head.encode() + body,
        message_id=message_id,
        kind="message",
        text=text,
        subject=subject,
        name=thread.name,
        sender=thread.sender,
        thread=thread_no,
        attachment=attachment,
    )


def _reply(rng: random.Random, thread: Thread, thread_no: int, i: int) -> Mail:
    text = rng.choice(REPLIES[thread.lang])
    quoted_lines = thread.last_text.split("\n")
    quoted = ATTRIBUTION[thread.lang].format(
        name=thread.name,
        subject=thread.subject,
        quoted=thread.last_text,
        quoted_gt="\n".join(f"> {line}" if line else ">" for line in quoted_lines),
    )
    return _compose(rng, thread, thread_no, i, text, f"Re: {thread.subject}", quoted)


def _auto_reply(rng: random.Random, thread: Thread, i: int) -> Mail:
    message_id = f"<ooo.{i}@{thread.sender.split('@')[1]}>"
    raw = (
        f"From: {thread.sender}\r\nTo: {OUR_ADDRESS}\r\n"
        f"Subject: Automatic reply: {thread.subject.encode('ascii', 'replace').decode()}\r\n"
        f"Date: Mon, 3 Nov 2025 12:00:05 +0300\r\nMessage-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I am out of the office until Monday.\r\n"
    ).encode()
    return Mail(raw=raw, message_id=message_id, kind="ignored", sender=thread.sender)


def _newsletter(i: int) -> Mail:
    message_id = f"<nl.{i}@deals.example>"
    raw = (
        f"From: Deals <news@deals.example>\r\nTo: {OUR_ADDRESS}\r\n"
        "Subject: =?utf-8?Q?Black_Friday:_=E2=88=9230=25?=\r\n"
        f"Date: Fri, 14 Nov 2025 06:00:00 +0000\r\nMessage-ID: {message_id}\r\n"
        "Precedence: bulk\r\nList-Unsubscribe: <mailto:unsub@deals.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "This week only: 30% off smart plugs.\r\n"
    ).encode()
    return Mail(raw=raw, message_id=message_id, kind="ignored", sender="news@deals.example")


# =========================================================================== processes


# =========================================================================== the run


SETUP_CODE = """
from channels_in.models import Channel
Channel.objects.update_or_create(
    key={key!r},
    defaults=dict(kind="email", name="Bench mailbox",
                  credentials={{"inbound_token": {token!r}, "from_address": {address!r}}}),
)
"""


@dataclass
class Posted:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def post_all(url: str, bodies: list[bytes], concurrency: int) -> Posted:
    posted = Posted()
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    headers = {"Content-Type": "message/rfc822", "Authorization": f"Bearer {TOKEN}"}

    def worker() -> None:
        with httpx.Client(timeout=30.0) as client:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i], headers=headers)
                except httpx.HTTPError as exc:
                    with lock:
                        posted.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    posted.latencies_ms.append(elapsed)
                    posted.statuses[response.status_code] += 1
                    if response.status_code != 200 and len(posted.errors) < 5:
                        posted.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

    common.run_threads(worker, concurrency)
    return posted


class Sweeper:
    """What Celery beat does in production (settings.CELERY_BEAT_SCHEDULE): every `every`
    seconds, re-enqueue events pending for more than `older_than` seconds
    (channels_in.tasks.sweep_inbound_events), sent by task name to the bench worker."""

    def __init__(self, channel: int, every: float, older_than: float) -> None:
        from celery import Celery

        self.app = Celery(broker=REDIS_URL)
        self.channel = channel
        self.every = every
        self.older_than = older_than
        self.swept = 0
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sweeper:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with common.connect(DB_NAME) as conn:
                rows = conn.execute(
                    "SELECT id FROM channels_in_inboundevent WHERE channel_id = %s AND "
                    "status = 'pending' AND received_at < now() - make_interval(secs => %s) "
                    "ORDER BY received_at LIMIT 5000",
                    [self.channel, self.older_than],
                ).fetchall()
            for (event_id,) in rows:
                self.app.send_task(
                    "channels_in.tasks.process_inbound_event", args=[event_id], queue="bench-email"
                )
            self.swept += len(rows)
            self.rounds += 1


def channel_id() -> int:
    with common.connect(DB_NAME) as conn:
        row = conn.execute(
            "SELECT id FROM channels_in_channel WHERE key = %s", [CHANNEL_KEY]
        ).fetchone()
    if row is None:
        raise RuntimeError("the bench channel was not created")
    return int(row[0])


def wait_processed(channel: int, expected_events: int, timeout: float) -> float | None:
    """Poll until `expected_events` events of the channel are no longer pending; return the
    time.perf_counter() when that happened, or None on timeout."""
    deadline = time.monotonic() + timeout
    with common.connect(DB_NAME) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status <> 'pending'), count(*) "
                "FROM channels_in_inboundevent WHERE channel_id = %s",
                [channel],
            ).fetchone()
            done, total = (int(row[0]), int(row[1])) if row else (0, 0)
            if total >= expected_events and done >= expected_events:
                return time.perf_counter()
            time.sleep(0.05)
    return None


@dataclass
class Verdict:
    expected_messages: int = 0
    expected_ignored: int = 0
    stored_messages: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    mangled: list[str] = field(default_factory=list)
    split_threads: int = 0
    tickets: int = 0
    threads: int = 0
    failed_events: list[str] = field(default_factory=list)
    still_pending: int = 0
    attachments_expected: int = 0
    attachments_stored: int = 0


def verify(channel: int, mails: list[Mail], warmup_ids: set[str]) -> Verdict:
    verdict = Verdict()
    with common.connect(DB_NAME) as conn:
        rows = conn.execute(
            "SELECT m.platform_message_id, m.text, m.ticket_id, t.subject, c.display_name, "
            "(SELECT count(*) FROM tickets_attachment a WHERE a.message_id = m.id) "
            "FROM tickets_message m JOIN tickets_ticket t ON t.id = m.ticket_id "
            "JOIN tickets_contact c ON c.id = t.contact_id "
            "WHERE m.channel_id = %s AND m.direction = 'in'",
            [channel],
        ).fetchall()
        events = conn.execute(
            "SELECT platform_id, status, result, error FROM channels_in_inboundevent "
            "WHERE channel_id = %s",
            [channel],
        ).fetchall()
    by_id: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        if row[0] not in warmup_ids:
            by_id[row[0]].append(row)
    events_by_id = {e[0]: e for e in events}
    verdict.failed_events = [f"{e[0]}: {e[3]}" for e in events if e[1] == "failed"]
    thread_subjects: dict[int, set[str]] = defaultdict(set)
    for mail in mails:
        if mail.kind == "message":
            thread_subjects[mail.thread].add(mail.subject)
    tickets_of_thread: dict[int, set[int]] = defaultdict(set)
    for mail in mails:
        if mail.kind == "ignored":
            verdict.expected_ignored += 1
            event = events_by_id.get(mail.message_id)
            result = event[2] if event else None
            if (
                event is None
                or event[1] != "processed"
                or not any(k.startswith("ignored:") for k in (result or {}))
            ):
                verdict.lost.append(f"{mail.message_id} (auto): {event}")
            if mail.message_id in by_id:
                verdict.mangled.append(f"{mail.message_id}: an automatic mail became a message")
            continue
        verdict.expected_messages += 1
        verdict.attachments_expected += 1 if mail.attachment else 0
        found = by_id.get(mail.message_id, [])
        if not found:
            event = events_by_id.get(mail.message_id)
            if event is not None and event[1] == "pending":
                verdict.still_pending += 1  # stored and safe, not yet processed
            else:
                verdict.lost.append(f"{mail.message_id}: {event}")
            continue
        verdict.duplicated += len(found) - 1
        _, text, ticket_id, subject, display_name, attachments = found[0]
        verdict.attachments_stored += attachments
        tickets_of_thread[mail.thread].add(ticket_id)
        if text != mail.text:
            verdict.mangled.append(f"{mail.message_id}: text {text[:60]!r} != {mail.text[:60]!r}")
        if subject not in thread_subjects[mail.thread]:
            verdict.mangled.append(f"{mail.message_id}: subject {subject!r}")
        if display_name != mail.name:
            verdict.mangled.append(f"{mail.message_id}: name {display_name!r} != {mail.name!r}")
    expected_ids = {m.message_id for m in mails}
    verdict.duplicated += sum(1 for pid in by_id if pid not in expected_ids)
    verdict.stored_messages = sum(len(v) for v in by_id.values())
    verdict.threads = len(tickets_of_thread)
    verdict.tickets = len({t for ts in tickets_of_thread.values() for t in ts})
    verdict.split_threads = sum(1 for ts in tickets_of_thread.values() if len(ts) > 1)
    return verdict


PROFILE_CODE = r"""
import cProfile, io, json, pickle, pstats, sys, time
from django.db import connection
from channels_in import processing
from channels_in.models import Channel
from channels_in.webhooks import store_event
from channels_in.email.adapter import event_id_for
from tickets import events
channel = Channel.objects.get(key={key!r})
bodies = pickle.load(open({path!r}, "rb"))
ids = [store_event(channel, event_id_for(b), b, {{"content_type": "message/rfc822"}})
       for b in bodies]
ids = [i for i in ids if i]
queries = [0]
def count(execute, sql, params, many, context):
    queries[0] += 1
    return execute(sql, params, many, context)
for warm in ids[:10]:
    processing.process_event(warm)
ids = ids[10:]
third = len(ids) // 3
plain, no_publish, profiled = ids[:third], ids[third:2 * third], ids[2 * third:]

def timed(batch):
    wall, cpu = time.perf_counter(), time.process_time()
    for event_id in batch:
        processing.process_event(event_id)
    return ((time.perf_counter() - wall) * 1000 / len(batch),
            (time.process_time() - cpu) * 1000 / len(batch))

# 1. As the worker runs it (no profiler).
with connection.execute_wrapper(count):
    plain_wall, plain_cpu = timed(plain)
per_email_queries = queries[0] / len(plain)
# 2. The same without the live-event publish (an ablation: what the channel layer costs).
real_publish = events._publish
events._publish = lambda groups, event: None
quiet_wall, quiet_cpu = timed(no_publish)
events._publish = real_publish
# 3. Where the time goes, under cProfile.
profile = cProfile.Profile()
profile.enable()
for event_id in profiled:
    processing.process_event(event_id)
profile.disable()
stats = pstats.Stats(profile)
total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())
def cumulative(fragment, name):
    best = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if fragment in filename and func == name:
            best = max(best, ct)
    return best
parts = {{
    "adapter.parse (email)": cumulative("channels_in/email/adapter.py", "parse"),
    "actions.do_receive_inbound": cumulative("tickets/actions.py", "do_receive_inbound"),
    "  _resolve_contact (identities, contact)": cumulative("tickets/actions.py",
                                                            "_resolve_contact"),
    "  _conversation_ticket (threading)": cumulative("tickets/actions.py",
                                                     "_conversation_ticket"),
    "  _event (TicketEvent rows)": cumulative("tickets/actions.py", "_event"),
    "  detect_language + score_text + classify_topic":
        cumulative("tickets/language.py", "detect_language")
        + cumulative("tickets/priority.py", "score_text")
        + cumulative("tickets/priority.py", "classify_topic"),
    "  sanitize_html": cumulative("tickets/sanitize.py", "sanitize_html"),
    "live events (events._publish after commit)": cumulative("tickets/events.py", "_publish"),
    "all SQL round trips (psycopg execute)": cumulative("psycopg/cursor.py", "execute"),
    "Django ORM query compilation (SQLCompiler.as_sql)": cumulative(
        "django/db/models/sql/compiler.py", "as_sql"),
}}
n = len(profiled)
print(json.dumps({{
    "n": len(plain) + len(no_publish) + n,
    "plain_wall_ms": plain_wall, "plain_cpu_ms": plain_cpu,
    "quiet_wall_ms": quiet_wall, "quiet_cpu_ms": quiet_cpu,
    "queries": per_email_queries,
    "profiled_ms": total * 1000 / n,
    "parts_ms": {{k: v * 1000 / n for k, v in parts.items()}},
}}))
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
print(out.getvalue(), file=sys.stderr)
"""


def profile_worker(env: dict[str, str], mails: list[Mail], tmp: Path) -> dict[str, Any]:
    """cProfile of processing.process_event (what the Celery task runs) over fresh emails,
    in a process of its own against the bench database."""
    path = tmp / "profile-bodies.pickle"
    import pickle

    path.write_bytes(pickle.dumps([m.raw for m in mails]))
    code = PROFILE_CODE.format(key=CHANNEL_KEY, path=str(path))
    result = subprocess.run(
        [str(common.PYTHON), "manage.py", "shell", "-c", code],
        cwd=common.ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["top"] = result.stderr
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients")
    parser.add_argument("--http-workers", type=int, default=4, help="2 x cores, as deployed")
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument(
        "--redeliver", type=float, default=0.025, help="share posted twice, 0 to 1 (0.025: 2.5 %%)"
    )
    parser.add_argument("--profile", type=int, default=0, help="profile N emails afterwards")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a quieter box")
    parser.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for it")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--sweep-every",
        type=float,
        default=60.0,
        help="emulate beat's sweep_inbound_events every N s (0: off), as production runs it",
    )
    parser.add_argument("--no-results", action="store_true", help="do not append RESULTS.md")
    args = parser.parse_args()
    if not 0 <= args.redeliver <= 1:
        parser.error(f"--redeliver is a share of the mails, 0 to 1, not {args.redeliver:g}")
    common.terminate_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-bench-email-"))
    env = common.project_env(
        DATABASE_URL=common.database_url(DB_NAME),
        REDIS_URL=REDIS_URL,
        SECRET_KEY=SECRET_KEY,
        CELERY_TASK_ALWAYS_EAGER="0",
        CELERY_QUEUE="bench-email",
        CACHE_PREFIX="bench-email",
        CHANNEL_LAYER_PREFIX="bench-email",
        MEDIA_ROOT=str(tmp / "media"),
        DEBUG="0",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SITE_URL="https://helpdesk.energy.example",
    )
    print(f"creating {DB_NAME} and migrating ...", flush=True)
    common.create_database(DB_NAME, drop_first=True)
    common.manage(["migrate", "--noinput", "-v", "0"], env)
    common.manage(
        ["shell", "-c", SETUP_CODE.format(key=CHANNEL_KEY, token=TOKEN, address=OUR_ADDRESS)],
        env,
    )
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    channel = channel_id()

    mails = make_emails(args.count)
    rng = random.Random(7)
    bodies = [m.raw for m in mails]
    redelivered = rng.sample(range(len(bodies)), int(len(bodies) * args.redeliver))
    for index in sorted(redelivered):
        # A redelivery arrives a little later than the original, as an MTA retry does.
        bodies.insert(min(len(bodies), index + rng.randint(5, 50)), mails[index].raw)
    warmup = make_emails(40, seed=99)
    for m in warmup:
        m.raw = m.raw.replace(b"@", b"-warmup@", 1)  # other senders than the measured ones
    warmup_ids = {m.message_id for m in warmup}
    languages = Counter(
        m.raw.split(b"charset=", 1)[1].split(b"\r\n", 1)[0].decode()
        for m in mails
        if b"charset=" in m.raw
    )
    print(
        f"{len(mails)} emails ({sum(m.kind == 'message' for m in mails)} from people, "
        f"{sum(m.kind == 'ignored' for m in mails)} automatic), {len(redelivered)} redelivered; "
        f"charsets: {dict(languages.most_common())}",
        flush=True,
    )

    load_before = common.wait_for_quiet(args.max_load, max_wait_s=args.max_wait)
    print(f"load average {load_before:.2f}; starting the worker and gunicorn", flush=True)
    celery = common.CeleryWorker(env, args.celery_concurrency, tmp / "celery.log")
    verdict: Verdict | None = None
    figures: dict[str, Any] = {}
    try:
        celery.start()
        with common.Gunicorn(env, workers=args.http_workers, log_path=tmp / "gunicorn.log") as web:
            url = f"{web.base_url}/hooks/email/{CHANNEL_KEY}/"
            warm = post_all(url, [m.raw for m in warmup], args.concurrency)
            with Sweeper(channel, every=10.0, older_than=5.0):
                if wait_processed(channel, len(warmup), 180) is None:
                    raise RuntimeError(f"warm-up not processed: {warm.errors[:3]}")
            pg_pids = common.backend_pids(DB_NAME)
            pids = {
                "gunicorn": web.worker_pids(),
                "celery": celery.pids(),
                "postgres": pg_pids,
                "redis": common.pidof("redis-server"),
            }
            cpu_before = {k: common.proc_cpu(v) for k, v in pids.items()}
            client_cpu = time.process_time()
            load_start = os.getloadavg()[0]
            sweeper = Sweeper(channel, every=args.sweep_every, older_than=args.sweep_every)
            with sweeper:
                start = time.perf_counter()
                posted = post_all(url, bodies, args.concurrency)
                posted_at = time.perf_counter()
                done_at = wait_processed(channel, len(mails) + len(warmup), args.timeout)
                end = done_at or time.perf_counter()
                processed_before_sweep = _processed_by(channel, start, args.sweep_every)
            pids["postgres"] = sorted(set(pids["postgres"]) | set(common.backend_pids(DB_NAME)))
            cpu_after = {k: common.proc_cpu(v) for k, v in pids.items()}
            client_cpu = time.process_time() - client_cpu
            load_end = os.getloadavg()[0]
        celery.stop()
        verdict = verify(channel, mails, warmup_ids)
        elapsed = end - start
        done = len(mails) if done_at is not None else _processed_count(channel) - len(warmup)
        figures = {
            "elapsed": elapsed,
            "done": done,
            "rate": done / elapsed,
            "post_rate": len(bodies) / (posted_at - start),
            "p50": common.percentile(posted.latencies_ms, 50),
            "p99": common.percentile(posted.latencies_ms, 99),
            "statuses": dict(posted.statuses),
            "errors": posted.errors[:5],
            "timed_out": done_at is None,
            "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_after} | {"client": client_cpu},
            "load": (load_before, load_start, load_end),
            "swept": sweeper.swept,
            "sweep_rounds": sweeper.rounds,
            "first_pass": processed_before_sweep,
        }
        if args.profile:
            print(f"profiling processing.process_event over {args.profile} fresh emails ...")
            fresh = make_emails(args.profile + 10, seed=4242)
            for m in fresh:
                m.raw = m.raw.replace(b"@", b"-profile@", 1)
            figures["profile"] = profile_worker(env, fresh, tmp)
    finally:
        celery.stop()
        shutil.rmtree(tmp / "media", ignore_errors=True)

    report = render(args, mails, len(bodies) - len(mails), verdict, figures)
    print(report)
    if "profile" in figures:
        print(figures["profile"]["top"])
    if not args.no_results:
        common.append_results(report)
        print(f"appended to {common.RESULTS_FILE}")
    print(f"logs in {tmp}")
    ok = verdict is not None and not verdict.lost and not verdict.duplicated and not verdict.mangled
    return 0 if ok else 1


def _processed_count(channel: int) -> int:
    with common.connect(DB_NAME) as conn:
        row = conn.execute(
            "SELECT count(*) FROM channels_in_inboundevent "
            "WHERE channel_id = %s AND status <> 'pending'",
            [channel],
        ).fetchone()
    return int(row[0]) if row else 0


def _processed_by(channel: int, start: float, seconds: float) -> int:
    """Events processed within `seconds` of the first POST (before any sweep could run)."""
    if seconds <= 0:
        return -1
    with common.connect(DB_NAME) as conn:
        row = conn.execute(
            "SELECT count(*) FROM channels_in_inboundevent WHERE channel_id = %s AND "
            "processed_at < (SELECT min(received_at) FROM channels_in_inboundevent "
            "WHERE channel_id = %s AND platform_id LIKE '<bench.%%') "
            "+ make_interval(secs => %s) AND platform_id LIKE '<bench.%%'",
            [channel, channel, seconds],
        ).fetchone()
    return int(row[0]) if row else 0


def render(
    args: argparse.Namespace,
    mails: list[Mail],
    redelivered: int,
    verdict: Verdict | None,
    figures: dict[str, Any],
) -> str:
    assert verdict is not None
    machine = common.machine_description()
    rate = figures["rate"]
    rows = [
        ["emails (people / automatic)", f"{len(mails)} ({verdict.expected_messages} / "
         f"{verdict.expected_ignored}), +{redelivered} redelivered"],
        ["end to end, first POST → last processed", f"{figures['elapsed']:.2f} s"],
        ["**emails/s end to end**", f"**{rate:.0f}** (target ≥ {TARGET_PER_S:.0f}; "
         f"the Python peer ~{PEER_PER_S:.0f})"],
        ["webhook POSTs/s (ingest only)", f"{figures['post_rate']:.0f}"],
        ["webhook latency p50 / p99", f"{figures['p50']:.1f} / {figures['p99']:.1f} ms"],
        ["HTTP statuses", ", ".join(f"{k}: {v}" for k, v in sorted(figures["statuses"].items()))],
        ["lost", str(len(verdict.lost)) + (
            f" ({verdict.still_pending} more stored, still pending)"
            if verdict.still_pending else "")],
        ["duplicated", str(verdict.duplicated)],
        ["mangled (text, subject or name differs)", str(len(verdict.mangled))],
        ["threads split over several tickets", f"{verdict.split_threads} of {verdict.threads}"],
        ["tickets", str(verdict.tickets)],
        ["attachments stored / sent", f"{verdict.attachments_stored} / "
         f"{verdict.attachments_expected}"],
        ["failed events", str(len(verdict.failed_events))],
        ["processed within the first sweep interval / re-enqueued by the sweeper",
         f"{figures['first_pass']} / {figures['swept']} (in {figures['sweep_rounds']} rounds "
         f"of {args.sweep_every:.0f} s)" if args.sweep_every > 0 else "sweeper off"],
        ["CPU s per 1,000 emails: gunicorn / celery / postgres (our backends) / redis / client",
         " / ".join(f"{figures['cpu'][k] * 1000 / len(mails):.1f}"
                    for k in ("gunicorn", "celery", "postgres", "redis", "client"))],
    ]  # fmt: skip
    if figures.get("timed_out"):
        rows.append(
            [
                "**TIMED OUT**",
                f"only {figures['done']} of {len(mails)} emails processed after "
                f"{args.timeout:.0f} s; emails/s above counts those",
            ]
        )
    lines = [
        f"## Email ingest — {common.utc_now_label()}",
        "",
        f"`.venv/bin/python bench/email_ingest.py --count {args.count} --concurrency "
        f"{args.concurrency}" + (f" --profile {args.profile}" if args.profile else "") + "`: "
        f"raw MIME over HTTP to gunicorn ({args.http_workers} sync workers), processed by "
        f"`celery -A helpdesk worker -c {args.celery_concurrency}` (Redis broker), PostgreSQL "
        f"{machine['postgresql']}, Python {machine['python']}, {machine['cores']} cores "
        f"({machine['cpu']}). Load average before / at start / at end: "
        + " / ".join(f"{x:.2f}" for x in figures["load"])
        + " (the machine is shared with other engineers' work).",
        "",
        common.markdown_table(["measure", "value"], rows),
    ]
    problems = verdict.lost[:5] + verdict.mangled[:5] + verdict.failed_events[:5]
    if problems or figures["errors"]:
        lines += ["", "First problems:", ""] + [f"- `{p}`" for p in problems + figures["errors"]]
    profile = figures.get("profile")
    if profile:
        lines += [
            "",
            f"Worker profile: `processing.process_event` (what the Celery task runs) in one "
            f"process over {profile['n']} fresh emails, in thirds: as the worker runs it "
            f"**{profile['plain_wall_ms']:.1f} ms wall / {profile['plain_cpu_ms']:.1f} ms CPU** "
            f"and {profile['queries']:.1f} SQL queries per email; without the live-event "
            f"publish {profile['quiet_wall_ms']:.1f} ms wall / {profile['quiet_cpu_ms']:.1f} ms "
            f"CPU; under cProfile ({profile['profiled_ms']:.1f} ms per email, inflated) the "
            "time splits as:",
            "",
            common.markdown_table(
                ["where (cumulative, per email, under cProfile)", "ms"],
                [[k, f"{v:.2f}"] for k, v in profile["parts_ms"].items()],
            ),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
