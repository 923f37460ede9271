"""Realistic, correctly signed platform webhooks: what the demo and the benchmarks post.

Each webhook is built the way the platform really sends it (the same shapes as the fixtures
under tests/channels_in/fixtures/, written from each platform's documentation) and signed
with the channel's own credentials through the adapter's `sign()`. Customers are a stable pool
per run, so follow-ups thread onto their tickets and the same phone writes on WhatsApp and SMS.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import urlencode

from django.utils import timezone

from tickets.management import demo_data

from .models import Channel
from .registry import adapter_for

SIMULATED_KINDS = (
    "telegram",
    "whatsapp",
    "messenger",
    "instagram",
    "x",
    "viber",
    "vk",
    "sms",
    "email",
)
# Weighted like a utility's inbox: outages and bills first, a few safety reports.
TOPICS = (
    ("outage",) * 4
    + ("bill",) * 3
    + ("meter",) * 2
    + ("paid", "tariff", "contract", "maintenance", "debt", "safety")
)


@dataclass(frozen=True)
class Hook:
    kind: str
    path: str
    body: bytes
    headers: dict[str, str]
    customer: int
    platform_id: str  # the id dedupe will see, for loss and duplicate accounting


@dataclass(frozen=True)
class Persona:
    index: int
    language: str
    first: str
    last: str
    phone: str  # E.164 without "+" (the WhatsApp wa_id form)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}".strip()


class Simulator:
    def __init__(
        self,
        channels: list[Channel],
        *,
        base_url: str,
        seed: int = 1,
        customers: int = 300,
        run: str | None = None,
    ) -> None:
        usable = [c for c in channels if c.kind in SIMULATED_KINDS and adapter_for(c.kind)]
        if not usable:
            raise ValueError("no channel of a kind the simulator can post to")
        self.channels = usable
        self.base_url = base_url.rstrip("/")
        self.rng = random.Random(seed)
        self.run = run or uuid.uuid4().hex[:8]
        self.counter = 0
        # Platform ids unique to this run, so a second run is not taken for redeliveries.
        self.base_id = int(self.run, 16) % 10**9 * 10**6
        self.personas = [self._persona(i) for i in range(customers)]

    # ----------------------------------------------------------------- people and texts

    def _persona(self, index: int) -> Persona:
        rng = random.Random(f"{self.run}-{index}")
        language = rng.choice(demo_data.LANGUAGES)
        names = demo_data.NAMES[language]
        female = rng.random() < 0.5 or not names.get("m_first")
        first = rng.choice(names["f_first"] if female else names["m_first"])[0]
        last_names = (names.get("f_last") if female else names.get("m_last")) or names["f_last"]
        last = rng.choice(last_names)[0]
        prefix = {"ru": "7912", "pt": "35191", "lt": "3706", "en": "1555", "zh": "86138"}[language]
        phone = prefix + f"{rng.randrange(10**6, 10**7)}"[: 11 - len(prefix) + 1]
        return Persona(index, language, first, last, phone)

    def _text(self, persona: Persona, follow_up: bool) -> str:
        topic = self.rng.choice(TOPICS)
        texts = demo_data.TEXTS.get(topic, demo_data.TEXTS["outage"]).get(persona.language, {})
        pool = (texts.get("follow") or texts.get("still")) if follow_up else texts.get("open")
        template = self.rng.choice(pool or ["?"])
        places = demo_data.PLACES.get(persona.language, {})
        values: dict[str, Any] = defaultdict(str)
        values.update(
            street=self.rng.choice(places.get("street", ["Main St"])),
            town=self.rng.choice(places.get("town", ["Springfield"])),
            house=self.rng.randrange(1, 120),
            flat=self.rng.randrange(1, 90),
            hour=self.rng.randrange(5, 23),
            reading=self.rng.randrange(10_000, 99_999),
            account=f"{self.rng.randrange(10**7, 10**8)}",
            amount=self.rng.randrange(20, 400),
            name=persona.first,
        )
        try:
            return template.format_map(values)
        except (ValueError, IndexError, KeyError):
            return template

    # ----------------------------------------------------------------- webhooks

    def next(self, *, follow_up_rate: float = 0.3) -> Hook:
        channel = self.rng.choice(self.channels)
        persona = self.rng.choice(self.personas)
        return self.hook_for(channel, persona, follow_up=self.rng.random() < follow_up_rate)

    def hook_for(self, channel: Channel, persona: Persona, *, follow_up: bool = False) -> Hook:
        self.counter += 1
        n = self.counter
        text = self._text(persona, follow_up)
        build = getattr(self, f"_{channel.kind}")
        body, content_type = build(channel, persona, text, n)
        path = f"/hooks/{channel.kind}/{channel.key}/"
        adapter = adapter_for(channel.kind)
        if adapter is None:
            raise ValueError(f"no adapter for {channel.kind}")
        headers = {
            "Content-Type": content_type,
            **adapter.sign(channel, body, self.base_url + path),
        }
        platform_id = adapter.event_id(
            channel, adapter.redact(channel, body), {"content_type": content_type, "query": ""}
        )
        return Hook(channel.kind, path, body, headers, persona.index, platform_id)

    def _uid(self, n: int) -> str:
        return f"{self.run}{n:09d}"

    @staticmethod
    def _json(data: dict[str, Any]) -> bytes:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _telegram(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        user_id = 500_000_000 + p.index
        update_id = self.base_id + n
        user = {
            "id": user_id,
            "is_bot": False,
            "first_name": p.first,
            "last_name": p.last,
            "language_code": p.language,
        }
        body = {
            "update_id": update_id,
            "message": {
                "message_id": n,
                "from": user,
                "chat": {"id": user_id, "first_name": p.first, "type": "private"},
                "date": int(time.time()),
                "text": text,
            },
        }
        return self._json(body), "application/json"

    def _whatsapp(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        wamid = f"wamid.SIM{self._uid(n)}"
        number = str(channel.credentials.get("phone_number_id") or "")
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "37052000000",
                                    "phone_number_id": number,
                                },
                                "contacts": [{"profile": {"name": p.name}, "wa_id": p.phone}],
                                "messages": [
                                    {
                                        "from": p.phone,
                                        "id": wamid,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        return self._json(body), "application/json"

    def _messenger(
        self, channel: Channel, p: Persona, text: str, n: int, *, obj: str = "page"
    ) -> tuple[bytes, str]:
        page = str(
            channel.settings.get("page_id")
            or channel.settings.get("instagram_id")
            or "1067280970047460"
        )
        mid = f"m_SIM{self._uid(n)}"
        now_ms = int(time.time() * 1000)
        body = {
            "object": obj,
            "entry": [
                {
                    "time": now_ms,
                    "id": page,
                    "messaging": [
                        {
                            "sender": {"id": str(7_000_000_000_000_000 + p.index)},
                            "recipient": {"id": page},
                            "timestamp": now_ms,
                            "message": {"mid": mid, "text": text},
                        }
                    ],
                }
            ],
        }
        return self._json(body), "application/json"

    def _instagram(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        return self._messenger(channel, p, text, n, obj="instagram")

    def _x(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        brand = str(channel.settings.get("user_id") or "1459032145")
        sender = str(3_000_000_000 + p.index)
        event_id = f"18{self._uid(n)}"
        body = {
            "for_user_id": brand,
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": event_id,
                    "created_timestamp": str(int(time.time() * 1000)),
                    "message_create": {
                        "target": {"recipient_id": brand},
                        "sender_id": sender,
                        "message_data": {
                            "text": text,
                            "entities": {
                                "hashtags": [],
                                "symbols": [],
                                "user_mentions": [],
                                "urls": [],
                            },
                        },
                    },
                }
            ],
            "users": {
                sender: {
                    "id": sender,
                    "name": p.name,
                    "screen_name": f"user{p.index}",
                    "protected": False,
                    "verified": False,
                    "followers_count": self.rng.randrange(0, 5000),
                },
                brand: {
                    "id": brand,
                    "name": "Support",
                    "screen_name": "Support",
                    "verified": True,
                    "protected": False,
                    "followers_count": 120000,
                },
            },
        }
        return self._json(body), "application/json"

    def _viber(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        token = self.base_id + n
        body = {
            "event": "message",
            "timestamp": int(time.time() * 1000),
            "message_token": token,
            "sender": {
                "id": f"SIM{p.index:06d}vIbErId==",
                "name": p.name,
                "language": p.language,
                "country": "LT",
                "api_version": 10,
            },
            "message": {"type": "text", "text": text},
            "silent": False,
        }
        return self._json(body), "application/json"

    def _vk(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        from_id = 400_000_000 + p.index
        event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.run}-{n}").hex
        body = {
            "group_id": _number_if_numeric(str(channel.credentials.get("group_id") or "0")),
            "type": "message_new",
            "event_id": event_id,
            "v": "5.199",
            "object": {
                "message": {
                    "date": int(time.time()),
                    "from_id": from_id,
                    "id": n,
                    "out": 0,
                    "attachments": [],
                    "conversation_message_id": n,
                    "fwd_messages": [],
                    "important": False,
                    "is_hidden": False,
                    "peer_id": from_id,
                    "random_id": 0,
                    "text": text,
                },
                "client_info": {
                    "button_actions": ["text"],
                    "keyboard": True,
                    "inline_keyboard": True,
                    "lang_id": 0,
                },
            },
            # VK signs nothing: the community's secret travels in the body.
            "secret": str(channel.credentials.get("secret") or ""),
        }
        return self._json(body), "application/json"

    def _sms(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        sid = f"SM{uuid.uuid5(uuid.NAMESPACE_URL, f'{self.run}-{n}').hex}"
        account = str(channel.credentials.get("account_sid") or "AC" + "0" * 32)
        form = {
            "ToCountry": "LT",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": text,
            "To": str(channel.credentials.get("from_number") or "+37066000111"),
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": account,
            "From": "+" + p.phone,
            "ApiVersion": "2010-04-01",
        }
        return urlencode(form).encode(), "application/x-www-form-urlencoded"

    def _email(self, channel: Channel, p: Persona, text: str, n: int) -> tuple[bytes, str]:
        message = EmailMessage()
        address = f"customer{p.index}@{self.rng.choice(demo_data.EMAIL_DOMAINS)}"
        message["From"] = formataddr((p.name, address))
        message["To"] = str(channel.credentials.get("from_address") or "support@utility.example")
        message["Subject"] = text.split(".")[0][:70] or "Question"
        message["Date"] = format_datetime(timezone.now())
        message["Message-ID"] = f"<sim-{self._uid(n)}@mail.example>"
        message.set_content(text)
        return message.as_bytes(), "message/rfc822"


def _number_if_numeric(value: str) -> int | str:
    # VK sends group_id as a number; a demo channel's made-up id may not be one.
    return int(value) if value.isdigit() else value
