"""The demo utility: its organisation, its customers' conversations, and a lived-in history.

Every ticket, message, assignment, transfer, status, tag, call and merge is made by the same
`tickets.actions` a real channel and a real agent would call, so the demo exercises the product
rather than faking its tables. Actions stamp "now"; each call is recorded as a step of a story
with its offset in minutes, and once everything exists `backdate` moves every row a story made
to a point in the past ~10 days with one set of `update()`s (see there for why).

Deterministic: the same seed gives the same people, texts, choices and relative times.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.db.models import Max, Model
from django.db.models.signals import post_save
from django.utils import timezone

from channels_in.models import Channel
from tickets import actions, routing, sla
from tickets.errors import Conflict
from tickets.inbound import InboundMessage, Sender
from tickets.models import (
    ACTIVE_STATUSES,
    Agent,
    AgentSkill,
    Call,
    CannedResponse,
    Contact,
    ContactMerge,
    Delivery,
    DeliveryStatus,
    Direction,
    Identity,
    Message,
    Priority,
    RoutingRule,
    Skill,
    Status,
    Tag,
    Team,
    Ticket,
    TicketEvent,
)

from . import demo_data as data

DEMO_PASSWORD = "demo"  # noqa: S105 - printed on purpose: the demo's shared login
T = TypeVar("T")

LANGUAGE_WEIGHTS = {"ru": 25, "pt": 22, "lt": 20, "en": 18, "zh": 15}
X_LANGUAGE_WEIGHTS = {"en": 50, "pt": 25, "ru": 10, "lt": 8, "zh": 7}
KIND_WEIGHTS = {
    "outage": 20,
    "safety": 2,
    "bill": 10,
    "paid": 9,
    "meter": 15,
    "meter_how": 4,
    "tariff": 6,
    "contract": 7,
    "maintenance": 5,
    "debt": 6,
    "x": 5,
    "other": 5,
}
CHANNELS_BY_LANGUAGE = {
    "ru": {
        "telegram": 30,
        "viber": 15,
        "vk": 15,
        "whatsapp": 15,
        "sms": 8,
        "email": 7,
        "widget": 10,
    },
    "pt": {"whatsapp": 35, "messenger": 15, "instagram": 12, "email": 15, "sms": 10, "widget": 8},
    "lt": {"messenger": 25, "viber": 15, "sms": 15, "email": 20, "widget": 15, "whatsapp": 10},
    "en": {"email": 25, "sms": 15, "widget": 15, "messenger": 10, "whatsapp": 10, "instagram": 10},
    "zh": {"email": 30, "widget": 25, "whatsapp": 20, "sms": 15, "telegram": 10},
}
# What becomes of a conversation by now, and when it happened (a window, see WINDOWS).
FATE_WEIGHTS = {"new": 17, "open": 16, "open_pool": 5, "pending": 11, "resolved": 20, "closed": 31}
FATE_WINDOW = {
    "new": "live",
    "open": "live",
    "open_pool": "live",
    "pending": "today",
    "resolved": "recent",
    "closed": "past",
}
# Minutes between now and a story's last step: (at least, at most). Active tickets of the
# "now", "live" and "today" windows are further kept inside their SLA, except a few.
WINDOWS = {
    "now": (1.5, 45.0),
    "live": (2.0, 6 * 60.0),
    "today": (20.0, 20 * 60.0),
    "recent": (90.0, 60 * 60.0),
    "past": (60.0, 7 * 24 * 60.0),
}
CLIPPED_WINDOWS = {"now", "live", "today"}
OVERDUE_SHARE = 0.07
STORM_NIGHT_STARTS_HOURS_AGO = 15.0
PHONE_PLANS = {  # country code, leading digits, digits after them
    "ru": ("+7", "9", 9),
    "pt": ("+351", "9", 8),
    "lt": ("+370", "6", 7),
    "en": ("+44", "7700900", 3),  # Ofcom's range reserved for drama: never a real person
    "zh": ("+86", "13", 9),
}
IDENTITY_KIND = {"sms": "phone"}
_PLACEHOLDER = re.compile(r"\{[a-z0-9_]+\}")
_THANKS_PT = re.compile(r"\b([Oo]brigad)[ao]\b")
_VARIABLE = re.compile(r"\{\{\s*(contact\.name|contact\.account|ticket\.id|agent\.name)\s*\}\}")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


# --------------------------------------------------------------------------- customers


@dataclass
class Customer:
    lang: str
    gender: str  # "f" or "m": Russian past tenses and Portuguese thanks agree with it
    name: str
    first: str
    latin: str  # "irina.kovaleva"
    phone: str  # E.164
    email: str
    ids: dict[str, str]
    followers: int = 0
    verified: bool = False
    accounts: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    contact: Contact | None = None

    def display(self, kind: str) -> str:
        """What the platform calls this person: a profile name, a handle, or nothing (SMS)."""
        if kind == "sms":
            return ""
        if kind == "telegram":
            return self.first
        if kind == "instagram":
            return self.ids["instagram"]
        return self.name


@dataclass
class Story:
    window: str
    start_age: float | None = None  # minutes before now the story begins (storm night)
    last: float = 0.0


@dataclass
class Step:
    story: int  # -1: an absolute step, `minutes` before now
    minutes: float


class _Slots(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(f"demo text uses {{{key}}} but the story has no value for it")


# --------------------------------------------------------------------------- the demo


class Demo:
    """Builds the whole demo in the caller's transaction. Call `run()` once, on a database
    without agents; `demo_summary()` describes what the database then holds."""

    def __init__(self, *, seed: int, tickets: int, now: datetime | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
        self.target = tickets
        self.now = now or timezone.now()
        self.stories: list[Story] = []
        self.steps: list[Step] = []
        self.story = -1
        self.tickets_made = 0
        self.customers: list[Customer] = []
        self.used_names: set[str] = set()
        self.pid: Counter[str] = Counter()
        self.canned_usage: Counter[tuple[str, str]] = Counter()
        self.failed_messages: list[int] = []
        self.teams: dict[str, Team] = {}
        self.agents: dict[str, Agent] = {}
        self.channels: dict[str, Channel] = {}
        self.canned: dict[tuple[str, str], CannedResponse] = {}
        self.last_pid = ""
        self.anchors: list[datetime] = []  # when each story starts, set by backdate()
        # Which step wrote each event and message: collected from post_save while seeding
        # (no query per step), assigned to a step when the step is marked.
        self.unmarked: dict[type[Model], list[int]] = {TicketEvent: [], Message: []}
        self.step_of: dict[type[Model], dict[int, int]] = {TicketEvent: {}, Message: {}}
        # Rows above these ids are the demo's (the database may hold tickets without agents).
        self.watermarks: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def weighted(self, weights: dict[str, int]) -> str:
        keys = list(weights)
        return self.rng.choices(keys, weights=[weights[k] for k in keys])[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def between(self, low: float, high: float) -> float:
        return low + (high - low) * self.rng.random()

    # ------------------------------------------------------------------ setup

    def run(self) -> None:
        for model in self.unmarked:
            post_save.connect(self.saw_row, sender=model, weak=False, dispatch_uid=self.uid(model))
        try:
            self.build()
        finally:
            for model in self.unmarked:
                post_save.disconnect(sender=model, dispatch_uid=self.uid(model))

    def uid(self, model: type[Model]) -> str:
        return f"createdemo-{id(self)}-{model.__name__}"

    def saw_row(self, sender: type[Model], instance: Model, created: bool, **kwargs: Any) -> None:
        if created:
            self.unmarked[sender].append(instance.pk)

    def build(self) -> None:
        self.watermarks = {
            "event": TicketEvent.objects.aggregate(m=Max("id"))["m"] or 0,
            "message": Message.objects.aggregate(m=Max("id"))["m"] or 0,
            "ticket": Ticket.objects.aggregate(m=Max("id"))["m"] or 0,
            "contact": Contact.objects.aggregate(m=Max("id"))["m"] or 0,
        }
        self.setup()
        self.showcase()
        target_now = max(4, round(self.target * 0.08))
        target_night = max(4, round(self.target * 0.10))
        for _ in range(target_now):
            self.storm_story(window="now")
        for _ in range(target_night):
            self.storm_story(window="night")
        while self.tickets_made < self.target:
            self.random_story()
        self.agents_take_next()
        self.backdate()
        for (shortcut, language), uses in self.canned_usage.items():
            CannedResponse.objects.filter(pk=self.canned[shortcut, language].pk).update(
                usage_count=uses
            )
        # Last, so the scripted history above keeps the teams it was written with; from now
        # on live messages (the simulate command, the widget) reach the team of their topic.
        self.routing_rules()

    def routing_rules(self) -> None:
        """One rule per team: its topics send a ticket there (an outage SMS must not wait in
        Billing). Checked by the same validators as the rules API."""
        topics_of: dict[str, list[str]] = {}
        for topic, team in data.TOPIC_TEAMS.items():
            topics_of.setdefault(team, []).append(topic)
        for position, (team, topics) in enumerate(topics_of.items(), start=1):
            label = ", ".join(topics).replace("_", " ").capitalize()
            RoutingRule.objects.create(
                name=f"{label} → {self.teams[team].name}",
                position=position * 10,
                conditions=routing.validate_conditions({"topic": topics}),
                actions=routing.validate_actions({"team": team}),
                stop=True,
            )

    def setup(self) -> None:
        for slug, name, parent, description in data.TEAMS:
            self.teams[slug] = Team.objects.create(
                name=name,
                slug=slug,
                parent=self.teams.get(parent) if parent else None,
                description=description,
            )
        skills = {slug: Skill.objects.create(slug=slug, name=name) for slug, name in data.SKILLS}
        Tag.objects.bulk_create([Tag(name=name, color=color) for name, color in data.TAGS])
        # One hash for the shared demo password: hashing it per user would cost seconds.
        password = make_password(DEMO_PASSWORD)
        users = get_user_model()
        for spec in data.AGENTS:
            is_admin = spec["role"] == "admin"
            user = users.objects.create(
                username=spec["username"],
                first_name=spec["first"],
                last_name=spec["last"],
                email=f"{spec['username']}@demo-energy.example",
                password=password,
                is_staff=is_admin,
                is_superuser=is_admin,
            )
            agent = Agent.objects.create(
                user=user,
                role=spec["role"],
                languages=list(spec["languages"]),
                capacity=spec["capacity"],
                presence=spec["presence"],
                signature=spec["signature"],
            )
            agent.teams.set([self.teams[slug] for slug in spec["teams"]])
            AgentSkill.objects.bulk_create(
                [
                    AgentSkill(agent=agent, skill=skills[slug], proficiency=level)
                    for slug, level in spec["skills"].items()
                ]
            )
            self.agents[spec["username"]] = agent
        for kind, key, name, team, credentials, settings in data.CHANNELS:
            self.channels[kind] = Channel.objects.create(
                kind=kind,
                key=key,
                name=name,
                default_team=self.teams[team],
                credentials=credentials,
                settings=settings,
            )
        ada = self.agents["ada"]
        for shortcut, team, variants in data.CANNED:
            for language, (title, body) in variants.items():
                self.canned[shortcut, language] = CannedResponse.objects.create(
                    shortcut=shortcut,
                    title=title,
                    body=body,
                    language=language,
                    team=self.teams[team] if team else None,
                    created_by=ada,
                )

    # ------------------------------------------------------------------ people

    def new_customer(self, lang: str, *, gender: str | None = None) -> Customer:
        pools = data.NAMES[lang]
        for _ in range(200):
            g = gender or self.pick(["f", "m"])
            first, first_latin = self.pick(pools[f"{g}_first"])
            last, last_latin = self.pick(pools.get(f"{g}_last") or pools["f_last"])
            name = f"{last}{first}" if lang == "zh" else f"{first} {last}"
            if name not in self.used_names:
                break
        self.used_names.add(name)
        latin = f"{first_latin}.{last_latin}" if lang != "zh" else f"{last_latin}.{first_latin}"
        latin = re.sub(r"[^a-z.]", "", _ascii(latin))
        country, lead, digits = PHONE_PLANS[lang]
        phone = country + lead + "".join(str(self.rng.randrange(10)) for _ in range(digits))
        handle = f"{latin.replace('.', '_')}{self.rng.randrange(10, 99)}"
        customer = Customer(
            lang=lang,
            gender=g,
            name=name,
            first=first,
            latin=latin,
            phone=phone,
            email=f"{latin}{self.rng.randrange(1, 99)}@{self.pick(data.EMAIL_DOMAINS)}",
            ids={
                "telegram": str(5_100_000_000 + self.rng.randrange(10**8)),
                "viber": f"{self.rng.getrandbits(64):016x}==",
                "vk": str(100_000 + self.rng.randrange(10**8)),
                "messenger": str(7_000_000_000_000_000 + self.rng.randrange(10**15)),
                "instagram": handle,
                "x": handle,
                "widget": f"visitor-{self.rng.getrandbits(48):012x}",
            },
            followers=int(self.rng.paretovariate(1.3) * 40) if self.chance(0.6) else 0,
        )
        self.customers.append(customer)
        return customer

    def sender(
        self, customer: Customer, kind: str, *, share_phone: bool = False, email: bool = False
    ) -> Sender:
        name = customer.display(kind)
        if kind == "whatsapp":
            return Sender("whatsapp", customer.phone.lstrip("+"), name, phone=customer.phone)
        if kind == "sms":
            return Sender("phone", customer.phone, name, phone=customer.phone)
        if kind == "email":
            return Sender("email", customer.email, name)
        if kind == "widget":
            return Sender(
                "widget",
                customer.ids["widget"],
                name if email else "",
                email=customer.email if email else "",
            )
        return Sender(
            IDENTITY_KIND.get(kind, kind),
            customer.ids[kind],
            name,
            phone=customer.phone if share_phone else "",
            language=customer.lang if kind == "telegram" else "",
            followers=customer.followers if kind == "x" else 0,
            verified=customer.verified if kind == "x" else False,
        )

    def platform_id(self, kind: str) -> str:
        self.pid[kind] += 1
        n = self.pid[kind]
        return {
            "telegram": f"{880_000_000 + n}",
            "whatsapp": f"wamid.DEMO{n:012d}",
            "messenger": f"m_demo{n:010d}",
            "instagram": f"aWdfZGVtb{n:08d}",
            "x": f"{1_800_000_000_000_000_000 + n}",
            "viber": f"{5_500_000_000_000_000_000 + n}",
            "vk": f"demo-{n}",
            "sms": f"SM{n:032x}",
            "email": f"<demo.{n}@mail.example>",
            "widget": f"widget-{n}",
        }[kind]

    def slots(self, customer: Customer) -> _Slots:
        lang = customer.lang
        places = data.PLACES[lang]
        hour = self.rng.randrange(14, 22)
        eta = {
            "ru": f"около {hour}:30",
            "pt": f"por volta das {hour}h30",
            "lt": f"apie {hour}:30",
            "en": f"around {hour - 12}:30pm",
            "zh": f"{hour}:30左右",
        }[lang]
        day, month = self.rng.randrange(1, 28), self.rng.randrange(7)
        date = {
            "ru": f"{day:02d}.{month + 1:02d}",
            "pt": f"{day}/{month + 1}",
            "lt": f"{data.MONTHS['lt'][month]} {day} d.",
            "en": f"{data.MONTHS['en'][month]} {day}",
            "zh": f"{data.MONTHS['zh'][month]}{day}日",
        }[lang]
        reading = self.rng.randrange(1200, 48000)
        amount = self.rng.randrange(60, 420) * (25 if lang == "ru" else 7 if lang == "zh" else 1)
        return _Slots(
            a="а" if customer.gender == "f" else "",  # Russian: оплатил / оплатила
            name=customer.first if lang != "zh" else customer.name,
            street=self.pick(places["street"]),
            town=self.pick(places["town"]),
            house=str(self.rng.randrange(1, 140)),
            flat=str(self.rng.randrange(1, 120)),
            hour=str(self.rng.randrange(6, 12)),
            eta=eta,
            map=data.OUTAGE_MAP,
            portal=data.PORTAL,
            reading=f"{reading:05d}",
            reading2=f"{reading // 3:05d}",
            reading3=f"{reading + self.rng.randrange(900, 4000):05d}",
            prev=f"{reading + self.rng.randrange(200, 900):05d}",
            amount=str(amount),
            credit=str(amount // 2),
            account=self.account_number(lang),
            account2=self.account_number(lang),
            date=date,
            month=data.MONTHS[lang][month],
            handle=customer.ids["x"],
            ticket="",
            feeder=str(self.rng.randrange(1, 40)),
            substation=self.pick(["North-3", "Riverside", "PS-17", "Old Town"]),
            crew=str(self.rng.randrange(2, 19)),
        )

    def account_number(self, lang: str) -> str:
        digits = "".join(str(self.rng.randrange(10)) for _ in range(12))
        return {
            "ru": f"59{digits[:8]}",
            "pt": f"PT0002000{digits[:10]}{self.pick('ABCDEFGHJK')}{self.pick('ABCDEFGHJK')}",
            "lt": f"40{digits[:6]}",
            "en": f"ACC-{digits[:4]}-{digits[4:8]}",
            "zh": f"10{digits[:8]}",
        }[lang]

    def fill(self, text: str, slots: _Slots, customer: Customer | None = None) -> str:
        filled = text.format_map(slots)
        if customer is not None and customer.lang == "pt":
            # "obrigado" is said by a man, "obrigada" by a woman.
            ending = "a" if customer.gender == "f" else "o"
            filled = _THANKS_PT.sub(lambda m: m.group(1) + ending, filled)
        if _PLACEHOLDER.search(filled):  # a typo in demo_data, not a customer's brace
            raise ValueError(f"unfilled placeholder in demo text: {filled!r}")
        return filled

    # ------------------------------------------------------------------ stories and steps

    def begin(self, window: str, *, start_age: float | None = None) -> int:
        self.stories.append(Story(window=window, start_age=start_age))
        self.story = len(self.stories) - 1
        return self.story

    def mark(self, at: float, *, absolute: bool = False) -> None:
        """Record that everything written since the previous mark happened at `at`: minutes
        into the current story, or (absolute) minutes before now."""
        if absolute:
            story = -1
        else:
            story = self.story
            current = self.stories[story]
            if at < current.last:
                raise ValueError(f"story {story} steps back in time: {at} < {current.last}")
            current.last = at
        index = len(self.steps)
        self.steps.append(Step(story, at))
        for model, pks in self.unmarked.items():
            self.step_of[model].update(dict.fromkeys(pks, index))
            pks.clear()

    def receive(
        self,
        customer: Customer,
        kind: str,
        text: str,
        at: float,
        *,
        subject: str = "",
        share_phone: bool = False,
        email: bool = False,
        thread: tuple[str, str] | None = None,
        is_public: bool = False,
    ) -> Ticket:
        """The customer writes on a channel. `thread` = (thread key, message replied to)."""
        pid = self.platform_id(kind)
        if kind == "email":
            greeting, signoff = data.EMAIL_FRAME[customer.lang]
            text = f"{greeting}\n\n{text}\n\n{signoff}\n{customer.name}"
        received = actions.do_receive_inbound(
            InboundMessage(
                channel_id=self.channels[kind].pk,
                platform_message_id=pid,
                sender=self.sender(customer, kind, share_phone=share_phone, email=email),
                text=text,
                subject=subject,
                thread_key=thread[0] if thread else "",
                reply_to=(thread[1],) if thread and thread[1] else (),
                is_public=is_public,
            )
        )
        self.mark(at)
        if received.ticket is None:  # only a listening rule drops a message; none is set
            raise RuntimeError(f"the demo's message on {kind} made no ticket")
        if kind not in customer.channels:
            customer.channels.append(kind)
        customer.contact = received.ticket.contact
        self.tickets_made += int(received.created_ticket)
        self.last_pid = pid
        return received.ticket

    def reply(
        self, ticket: Ticket, agent: Agent, text: str, at: float, *, status: str | None = None
    ) -> Message:
        message = actions.do_reply(ticket, agent, text, status=status)
        self.mark(at)
        return message

    def canned_text(
        self,
        shortcut: str,
        lang: str,
        ticket: Ticket,
        agent: Agent,
        customer: Customer | None = None,
    ) -> str:
        """The canned response as the agent sends it, variables filled like the ticket page
        fills them (an agent types the name themselves when the contact has none)."""
        canned = self.canned[shortcut, lang]
        self.canned_usage[shortcut, lang] += 1
        contact = Contact.objects.get(
            pk=Ticket.objects.only("contact_id").get(pk=ticket.pk).contact_id
        )
        account = contact.accounts.order_by("number").values_list("number", flat=True).first()
        values = {
            "contact.name": contact.display_name or (customer.first if customer else ""),
            "contact.account": account or "",
            "ticket.id": str(ticket.pk),
            "agent.name": agent.name,
        }
        return _VARIABLE.sub(lambda m: values[m.group(1)], canned.body)

    def note(self, ticket: Ticket, agent: Agent, text: str, at: float) -> None:
        actions.do_add_note(ticket, agent, text)
        self.mark(at)

    def tag(self, ticket: Ticket, actor: Agent | None, names: list[str], at: float) -> None:
        actions.do_update_tags(ticket, actor=actor, add=names)
        self.mark(at)

    def transfer(
        self,
        ticket: Ticket,
        actor: Agent | None,
        at: float,
        *,
        team: str | None = None,
        agent: Agent | None = None,
        note: str = "",
    ) -> Ticket:
        ticket = actions.do_transfer(
            ticket, actor=actor, team=self.teams[team] if team else None, agent=agent, note=note
        )
        self.mark(at)
        return ticket

    def assign(self, ticket: Ticket, agent: Agent, actor: Agent, at: float) -> Ticket:
        ticket = actions.do_assign(ticket, agent, actor=actor)
        self.mark(at)
        return ticket

    def set_status(self, ticket: Ticket, status: str, actor: Agent | None, at: float) -> Ticket:
        ticket = actions.do_set_status(ticket, status, actor=actor)
        self.mark(at)
        return ticket

    def set_priority(
        self, ticket: Ticket, level: str, actor: Agent, reason: str, at: float
    ) -> Ticket:
        ticket = actions.do_set_priority(ticket, level, actor=actor, reason=reason)
        self.mark(at)
        return ticket

    def call(
        self,
        customer: Customer,
        agent: Agent,
        summary: str,
        at: float,
        *,
        ticket: Ticket | None = None,
        direction: str = Call.Direction.OUTBOUND,
    ) -> None:
        actions.do_log_call(
            self.contact_of(customer),
            actor=agent,
            direction=direction,
            phone=customer.phone,
            duration_seconds=self.rng.randrange(60, 600),
            summary=summary,
            ticket=ticket,
        )
        self.mark(at)

    def update_contact(
        self,
        customer: Customer,
        actor: Agent | None,
        at: float,
        *,
        accounts: Sequence[str] = (),
        **changes: Any,
    ) -> None:
        contact = self.contact_of(customer)
        for number in accounts:
            if number not in customer.accounts:
                customer.accounts.append(number)
        actions.do_update_contact(
            contact, actor=actor, accounts=customer.accounts if accounts else None, **changes
        )
        self.mark(at)

    def contact_of(self, customer: Customer) -> Contact:
        """The customer's contact as it is now (after a merge: the one it was merged into)."""
        if customer.contact is None:
            raise RuntimeError(f"{customer.name} has not written yet")
        contact = Contact.objects.get(pk=customer.contact.pk)
        if contact.merged_into_id is not None:
            contact = Contact.objects.get(pk=contact.merged_into_id)
        return contact

    # ------------------------------------------------------------------ who answers

    def working_agents(self) -> list[Agent]:
        return [a for a in self.agents.values() if a.role == "agent"]

    def pick_agent(self, ticket: Ticket, lang: str, *, needs_capacity: bool) -> Agent | None:
        """The agent a dispatcher would give this ticket: its owner, else the least loaded
        agent of its team who speaks the customer's language (a supervisor as a last resort)."""
        ticket = Ticket.objects.only("team_id", "assignee_id").get(pk=ticket.pk)
        if ticket.assignee_id is not None:
            return next(a for a in self.agents.values() if a.pk == ticket.assignee_id)
        team_agents = [
            a
            for a in self.working_agents()
            if ticket.team_id in {self.teams[s].pk for s in self.agent_team_slugs(a)}
        ]
        speakers = [a for a in team_agents if lang in a.languages] or team_agents
        if not speakers:
            return self.agents["carol"]
        loads = dict(
            Agent.objects.filter(pk__in=[a.pk for a in speakers]).values_list("pk", "open_count")
        )
        if needs_capacity:
            speakers = [a for a in speakers if loads[a.pk] < a.capacity]
            if not speakers:
                return None
        return min(speakers, key=lambda a: loads[a.pk] / a.capacity + self.rng.random() * 0.3)

    def agent_team_slugs(self, agent: Agent) -> list[str]:
        spec = next(s for s in data.AGENTS if s["username"] == agent.user.username)
        return list(spec["teams"])

    def first_target(self, ticket: Ticket) -> float:
        first, _ = sla.targets(Ticket.objects.only("priority").get(pk=ticket.pk).priority)
        return first.total_seconds() / 60

    # ------------------------------------------------------------------ the generic story

    def random_story(self) -> None:
        kind = self.weighted(KIND_WEIGHTS)
        lang = self.weighted(X_LANGUAGE_WEIGHTS if kind == "x" else LANGUAGE_WEIGHTS)
        fate = self.weighted(FATE_WEIGHTS)
        customer, channel, extra = self.customer_for(lang, kind)
        self.begin(FATE_WINDOW[fate])
        self.play(kind, customer, channel, fate, **extra)

    def storm_story(self, *, window: str) -> None:
        kind = "safety" if self.chance(0.15) else "outage"
        lang = self.weighted(LANGUAGE_WEIGHTS)
        if window == "now":
            fate = self.weighted({"new": 55, "open": 25, "pending": 5, "resolved": 15})
            self.begin("now")
        else:
            fate = self.weighted({"closed": 42, "resolved": 46, "open": 5, "pending": 7})
            start = STORM_NIGHT_STARTS_HOURS_AGO * 60 - self.between(0, 150)
            self.begin("night", start_age=start)
        customer, channel, extra = self.customer_for(lang, kind, storm=True)
        self.play(kind, customer, channel, fate, storm=True, **extra)

    def customer_for(
        self, lang: str, kind: str, *, storm: bool = False
    ) -> tuple[Customer, str, dict[str, Any]]:
        """A new customer, or (sometimes) one who wrote before, now on another channel that
        shares their phone or e-mail, so the core unifies them into one contact."""
        if kind == "x":
            customer = self.new_customer(lang)
            return customer, "x", {}
        weights = dict(CHANNELS_BY_LANGUAGE[lang])
        if storm:
            weights = {k: v for k, v in weights.items() if k not in ("email", "widget")}
        if self.chance(0.12):
            for customer in self.rng.sample(self.customers, len(self.customers)):
                if customer.lang != lang or not customer.channels:
                    continue
                if {"whatsapp", "sms"} & set(customer.channels):
                    options = [k for k in ("sms", "whatsapp") if k not in customer.channels]
                    if options:
                        return customer, options[0], {}
                if "email" in customer.channels and "widget" not in customer.channels:
                    return customer, "widget", {"widget_email": True}
        return self.new_customer(lang), self.weighted(weights), {}

    def play(
        self,
        kind: str,
        customer: Customer,
        channel: str,
        fate: str,
        *,
        storm: bool = False,
        widget_email: bool = False,
    ) -> Ticket:
        """One conversation from the customer's first message to `fate`, through actions."""
        lang = customer.lang
        texts = data.TEXTS[kind][lang]
        slots = self.slots(customer)
        index = self.rng.randrange(len(texts["open"]))
        public = channel == "x"
        subject = data.SUBJECTS.get(kind, {}).get(lang, "") if channel == "email" else ""
        thread_key = ""
        if channel in ("email", "x"):
            thread_key = f"{channel}:{self.pid[channel] + 1}"
        email = widget_email or (channel == "widget" and self.chance(0.3))

        def customer_says(line: str, at: float) -> Ticket:
            again = at > 0
            return self.receive(
                customer,
                channel,
                self.fill(line, slots, customer),
                at,
                subject=("Re: " + subject) if subject and again else subject,
                email=email,
                thread=(thread_key, self.last_pid if again else "") if thread_key else None,
                is_public=public,
            )

        t = 0.0
        ticket = customer_says(texts["open"][index], t)
        slots["ticket"] = str(ticket.pk)
        first = self.first_target(ticket)
        # People nudge and agents answer on the scale of the SLA target, but nobody waits a
        # day to say "???" and no agent sits on a meter reading for 20 hours.
        pace = min(first, 6 * 60.0)
        if "follow" in texts and self.chance(0.35 if fate == "new" else 0.15):
            t += pace * self.between(0.1, 0.5)
            ticket = customer_says(self.pick(texts["follow"]), t)
        if fate == "new":
            return ticket

        # The demo's stand-in for routing rules: most tickets reach the team of their topic.
        ticket = Ticket.objects.get(pk=ticket.pk)
        topic_team = data.TOPIC_TEAMS.get(ticket.topic)
        if topic_team and ticket.team_id != self.teams[topic_team].pk and self.chance(0.8):
            t += self.between(0.1, 1.0)
            ticket = self.transfer(ticket, None, t, team=topic_team)

        has = {p for p in ("ack", "ask", "done") if p in texts or (kind, p) in data.CANNED_FOR}
        if fate == "pending" and (kind == "safety" or not {"ack", "ask"} & has):
            fate = "open" if kind == "safety" else "resolved"
        if fate in ("open", "open_pool") and not {"ack", "ask"} & has:
            fate = "resolved"  # a plain question: the first answer settles it
        keeps = fate in ("open", "pending", "open_pool")
        agent = self.pick_agent(ticket, lang, needs_capacity=keeps)
        if agent is None:  # everyone who could take it is full: it waits in the queue
            return ticket
        t += pace * (self.between(0.1, 0.8) if self.chance(0.85) else self.between(1.1, 2.5))

        def agent_says(part: str, at: float, status: str | None = None) -> None:
            shortcut = data.CANNED_FOR.get((kind, part))
            if shortcut and (part not in texts or self.chance(0.8)):
                line = self.canned_text(shortcut, lang, ticket, agent, customer)
            else:
                line = self.fill(self.pick(texts[part]), slots)
            self.reply(ticket, agent, line, at, status=status)

        if channel == "sms" and self.chance(0.6):
            t += 0.5  # an SMS has no name: the agent looks the number up and fills it in
            self.update_contact(customer, agent, t, display_name=customer.name)
        if "{account}" in texts["open"][index] and self.chance(0.6):
            t += 0.5
            self.update_contact(customer, agent, t, accounts=[slots["account"]])
        if kind == "paid" and not customer.accounts:
            t += 0.5  # the agent found the customer in the CRM before answering
            self.update_contact(customer, agent, t, accounts=[slots["account"]])

        if fate == "pending":
            agent_says("ask" if "ask" in has else "ack", t, status=Status.PENDING)
            self.decorate(kind, ticket, agent, customer, t, storm)
            return ticket

        # Meter readings are mostly just accepted; the agent questions a few (and those that
        # stay open are the questioned ones).
        questioned = kind != "meter" or keeps or self.chance(0.25)
        if "ack" in has:
            opening = "ack"
        elif "ask" in has and questioned:
            opening = "ask"
        else:
            opening = "done"
        settled = opening == "done" and fate in ("resolved", "closed")
        agent_says(opening, t, status=Status.RESOLVED if settled else None)
        t = self.decorate(kind, ticket, agent, customer, t, storm)

        if fate == "open":
            t += self.between(3, 90)
            part = next((p for p in ("still", "info", "follow") if p in texts), "thanks")
            customer_says(self.pick(texts[part]), t)
            return ticket
        if fate == "open_pool":
            t += self.between(2, 30)
            self.hand_over(kind, ticket, agent, t)
            return ticket

        if not settled:
            asked = opening == "ask" or kind in data.ACK_ASKS
            if "info" in texts and (asked or (kind in data.INFO_AFTER_ACK and self.chance(0.6))):
                t += self.between(4, 120)
                customer_says(self.pick(texts["info"]), t)
            t += self.between(10, 240) if kind in ("outage", "safety") else self.between(5, 60)
            thanks = "thanks" in texts and self.chance(0.6)
            if "done" in has and opening != "done":
                agent_says("done", t, status=None if thanks else Status.RESOLVED)
            if thanks:
                t += self.between(2, 45)
                customer_says(self.pick(texts["thanks"]), t)
                t += self.between(1, 15)
                closing = self.canned_text("closing", lang, ticket, agent, customer)
                self.reply(ticket, agent, closing, t, status=Status.RESOLVED)
            elif "done" not in has:
                t += 0.5
                self.set_status(ticket, Status.RESOLVED, agent, t)
        if fate == "closed":
            if self.chance(0.2):  # the agent closes it outright
                t += self.between(1, 30)
                self.set_status(ticket, Status.CLOSED, agent, t)
            else:  # the periodic job closes it once the reopen window has passed
                t += 72 * 60 + self.between(1, 10)
                self.set_status(ticket, Status.CLOSED, None, t)
        return ticket

    def decorate(
        self, kind: str, ticket: Ticket, agent: Agent, customer: Customer, t: float, storm: bool
    ) -> float:
        """What agents add around their first answer: tags, an internal note, a call."""
        tags = {
            "safety": ["safety"],
            "debt": ["payment-plan"],
            "contract": ["moving-house"],
            "tariff": ["night-rate"],
            "x": ["social"],
            "maintenance": ["planned-work"],
            "bill": ["estimated-bill"],
            "paid": ["payment-reminder"],
        }.get(kind, [])
        if storm:
            tags.append("storm")
        priority_reasons = Ticket.objects.only("priority_reasons").get(pk=ticket.pk)
        if any(r.get("signal") == "negativity" for r in priority_reasons.priority_reasons):
            tags.append("complaint")
        if tags and self.chance(0.85):
            t += self.between(0.2, 2)
            self.tag(ticket, agent, tags, t)
        if kind in data.NOTES and self.chance(0.3):
            t += self.between(0.5, 5)
            self.note(
                ticket, agent, self.fill(self.pick(data.NOTES[kind]), self.slots(customer)), t
            )
        if kind in data.CALL_SUMMARIES and customer.phone and self.chance(0.15):
            t += self.between(2, 20)
            self.call(customer, agent, self.pick(data.CALL_SUMMARIES[kind]), t, ticket=ticket)
            self.tag(ticket, agent, ["callback"], t)
        return t

    def hand_over(self, kind: str, ticket: Ticket, agent: Agent, t: float) -> None:
        """An agent passes the ticket to another team, with a note saying why."""
        current = Ticket.objects.only("team_id").get(pk=ticket.pk).team_id
        options = [
            (team, notes)
            for (k, team), notes in data.TRANSFER_NOTES.items()
            if k == kind and self.teams[team].pk != current
        ]
        if options:
            team, notes = self.pick(options)
            note = self.pick(notes)
        else:
            team = self.pick([s for s in self.teams if self.teams[s].pk != current])
            note = f"Not ours — moving to {self.teams[team].name}."
        self.transfer(ticket, agent, t, team=team, note=note)

    # ------------------------------------------------------------------ showcase stories

    def showcase(self) -> None:
        """Hand-written conversations that show each feature at least once, whatever the size
        of the demo: unified identities, a manual merge, tiers, a public influencer post, a
        safety false alarm, manual priorities, calls, a failed delivery."""
        self.life_support_customer()
        self.whatsapp_then_sms()
        self.telegram_then_sms()
        self.email_then_widget()
        self.manual_merge()
        self.x_influencer()
        self.vip_council_member()
        self.business_bakery()
        self.business_factory()
        self.safety_false_alarm()
        self.safety_now()
        self.failed_whatsapp_reply()

    def life_support_customer(self) -> None:
        alice, rasa = self.agents["alice"], self.agents["rasa"]
        aldona = self.new_customer("lt", gender="f")
        aldona.name, aldona.first = "Aldona Petrauskienė", "Aldona"
        account = self.account_number("lt")
        self.begin("past")
        ticket = self.receive(
            aldona,
            "sms",
            "Laba diena, rašo Aldonos Petrauskienės sūnus. Mama naudoja deguonies "
            f"koncentratorių, kaip ją įtraukti į medicininį registrą? Abon. nr. {account}",
            0,
        )
        ticket = self.transfer(ticket, None, 0.5, team="contracts")
        self.update_contact(
            aldona,
            rasa,
            25,
            accounts=[account],
            display_name="Aldona Petrauskienė",
            tier="life_support",
            notes="Oxygen concentrator at home (medical certificate on file). Call before any "
            "planned work; prioritise in outages.",
            attributes={"medical_register": True, "equipment": "oxygen concentrator"},
        )
        self.tag(ticket, rasa, ["medical"], 26)
        self.reply(
            ticket,
            rasa,
            "Laba diena! Aldona Petrauskienė įtraukta į klientų, kuriems elektra gyvybiškai "
            "svarbi, sąrašą. Apie planinius darbus informuosime iš anksto telefonu, o gedimo "
            "atveju jūsų adresas bus prioritetinis.",
            28,
            status=Status.RESOLVED,
        )
        self.set_status(ticket, Status.CLOSED, None, 28 + 72 * 60 + 4)

        self.begin("now")
        ticket = self.receive(
            aldona,
            "whatsapp",
            "Vėl nėra elektros!! Mama prie deguonies koncentratoriaus, baterijos liko 2 valandoms",
            0,
        )
        self.reply(
            ticket,
            alice,
            "Aldona, jūsų adresas pažymėtas kaip prioritetinis. Brigada jau važiuoja, o "
            "generatorių atveš per valandą. Jei baterija senka — nedelsdami skambinkite 112.",
            4,
        )
        self.call(
            aldona,
            alice,
            "Called the son: concentrator battery ~2h. Crew 4 prioritised, generator van "
            "requested. Advised to call 112 if the battery runs low.",
            9,
            ticket=ticket,
        )
        self.tag(ticket, alice, ["medical", "callback", "storm"], 10)
        self.note(ticket, alice, "Life-support customer — crew 4 told to go there first.", 11)

    def whatsapp_then_sms(self) -> None:
        joao = self.agents["joao"]
        ana = self.new_customer("pt", gender="f")
        ana.name, ana.first = "Ana Beatriz Souza", "Ana"
        self.begin("live")
        wa = self.receive(
            ana, "whatsapp", "Boa noite, estamos sem luz na Rua das Flores 112 desde as 19h", 0
        )
        sms = self.receive(
            ana,
            "sms",
            "Mandei mensagem no WhatsApp e ninguém responde!! Continuamos sem luz na Rua das "
            "Flores 112",
            38,
        )
        sms = self.transfer(sms, None, 38.5, team="outages")
        self.reply(
            wa,
            joao,
            "Olá Ana! Há uma avaria no posto de transformação da Rua das Flores; a equipa já "
            f"está no local. Previsão de reposição: por volta das 22h. Pedido #{wa.pk}.",
            41,
        )
        self.reply(
            sms,
            joao,
            f"Olá Ana, já lhe respondemos no WhatsApp (pedido #{wa.pk}). Fechamos este pedido "
            "para não duplicar. Obrigado!",
            42,
            status=Status.RESOLVED,
        )
        self.tag(sms, joao, ["duplicate"], 42.5)
        self.note(wa, joao, f"A cliente escreveu também por SMS (#{sms.pk}), respondido lá.", 43)
        self.receive(ana, "whatsapp", "ainda sem luz… já passa das 22h", 110)

    def telegram_then_sms(self) -> None:
        dmitri, rasa = self.agents["dmitri"], self.agents["rasa"]
        irina = self.new_customer("ru", gender="f")
        irina.name, irina.first = "Ирина Ковалёва", "Ирина"
        account = self.account_number("ru")
        self.begin("recent")
        tg = self.receive(
            irina,
            "telegram",
            f"Показания 04512, лс {account}",
            0,
            share_phone=True,  # she pressed "share my contact" in the bot's menu
        )
        tg = self.transfer(tg, None, 0.3, team="meter-readings")
        self.update_contact(irina, dmitri, 6, accounts=[account])
        self.reply(
            tg,
            dmitri,
            "Спасибо, Ирина! Показания 04512 приняты, счёт будет выставлен по ним.",
            7,
            status=Status.RESOLVED,
        )
        sms = self.receive(
            irina, "sms", "Я же оплатила 3-го! Почему пришло смс с напоминанием о долге?", 2 * 1440
        )
        self.reply(sms, rasa, self.canned_text("payment-received", "ru", sms, rasa), 2 * 1440 + 35)
        self.receive(irina, "sms", "Спасибо!", 2 * 1440 + 41)
        self.reply(
            sms,
            rasa,
            self.canned_text("closing", "ru", sms, rasa),
            2 * 1440 + 44,
            status=Status.RESOLVED,
        )

    def email_then_widget(self) -> None:
        bob = self.agents["bob"]
        sarah = self.new_customer("en", gender="f")
        sarah.name, sarah.first = "Sarah Mitchell", "Sarah"
        account = self.account_number("en")
        self.begin("today")
        thread = "email:sarah"
        mail = self.receive(
            sarah,
            "email",
            f"My bill for March is $412 on account {account}. We were away for two weeks of "
            "that month and I normally pay around $90. I'd like this looked at before the "
            "direct debit goes out on the 28th.",
            0,
            subject=f"Bill dispute - account {account}",
            thread=(thread, ""),
        )
        self.update_contact(sarah, bob, 50, accounts=[account])
        self.tag(mail, bob, ["estimated-bill", "complaint"], 51)
        self.reply(
            mail,
            bob,
            "Hi Sarah, I've checked: March was billed on an estimated reading because we "
            "couldn't access the meter. If you send today's reading I'll rebill it before the "
            f"direct debit. Reference #{mail.pk}. — Bob",
            55,
            status=Status.PENDING,
        )
        chat = self.receive(
            sarah,
            "widget",
            "Hi, I emailed about my bill this morning, the meter reading is 45120. Is that "
            "enough to fix it?",
            190,
            email=True,  # the chat form asked for her e-mail: the core links it to her
        )
        chat = self.transfer(chat, None, 190.5, team="billing")
        self.call(
            sarah,
            bob,
            "Called Sarah back: confirmed reading 45120, rebilled March ($96.40). Direct debit "
            "amended.",
            200,
            ticket=chat,
        )
        self.reply(
            chat,
            bob,
            f"Thanks Sarah — that's all I needed. March is rebilled at $96.40 and I've noted it "
            f"on your email ticket #{mail.pk} too.",
            205,
            status=Status.RESOLVED,
        )
        self.reply(
            mail,
            bob,
            "Following our call: your March bill is corrected to $96.40 and the direct debit "
            "amended. Sorry for the trouble!",
            207,
            status=Status.RESOLVED,
        )
        self.tag(mail, bob, ["callback"], 208)

    def manual_merge(self) -> None:
        rasa = self.agents["rasa"]
        tomas = self.new_customer("lt", gender="m")
        tomas.name, tomas.first = "Tomas J.", "Tomas"
        account = self.account_number("lt")
        self.begin("recent")
        fb = self.receive(
            tomas,
            "messenger",
            "Sveiki, ar apsimoka pereiti prie naktinio tarifo? Turiu elektromobilį",
            0,
        )
        messenger_contact = self.contact_of(tomas)
        fb = self.transfer(fb, None, 0.4, team="contracts")
        self.reply(fb, rasa, self.canned_text("tariff-night", "lt", fb, rasa), 22)
        # The same man from his work mailbox: no shared identity, so the core keeps him apart.
        tomas.email = f"tomas.jankauskas@{self.pick(data.EMAIL_DOMAINS)}"
        tomas.name = "Tomas Jankauskas"
        mail = self.receive(
            tomas,
            "email",
            f"Rašiau per Messenger dėl naktinio tarifo. Mano abon. nr. {account}, prašau "
            "pakeisti tarifą nuo kito mėnesio.",
            95,
            subject="Tarifo keitimas",
        )
        actions.do_merge_contacts(
            self.contact_of(tomas),
            Contact.objects.get(pk=messenger_contact.pk),
            actor=rasa,
            reason=f"Same person: confirmed account {account} on Messenger and by e-mail",
        )
        self.mark(110)
        self.update_contact(tomas, rasa, 111, accounts=[account])
        mail = self.transfer(mail, None, 112, team="contracts")
        self.reply(
            mail,
            rasa,
            "Laba diena, Tomai! Nuo kito mėnesio 1 d. jums taikomas dviejų laiko zonų tarifas. "
            "Jūsų skaitiklis jau tinkamas, nieko keisti nereikia.",
            118,
            status=Status.RESOLVED,
        )
        self.set_status(fb, Status.RESOLVED, rasa, 119)
        self.tag(mail, rasa, ["night-rate"], 120)

    def x_influencer(self) -> None:
        grace, carol = self.agents["grace"], self.agents["carol"]
        jen = self.new_customer("en", gender="f")
        jen.name, jen.first = "Jen Alvarez", "Jen"
        jen.ids["x"] = "gridwatch_jen"
        jen.followers, jen.verified = 48_200, True
        self.begin("live")
        thread = ("x:gridwatch_jen", "")
        post = self.receive(
            jen,
            "x",
            "@DemoEnergy no power AGAIN on Maple Avenue, third time this week and not a word "
            "from you. #demoenergy",
            0,
            thread=thread,
            is_public=True,
        )
        self.set_priority(
            post, "urgent", carol, "public post by a verified account with 48k followers", 3
        )
        self.assign(post, grace, carol, 3.5)
        self.reply(
            post,
            grace,
            "@gridwatch_jen We're sorry, Jen. A fault on the Maple Avenue feeder is being "
            "repaired, estimate 7:30pm. Could you DM us your address so we can check your "
            "supply?",
            6,
        )
        self.tag(post, grace, ["social", "complaint"], 6.5)
        self.note(post, grace, "Public post, 48k followers — answered publicly, moving to DM.", 7)
        self.receive(
            jen,
            "x",
            "@DemoEnergy DM sent. Third time this week though.",
            15,
            thread=("x:gridwatch_jen", self.last_pid),
            is_public=True,
        )

    def vip_council_member(self) -> None:
        carol, dmitri = self.agents["carol"], self.agents["dmitri"]
        olga = self.new_customer("ru", gender="f")
        olga.name, olga.first = "Ольга Лебедева", "Ольга Викторовна"
        self.begin("live")
        ticket = self.receive(
            olga,
            "telegram",
            "Добрый вечер. Весь микрорайон Юбилейный без света уже 5 часов, жители звонят мне. "
            "Когда будет свет? Депутат городской думы О. В. Лебедева",
            0,
        )
        self.update_contact(
            olga,
            carol,
            4,
            tier="vip",
            notes="City council member (district 7). Keep informed proactively.",
        )
        self.set_priority(ticket, "urgent", carol, "VIP: city council member, whole district", 5)
        self.assign(ticket, dmitri, carol, 5.5)
        self.tag(ticket, carol, ["vip", "storm"], 6)
        self.reply(
            ticket,
            dmitri,
            "Ольга Викторовна, добрый вечер! В микрорайоне Юбилейный повреждён кабель 10 кВ, "
            "работают две бригады. Ориентировочно свет дадут к 23:00. Буду держать вас в курсе.",
            12,
        )
        self.receive(olga, "telegram", "Спасибо. Жду новостей, люди очень недовольны", 20)

    def business_bakery(self) -> None:
        joao = self.agents["joao"]
        bakery = self.new_customer("pt", gender="m")
        bakery.name, bakery.first = "Padaria Pão Dourado, Lda.", "Sr. Carlos"
        bakery.email = "encomendas@paodourado.example"
        account = self.account_number("pt")
        self.begin("today")
        ticket = self.receive(
            bakery,
            "email",
            f"Somos a Padaria Pão Dourado (CPE {account}). Recebemos aviso de trabalhos "
            "programados para dia 14 das 9h às 15h. Temos os fornos e as câmaras frigoríficas a "
            "funcionar — é possível reagendar para domingo? Uma paragem a meio da semana custa-nos "
            "a produção do dia.",
            0,
            subject="Trabalhos programados dia 14 - Padaria Pão Dourado",
        )
        ticket = self.transfer(ticket, None, 0.5, team="contracts")
        self.update_contact(bakery, joao, 30, accounts=[account], tier="business", value="18400.00")
        self.tag(ticket, joao, ["planned-work"], 31)
        self.note(ticket, joao, "Asked the planning team (Setúbal) whether Sunday is possible.", 33)
        self.reply(
            ticket,
            joao,
            "Bom dia Sr. Carlos, pedimos à equipa de planeamento para verificar se é possível "
            "fazer os trabalhos ao domingo. Respondemos até amanhã ao fim do dia.",
            40,
            status=Status.PENDING,
        )

    def business_factory(self) -> None:
        mei = self.agents["mei"]
        factory = self.new_customer("zh", gender="m")
        factory.name, factory.first = "华信电子有限公司", "陈经理"
        factory.email = "facility@huaxin-electronics.example"
        account = self.account_number("zh")
        self.begin("past")
        old = self.receive(
            factory,
            "email",
            "我司计划新增两条生产线，需要把用电容量从200千伏安增加到400千伏安，是否需要签新的供电合同？"
            f"户号{account}。",
            0,
            subject="增容申请",
        )
        old = self.transfer(old, None, 1, team="contracts")
        self.update_contact(
            factory, mei, 60, accounts=[account], tier="business", value="250000.00"
        )
        self.reply(
            old,
            mei,
            "陈经理您好，增容需要签订新的供电合同补充协议。申请表和所需资料清单已发到您的邮箱，"
            "资料齐全后10个工作日内完成现场勘查。",
            75,
            status=Status.RESOLVED,
        )
        self.set_status(old, Status.CLOSED, mei, 80)

        self.begin("live")
        ticket = self.receive(
            factory,
            "email",
            "我司位于南山区科技园，今天上午10点起突然停电，两条生产线全部停工，请尽快处理！",
            0,
            subject="紧急：工厂停电",
        )
        ticket = self.transfer(ticket, None, 1, team="outages")
        self.reply(
            ticket,
            mei,
            "陈经理您好！科技园片区10千伏线路故障，抢修队已到现场，预计14:00前恢复供电。"
            f"工单号 #{ticket.pk}，恢复后我们会第一时间通知您。",
            9,
        )
        self.call(
            factory,
            mei,
            "Called the facility manager: two production lines down, no safety issue. Crew on "
            "site, ETA 14:00.",
            14,
            ticket=ticket,
        )
        self.tag(ticket, mei, ["callback"], 15)

    def safety_false_alarm(self) -> None:
        dmitri, carol = self.agents["dmitri"], self.agents["carol"]
        pavel = self.new_customer("ru", gender="m")
        self.begin("recent")
        ticket = self.receive(
            pavel, "telegram", "На ул. Мира возле стройки искры летят, это провод оборвался?", 0
        )
        self.reply(ticket, dmitri, self.canned_text("safety-wire", "ru", ticket, dmitri), 3)
        self.tag(ticket, dmitri, ["safety"], 3.5)
        self.receive(
            pavel, "telegram", "А, нет, извините 😅 это сварка на стройке, провода целые", 11
        )
        self.set_priority(
            ticket, "normal", carol, "false alarm: welding at a construction site, no hazard", 13
        )
        self.reply(
            ticket,
            dmitri,
            "Спасибо, что уточнили! Хорошо, что всё в порядке. Если увидите оборванный провод — "
            "сразу пишите сюда.",
            15,
            status=Status.RESOLVED,
        )

    def safety_now(self) -> None:
        for lang, channel in (("zh", "whatsapp"), ("en", "sms")):
            customer = self.new_customer(lang)
            self.begin("now")
            self.play("safety", customer, channel, "new", storm=True)

    def failed_whatsapp_reply(self) -> None:
        bob = self.agents["bob"]
        customer = self.new_customer("pt", gender="f")
        self.begin("today")
        ticket = self.receive(
            customer,
            "whatsapp",
            "Boa tarde, recebi aviso de corte, não consigo pagar os 380 € de uma vez. Posso pagar "
            "em prestações?",
            0,
        )
        ticket = self.transfer(ticket, None, 0.5, team="billing")
        self.tag(ticket, bob, ["payment-plan"], 25 * 60)
        message = self.reply(
            ticket,
            bob,
            self.canned_text("payment-plan", "pt", ticket, bob),
            25 * 60 + 3,
            status=Status.PENDING,
        )
        # More than 24 h after her last message: WhatsApp refuses a free-form reply.
        self.failed_messages.append(message.pk)
        self.note(
            ticket,
            bob,
            "WhatsApp rejected the reply (24-hour window closed). Sending the payment-plan "
            "template instead / call her.",
            25 * 60 + 10,
        )

    # ------------------------------------------------------------------ the live moment

    def agents_take_next(self) -> None:
        """Two online agents press "take next" a minute ago, as they would all day."""
        for username in ("alice", "joao"):
            agent = Agent.objects.get(pk=self.agents[username].pk)
            try:
                actions.do_take_next(agent)
            except Conflict:
                continue  # already at capacity
            self.mark(1.0, absolute=True)

    # ------------------------------------------------------------------ backdating

    def backdate(self) -> None:
        """Move every row the stories made into the past.

        Demo seeding only: the actions stamp timezone.now(), which would make a freshly
        seeded helpdesk look as if 300 customers wrote in the same second. Real history is
        only ever written by actions at the moment it happens; here each action call was
        recorded as a step (story, minutes into it), and this gives every story a start time
        in the past ~10 days and rewrites the timestamp columns of the rows each step made,
        consistently (ticket times are derived from their own events and messages, SLA due
        times from the core's targets). It bypasses the actions on purpose: there is no
        action for "this happened yesterday", and there must not be one.
        """
        self.anchors = [self.now] * len(self.stories)
        events = list(
            TicketEvent.objects.filter(id__gt=self.watermarks["event"])
            .order_by("id")
            .values_list("id", "ticket_id", "contact_id", "verb", "from_value", "to_value", "data")
        )
        messages = list(
            Message.objects.filter(id__gt=self.watermarks["message"])
            .order_by("id")
            .values_list("id", "ticket_id", "direction", "is_internal", "author_kind")
        )
        message_step = self.steps_of(Message, [row[0] for row in messages])
        event_step = self.event_steps(
            events, dict(zip((m[0] for m in messages), message_step, strict=True))
        )
        tickets = {
            t.pk: t for t in Ticket.objects.filter(id__gt=self.watermarks["ticket"]).order_by("id")
        }
        ticket_story: dict[int, int] = {}
        for row, step in zip(events, event_step, strict=True):
            if row[3] == "ticket.created":
                ticket_story[row[1]] = self.steps[step].story

        # Pass 1: with every story starting "now", find how long each may have been waiting.
        derived = self.derive(tickets, events, event_step, messages, message_step)
        by_story: dict[int, list[int]] = {}
        for pk, story in ticket_story.items():
            by_story.setdefault(story, []).append(pk)
        for index, story in enumerate(self.stories):
            self.anchors[index] = self.anchor(story, by_story.get(index, []), tickets, derived)

        # Pass 2: the real times.
        derived = self.derive(tickets, events, event_step, messages, message_step)
        self.write(tickets, derived, events, event_step, messages, message_step)

    def steps_of(self, model: type[Model], pks: list[int]) -> list[int]:
        """The step of each row (in id order). A row no post_save announced (a bulk insert)
        belongs with the row before it."""
        known = self.step_of[model]
        steps: list[int] = []
        for pk in pks:
            steps.append(known.get(pk, steps[-1] if steps else 0))
        return steps

    def event_steps(self, events: list[tuple[Any, ...]], message_step: dict[int, int]) -> list[int]:
        """The step of each event. Receiving a message inserts its events in one statement
        (no post_save): they end with "message.received", whose message (saved one by one)
        knows its step; the events of the same insert just before it share that step."""
        known = self.step_of[TicketEvent]
        steps: list[int | None] = []
        for row in events:
            pk, verb, data = row[0], row[3], row[6] or {}
            step = known.get(pk)
            if step is None and verb == "message.received" and data.get("message") in message_step:
                step = message_step[data["message"]]
                # Unannounced events right before it came from the same receive.
                back = len(steps) - 1
                while back >= 0 and steps[back] is None:
                    steps[back] = step
                    back -= 1
            steps.append(step)
        resolved: list[int] = []
        for step in steps:
            resolved.append(step if step is not None else (resolved[-1] if resolved else 0))
        return resolved

    def step_time(self, step: int) -> datetime:
        s = self.steps[step]
        if s.story < 0:
            return self.now - timedelta(minutes=s.minutes)
        return self.anchors[s.story] + timedelta(minutes=s.minutes)

    def anchor(
        self,
        story: Story,
        pks: list[int],
        tickets: dict[int, Ticket],
        derived: dict[int, dict[str, Any]],
    ) -> datetime:
        """When the story starts, so its last step falls in its window and its open tickets
        are inside their SLA (except a few, so the overdue view is not empty)."""
        if story.window == "night":
            start_age = max(story.start_age or 0.0, story.last + 2)
            return self.now - timedelta(minutes=start_age)
        low, high = WINDOWS[story.window]
        if story.window in CLIPPED_WINDOWS:
            deadlines = []
            for pk in pks:
                if tickets[pk].status in ACTIVE_STATUSES:
                    due = derived[pk]["sla_due_at"] - self.now
                    first, _ = sla.targets(tickets[pk].priority)
                    deadlines.append((due.total_seconds() / 60, first.total_seconds() / 60))
            if deadlines:
                due, first = min(deadlines)
                room = due - story.last - 1
                if self.chance(OVERDUE_SHARE):
                    age = max(low, room + min(first, 120.0) * self.between(0.2, 1.5))
                    return self.now - timedelta(minutes=age + story.last)
                high = min(high, room)
        age = low if high <= low else self.between(low, high)
        return self.now - timedelta(minutes=age + story.last)

    def derive(
        self,
        tickets: dict[int, Ticket],
        events: list[tuple[Any, ...]],
        event_step: list[int],
        messages: list[tuple[Any, ...]],
        message_step: list[int],
    ) -> dict[int, dict[str, Any]]:
        """Each ticket's timestamps, from the times of its own events and messages, the way
        the actions set them (see actions._receive, do_reply, do_set_status and tickets.sla)."""
        state: dict[int, dict[str, Any]] = {pk: {"events": 0} for pk in tickets}
        for row, step in zip(events, event_step, strict=True):
            pk, verb, before, after = row[1], row[3], row[4], row[5]
            if pk not in state:
                continue
            at = self.step_time(step)
            s = state[pk]
            s["updated_at"] = at
            if verb == "ticket.created":
                s.update(created_at=at, start=at, waiting=at, resolved=None, closed=None)
            elif verb == "message.received":
                s["waiting"] = s.get("waiting") or at
            elif verb == "message.sent":
                s["waiting"] = None
                s.setdefault("first_response", at)
            elif verb == "ticket.reopened":
                s.update(resolved=None, start=at)
            elif verb == "ticket.status":
                if after in (Status.PENDING, Status.RESOLVED, Status.CLOSED):
                    s["waiting"] = None
                if after in (Status.RESOLVED, Status.CLOSED) and s.get("resolved") is None:
                    s["resolved"] = at
                if after == Status.CLOSED:
                    s["closed"] = at
                if before == Status.RESOLVED and after in (Status.OPEN, Status.PENDING):
                    s.update(resolved=None, start=at)
            elif verb == "ticket.assigned":
                s["assigned"] = at
        for row, step in zip(messages, message_step, strict=True):
            pk, internal = row[1], row[3]
            if pk in state and not internal:
                state[pk]["last_message"] = self.step_time(step)
        result: dict[int, dict[str, Any]] = {}
        for pk, ticket in tickets.items():
            s = state[pk]
            created = s["created_at"]
            first, resolve = sla.targets(ticket.priority)
            waiting = s.get("waiting") if ticket.waiting_since is not None else None
            if ticket.waiting_since is not None and waiting is None:
                waiting = s.get("last_message", created)
            resolution_due = s["start"] + resolve
            candidates = [resolution_due] + ([waiting + first] if waiting else [])
            result[pk] = {
                "created_at": created,
                "updated_at": s["updated_at"],
                "last_message_at": s.get("last_message", created),
                "waiting_since": waiting,
                "first_response_due": created + first,
                "resolution_due": resolution_due,
                "sla_due_at": min(candidates),
                "first_response_at": (s.get("first_response") or created)
                if ticket.first_response_at
                else None,
                "resolved_at": (s.get("resolved") or s["updated_at"])
                if ticket.resolved_at
                else None,
                "closed_at": (s.get("closed") or s["updated_at"]) if ticket.closed_at else None,
                "assigned_at": (s.get("assigned") or created) if ticket.assignee_id else None,
            }
        return result

    def write(
        self,
        tickets: dict[int, Ticket],
        derived: dict[int, dict[str, Any]],
        events: list[tuple[Any, ...]],
        event_step: list[int],
        messages: list[tuple[Any, ...]],
        message_step: list[int],
    ) -> None:
        event_time = {
            row[0]: self.step_time(step) for row, step in zip(events, event_step, strict=True)
        }
        update_rows(TicketEvent, ["created_at"], list(event_time.items()))

        failed = set(self.failed_messages)
        failure = (
            "(#131047) Re-engagement message: more than 24 hours have passed since the "
            "recipient last replied to the sender number."
        )
        message_rows = []
        message_time: dict[int, datetime] = {}
        for row, step in zip(messages, message_step, strict=True):
            pk, _, direction, internal, _author = row
            at = self.step_time(step)
            message_time[pk] = at
            if direction == Direction.IN:
                values = (at - timedelta(seconds=2), DeliveryStatus.RECEIVED, "")
            elif internal:
                values = (None, DeliveryStatus.NOT_SENT, "")
            elif pk in failed:
                values = (None, DeliveryStatus.FAILED, failure)
            elif self.now - at < timedelta(hours=1):
                values = (at + timedelta(seconds=3), DeliveryStatus.DELIVERED, "")
            else:
                values = (at + timedelta(seconds=3), DeliveryStatus.READ, "")
            message_rows.append((pk, at, *values))
        update_rows(
            Message, ["created_at", "sent_at", "delivery_status", "delivery_error"], message_rows
        )

        # The outbox: these replies went out when they were written (and nothing real may
        # ever send them: the demo's credentials are fake).
        delivery_rows = []
        for pk, message_id in Delivery.objects.filter(
            message_id__in=list(message_time)
        ).values_list("id", "message_id"):
            at = message_time[message_id]
            bad = message_id in failed
            delivery_rows.append(
                (
                    pk,
                    Delivery.State.FAILED if bad else Delivery.State.SENT,
                    1,
                    failure if bad else "",
                    at,
                    at + timedelta(seconds=3),
                    at,
                )
            )
        update_rows(
            Delivery,
            ["state", "attempts", "last_error", "created_at", "updated_at", "next_attempt_at"],
            delivery_rows,
        )

        fields = list(next(iter(derived.values())).keys()) if derived else []
        update_rows(
            Ticket,
            fields,
            [(pk, *(values[name] for name in fields)) for pk, values in derived.items()],
        )

        self.write_contacts(events, event_time, messages, message_time, tickets)
        last_assigned: dict[int, datetime] = {}
        for pk, _ticket, _contact, verb, _before, after, _data in events:
            if verb == "ticket.assigned" and isinstance(after, int):
                at = event_time[pk]
                last_assigned[after] = max(at, last_assigned.get(after, at))
        self.write_setup_times(last_assigned)

    def write_contacts(
        self,
        events: list[tuple[Any, ...]],
        event_time: dict[int, datetime],
        messages: list[tuple[Any, ...]],
        message_time: dict[int, datetime],
        tickets: dict[int, Ticket],
    ) -> None:
        contacts = {
            c.pk: c
            for c in Contact.objects.filter(id__gt=self.watermarks["contact"]).order_by("id")
        }
        first_seen: dict[int, datetime] = {}
        last_touched: dict[int, datetime] = {}
        identity_time: dict[str, datetime] = {}
        for pk, _ticket, contact_id, verb, _before, after, extra in events:
            at = event_time[pk]
            if contact_id in contacts:
                first_seen.setdefault(contact_id, at)
                last_touched[contact_id] = at
            if verb == "contact.created":
                for identity in extra.get("identities", []):
                    identity_time.setdefault(identity, at)
            elif verb == "contact.identity_added" and after:
                identity_time.setdefault(after, at)
            elif verb == "call.logged":
                started = at - timedelta(seconds=extra.get("duration", 0))
                Call.objects.filter(pk=extra["call"]).update(created_at=at, started_at=started)
            elif verb == "contact.merged":
                ContactMerge.objects.filter(pk=extra["merge"]).update(created_at=at)
        owner = {pk: t.contact_id for pk, t in tickets.items()}
        last_seen: dict[int, datetime] = {}
        for pk, ticket_id, direction, _internal, _author in messages:
            contact_id = owner.get(ticket_id)
            if direction == Direction.IN and contact_id is not None:
                at = message_time[pk]
                if contact_id not in last_seen or at > last_seen[contact_id]:
                    last_seen[contact_id] = at
        rows = []
        for pk, contact in contacts.items():
            created = first_seen.get(pk, self.now)
            updated = max(last_touched.get(pk, self.now), created)
            rows.append((pk, created, updated, last_seen.get(pk, contact.last_seen_at)))
        update_rows(Contact, ["created_at", "updated_at", "last_seen_at"], rows)
        identities = Identity.objects.filter(contact_id__in=contacts).values_list(
            "id", "kind", "value"
        )
        update_rows(
            Identity,
            ["created_at"],
            [
                (pk, identity_time[f"{kind}:{value}"])
                for pk, kind, value in identities
                if f"{kind}:{value}" in identity_time
            ],
        )

    def write_setup_times(self, last_assigned: dict[int, datetime]) -> None:
        """The organisation existed long before its tickets."""
        founded = self.now - timedelta(days=180)
        Team.objects.filter(pk__in=[t.pk for t in self.teams.values()]).update(created_at=founded)
        Channel.objects.filter(pk__in=[c.pk for c in self.channels.values()]).update(
            created_at=founded
        )
        update_rows(
            CannedResponse,
            ["updated_at"],
            [
                (canned.pk, self.now - timedelta(days=self.between(5, 60)))
                for canned in self.canned.values()
            ],
        )
        users = get_user_model()
        for index, agent in enumerate(self.agents.values()):
            online = agent.presence == "online"
            users.objects.filter(pk=agent.user_id).update(
                date_joined=founded + timedelta(days=index * 3),
                last_login=self.now - timedelta(minutes=self.between(5, 240)) if online else None,
            )
            Agent.objects.filter(pk=agent.pk).update(
                presence_changed_at=self.now - timedelta(minutes=self.between(3, 300)),
                last_assigned_at=last_assigned.get(agent.pk),
            )


def update_rows(model: type[Model], fields: list[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """`model.objects.filter(pk=row[0]).update(**dict(zip(fields, row[1:])))` for every row,
    as one parameterized UPDATE run by executemany. bulk_update's CASE expressions cost
    seconds for a few thousand rows on SQLite; this costs milliseconds on both backends."""
    if not rows:
        return
    qn = connection.ops.quote_name
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{qn(column.column)} = %s" for column in columns)
    # Identifiers come from the model's own metadata; every value is a parameter.
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608
    params = [
        [
            column.get_db_prep_save(value, connection)
            for column, value in zip(columns, row[1:], strict=True)
        ]
        + [row[0]]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def demo_summary() -> dict[str, Counter[str]]:
    """Counts of what the database holds, for the command's closing report."""
    tickets = Ticket.objects.all()
    now = timezone.now()
    return {
        "language": Counter(tickets.values_list("language", flat=True)),
        "status": Counter(tickets.values_list("status", flat=True)),
        "priority": Counter(Priority(p).label for p in tickets.values_list("priority", flat=True)),
        "channel": Counter(tickets.values_list("channel__kind", flat=True)),
        "queue": Counter(
            "overdue" if due < now else "within SLA"
            for due in tickets.filter(status__in=ACTIVE_STATUSES).values_list(
                "sla_due_at", flat=True
            )
        ),
    }
