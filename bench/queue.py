"""Queue benchmark: the agent queue over a million tickets, served as production serves it.

    .venv/bin/python bench/queue.py                 # seed (or reuse) helpdesk_bench, measure
    .venv/bin/python bench/queue.py --explain       # ... and print EXPLAIN (ANALYZE, BUFFERS)
    .venv/bin/python bench/queue.py --reseed        # rebuild the bench database first

1. Creates (or reuses) the PostgreSQL database `helpdesk_bench`, migrates it and seeds it with
   COPY (not the ORM): 1 M tickets, ~3 M messages, contacts with identities, channels, teams,
   agents (one supervisor), tags. Indexes and foreign keys are dropped around the COPY and
   rebuilt on two connections, then ANALYZE.
2. Starts gunicorn (2 sync workers) against it with DEBUG off and the X-Query-Count header on.
3. Measures over real HTTP with concurrent connections (wrk when installed, else httpx
   clients in threads): the default API queue page, a filtered page, the next page by
   cursor, and the HTML queue page as a supervisor and as an agent.
4. Prints the figures next to the targets and appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where this file would shadow the
# standard library's `queue` (imported by concurrent.futures, httpx, psycopg_pool...). Put
# the project root there instead, which also makes `bench.common` and the project importable.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)
elif str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs, urlencode, urlsplit  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import common  # noqa: E402

DB_NAME = "helpdesk_bench"
# Bump when the generated data changes: a bench database seeded by another version is rebuilt.
SEED_VERSION = "2"
# A throwaway password shared by the bench-only users (printed, documented in bench/README.md).
BENCH_PASSWORD = "bench-queue-2026"  # noqa: S105
SUPERVISOR = "bench-supervisor"
ADMIN = "bench-admin"
SECRET_KEY = "bench-only-secret-key-" + "q" * 40

TARGETS = {"api_p95_ms": 15.0, "html_p95_ms": 40.0, "queries": 8, "seed_s": 300.0}

# The big tables: their indexes and foreign keys are dropped around COPY and rebuilt after.
BULK_TABLES = ("tickets_ticket", "tickets_message", "tickets_ticket_tags")
HISTORY_DAYS = 180
REOPEN_WINDOW = timedelta(hours=72)  # settings.HELPDESK_REOPEN_WINDOW: resolved -> closed


# =========================================================================== vocabulary
# Everything here ends up in COPY's text format as is, so no tab, newline or backslash
# (checked at start-up by _check_vocabulary).

LANGUAGES = ("pt", "ru", "lt", "en", "zh")
LANGUAGE_WEIGHTS = (30, 25, 20, 15, 10)

FIRST_NAMES = {
    "pt": ["Ana", "João", "Maria", "Pedro", "Beatriz", "Rui", "Inês", "Tiago", "Carla", "Luís"],
    "ru": ["Ольга", "Иван", "Наталья", "Сергей", "Елена", "Дмитрий", "Анна", "Павел", "Мария"],
    "lt": ["Jonas", "Rūta", "Tomas", "Eglė", "Mantas", "Ieva", "Darius", "Gintarė", "Lukas"],
    "en": ["Emma", "James", "Olivia", "Noah", "Sophie", "Liam", "Grace", "Oliver", "Chloe"],
    "zh": ["伟", "芳", "娜", "敏", "静", "磊", "洋", "婷", "军", "杰"],
}
LAST_NAMES = {
    "pt": ["Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins"],
    "ru": ["Иванова", "Смирнов", "Кузнецова", "Попов", "Васильева", "Петров", "Соколова"],
    "lt": ["Kazlauskas", "Jankauskienė", "Petrauskas", "Stankevičiūtė", "Vasiliauskas"],
    "en": ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies"],
    "zh": ["王", "李", "张", "刘", "陈", "杨", "黄", "赵"],
}

TOPICS = ("outage", "billing", "meter_reading", "tariff", "contract", "maintenance", "other")
TOPIC_WEIGHTS = (22, 28, 15, 8, 8, 7, 12)

# Customer messages per language and topic; "{acct}" is the contact's account number.
CUSTOMER_TEXTS: dict[str, dict[str, list[str]]] = {
    "pt": {
        "outage": [
            "Estamos sem luz desde as 6h na rua das Flores, conta {acct}. Quando volta?",
            "SEM LUZ há três horas!! O frigorífico está a descongelar, conta {acct}",
            "Faíscas no poste em frente à minha casa, por favor venham rápido",
        ],
        "billing": [
            "A minha fatura deste mês veio o dobro do normal, conta {acct}. Podem verificar?",
            "Paguei a fatura mas continua a aparecer como em dívida, conta {acct}",
        ],
        "meter_reading": ["Leitura do contador: 48213 kWh, conta {acct}", "Como envio a leitura?"],
        "tariff": ["Qual é o tarifário bi-horário e quanto custa o kWh à noite?"],
        "contract": ["Quero mudar o contrato para o nome da minha mulher, conta {acct}"],
        "maintenance": ["Recebi aviso de manutenção programada para amanhã. Quanto tempo dura?"],
        "other": ["Olá, bom dia. Tenho uma dúvida sobre a minha conta {acct}"],
    },
    "ru": {
        "outage": [
            "У нас нет света с утра, улица Садовая 12, лицевой счёт {acct}. Когда дадут?",
            "Опять отключили электричество!! Третий раз за неделю, счёт {acct}",
            "Искрит провод на столбе возле дома, срочно приезжайте",
        ],
        "billing": [
            "Пришёл счёт в два раза больше обычного, лицевой счёт {acct}. Проверьте пожалуйста",
            "Оплатил квитанцию, но долг не списали, счёт {acct}",
        ],
        "meter_reading": [
            "Показания счётчика 30517, лицевой счёт {acct}",
            "Как передать показания?",
        ],
        "tariff": ["Какой тариф для двухзонного счётчика и сколько стоит ночной кВт·ч?"],
        "contract": ["Хочу переоформить договор на другого собственника, счёт {acct}"],
        "maintenance": ["Пришло уведомление о плановых работах. Сколько не будет света?"],
        "other": ["Здравствуйте, у меня вопрос по лицевому счёту {acct}"],
    },
    "lt": {
        "outage": [
            "Nėra elektros nuo ryto, Vilniaus g. 5, sąskaita {acct}. Kada bus?",
            "Vėl dingo elektra!! Jau trečią kartą šią savaitę, sąskaita {acct}",
            "Kibirkščiuoja laidas prie namo, prašau atvažiuokite skubiai",
        ],
        "billing": [
            "Šio mėnesio sąskaita dvigubai didesnė nei įprastai, sąskaita {acct}",
            "Sumokėjau, bet vis dar rodo skolą, sąskaita {acct}",
        ],
        "meter_reading": ["Skaitiklio rodmenys 21877, sąskaita {acct}", "Kaip pateikti rodmenis?"],
        "tariff": ["Koks dviejų laiko zonų tarifas ir kiek kainuoja naktinė kWh?"],
        "contract": ["Noriu perrašyti sutartį kitam savininkui, sąskaita {acct}"],
        "maintenance": ["Gavau pranešimą apie planinius darbus. Kiek laiko nebus elektros?"],
        "other": ["Laba diena, turiu klausimą dėl sąskaitos {acct}"],
    },
    "en": {
        "outage": [
            "Power has been out since 6am on Mill Lane, account {acct}. Any ETA?",
            "NO POWER AGAIN!! Third time this week, account {acct}",
            "There are sparks coming from the pole outside my house, please hurry",
        ],
        "billing": [
            "My bill this month is twice the usual amount, account {acct}. Can you check?",
            "I paid my bill but it still shows as overdue, account {acct}",
        ],
        "meter_reading": [
            "Meter reading 58120 kWh for account {acct}",
            "How do I submit a reading?",
        ],
        "tariff": ["What is the time-of-use tariff and how much is a night kWh?"],
        "contract": ["I want to transfer the contract to the new owner, account {acct}"],
        "maintenance": ["I got a planned maintenance notice for tomorrow. How long will it take?"],
        "other": ["Hello, I have a question about my account {acct}"],
    },
    "zh": {
        "outage": [
            "我们从早上六点就停电了，账户 {acct}，什么时候恢复？",
            "又停电了！！这周第三次了，账户 {acct}",
            "门口电线杆有火花，请尽快派人来",
        ],
        "billing": ["这个月的电费是平时的两倍，账户 {acct}，请帮忙查一下", "已经缴费但还显示欠费"],
        "meter_reading": ["电表读数 40213，账户 {acct}", "怎么提交电表读数？"],
        "tariff": ["峰谷电价是多少？夜间每度电多少钱？"],
        "contract": ["我想把合同转到新业主名下，账户 {acct}"],
        "maintenance": ["收到明天计划检修的通知，要停多久？"],
        "other": ["你好，我想咨询一下账户 {acct} 的问题"],
    },
}
AGENT_TEXTS = {
    "pt": [
        "Olá! Já verificámos a sua conta e a equipa técnica está no local. Obrigado.",
        "Bom dia, corrigimos a fatura e o valor em excesso será creditado no próximo mês.",
        "Obrigado, registámos a leitura. Precisa de mais alguma coisa?",
    ],
    "ru": [
        "Здравствуйте! Бригада уже на месте, восстановление ожидается в течение двух часов.",
        "Мы проверили начисления и сделали перерасчёт, он отразится в следующем счёте.",
        "Спасибо, показания приняты. Чем ещё можем помочь?",
    ],
    "lt": [
        "Sveiki! Brigada jau vietoje, elektra turėtų būti atstatyta per dvi valandas.",
        "Patikrinome sąskaitą ir perskaičiavome, permoka bus įskaityta kitą mėnesį.",
        "Ačiū, rodmenys užregistruoti. Ar galime dar kuo padėti?",
    ],
    "en": [
        "Hi! A crew is on site and we expect power back within two hours. Thanks for waiting.",
        "We checked your bill and corrected it; the overcharge will be credited next month.",
        "Thanks, your reading is recorded. Anything else we can help with?",
    ],
    "zh": [
        "您好！抢修人员已到现场，预计两小时内恢复供电。",
        "我们已核对账单并更正，多收的费用将在下月抵扣。",
        "谢谢，读数已登记。还有什么可以帮您？",
    ],
}
BOT_TEXTS = {
    "pt": ["Olá! Sou o assistente virtual. Indique o número da sua conta, por favor."],
    "ru": ["Здравствуйте! Я виртуальный помощник. Укажите, пожалуйста, номер лицевого счёта."],
    "lt": ["Sveiki! Esu virtualus asistentas. Nurodykite sąskaitos numerį."],
    "en": ["Hi! I am the virtual assistant. Please tell me your account number."],
    "zh": ["您好！我是智能助手，请提供您的账户号码。"],
}
NOTE_TEXTS = ["Checked in CRM: no open field orders.", "Customer on the medical register."]

# The phrase priority.py would have matched, per language, for the explanation shown to agents.
SAFETY_PHRASE = {"pt": "faísca", "ru": "искрит", "lt": "kibirkšt", "en": "sparks", "zh": "火花"}
OUTAGE_PHRASE = {"pt": "sem luz", "ru": "нет света", "lt": "nėra elektros", "en": "no power"}
OUTAGE_PHRASE["zh"] = "停电"

CHANNELS = (
    # kind, key, name, identity kind, default team slug
    ("telegram", "telegram-bot", "Telegram bot", "telegram", "general"),
    ("whatsapp", "whatsapp-main", "WhatsApp +351", "whatsapp", "general"),
    ("messenger", "facebook-page", "Facebook page", "messenger", "social"),
    ("instagram", "instagram", "Instagram", "instagram", "social"),
    ("x", "x-brand", "X @utility", "x", "social"),
    ("viber", "viber", "Viber", "viber", "general"),
    ("vk", "vk-group", "VK group", "vk", "general"),
    ("sms", "sms-twilio", "SMS (Twilio)", "phone", "general"),
    ("email", "support-mailbox", "support@ mailbox", "email", "billing"),
    ("widget", "site-widget", "Web chat on the site", "widget", "general"),
)
# Which channels people of each language write from (index into CHANNELS -> weight).
CHANNEL_WEIGHTS = {
    "pt": {"whatsapp": 40, "messenger": 15, "instagram": 12, "email": 15, "sms": 5, "x": 5},
    "ru": {"telegram": 40, "vk": 20, "viber": 15, "email": 10, "sms": 5, "widget": 10},
    "lt": {"messenger": 25, "email": 25, "viber": 15, "sms": 15, "widget": 15, "telegram": 5},
    "zh": {"widget": 40, "email": 40, "telegram": 10, "sms": 10},
    "en": {"email": 35, "x": 15, "messenger": 15, "widget": 20, "whatsapp": 10, "sms": 5},
}
PUBLIC_KINDS = {"x", "instagram", "messenger"}

TEAMS = (
    # slug, name, description
    ("outages", "Outage response", "Power cuts, safety hazards, storm work"),
    ("billing", "Billing", "Bills, payments, debt, refunds"),
    ("meters", "Meter readings", "Readings, meter installation and faults"),
    ("contracts", "Contracts and tariffs", "New contracts, transfers, tariff changes"),
    ("field", "Field maintenance", "Scheduled maintenance and field visits"),
    ("social", "Social media", "Public posts and mentions on social networks"),
    ("vip", "Business and VIP", "Business customers, VIP and the medical register"),
    ("general", "General enquiries", "Everything else"),
)
TOPIC_TEAM = {
    "outage": "outages",
    "billing": "billing",
    "meter_reading": "meters",
    "tariff": "contracts",
    "contract": "contracts",
    "maintenance": "field",
    "other": "general",
}
SKILLS = ("Russian", "Portuguese", "Lithuanian", "Chinese", "Billing disputes", "Medical register")
TAGS = (
    ("storm", "#dc2626"),
    ("callback", "#2563eb"),
    ("complaint", "#b91c1c"),
    ("refund", "#16a34a"),
    ("field-visit", "#ca8a04"),
    ("debt", "#7c3aed"),
    ("smart-meter", "#0891b2"),
    ("escalated", "#ea580c"),
    ("press", "#db2777"),
    ("regulator", "#4b5563"),
    ("duplicate", "#64748b"),
    ("vip", "#facc15"),
)
TIERS = ("standard", "business", "vip", "life_support")
TIER_WEIGHTS = (90, 6, 2, 2)

# Priority level weights (low, normal, high, urgent) by topic: outages run hot.
PRIORITY_WEIGHTS = {"outage": (8, 47, 30, 15)}
DEFAULT_PRIORITY_WEIGHTS = (27, 60, 10, 3)
# settings.HELPDESK_SLA_MINUTES defaults: (first response, resolution) per level, in minutes.
SLA_MINUTES = {0: (24 * 60, 72 * 60), 1: (4 * 60, 24 * 60), 2: (60, 8 * 60), 3: (15, 4 * 60)}


def _check_vocabulary() -> None:
    strings: list[str] = []
    for table in (FIRST_NAMES, LAST_NAMES, AGENT_TEXTS, BOT_TEXTS):
        for values in table.values():
            strings += values
    for per_topic in CUSTOMER_TEXTS.values():
        for values in per_topic.values():
            strings += values
    strings += NOTE_TEXTS
    bad = [s for s in strings if re.search(r"[\t\n\r\\]", s)]
    if bad:
        raise ValueError(f"vocabulary not COPY-safe: {bad[:3]}")


# =========================================================================== COPY helpers


class Timestamps:
    """Formats epoch seconds as PostgreSQL timestamptz text, fast: datetime.isoformat() for
    the ~20 M values of a seed would alone take tens of seconds. Minutes are cached."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}
        self._seconds = [f":{s:02d}+00" for s in range(60)]

    def __call__(self, epoch: float) -> str:
        t = int(epoch)
        minute, second = divmod(t, 60)
        prefix = self._minutes.get(minute)
        if prefix is None:
            prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M")
            self._minutes[minute] = prefix
        return prefix + self._seconds[second]


NULL = "\\N"


def copy_rows(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Iterable[str]
) -> None:
    """COPY pre-formatted text lines (tab-separated, newline-terminated) into `table`."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        buf: list[str] = []
        for row in rows:
            buf.append(row)
            if len(buf) >= 5000:
                copy.write("".join(buf))
                buf.clear()
        if buf:
            copy.write("".join(buf))


def line(*values: object) -> str:
    """One COPY text line. Values must already be COPY-safe (see _check_vocabulary)."""
    return "\t".join(NULL if v is None else _text(v) for v in values) + "\n"


def _text(value: object) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


class CopyWriter(threading.Thread):
    """A COPY stream on its own connection, fed text chunks through a queue, so the two big
    tables load in parallel on two PostgreSQL backends while this process generates rows.
    The table is truncated in the same transaction, which lets COPY FREEZE write the rows
    already frozen and all-visible: no VACUUM needed before index-only scans work."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        super().__init__(name=f"copy-{table}", daemon=True)
        self.table = table
        self.columns = list(columns)
        # Text to copy; None ends the COPY and commits it, False aborts it (rolled back).
        self.chunks: queue.Queue[str | bool | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.rows = 0

    def run(self) -> None:
        try:
            with common.connect(DB_NAME, autocommit=False) as conn:
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(self.table)))
                stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FREEZE)").format(
                    sql.Identifier(self.table),
                    sql.SQL(", ").join(map(sql.Identifier, self.columns)),
                )
                with conn.cursor() as cur, cur.copy(stmt) as copy:
                    while (chunk := self.chunks.get()) is not None:
                        if chunk is False:
                            raise RuntimeError("aborted")  # leaving the block rolls back
                        copy.write(str(chunk))
                conn.commit()
        except BaseException as exc:
            self.error = exc
            # Keep draining so the producer never blocks on a dead consumer.
            while self.chunks.get() not in (None, False):
                pass

    def put(self, lines: list[str]) -> None:
        if self.error is not None:
            raise RuntimeError(f"COPY into {self.table} failed") from self.error
        self.rows += len(lines)
        self.chunks.put("".join(lines))

    def finish(self, *, abort: bool = False) -> None:
        self.chunks.put(False if abort else None)
        self.join()
        if self.error is not None and not abort:
            raise RuntimeError(f"COPY into {self.table} failed: {self.error}") from self.error


# =========================================================================== the seed


@dataclass
class ContactInfo:
    id: int
    language: str
    tier: str
    account: str
    channels: list[int]  # indexes into CHANNELS the contact has an identity for


@dataclass
class SeedReport:
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class Seeder:
    def __init__(self, tickets: int, contacts: int, seed: int = 20261122) -> None:
        self.n_tickets = tickets
        self.n_contacts = contacts
        self.rng = random.Random(seed)
        self.now = time.time()
        self.ts = Timestamps()
        self.phases: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        # Filled by the small tables and used by the big ones.
        self.team_ids: dict[str, int] = {}
        self.team_agents: dict[int, list[int]] = {}
        self.contacts: list[ContactInfo] = []
        self.agent_ids: list[int] = []

    # ------------------------------------------------------------------ orchestration

    def run(self, password_hash: str) -> SeedReport:
        started = time.perf_counter()
        with common.connect(DB_NAME) as conn:
            defaults = set_model_defaults(conn)
            self._phase("small tables", lambda: self._small_tables(conn, password_hash))
            ddl = self._phase("drop indexes", lambda: drop_bulk_indexes(conn))
        self._phase("COPY tickets, messages, tags", self._big_tables)
        self._phase("rebuild indexes and keys", lambda: rebuild(ddl))
        with common.connect(DB_NAME) as conn:
            drop_defaults(conn, defaults)
            self._phase("finish (counters, sequences)", lambda: self._finish(conn))
            self._phase("ANALYZE", lambda: conn.execute("ANALYZE"))
        return SeedReport(time.perf_counter() - started, self.phases, self.counts)

    def _phase(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        print(f"  {name} ...", flush=True)
        result = fn()
        self.phases[name] = time.perf_counter() - start
        print(f"  {name}: {self.phases[name]:.1f}s", flush=True)
        return result

    # ------------------------------------------------------------------ small tables

    def _small_tables(self, conn: psycopg.Connection[Any], password_hash: str) -> None:
        start_of_history = self.now - HISTORY_DAYS * 86400
        created = self.ts(start_of_history - 30 * 86400)

        teams = [line(i, name, slug, desc, created, None) for i, (slug, name, desc) in
                 enumerate(TEAMS, 1)]  # fmt: skip
        copy_rows(conn, "tickets_team", ["id", "name", "slug", "description", "created_at",
                                         "parent_id"], teams)  # fmt: skip
        self.team_ids = {slug: i for i, (slug, _, _) in enumerate(TEAMS, 1)}

        skills = [line(i, name, common.slug(name)) for i, name in enumerate(SKILLS, 1)]
        copy_rows(conn, "tickets_skill", ["id", "name", "slug"], skills)

        tags = [line(i, name, color) for i, (name, color) in enumerate(TAGS, 1)]
        copy_rows(conn, "tickets_tag", ["id", "name", "color"], tags)

        channels = []
        for i, (kind, key, name, _, team) in enumerate(CHANNELS, 1):
            credentials = json.dumps({"token": f"bench-{key}-not-a-secret"})
            settings = json.dumps({"business_hours": "08:00-20:00", "bot_flow": "welcome"})
            channels.append(
                line(i, kind, key, name, credentials, settings, self.team_ids[team], True, created)
            )
        copy_rows(
            conn,
            "channels_in_channel",
            ["id", "kind", "key", "name", "credentials", "settings", "default_team_id",
             "is_active", "created_at"],
            channels,
        )  # fmt: skip

        self._users_and_agents(conn, password_hash, created)
        self._contacts(conn, start_of_history)

    def _users_and_agents(
        self, conn: psycopg.Connection[Any], password_hash: str, created: str
    ) -> None:
        rng = self.rng
        users, agents, agent_teams, agent_skills = [], [], [], []
        people = [(SUPERVISOR, "supervisor"), (ADMIN, "admin")]
        people += [(f"bench-agent-{i:02d}", "agent") for i in range(1, 49)]
        team_slugs = [slug for slug, _, _ in TEAMS]
        for i, (username, role) in enumerate(people, 1):
            lang = rng.choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
            first = rng.choice(FIRST_NAMES[lang])
            last = rng.choice(LAST_NAMES[lang])
            users.append(
                line(i, password_hash, None, role == "admin", username, first, last,
                     f"{username}@helpdesk.example", role == "admin", True, created)
            )  # fmt: skip
            languages = sorted({lang, "en", *rng.sample(LANGUAGES, rng.randint(0, 1))})
            presence = rng.choices(("online", "away", "offline"), (60, 10, 30))[0]
            agents.append(
                line(i, role, json.dumps(languages), rng.choice((6, 8, 10, 12)), 0, presence,
                     created, None, role == "agent", "", i)
            )  # fmt: skip
            if role == "agent":
                # Agents work one or two teams; the supervisor and the admin see everything.
                # The first agent works two big teams: the HTML bench logs in as them.
                teams = (
                    ["outages", "billing"]
                    if i == 3
                    else rng.sample(team_slugs, rng.choice((1, 1, 2)))
                )
                if i <= 2 + len(team_slugs):  # every team has at least one agent
                    teams = sorted({*teams, team_slugs[(i - 3) % len(team_slugs)]})
                for slug in teams:
                    team_id = self.team_ids[slug]
                    agent_teams.append(line(len(agent_teams) + 1, i, team_id))
                    self.team_agents.setdefault(team_id, []).append(i)
                for skill in rng.sample(range(1, len(SKILLS) + 1), rng.randint(0, 2)):
                    proficiency = rng.randint(1, 5)
                    agent_skills.append(line(len(agent_skills) + 1, proficiency, i, skill))
            self.agent_ids.append(i)
        copy_rows(
            conn,
            "auth_user",
            ["id", "password", "last_login", "is_superuser", "username", "first_name",
             "last_name", "email", "is_staff", "is_active", "date_joined"],
            users,
        )  # fmt: skip
        copy_rows(
            conn,
            "tickets_agent",
            ["id", "role", "languages", "capacity", "open_count", "presence",
             "presence_changed_at", "last_assigned_at", "auto_assign", "signature", "user_id"],
            agents,
        )  # fmt: skip
        copy_rows(conn, "tickets_agent_teams", ["id", "agent_id", "team_id"], agent_teams)
        copy_rows(
            conn, "tickets_agentskill", ["id", "proficiency", "agent_id", "skill_id"], agent_skills
        )
        self.counts["users"] = len(users)
        self.counts["agents"] = len(agents)

    def _contacts(self, conn: psycopg.Connection[Any], start_of_history: float) -> None:
        rng, ts = self.rng, self.ts
        kind_index = {c[0]: i for i, c in enumerate(CHANNELS)}
        contacts, identities, accounts = [], [], []
        for cid in range(1, self.n_contacts + 1):
            lang = rng.choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
            tier = rng.choices(TIERS, TIER_WEIGHTS)[0]
            name = f"{rng.choice(FIRST_NAMES[lang])} {rng.choice(LAST_NAMES[lang])}"
            if lang == "zh":
                name = name.replace(" ", "")
            account = f"{100000 + cid * 7:08d}"
            weights = CHANNEL_WEIGHTS[lang]
            kinds = list(weights)
            chosen: list[str] = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
                if kind not in chosen:
                    chosen.append(kind)
            created = start_of_history - rng.random() * 365 * 86400
            value = f"{rng.paretovariate(1.5) * 120:.2f}" if tier != "standard" else "0.00"
            attributes = json.dumps({"crm_id": f"CRM-{cid:07d}", "segment": tier})
            last_seen = ts(self.now - rng.random() * 30 * 86400)
            contacts.append(
                line(cid, name, lang, tier, value, "", attributes, None, ts(created), last_seen,
                     last_seen)
            )  # fmt: skip
            for kind in chosen:
                ident_kind = CHANNELS[kind_index[kind]][3]
                value_ = identity_value(ident_kind, cid, name)
                identities.append(
                    line(len(identities) + 1, ident_kind, value_, name, ts(created), cid)
                )
            accounts.append(line(cid, account, "Home", cid))
            self.contacts.append(
                ContactInfo(cid, lang, tier, account, [kind_index[k] for k in chosen])
            )
        copy_rows(
            conn,
            "tickets_contact",
            ["id", "display_name", "language", "tier", "value", "notes", "attributes",
             "merged_into_id", "created_at", "updated_at", "last_seen_at"],
            contacts,
        )  # fmt: skip
        copy_rows(
            conn,
            "tickets_identity",
            ["id", "kind", "value", "label", "created_at", "contact_id"],
            identities,
        )
        copy_rows(conn, "tickets_accountnumber", ["id", "number", "label", "contact_id"], accounts)
        self.counts["contacts"] = len(contacts)
        self.counts["identities"] = len(identities)

    # ------------------------------------------------------------------ big tables

    def _big_tables(self) -> None:
        ticket_writer = CopyWriter("tickets_ticket", TICKET_COLUMNS)
        message_writer = CopyWriter("tickets_message", MESSAGE_COLUMNS)
        tag_writer = CopyWriter("tickets_ticket_tags", ["id", "ticket_id", "tag_id"])
        writers = (ticket_writer, message_writer, tag_writer)
        for w in writers:
            w.start()
        try:
            for tickets, messages, tags in self._generate():
                ticket_writer.put(tickets)
                message_writer.put(messages)
                if tags:
                    tag_writer.put(tags)
        except BaseException:
            # Never commit half a table (Ctrl-C, a failed COPY on another connection).
            for w in writers:
                w.finish(abort=True)
            raise
        for w in writers:
            w.finish()
        self.counts["tickets"] = ticket_writer.rows
        self.counts["messages"] = message_writer.rows
        self.counts["ticket tags"] = tag_writer.rows

    def _generate(self) -> Iterable[tuple[list[str], list[str], list[str]]]:
        rng, ts, now = self.rng, self.ts, self.now
        n = self.n_tickets
        day = 86400.0
        start = now - HISTORY_DAYS * day

        # Creation times first, sorted, so ids grow with time as they do in production. About
        # 3 % of tickets are the live backlog, created in the last two weeks; the rest is
        # history, resolved or closed. A few storm days carry a burst of outage tickets.
        n_active = max(1, round(n * 0.032))
        storms = [start + rng.uniform(10, HISTORY_DAYS - 20) * day for _ in range(4)]
        times: list[tuple[float, int]] = []
        for _ in range(n - n_active):
            if rng.random() < 0.04:
                times.append((rng.choice(storms) + rng.random() * 0.8 * day, 2))  # storm
            else:
                times.append((start + rng.random() * (HISTORY_DAYS * day - 12 * 3600), 0))
        times += [(now - (rng.random() ** 2) * 14 * day, 1) for _ in range(n_active)]
        times.sort()

        contacts = self.contacts
        n_contacts = len(contacts)
        channel_kinds = [c[0] for c in CHANNELS]
        default_team = [self.team_ids[c[4]] for c in CHANNELS]
        topic_team = {t: self.team_ids[s] for t, s in TOPIC_TEAM.items()}
        social_team, vip_team = self.team_ids["social"], self.team_ids["vip"]
        outage_team = self.team_ids["outages"]
        team_agents = self.team_agents
        all_agents = [a for agents in team_agents.values() for a in agents]
        reasons = _reason_variants()
        customer_texts = {
            lang: {t: [(tx, "", "{acct}" in tx) for tx in texts] for t, texts in per_topic.items()}
            for lang, per_topic in CUSTOMER_TEXTS.items()
        }
        msg_id_prefix = {
            "telegram": "tg-", "whatsapp": "wamid.HBgM", "messenger": "m_", "instagram": "ig_",
            "x": "x-", "viber": "vb-", "vk": "vk-", "sms": "SM", "email": "<", "widget": "w-",
        }  # fmt: skip
        active_conversations: set[tuple[int, int]] = set()
        message_id = 0
        tag_id = 0
        tickets: list[str] = []
        messages: list[str] = []
        tags: list[str] = []
        rand = rng.random
        choices = rng.choices

        for tid, (created, kind) in enumerate(times, 1):
            # --- who, where, what
            contact = contacts[int(n_contacts * rand() ** 1.25)]
            channel = rng.choice(contact.channels)
            if kind == 1:
                # One active ticket per conversation (contact, channel, ""): the inbound
                # path threads new messages into it. Try another contact on a collision.
                for _ in range(30):
                    if (contact.id, channel) not in active_conversations:
                        break
                    contact = contacts[int(n_contacts * rand())]
                    channel = rng.choice(contact.channels)
                active_conversations.add((contact.id, channel))
            lang = contact.language if rand() < 0.92 else choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
            topic = "outage" if kind == 2 else choices(TOPICS, TOPIC_WEIGHTS)[0]
            level = choices((0, 1, 2, 3), PRIORITY_WEIGHTS.get(topic, DEFAULT_PRIORITY_WEIGHTS))[0]
            if contact.tier in ("vip", "life_support") and level < 3 and rand() < 0.5:
                level += 1
            channel_kind = channel_kinds[channel]
            is_public = channel_kind in PUBLIC_KINDS and rand() < 0.25
            thread_key = ""
            if is_public:
                thread_key = f"post-{tid}"
            elif channel_kind == "email" and kind != 1:
                thread_key = f"<{tid}.{contact.id}@mail.example>"

            # --- routing: VIP first, public posts to social, outages to outage response,
            # then the channel's default team or the topic's team.
            if contact.tier != "standard" and rand() < 0.5:
                team: int | None = vip_team
            elif is_public:
                team = social_team
            elif topic == "outage":
                team = outage_team
            elif rand() < 0.3:
                team = default_team[channel]
            else:
                team = topic_team[topic]

            # --- status and message count
            if kind == 1:
                status = choices(("new", "open", "pending"), (30, 45, 25))[0]
                if status == "new":
                    k = choices((1, 2), (75, 25))[0]
                    if rand() < 0.05:
                        team = None  # not routed yet
                elif status == "open":
                    k = choices((2, 3, 4, 5), (20, 40, 25, 15))[0]
                else:
                    k = choices((2, 3, 4, 6), (30, 40, 20, 10))[0]
            else:
                status = "closed"
                k = choices((1, 2, 3, 4, 5, 6), (5, 25, 34, 20, 11, 5))[0]

            # --- assignee
            team_pool = team_agents.get(team) if team is not None else None
            pool = team_pool or all_agents
            if status == "new":
                assignee = rng.choice(pool) if rand() < 0.12 else None
            elif status == "open":
                assignee = rng.choice(pool) if rand() < 0.75 else None
            else:
                assignee = rng.choice(pool) if rand() < 0.98 else None

            # --- messages: the customer opens; replies alternate; the last one says who
            # holds the ball (customer for new/open, us for pending/resolved/closed).
            texts = customer_texts[lang][topic]
            text_sub = rng.choice(texts)
            first_text = (
                text_sub[0].replace("{acct}", contact.account) if text_sub[2] else text_sub[0]
            )
            subject = _subject(first_text)
            last_in = status in ("new", "open")
            directions: list[bool] = []  # True = inbound
            for pos in range(k):
                from_end = k - 1 - pos
                if pos == 0 or status == "new":
                    directions.append(True)
                else:
                    directions.append((from_end % 2 == 0) == last_in)
            if status == "pending" and k > 1:
                directions[-1] = False

            t = created
            first_response_at = None
            waiting_since = None
            preview = first_text
            agent_texts = AGENT_TEXTS[lang]
            chan_id = channel + 1
            prefix = msg_id_prefix[channel_kind]
            for pos, inbound in enumerate(directions):
                message_id += 1
                if pos:
                    # Replies come fast for urgent work and during the day, slower otherwise.
                    t += rng.expovariate(1 / (900 if level >= 2 else 3600)) + 30
                if kind == 1 and t > now - 60:
                    t = now - 60 - rand() * 300
                created_s = ts(t)
                if inbound:
                    if pos == 0:
                        text = first_text
                    else:
                        tx = rng.choice(texts)
                        text = tx[0].replace("{acct}", contact.account) if tx[2] else tx[0]
                    preview = text
                    if waiting_since is None:
                        waiting_since = t
                    pmid = f"{prefix}{message_id}" + (">" if prefix == "<" else "")
                    messages.append(
                        f"{message_id}\t{tid}\tin\tcustomer\t\\N\ttext\t{text}\t\t{{}}\t{chan_id}"
                        f"\t{pmid}\tf\treceived\t\t{ts(t - 2)}\t\\N\t{created_s}\n"
                    )
                    continue
                waiting_since = None
                roll = rand()
                if pos == 1 and roll < 0.15:
                    # The channel's bot answered first.
                    messages.append(
                        f"{message_id}\t{tid}\tout\tbot\t\\N\ttext\t{BOT_TEXTS[lang][0]}\t\t{{}}"
                        f"\t{chan_id}\t{prefix}{message_id}b\tf\tdelivered\t\t\\N\t\\N\t{created_s}\n"
                    )
                    continue
                author = assignee or rng.choice(pool)
                if roll > 0.96:
                    messages.append(
                        f"{message_id}\t{tid}\tout\tagent\t{author}\ttext\t{rng.choice(NOTE_TEXTS)}"
                        f"\t\t{{}}\t\\N\t\\N\tt\tnot_sent\t\t\\N\t\\N\t{created_s}\n"
                    )
                    continue
                if first_response_at is None:
                    first_response_at = t
                delivery = "read" if roll < 0.75 else ("delivered" if roll < 0.955 else "failed")
                error = "403 Forbidden: bot was blocked by the user" if delivery == "failed" else ""
                messages.append(
                    f"{message_id}\t{tid}\tout\tagent\t{author}\ttext\t{rng.choice(agent_texts)}"
                    f"\t\t{{}}\t{chan_id}\t{prefix}{message_id}a\tf\t{delivery}\t{error}\t\\N\t\\N"
                    f"\t{created_s}\n"
                )
            last_message_at = t

            # --- lifecycle times
            first_min, resolve_min = SLA_MINUTES[level]
            first_due = created + first_min * 60
            resolution_due = created + resolve_min * 60
            resolved_at = closed_at = None
            if kind != 1:
                resolved_at = last_message_at + rand() * 3600
                if resolved_at > now - 120:
                    resolved_at = now - 120
                if now - resolved_at > REOPEN_WINDOW.total_seconds():
                    closed_at = resolved_at + REOPEN_WINDOW.total_seconds() + rand() * 600
                else:
                    status = "resolved"
                waiting_since = None
            sla_due = resolution_due
            if waiting_since is not None:
                sla_due = min(resolution_due, waiting_since + first_min * 60)
            assigned_at = None
            if assignee is not None:
                assigned_at = min(created + 60 + rand() * 600, first_response_at or last_message_at)
            updated_at = closed_at or resolved_at or last_message_at
            score, reason_json = rng.choice(reasons[level][lang][topic == "outage"])
            locked = rand() < 0.01
            tickets.append(
                "\t".join((
                    str(tid), str(contact.id), str(chan_id), thread_key, subject, status,
                    str(level), str(score), reason_json, "t" if locked else "f", topic, lang,
                    NULL if team is None else str(team),
                    NULL if assignee is None else str(assignee),
                    "t" if is_public else "f", ts(first_due), ts(resolution_due), ts(sla_due),
                    NULL if first_response_at is None else ts(first_response_at),
                    NULL if resolved_at is None else ts(resolved_at),
                    NULL if closed_at is None else ts(closed_at),
                    NULL if waiting_since is None else ts(waiting_since),
                    NULL if assigned_at is None else ts(assigned_at),
                    ts(last_message_at), preview[:160], str(k), ts(created), ts(updated_at), "1",
                )) + "\n"
            )  # fmt: skip

            # --- a few tags on about one ticket in nine
            if rand() < 0.11:
                for tag in rng.sample(
                    TAG_IDS_STORM if kind == 2 else TAG_IDS, rng.choice((1, 1, 2))
                ):
                    tag_id += 1
                    tags.append(f"{tag_id}\t{tid}\t{tag}\n")

            if len(tickets) >= 5000:
                yield tickets, messages, tags
                tickets, messages, tags = [], [], []
        if tickets:
            yield tickets, messages, tags

    # ------------------------------------------------------------------ after the load

    def _finish(self, conn: psycopg.Connection[Any]) -> None:
        # Agents' open_count is kept by every ownership change; seed it to the truth.
        conn.execute(
            """
            UPDATE tickets_agent a SET open_count = c.n
            FROM (SELECT assignee_id, count(*) AS n FROM tickets_ticket
                  WHERE status IN ('new', 'open', 'pending') AND assignee_id IS NOT NULL
                  GROUP BY assignee_id) c
            WHERE a.id = c.assignee_id
            """
        )
        conn.execute(
            """
            UPDATE tickets_agent a SET last_assigned_at = c.at
            FROM (SELECT assignee_id, max(assigned_at) AS at FROM tickets_ticket
                  WHERE assignee_id IS NOT NULL GROUP BY assignee_id) c
            WHERE a.id = c.assignee_id
            """
        )
        advance_sequences(conn)


TAG_IDS = list(range(1, len(TAGS) + 1))
TAG_IDS_STORM = [1, 2, 3, 5, 8]  # storm, callback, complaint, field-visit, escalated

TICKET_COLUMNS = (
    "id", "contact_id", "channel_id", "thread_key", "subject", "status", "priority",
    "priority_score", "priority_reasons", "priority_locked", "topic", "language", "team_id",
    "assignee_id", "is_public", "first_response_due", "resolution_due", "sla_due_at",
    "first_response_at", "resolved_at", "closed_at", "waiting_since", "assigned_at",
    "last_message_at", "preview", "message_count", "created_at", "updated_at", "version",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "id", "ticket_id", "direction", "author_kind", "author_id", "kind", "text", "html",
    "payload", "channel_id", "platform_message_id", "is_internal", "delivery_status",
    "delivery_error", "sent_at", "edited_at", "created_at",
)  # fmt: skip


def _subject(text: str) -> str:
    return text if len(text) <= 120 else text[:119].rstrip() + "…"


def identity_value(kind: str, contact_id: int, name: str) -> str:
    """A plausible, unique (per kind) identity value for a contact."""
    if kind in ("phone", "whatsapp", "viber"):
        return f"+3706{contact_id:07d}"
    if kind == "email":
        return f"customer{contact_id}@mail.example"
    if kind in ("telegram", "vk"):
        return str(500_000_000 + contact_id * 13)
    if kind in ("messenger", "instagram"):
        return str(7_100_000_000_000_000 + contact_id)
    if kind == "x":
        return str(1_400_000_000_000_000_000 + contact_id)
    return f"visitor-{contact_id:08d}"


def _reason_variants() -> dict[int, dict[str, tuple[list[tuple[int, str]], ...]]]:
    """priority_reasons as tickets.priority.score_text writes them, a few variants per level
    and language, with the score that goes with them: [level][language][is outage]."""

    def r(signal: str, detail: str, points: int) -> dict[str, Any]:
        return {"signal": signal, "detail": detail, "points": points}

    out: dict[int, dict[str, tuple[list[tuple[int, str]], ...]]] = {0: {}, 1: {}, 2: {}, 3: {}}
    for lang in LANGUAGES:
        outage = r("urgency", f"outage: “{OUTAGE_PHRASE[lang]}”", 30)
        variants = {
            3: [
                [r("safety", f"safety: “{SAFETY_PHRASE[lang]}”", 70)],
                [r("safety", f"safety: “{SAFETY_PHRASE[lang]}”", 70),
                 r("shouting", "capitals or repeated exclamation marks", 5)],
                [outage, r("tier", "Life support / medical register", 35),
                 r("negativity", "“third time”", 8)],
            ],
            2: [
                [outage, r("negativity", "“again”, “third time”", 15)],
                [outage, r("tier", "Business", 10), r("shouting", "capitals", 5)],
                [r("urgency", "vulnerable: “elderly”", 25), r("tier", "VIP", 15),
                 r("public", "public post, visible to everyone", 8)],
            ],
            1: [
                [outage],
                [r("urgency", "disconnection: “debt”", 15), r("negativity", "“unacceptable”", 8)],
                [r("urgency", "vulnerable: “elderly”", 25)],
            ],
            0: [[], [r("negativity", "“annoying”", 8)], [r("tier", "Business", 10)]],
        }  # fmt: skip
        for level, lists in variants.items():
            scored = [
                (sum(x["points"] for x in rs), json.dumps(rs, ensure_ascii=False)) for rs in lists
            ]
            # An outage phrase only explains the priority of an outage ticket.
            other = [v for v in scored if "outage:" not in v[1]] or scored
            out[level][lang] = (other, scored)
    return out


# =========================================================================== DDL around COPY


def set_model_defaults(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Give every NOT NULL column without a database default the model's default, for the
    time of the seed, so a column added by a later migration (which the rows generated here
    do not know about) is filled the way the model fills it rather than failing the COPY.
    Django keeps defaults in Python, not in the schema: drop_defaults puts that back."""
    from django.apps import apps
    from django.db.models import NOT_PROVIDED, CharField, TextField

    fields: dict[tuple[str, str], Any] = {}
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.concrete_fields:
            fields[(model._meta.db_table, f.column)] = f
    rows = conn.execute(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND is_nullable = 'NO' AND column_default IS NULL
          AND is_identity = 'NO'
        """
    ).fetchall()
    done = []
    for table, column in rows:
        f = fields.get((table, column))
        if f is None or f.primary_key or f.is_relation:
            continue
        if f.default is not NOT_PROVIDED:
            if callable(f.default) and getattr(f.default, "__name__", "") == "now":
                expr: sql.Composable = sql.SQL("now()")
            else:
                value = f.get_default()
                if isinstance(value, dict | list):
                    expr = sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(value)))
                else:
                    expr = sql.Literal(value)
        elif f.blank and isinstance(f, CharField | TextField):
            expr = sql.Literal("")
        else:
            continue  # nothing sensible to fill in: the COPY names the column or fails loudly
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                sql.Identifier(table), sql.Identifier(column), expr
            )
        )
        done.append((table, column))
    return done


def drop_defaults(conn: psycopg.Connection[Any], columns: list[tuple[str, str]]) -> None:
    for table, column in columns:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
                sql.Identifier(table), sql.Identifier(column)
            )
        )


@dataclass
class BulkDDL:
    """What was dropped from the bulk tables, to be recreated in this order."""

    constraints: list[tuple[str, str, str]]  # (table, name, definition): primary keys, unique
    indexes: list[tuple[str, str, str]]  # (table, name, CREATE INDEX ...)
    foreign_keys: list[tuple[str, str, str]]  # (table, name, definition)


def drop_bulk_indexes(conn: psycopg.Connection[Any]) -> BulkDDL:
    """Drop every index, unique/primary key and foreign key on (or pointing at) the bulk
    tables, remembering their exact definitions. Building an index once over sorted data is
    several times cheaper than maintaining it row by row during COPY, and a foreign key
    checked by one join is cheaper than millions of row triggers."""
    oids = [
        conn.execute("SELECT %s::regclass::oid", [t]).fetchone()[0]  # type: ignore[index]
        for t in BULK_TABLES
    ]
    fks = conn.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE contype = 'f' AND (conrelid = ANY(%s) OR confrelid = ANY(%s))
        ORDER BY 1, 2
        """,
        [oids, oids],
    ).fetchall()
    constraints = conn.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE contype IN ('p', 'u', 'x') AND conrelid = ANY(%s)
        ORDER BY contype, 1, 2
        """,
        [oids],
    ).fetchall()
    indexes = conn.execute(
        """
        SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,
               pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
          -- The queue's partial indexes stay: they cover the active few per cent only, so
          -- COPY maintains them cheaply, and a rebuild from pg_get_indexdef would re-deparse
          -- their IN-list predicate into an equivalent but different text.
          AND NOT (i.indrelid = 'tickets_ticket'::regclass AND i.indpred IS NOT NULL)
        ORDER BY 1, 2
        """,
        [oids],
    ).fetchall()
    for table, name, _ in fks:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for table, name, _ in constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for _, name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return BulkDDL(constraints=constraints, indexes=indexes, foreign_keys=fks)


# Rough build cost, for scheduling the longest builds first on the two connections.
_TABLE_WEIGHT = {"tickets_message": 3.0, "tickets_ticket": 1.0, "tickets_ticket_tags": 0.1}


def rebuild(ddl: BulkDDL, connections: int = 2) -> None:
    """Recreate what drop_bulk_indexes dropped, on `connections` sessions at once (one per
    core): keys and indexes first, then the foreign keys, which need the primary keys."""

    def add_constraint(table: str, name: str, definition: str) -> str:
        return f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'

    first = [add_constraint(*c) for c in ddl.constraints]
    first += [
        definition
        for _, _, definition in sorted(ddl.indexes, key=lambda x: -_TABLE_WEIGHT.get(x[0], 0))
    ]
    # Primary keys of the big tables lead, longest first.
    first.sort(key=lambda s: (" PRIMARY KEY " not in s, "tickets_message" not in s))
    _run_parallel(first, connections)
    _run_parallel([add_constraint(*fk) for fk in ddl.foreign_keys], connections)


def _run_parallel(statements: list[str], connections: int) -> None:
    work: queue.Queue[str] = queue.Queue()
    for stmt in statements:
        work.put(stmt)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with common.connect(DB_NAME) as conn:
                # Sorts for index builds in memory; two sessions on two cores, so no parallel
                # maintenance workers on top.
                conn.execute("SET maintenance_work_mem = '512MB'")
                conn.execute("SET max_parallel_maintenance_workers = 0")
                while True:
                    try:
                        stmt = work.get_nowait()
                    except queue.Empty:
                        return
                    for attempt in range(5):
                        try:
                            conn.execute(stmt)  # type: ignore[arg-type]
                            break
                        except psycopg.errors.DeadlockDetected:
                            # Two foreign keys onto one table lock it in opposite orders.
                            time.sleep(0.2 * (attempt + 1))
                    else:
                        raise RuntimeError(f"kept deadlocking: {stmt}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def advance_sequences(conn: psycopg.Connection[Any]) -> None:
    """Move every id sequence past the ids COPY wrote, so the application's inserts work."""
    rows = conn.execute(
        """
        SELECT c.table_name, pg_get_serial_sequence(quote_ident(c.table_name), 'id')
        FROM information_schema.columns c
        WHERE c.table_schema = 'public' AND c.column_name = 'id'
        """
    ).fetchall()
    for table, seq in rows:
        if seq is None:
            continue
        conn.execute(
            sql.SQL("SELECT setval({}, COALESCE((SELECT max(id) FROM {}), 0) + 1, false)").format(
                sql.Literal(seq), sql.Identifier(table)
            )
        )


# =========================================================================== the bench database


def schema_fingerprint(conn: psycopg.Connection[Any]) -> str:
    """A hash of the project's tables, columns, indexes and constraints: a bench database
    seeded under another schema is rebuilt rather than measured."""
    rows = conn.execute(
        """
        SELECT 'c', table_name, column_name || ' ' || data_type || ' ' || is_nullable
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'bench_seed'
        UNION ALL
        SELECT 'i', tablename, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'bench_seed'
        UNION ALL
        SELECT 'k', conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'bench_seed'
        ORDER BY 1, 2, 3
        """
    ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def seed_state(conn: psycopg.Connection[Any]) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass('public.bench_seed') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    return dict(conn.execute("SELECT key, value FROM bench_seed").fetchall())


def record_seed(conn: psycopg.Connection[Any], values: dict[str, str]) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_seed (key text PRIMARY KEY, value text)")
    conn.execute("DELETE FROM bench_seed")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO bench_seed (key, value) VALUES (%s, %s)", list(values.items()))


def migrate(env: dict[str, str]) -> None:
    common.manage(["migrate", "--noinput", "-v", "0"], env)


def password_hash(password: str) -> str:
    """Django's hash of the bench password, computed once (PBKDF2 is slow on purpose) and
    shared by every bench user."""
    import django
    from django.contrib.auth.hashers import make_password

    django.setup()
    return make_password(password)


def prepare_database(
    args: argparse.Namespace, env: dict[str, str]
) -> tuple[dict[str, str], SeedReport | None]:
    """Make sure helpdesk_bench exists, is migrated and holds a seed of the asked size."""
    started = time.perf_counter()
    fresh = args.reseed or not common.database_exists(DB_NAME)
    if not fresh and not args.skip_seed and has_rows(DB_NAME) and not migrations_applied(env):
        # New migrations mean a new schema and so a new seed: drop the old one first rather
        # than migrate a million rows (building new indexes) only to throw them away.
        print(f"{DB_NAME}: the project has new migrations; rebuilding it ...", flush=True)
        fresh = True
    if fresh:
        print(f"creating database {DB_NAME} ...", flush=True)
        common.create_database(DB_NAME, drop_first=True)
    migrate(env)
    with common.connect(DB_NAME) as conn:
        fingerprint = schema_fingerprint(conn)
        state = seed_state(conn)
    wanted = {
        "tickets": str(args.tickets),
        "contacts": str(args.contacts),
        "seed_version": SEED_VERSION,
        "schema": fingerprint,
    }
    if state and all(state.get(k) == v for k, v in wanted.items()):
        print(
            f"reusing {DB_NAME}: {state['tickets']} tickets seeded {state.get('seeded_at')} "
            f"in {float(state.get('seconds', 'nan')):.0f}s (--reseed rebuilds it)"
        )
        return state, None
    if args.skip_seed:
        if not state:
            raise SystemExit(f"{DB_NAME} has no seed; run without --skip-seed")
        print(f"--skip-seed: using {DB_NAME} as is (seeded for {state})")
        return state, None
    if not fresh:
        # Seeded under another size, schema or seed version, or a seed that never finished:
        # start from an empty database.
        print(f"{DB_NAME} holds another seed ({state or 'none finished'}); rebuilding it ...")
        started = time.perf_counter()
        common.create_database(DB_NAME, drop_first=True)
        migrate(env)
        with common.connect(DB_NAME) as conn:
            fingerprint = schema_fingerprint(conn)
        wanted["schema"] = fingerprint
    prepared_s = time.perf_counter() - started

    print(f"seeding {args.tickets:,} tickets ...", flush=True)
    report = Seeder(args.tickets, args.contacts).run(password_hash(BENCH_PASSWORD))
    with common.connect(DB_NAME) as conn:
        if schema_fingerprint(conn) != fingerprint:
            raise RuntimeError("the schema changed while seeding (indexes not rebuilt?)")
        phases = {"create + migrate": prepared_s, **report.phases}
        state = {
            **wanted,
            "seeded_at": common.utc_now_label(),
            "seconds": f"{report.seconds:.1f}",
            "phases": json.dumps({k: round(v, 1) for k, v in phases.items()}),
        }
        record_seed(conn, state)
    print(f"seeded in {report.seconds:.1f}s (+ {prepared_s:.1f}s create + migrate): " + ", ".join(
        f"{v:,} {k}" for k, v in report.counts.items()))  # fmt: skip
    return state, report


def code_version() -> str:
    """The commit measured, and whether the (shared) working tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    if not dirty:
        return f"commit {head}"
    return f"commit {head} plus uncommitted changes to {len(dirty)} files (shared working tree)"


def migrations_applied(env: dict[str, str]) -> bool:
    """True when helpdesk_bench has every migration of the working tree applied."""
    result = subprocess.run(
        [str(common.PYTHON), "manage.py", "migrate", "--check", "-v", "0"],
        cwd=common.ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def has_rows(dbname: str) -> bool:
    with common.connect(dbname) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM tickets_ticket)").fetchone()
    return bool(row and row[0])


def table_sizes(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int, int]]:
    """(table, rows, heap+toast bytes, index bytes) of the biggest tables."""
    return [
        (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            """
            SELECT c.relname, c.reltuples::bigint,
                   pg_table_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r'
            ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 8
            """
        ).fetchall()
    ]


# =========================================================================== serving and measuring


def server_env(pool_max: int) -> dict[str, str]:
    """Production settings, pointed at the bench database: DEBUG off, a real SECRET_KEY,
    pooled connections, and the query-count header on. Reads need no Redis; tasks run eagerly
    if anything enqueues one. SECURE_COOKIES=0 only because this is plain HTTP on loopback
    (production sits behind TLS): a Secure session cookie would never be sent back."""
    return common.project_env(
        DATABASE_URL=common.database_url(DB_NAME),
        SECRET_KEY=SECRET_KEY,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        DB_POOL_MIN="1",
        DB_POOL_MAX=str(pool_max),
        HELPDESK_QUERY_COUNT_HEADER="1",
        CELERY_TASK_ALWAYS_EAGER="1",
        SECURE_COOKIES="0",
        LOG_LEVEL="WARNING",
    )


def api_token(base_url: str, username: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token/",
        json={"username": username, "password": BENCH_PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"token for {username}: HTTP {response.status_code} {response.text}")
    return str(response.json()["token"])


def session_cookie(base_url: str, username: str) -> str:
    """Sign in through the login form (CSRF token included) and return the Cookie header."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/login/")
        if page.status_code != 200:
            raise RuntimeError(f"GET /login/: HTTP {page.status_code}")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if match is None:
            raise RuntimeError("no CSRF token in the login form")
        response = client.post(
            "/login/",
            data={
                "username": username,
                "password": BENCH_PASSWORD,
                "csrfmiddlewaretoken": match.group(1),
                "next": "/",
            },
            headers={"Referer": f"{base_url}/login/"},
        )
        if response.status_code != 302:
            raise RuntimeError(f"login as {username}: HTTP {response.status_code} (no redirect)")
        cookies = {c.name: c.value for c in client.cookies.jar}
    if "sessionid" not in cookies:
        raise RuntimeError(f"login as {username} set no session cookie")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


@dataclass
class Scenario:
    name: str
    kind: str  # "api" or "html": which target applies; "baseline" has none
    url: str
    headers: dict[str, str]
    note: str = ""


@dataclass
class BenchSubjects:
    """Who and what the requests are about, chosen from the seeded data."""

    team_id: int
    team_name: str
    open_ru_in_team: int
    agent_username: str
    agent_team_names: list[str]
    agent_visible_active: int
    active_total: int


def pick_subjects(conn: psycopg.Connection[Any]) -> BenchSubjects:
    # The team with the most open Russian tickets: the filtered queue a Russian-speaking
    # team lead keeps open all day.
    row = conn.execute(
        """
        SELECT t.id, t.name, count(*) FROM tickets_ticket k JOIN tickets_team t ON t.id = k.team_id
        WHERE k.status = 'open' AND k.language = 'ru' GROUP BY t.id, t.name
        ORDER BY 3 DESC, 1 LIMIT 1
        """
    ).fetchone()
    if row is None:
        raise RuntimeError("no open Russian tickets in the seed")
    team_id, team_name, open_ru = row
    username = "bench-agent-01"
    teams = [
        r[0]
        for r in conn.execute(
            """
            SELECT t.name FROM tickets_agent a JOIN auth_user u ON u.id = a.user_id
            JOIN tickets_agent_teams at ON at.agent_id = a.id
            JOIN tickets_team t ON t.id = at.team_id
            WHERE u.username = %s ORDER BY t.name
            """,
            [username],
        ).fetchall()
    ]
    visible = conn.execute(
        """
        SELECT count(*) FROM tickets_ticket k
        WHERE k.status IN ('new', 'open', 'pending')
          AND (k.team_id IN (SELECT team_id FROM tickets_agent_teams at
                             JOIN tickets_agent a ON a.id = at.agent_id
                             JOIN auth_user u ON u.id = a.user_id WHERE u.username = %s)
               OR k.assignee_id = (SELECT a.id FROM tickets_agent a JOIN auth_user u
                                   ON u.id = a.user_id WHERE u.username = %s))
        """,
        [username, username],
    ).fetchone()
    active = conn.execute(
        "SELECT count(*) FROM tickets_ticket WHERE status IN ('new', 'open', 'pending')"
    ).fetchone()
    return BenchSubjects(
        team_id=int(team_id),
        team_name=str(team_name),
        open_ru_in_team=int(open_ru),
        agent_username=username,
        agent_team_names=teams,
        agent_visible_active=int(visible[0]) if visible else 0,
        active_total=int(active[0]) if active else 0,
    )


def endpoint_status(base_url: str) -> dict[str, int]:
    """What the endpoints under test answer without credentials: 404 means not there yet."""
    out = {}
    for path in ("/api/v1/tickets/", "/login/", "/"):
        out[path] = httpx.get(base_url + path, timeout=30).status_code
    out["/api/v1/auth/token/ (POST)"] = httpx.post(
        base_url + "/api/v1/auth/token/", json={}, timeout=30
    ).status_code
    return out


def build_scenarios(base_url: str, subjects: BenchSubjects) -> list[Scenario]:
    supervisor_token = api_token(base_url, SUPERVISOR)
    agent_token = api_token(base_url, subjects.agent_username)
    sup = {"Authorization": f"Token {supervisor_token}", "Accept": "application/json"}
    agt = {"Authorization": f"Token {agent_token}", "Accept": "application/json"}
    api = f"{base_url}/api/v1/tickets/"
    first = httpx.get(api, headers=sup, timeout=30)
    if first.status_code != 200:
        raise RuntimeError(f"GET /api/v1/tickets/: HTTP {first.status_code} {first.text[:300]}")
    body = first.json()
    if not body.get("results") or not body.get("next"):
        raise RuntimeError(f"the queue page has no rows or no next link: {str(body)[:300]}")
    next_url = str(body["next"])
    # The server builds absolute links from the Host header; keep our base URL regardless.
    split = urlsplit(next_url)
    next_url = f"{base_url}{split.path}?{split.query}"
    if "cursor" not in parse_qs(split.query):
        raise RuntimeError(f"the next link has no cursor: {next_url}")
    filtered = api + "?" + urlencode({"status": "open", "team": subjects.team_id, "language": "ru"})
    sup_cookie = {"Cookie": session_cookie(base_url, SUPERVISOR)}
    agt_cookie = {"Cookie": session_cookie(base_url, subjects.agent_username)}
    teams = ", ".join(subjects.agent_team_names)
    return [
        # The floor of this setup (client, gunicorn, Django middleware, one query): what
        # any endpoint costs before it does its own work.
        Scenario("GET /healthz (baseline)", "baseline", f"{base_url}/healthz", {},
                 "no auth, 1 query"),
        Scenario("API queue, page 1 (supervisor)", "api", api, sup,
                 f"{subjects.active_total:,} active tickets"),
        Scenario("API status=open&team&language=ru", "api", filtered, sup,
                 f"team {subjects.team_name}: {subjects.open_ru_in_team:,} open ru"),
        Scenario("API queue, page 2 (next cursor)", "api", next_url, sup, ""),
        Scenario("API queue, page 1 (agent)", "api", api, agt,
                 f"teams {teams}: {subjects.agent_visible_active:,} visible"),
        Scenario("HTML / (supervisor)", "html", f"{base_url}/", sup_cookie, ""),
        Scenario("HTML / (agent)", "html", f"{base_url}/", agt_cookie, f"teams {teams}"),
    ]  # fmt: skip


def check_response(scenario: Scenario) -> None:
    response = httpx.get(scenario.url, headers=scenario.headers, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{scenario.name}: HTTP {response.status_code} {response.text[:300]}")
    if scenario.kind == "baseline":
        return
    if scenario.kind == "api":
        rows = response.json().get("results")
        if not rows:
            raise RuntimeError(f"{scenario.name}: no rows")
    elif "/login/" in str(response.url) or 'name="password"' in response.text:
        raise RuntimeError(f"{scenario.name}: got the login page, not the queue")


def measure(
    scenarios: list[Scenario],
    server: common.Gunicorn,
    *,
    client: str,
    requests: int,
    concurrency: int,
    warmup: int,
    seconds: float,
    warmup_seconds: float,
    query_samples: int,
) -> list[common.LoadResult]:
    """Load each endpoint in turn. With wrk: `warmup_seconds` unmeasured, then `seconds`
    measured, then `query_samples` sequential requests (httpx) for X-Query-Count, which wrk
    does not read. With httpx: `warmup` then `requests` requests from Python threads."""
    results = []
    for n, sc in enumerate(scenarios):
        check_response(sc)
        # Warm-up and measured requests are told apart in the server's access log by tag.
        warm_headers = {**sc.headers, "X-Bench": "warmup"}
        headers = {**sc.headers, "X-Bench": f"s{n}"}
        if client == "wrk":
            if warmup_seconds:
                common.run_wrk(
                    sc.name, sc.url, warm_headers, seconds=warmup_seconds, concurrency=concurrency
                )
            result = common.run_wrk(
                sc.name, sc.url, headers, seconds=seconds, concurrency=concurrency
            )
            result.query_counts = common.sample_queries(
                sc.url, {**sc.headers, "X-Bench": "queries"}, samples=query_samples
            )
        else:

            def make_warm(
                i: int, sc: Scenario = sc, h: dict[str, str] = warm_headers
            ) -> common.Request:
                return common.Request("GET", sc.url, h)

            def make(i: int, sc: Scenario = sc, h: dict[str, str] = headers) -> common.Request:
                return common.Request("GET", sc.url, h)

            if warmup:
                common.run_load(sc.name, make_warm, total=warmup, concurrency=concurrency)
            result = common.run_load(sc.name, make, total=requests, concurrency=concurrency)
        results.append(result)
        print(
            f"  {sc.name:<34} p50 {result.p(50):6.1f} ms  p95 {result.p(95):6.1f} ms  "
            f"p99 {result.p(99):6.1f} ms  {result.rps:6.0f} rps  {result.count:6d} req  "
            f"queries {result.max_queries}"
            + (f"  ERRORS {result.errors[:2]}" if result.errors else ""),
            flush=True,
        )
    server_times = server.server_times_ms()
    for n, result in enumerate(results):
        result.server_ms = server_times.get(f"s{n}", [])
    return results


def choose_client(requested: str) -> str:
    """wrk when installed (or asked for), else httpx; says which."""
    if requested == "httpx":
        return "httpx"
    if common.wrk_path() is not None:
        return "wrk"
    if requested == "wrk":
        raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
    print("wrk not found (apt-get install wrk): measuring with the httpx client instead, which "
          "shares the 2 cores with the server; its latencies are the client's as much as the "
          "server's")  # fmt: skip
    return "httpx"


def client_description(args: argparse.Namespace, client: str) -> str:
    if client == "wrk":
        return (
            f"wrk (C, 1 thread, {args.concurrency} connections) on the same machine, "
            f"{args.warmup_seconds:g} s warm-up then {args.seconds:g} s measured per endpoint; "
            f"latency percentiles over every request (wrk's), queries (max) from "
            f"{args.query_samples} sequential httpx requests after it"
        )
    return (
        f"httpx, {args.concurrency} concurrent connections (Python threads) on the same "
        f"machine, {args.warmup} warm-up then {args.requests} measured requests per endpoint"
    )


# =========================================================================== EXPLAIN


@dataclass
class Explained:
    scenario: str
    queries: list[str]
    plans: list[tuple[str, str]]  # (sql, plan) of the statements that read tickets_ticket


def _django_client(sc: Scenario, base_url: str) -> tuple[Any, str, dict[str, str]]:
    """A Django test client carrying the scenario's credentials, for in-process requests."""
    import django
    from django.test import Client

    django.setup()
    client = Client(HTTP_HOST="127.0.0.1")
    extra: dict[str, str] = {}
    if "Authorization" in sc.headers:
        extra["HTTP_AUTHORIZATION"] = sc.headers["Authorization"]
    if "Cookie" in sc.headers:
        for part in sc.headers["Cookie"].split("; "):
            name, _, value = part.partition("=")
            client.cookies[name] = value
    return client, sc.url.removeprefix(base_url), extra


def explain_scenarios(scenarios: list[Scenario], base_url: str) -> list[Explained]:
    """Run each scenario's request in this process through Django's test client, capture the
    SQL it executes, and EXPLAIN (ANALYZE, BUFFERS) the statements that read the tickets: the
    plans are those of exactly the queries the endpoint runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    out = []
    for sc in scenarios:
        if sc.kind == "baseline":
            continue
        client, path, extra = _django_client(sc, base_url)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, **extra)
        if response.status_code != 200:
            raise RuntimeError(f"EXPLAIN {sc.name}: HTTP {response.status_code}")
        statements = [q["sql"] for q in captured.captured_queries]
        plans = []
        with common.connect(DB_NAME) as conn:
            for stmt in statements:
                if '"tickets_ticket"' not in stmt or not stmt.lstrip().upper().startswith("SELECT"):
                    continue
                rows = conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + stmt  # type: ignore[arg-type]
                ).fetchall()
                plans.append((stmt, "\n".join(r[0] for r in rows)))
        out.append(Explained(sc.name, statements, plans))
    return out


@dataclass
class InProcess:
    """One scenario run sequentially inside this process (no HTTP, no concurrency): what a
    request costs, and how much of it is spent waiting for PostgreSQL."""

    scenario: str
    ms: float
    sql_ms: float
    queries: float
    # CPU time of this process per request (Python, Django, psycopg's client side): unlike
    # wall time, it hardly moves when other work shares the cores.
    cpu_ms: float = 0.0
    profile: str = ""


def profile_scenarios(
    scenarios: list[Scenario], base_url: str, *, repeat: int, with_cprofile: bool
) -> list[InProcess]:
    import cProfile
    import io
    import pstats

    from django.db import connection

    out = []
    for sc in scenarios:
        client, path, extra = _django_client(sc, base_url)
        for _ in range(10):  # warm caches, templates, the connection
            client.get(path, **extra)
        sql_s = 0.0
        queries = 0

        def timed(execute: Any, sql_: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal sql_s, queries
            start = time.perf_counter()
            try:
                return execute(sql_, params, many, context)
            finally:
                sql_s += time.perf_counter() - start
                queries += 1

        with connection.execute_wrapper(timed):
            start = time.perf_counter()
            cpu_start = time.process_time()
            for _ in range(repeat):
                client.get(path, **extra)
            cpu = time.process_time() - cpu_start
            total = time.perf_counter() - start
        text = ""
        if with_cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(repeat):
                client.get(path, **extra)
            profiler.disable()
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(
                r"(tickets|helpdesk|rest_framework/(serializers|fields|pagination)|"
                r"django/(db/models/query|template/base|template/loader)|django_filters)",
                30,
            )
            text = buf.getvalue()
        out.append(
            InProcess(
                sc.name,
                total * 1000 / repeat,
                sql_s * 1000 / repeat,
                queries / repeat,
                cpu * 1000 / repeat,
                text,
            )
        )
    return out


def plan_summary(plan: str) -> str:
    """The plan's key lines: the scans of tickets_ticket with their index conditions and
    filters, sorts, hash joins (a sign the index order was given up), and the timings."""
    keep: list[str] = []
    in_ticket_node = False
    for raw in plan.splitlines():
        text = raw.strip().removeprefix("->").strip()
        is_node = raw.lstrip().startswith("->") or not raw.startswith(" ")
        if text.startswith(("Planning Time", "Execution Time")):
            keep.append(text)
            continue
        if is_node:
            in_ticket_node = " on tickets_ticket" in text or text.startswith("Sort")
            if in_ticket_node or re.match(r"(Limit|Hash (Left )?Join|Merge Join|Aggregate)", text):
                keep.append(raw.rstrip())
        elif in_ticket_node and text.startswith(
            ("Index Cond", "Filter", "Rows Removed by Filter", "Sort Key", "Sort Method")
        ):
            keep.append(raw.rstrip())
    return "\n".join(keep)


# =========================================================================== report


def fmt_ms(value: float) -> str:
    return f"{value:.1f}"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def results_rows(
    scenarios: list[Scenario], results: list[common.LoadResult]
) -> tuple[list[str], list[list[str]], list[str]]:
    first = results[0] if results else None
    client = f" (client: {first.client}, {first.concurrency} connections)" if first else ""
    headers = ["endpoint" + client, "p50 ms", "p95 ms", "p99 ms", "req/s", "queries (max)",
               "in worker p50/p95 ms", "target", "result"]  # fmt: skip
    rows, missed = [], []
    for sc, r in zip(scenarios, results, strict=True):
        queries = r.max_queries
        in_worker = (
            f"{common.percentile(r.server_ms, 50):.1f} / {common.percentile(r.server_ms, 95):.1f}"
        )
        if sc.kind == "baseline":
            rows.append([
                sc.name + (f" ({sc.note})" if sc.note else ""), fmt_ms(r.p(50)), fmt_ms(r.p(95)),
                fmt_ms(r.p(99)), f"{r.rps:.0f}", str(queries), in_worker, "(floor)", "",
            ])  # fmt: skip
            continue
        target = TARGETS["api_p95_ms"] if sc.kind == "api" else TARGETS["html_p95_ms"]
        ok_latency = r.p(95) <= target
        ok_queries = queries is not None and queries <= TARGETS["queries"]
        ok_status = r.ok == r.count and not r.errors
        ok = ok_latency and ok_queries and ok_status
        if not ok_latency:
            missed.append(f"{sc.name}: p95 {r.p(95):.1f} ms > {target:.0f} ms")
        if not ok_queries:
            missed.append(f"{sc.name}: {queries} queries > {TARGETS['queries']}")
        if not ok_status:
            missed.append(f"{sc.name}: {r.count - r.ok} non-2xx, {r.errors[:2]}")
        rows.append([
            sc.name + (f" ({sc.note})" if sc.note else ""), fmt_ms(r.p(50)), fmt_ms(r.p(95)),
            fmt_ms(r.p(99)), f"{r.rps:.0f}", str(queries), in_worker,
            f"p95 ≤ {target:.0f} ms, ≤ "
            f"{TARGETS['queries']} q", verdict(ok),
        ])  # fmt: skip
    return headers, rows, missed


def write_report(
    *,
    args: argparse.Namespace,
    machine: dict[str, str],
    seed_state: dict[str, str],
    seeded_now: SeedReport | None,
    sizes: list[tuple[str, int, int, int]],
    scenarios: list[Scenario],
    results: list[common.LoadResult],
    explained: list[Explained],
    inprocess: list[InProcess],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    notes: list[str],
    client: str,
) -> None:
    seed_seconds = float(seed_state.get("seconds", "nan"))
    headers, rows, missed = results_rows(scenarios, results)
    if seed_seconds >= TARGETS["seed_s"]:
        missed.append(f"seeding took {seed_seconds:.0f}s >= {TARGETS['seed_s']:.0f}s")

    print()
    print(common.text_table(headers, rows))
    print(f"client: {client_description(args, client)}")
    print()
    seed_line = f"seeding: {seed_seconds:.1f}s (target < {TARGETS['seed_s']:.0f}s) " + (
        "this run" if seeded_now else f"(reused the seed of {seed_state.get('seeded_at')})"
    )
    print(seed_line)
    if missed:
        print("MISSED: " + "; ".join(missed))

    busy = max(load_before[0], load_after[0]) >= 0.5
    command = " ".join([".venv/bin/python", "bench/queue.py", *sys.argv[1:]])
    size_rows = [
        [name, f"{n:,}", common.human_bytes(heap), common.human_bytes(idx)]
        for name, n, heap, idx in sizes
    ]
    phases = json.loads(seed_state.get("phases", "{}"))
    section = [
        f"## {common.utc_now_label()} — queue, {int(seed_state['tickets']):,} tickets",
        "",
        f"- Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory']} RAM, "
        f"PostgreSQL {machine['postgresql']}, Python {machine['python']}.",
        f"- Code: {machine['code']}.",
        f"- Load average before / after the measurement: "
        f"{' '.join(f'{x:.2f}' for x in load_before)} / "
        f"{' '.join(f'{x:.2f}' for x in load_after)}"
        + (
            " — other work (the other engineers' test runs) shared the 2 cores; read the "
            "figures as ±30 %."
            if busy
            else " (quiet)."
        ),
        f"- Command: `{command}`",
        f"- Server: gunicorn, {args.workers} sync workers, DEBUG off, psycopg pool "
        f"(max {args.pool_max} per worker), X-Query-Count on. "
        f"Client: {client_description(args, client)}.",
        f"- Seeding: **{seed_seconds:.1f} s** (target < {TARGETS['seed_s']:.0f} s), "
        + ("this run" if seeded_now else f"seeded {seed_state.get('seeded_at')}, reused")
        + ("; phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()) if phases else ""),
        "",
        common.markdown_table(headers, rows),
        "",
        f"Client: {client_description(args, client)}. "
        "Targets: API p95 ≤ 15 ms, HTML p95 ≤ 40 ms, ≤ 8 queries per request, seeding < 5 min.",
        "",
        "Table sizes:",
        "",
        common.markdown_table(["table", "rows", "heap+toast", "indexes"], size_rows),
    ]
    if inprocess:
        cost_headers = ["endpoint", "ms per request", "waiting for SQL", "Python CPU",
                        "queries"]  # fmt: skip
        cost_rows = [
            [c.scenario, f"{c.ms:.1f}", f"{c.sql_ms:.1f}", f"{c.cpu_ms:.1f}", f"{c.queries:.0f}"]
            for c in inprocess
        ]
        print("\nWhere a request's time goes (in-process, sequential, no HTTP, no concurrency):")
        print(common.text_table(cost_headers, cost_rows))
        section += [
            "",
            "Where a request's time goes (the same requests in-process through Django's test "
            "client, one at a time, no HTTP; waiting for SQL = wall time in cursor.execute, "
            "Python CPU = this process's CPU time):",
            "",
            common.markdown_table(cost_headers, cost_rows),
        ]
    if missed:
        section += ["", "Missed: " + "; ".join(missed)]
    if notes:
        section += ["", *[f"- {n}" for n in notes]]
    if explained:
        section += ["", "<details><summary>EXPLAIN (ANALYZE, BUFFERS), key lines</summary>", ""]
        for e in explained:
            section += [f"**{e.scenario}** ({len(e.queries)} queries)", "", "```"]
            for _, plan in e.plans:
                section += [plan_summary(plan), ""]
            section += ["```", ""]
        section += ["</details>"]
    if args.no_results:
        print("(--no-results: bench/RESULTS.md left alone)")
    else:
        common.append_results("\n".join(section))
        print(f"appended to {common.RESULTS_FILE.relative_to(common.ROOT)}")


# =========================================================================== main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Queue benchmark: seeds helpdesk_bench, serves it with gunicorn, measures "
        "the queue API and page over HTTP, appends the figures to bench/RESULTS.md."
    )
    parser.add_argument("--tickets", type=int, default=1_000_000, help="tickets to seed")
    parser.add_argument(
        "--database",
        default=DB_NAME,
        help="bench database (its name must start with helpdesk_bench)",
    )
    parser.add_argument("--contacts", type=int, default=5000, help="contacts to seed")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "httpx"],
        default="auto",
        help="load generator: wrk when installed (auto), else the Python httpx client",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk: measured s each")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="wrk: warm-up s each")
    parser.add_argument(
        "--query-samples", type=int, default=50, help="wrk: requests read for X-Query-Count"
    )
    parser.add_argument("--requests", type=int, default=2000, help="httpx: measured requests")
    parser.add_argument("--warmup", type=int, default=200, help="httpx: unmeasured requests")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (cores)")
    parser.add_argument("--pool-max", type=int, default=4, help="DB_POOL_MAX per worker")
    parser.add_argument("--reseed", action="store_true", help="rebuild the bench database")
    parser.add_argument("--skip-seed", action="store_true", help="use the database as it is")
    parser.add_argument("--seed-only", action="store_true", help="seed, then stop")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the list queries")
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile of each request, in-process"
    )
    parser.add_argument(
        "--inprocess-repeat",
        type=int,
        default=50,
        help="requests per endpoint for the in-process cost split (0 to skip)",
    )
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=0.0,
        help="wait (up to --quiet-wait s) for the 1-min load average to drop below this",
    )
    parser.add_argument("--quiet-wait", type=float, default=300.0)
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    global DB_NAME  # one bench database per run, chosen on the command line
    args = parse_args(argv)
    if not args.database.startswith("helpdesk_bench"):
        raise SystemExit("--database must start with helpdesk_bench: never another database")
    DB_NAME = args.database
    _check_vocabulary()
    common.terminate_on_sigterm()
    env = server_env(args.pool_max)
    # This process uses Django too (the password hash, EXPLAIN through the test client): the
    # same settings as the server, without a pool (one thread, short-lived).
    os.environ.update({k: v for k, v in env.items() if k != "DB_POOL_MAX"})
    os.environ["DB_POOL_MAX"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")
    import django
    from django.urls import get_resolver

    django.setup()
    # Import every view now, as gunicorn's workers do at start: the in-process measurements
    # after the HTTP run then use the same code, even if the working tree changes meanwhile.
    get_resolver().url_patterns  # noqa: B018

    machine = common.machine_description()
    machine["code"] = code_version()
    print(f"machine: {machine}")
    state, seeded_now = prepare_database(args, env)
    with common.connect(DB_NAME) as conn:
        sizes = table_sizes(conn)
        subjects = pick_subjects(conn)
    for name, n, heap, idx in sizes[:4]:
        print(f"  {name:<22} {n:>10,} rows  {common.human_bytes(heap):>9} heap  "
              f"{common.human_bytes(idx):>9} indexes")  # fmt: skip
    if args.seed_only:
        return 0

    notes: list[str] = []
    client = choose_client(args.client)
    print(f"client: {client}")
    with common.Gunicorn(env, workers=args.workers, access_log=True) as server:
        print(f"gunicorn on {server.base_url} (log {server.log_path})")
        status = endpoint_status(server.base_url)
        missing = [path for path, code in status.items() if code == 404]
        if missing:
            print(f"not there yet (404): {', '.join(missing)}; nothing to measure")
            return 2
        scenarios = build_scenarios(server.base_url, subjects)
        if args.quiet_load:
            load = common.wait_for_quiet(args.quiet_load, max_wait_s=args.quiet_wait)
            print(f"load average {load:.2f} (waited for < {args.quiet_load})")
        load_before = common.load_average()
        print(f"measuring {len(scenarios)} endpoints with {client} at concurrency "
              f"{args.concurrency} (load {load_before[0]:.2f}) ...")  # fmt: skip
        results = measure(
            scenarios,
            server,
            client=client,
            requests=args.requests,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            warmup_seconds=args.warmup_seconds,
            query_samples=args.query_samples,
        )
        load_after = common.load_average()
    # With gunicorn stopped: the in-process split of each request's cost, and EXPLAIN. A
    # failure here (the working tree is shared and changes under us) costs these extras only.
    inprocess: list[InProcess] = []
    if args.inprocess_repeat or args.profile:
        try:
            inprocess = profile_scenarios(
                scenarios,
                server.base_url,
                repeat=args.inprocess_repeat or 20,
                with_cprofile=args.profile,
            )
        except Exception as exc:
            notes.append(f"in-process cost split failed: {type(exc).__name__}: {exc}")
            print(notes[-1])
        for c in inprocess:
            if c.profile:
                print(f"\n=== cProfile: {c.scenario}\n{c.profile}")
    explained: list[Explained] = []
    if args.explain:
        try:
            explained = explain_scenarios(scenarios, server.base_url)
        except Exception as exc:
            notes.append(f"EXPLAIN failed: {type(exc).__name__}: {exc}")
            print(notes[-1])
        for e in explained:
            print(f"\n=== {e.scenario}: {len(e.queries)} queries")
            for i, q in enumerate(e.queries, 1):
                print(f"  {i}. {q[:160]}{'...' if len(q) > 160 else ''}")
            for stmt, plan in e.plans:
                print(f"\n--- {stmt[:300]}{'...' if len(stmt) > 300 else ''}\n{plan}")
    write_report(
        args=args,
        machine=machine,
        seed_state=state,
        seeded_now=seeded_now,
        sizes=sizes,
        scenarios=scenarios,
        results=results,
        explained=explained,
        inprocess=inprocess,
        load_before=load_before,
        load_after=load_after,
        notes=notes,
        client=client,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; gunicorn stopped", file=sys.stderr)
        sys.exit(130)
