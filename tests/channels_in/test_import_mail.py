"""`manage.py import_mail` on an mbox file and a maildir made in tmp_path."""

from __future__ import annotations

import mailbox
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command, execute_from_command_line

from channels_in.models import Channel, InboundEvent
from tests.channels_in.conftest import fixture_bytes
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db

PEOPLE = (
    "ru_windows1251_outlook.eml",
    "ru_koi8r_thebat.eml",
    "zh_gb2312_gbk_foxmail.eml",
    "zh_big5.eml",
    "pt_iso88591_qp.eml",
    "lt_windows1257.eml",
)
MACHINES = ("ooo_auto_replied.eml", "newsletter_bulk.eml")


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def mail_channel(email_channel: Channel) -> Channel:
    email_channel.credentials = {"inbound_token": "t", "from_address": "support@energy.example"}
    email_channel.save(update_fields=["credentials"])
    return email_channel


def corpus() -> list[bytes]:
    return [fixture_bytes("email", name) for name in (*PEOPLE, *MACHINES, "malformed.eml")]


def make_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(str(path))
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()
    return path


def make_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_mail", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_an_mbox_and_adds_nothing_the_second_time(mail_channel, tmp_path):
    path = make_mbox(tmp_path / "support.mbox", corpus())

    out, err = run(str(path), "--channel", "mail")

    assert "9 messages read" in out
    assert "imported:               6" in out
    assert "duplicates:             0" in out
    assert "failed:                 1" in out
    assert "auto-replies ignored:   2 (auto-reply 1, bulk 1)" in out
    assert "malformed" in err
    assert Ticket.objects.count() == 6
    assert InboundEvent.objects.count() == 9
    assert Message.objects.filter(text__contains="Здравствуйте!").exists()
    assert Message.objects.filter(text__contains="許先生家裡停電了").exists()

    out, _ = run(str(path), "--channel", "mail")
    assert "imported:               0" in out
    assert "duplicates:             8" in out  # the malformed one is a failure again
    assert Ticket.objects.count() == 6
    assert InboundEvent.objects.count() == 9


def test_it_imports_a_maildir(mail_channel, tmp_path):
    path = make_maildir(tmp_path / "Maildir", corpus())
    out, _ = run(str(path), "--channel", "mail")
    assert "imported:               6" in out
    assert Ticket.objects.count() == 6
    out, _ = run(str(path), "--channel", "mail", "--format", "maildir")
    assert "duplicates:             8" in out
    assert Ticket.objects.count() == 6


def test_it_dedupes_against_what_the_webhook_already_stored(mail_channel, tmp_path, hook):
    body = fixture_bytes("email", "zh_big5.eml")
    hook("email", "mail", body, content_type="message/rfc822", Authorization="Bearer t")
    path = make_mbox(tmp_path / "one.mbox", [body])
    out, _ = run(str(path), "--channel", "mail")
    assert "duplicates:             1" in out
    assert Message.objects.count() == 1


def test_it_stops_at_the_limit(mail_channel, tmp_path):
    path = make_mbox(tmp_path / "support.mbox", corpus())
    out, _ = run(str(path), "--channel", "mail", "--limit", "2")
    assert "2 messages read" in out
    assert InboundEvent.objects.count() == 2


def test_it_can_leave_processing_to_the_workers(mail_channel, tmp_path, monkeypatch):
    enqueued: list[int] = []
    monkeypatch.setattr("channels_in.management.commands.import_mail.enqueue", enqueued.append)
    path = make_mbox(tmp_path / "support.mbox", corpus()[:3])
    out, _ = run(str(path), "--channel", "mail", "--enqueue")
    assert "enqueued:               3" in out
    assert len(enqueued) == 3
    assert InboundEvent.objects.filter(status="pending").count() == 3
    assert not Ticket.objects.exists()


def test_it_fails_clearly_for_a_missing_path(mail_channel, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run(str(tmp_path / "nope.mbox"), "--channel", "mail")


def test_it_fails_clearly_for_an_unknown_channel(mail_channel, tmp_path, telegram):
    path = make_mbox(tmp_path / "support.mbox", corpus()[:1])
    with pytest.raises(CommandError, match=r"no email channel with the key 'nope'.*mail"):
        run(str(path), "--channel", "nope")
    with pytest.raises(CommandError, match="no email channel"):
        run(str(path), "--channel", "tg-main")  # a channel, but not an email one


def test_it_refuses_a_folder_that_is_not_a_maildir(mail_channel, tmp_path):
    with pytest.raises(CommandError, match="not a maildir"):
        run(str(tmp_path), "--channel", "mail")


def test_it_exits_non_zero_from_the_command_line(mail_channel, tmp_path, capsys):
    argv = ["manage.py", "import_mail", str(tmp_path / "nope"), "--channel", "mail"]
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(argv)
    assert exited.value.code == 1
    assert "does not exist" in capsys.readouterr().err
