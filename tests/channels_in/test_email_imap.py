"""IMAP polling against a fake connection implementing the imaplib methods the poller calls
(RFC 3501 responses in imaplib's shapes)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import DatabaseError

from channels_in.email import imap, tasks
from channels_in.models import Channel, InboundEvent
from tests.channels_in.conftest import fixture_bytes
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


class FakeIMAP:
    """An IMAP mailbox: uid -> (raw bytes, flags), answering like imaplib.IMAP4."""

    def __init__(self, messages: list[bytes], *, keywords: bool = True) -> None:
        self.messages: dict[int, tuple[bytes, set[str]]] = {
            uid: (raw, set()) for uid, raw in enumerate(messages, start=101)
        }
        self.keywords = keywords
        self.selected = ""
        self.searches: list[tuple[str, ...]] = []
        self.stored_at_flag_time: list[bool] = []
        self.logged_out = False

    def add(self, raw: bytes) -> None:
        self.messages[max(self.messages, default=100) + 1] = (raw, set())

    def login(self, user: str, password: str) -> tuple[str, list[Any]]:
        return "OK", [b"LOGIN completed"]

    def select(self, mailbox: str = "INBOX", readonly: bool = False) -> tuple[str, list[Any]]:
        self.selected = mailbox
        return "OK", [str(len(self.messages)).encode()]

    def response(self, code: str) -> tuple[str, list[Any]]:
        if code == "PERMANENTFLAGS":
            flags = b"(\\Seen \\Answered \\Flagged \\Deleted \\Draft" + (
                b" \\*)" if self.keywords else b")"
            )
            return code, [flags]
        return code, [None]

    def uid(self, command: str, *args: Any) -> tuple[str, list[Any]]:
        command = command.upper()
        if command == "SEARCH":
            criteria = tuple(a for a in args if a is not None)
            self.searches.append(criteria)
            if criteria[0] == "UNSEEN":
                uids = [u for u, (_, f) in self.messages.items() if "\\Seen" not in f]
            else:
                assert criteria[0] == "UNKEYWORD"
                uids = [u for u, (_, f) in self.messages.items() if criteria[1] not in f]
            return "OK", [b" ".join(str(u).encode() for u in uids)]
        if command == "FETCH":
            uid = int(args[0])
            assert args[1] == "(BODY.PEEK[])"  # never BODY[] or RFC822: they set \Seen
            raw, _ = self.messages[uid]
            return "OK", [(f"1 (UID {uid} BODY[] {{{len(raw)}}}".encode(), raw), b")"]
        if command == "STORE":
            uid = int(args[0])
            assert args[1] == "+FLAGS"
            raw, flags = self.messages[uid]
            # The event row must exist when the message is flagged.
            self.stored_at_flag_time.append(InboundEvent.objects.filter(body=raw).exists())
            flags.update(args[2].strip("()").split())
            return "OK", [b"STORE completed"]
        raise AssertionError(f"unexpected command {command}")

    def logout(self) -> tuple[str, list[Any]]:
        self.logged_out = True
        return "BYE", [b"logging out"]

    def flags(self, uid: int) -> set[str]:
        return self.messages[uid][1]


@pytest.fixture
def imap_channel(email_channel: Channel) -> Channel:
    email_channel.credentials = {
        "inbound_token": "t",
        "from_address": "support@energy.example",
        "imap_host": "imap.energy.example",
        "imap_user": "support",
        "imap_password": "pw",
    }
    email_channel.settings = {"imap_folder": "Входящие"}
    email_channel.save()
    return email_channel


def corpus() -> list[bytes]:
    return [
        fixture_bytes("email", name)
        for name in (
            "ru_windows1251_outlook.eml",
            "zh_gb2312_gbk_foxmail.eml",
            "pt_iso88591_qp.eml",
            "ooo_auto_replied.eml",
        )
    ]


def poll(channel: Channel, fake: FakeIMAP, capture: Any, **kwargs: Any) -> imap.PollResult:
    with capture(execute=True):
        return imap.poll_mailbox(channel, connect=lambda _channel: fake, **kwargs)


def test_it_imports_new_messages_and_flags_them_only_after_storing(
    imap_channel, django_capture_on_commit_callbacks
):
    fake = FakeIMAP(corpus())
    result = poll(imap_channel, fake, django_capture_on_commit_callbacks)

    assert (result.found, result.stored, result.duplicates, result.flagged) == (4, 4, 0, 4)
    assert fake.selected == "&BBIERQQ+BDQETwRJBDgENQ-"
    assert fake.stored_at_flag_time == [True, True, True, True]
    assert all(fake.flags(uid) == {"\\Seen", "$HelpdeskImported"} for uid in fake.messages)
    assert fake.logged_out
    assert InboundEvent.objects.filter(status="processed").count() == 4
    assert Ticket.objects.count() == 3  # the out-of-office reply opened none
    event = InboundEvent.objects.get(platform_id__startswith="<2025110509")
    assert event.meta["source"] == "imap" and event.meta["uid"] == "102"
    assert Message.objects.filter(text__contains="朱镕路18号").exists()


def test_it_imports_nothing_on_a_second_poll(imap_channel, django_capture_on_commit_callbacks):
    fake = FakeIMAP(corpus())
    poll(imap_channel, fake, django_capture_on_commit_callbacks)
    again = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert (again.found, again.stored) == (0, 0)
    assert InboundEvent.objects.count() == 4

    fake.add(fixture_bytes("email", "zh_big5.eml"))
    third = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert (third.found, third.stored) == (1, 1)
    assert Ticket.objects.count() == 4


def test_it_searches_for_messages_without_its_keyword_since_the_channel_was_connected(
    imap_channel, django_capture_on_commit_callbacks
):
    fake = FakeIMAP(corpus())
    poll(imap_channel, fake, django_capture_on_commit_callbacks)
    criteria = fake.searches[0]
    assert criteria[:3] == ("UNKEYWORD", "$HelpdeskImported", "SINCE")
    # A message someone already read in webmail is still imported.
    fake.add(fixture_bytes("email", "zh_big5.eml"))
    fake.flags(max(fake.messages)).add("\\Seen")
    assert poll(imap_channel, fake, django_capture_on_commit_callbacks).stored == 1


def test_it_falls_back_to_unseen_when_the_server_refuses_keywords(
    imap_channel, django_capture_on_commit_callbacks
):
    fake = FakeIMAP(corpus(), keywords=False)
    result = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert fake.searches == [("UNSEEN",)]
    assert result.stored == 4
    assert all(fake.flags(uid) == {"\\Seen"} for uid in fake.messages)
    assert poll(imap_channel, fake, django_capture_on_commit_callbacks).found == 0


def test_it_takes_at_most_a_batch_per_poll(imap_channel, django_capture_on_commit_callbacks):
    fake = FakeIMAP(corpus())
    first = poll(imap_channel, fake, django_capture_on_commit_callbacks, batch=3)
    assert (first.found, first.stored) == (4, 3)
    second = poll(imap_channel, fake, django_capture_on_commit_callbacks, batch=3)
    assert (second.found, second.stored) == (1, 1)


def test_it_leaves_a_message_unflagged_when_storing_it_fails(
    imap_channel, django_capture_on_commit_callbacks, monkeypatch
):
    fake = FakeIMAP(corpus()[:2])
    real_store = imap.store_event
    calls = {"n": 0}

    def flaky_store(*args: Any, **kwargs: Any) -> int | None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise DatabaseError("the database went away")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(imap, "store_event", flaky_store)
    with pytest.raises(DatabaseError):
        poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert fake.flags(101) == {"\\Seen", "$HelpdeskImported"}
    assert fake.flags(102) == set()  # not stored, so not flagged: the next poll takes it
    assert fake.logged_out

    monkeypatch.setattr(imap, "store_event", real_store)
    result = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert (result.found, result.stored) == (1, 1)
    assert InboundEvent.objects.count() == 2


def test_it_flags_a_message_already_stored_by_the_webhook_without_duplicating_it(
    imap_channel, hook, django_capture_on_commit_callbacks
):
    body = fixture_bytes("email", "ru_windows1251_outlook.eml")
    hook("email", "mail", body, content_type="message/rfc822", Authorization="Bearer t")
    fake = FakeIMAP([body])
    result = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert (result.stored, result.duplicates, result.flagged) == (0, 1, 1)
    assert InboundEvent.objects.count() == 1 and Message.objects.count() == 1


def test_it_keeps_a_malformed_message_as_a_failed_event(
    imap_channel, django_capture_on_commit_callbacks
):
    fake = FakeIMAP([fixture_bytes("email", "malformed.eml")])
    result = poll(imap_channel, fake, django_capture_on_commit_callbacks)
    assert result.failed == 1 and fake.flags(101)
    event = InboundEvent.objects.get()
    assert event.status == "failed" and event.platform_id.startswith("invalid:")


def test_it_polls_every_imap_channel_and_survives_a_broken_one(
    imap_channel, telegram, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    broken = Channel.objects.create(
        kind="email",
        key="broken-mail",
        name="Broken mailbox",
        credentials={"from_address": "b@energy.example", "imap_host": "imap.broken.example"},
    )
    Channel.objects.create(kind="email", key="no-imap", name="Webhook only", credentials={})
    fake = FakeIMAP(corpus()[:1])

    def connect(channel: Channel) -> FakeIMAP:
        if channel.pk == broken.pk:
            raise OSError("connection refused")
        return fake

    monkeypatch.setattr(imap, "open_connection", connect)
    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        polled = tasks.poll_imap_channels.delay().get()
    assert polled == 2  # the two email channels with an IMAP host
    assert "broken-mail failed: OSError: connection refused" in caplog.text
    assert InboundEvent.objects.filter(channel=imap_channel).count() == 1
    assert Ticket.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Входящие", "&BBIERQQ+BDQETwRJBDgENQ-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("Support & Billing", '"Support &- Billing"'),
    ],
)
def test_it_encodes_mailbox_names_in_modified_utf7(name, encoded):
    assert imap.encode_mailbox(name) == encoded
