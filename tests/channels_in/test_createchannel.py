from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from channels_in.models import Channel

pytestmark = pytest.mark.django_db

CREDS = json.dumps({"bot_token": "123:SECRET-BOT-TOKEN", "secret_token": "hook-secret"})


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("createchannel", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_channel_and_prints_its_webhook_url_but_never_its_secrets(outages, settings):
    settings.SITE_URL = "https://helpdesk.utility.example"
    output = run(
        "--kind",
        "telegram",
        "--key",
        "tg-night",
        "--name",
        "Night bot",
        "--credentials",
        CREDS,
        "--team",
        "outages",
    )
    channel = Channel.objects.get(key="tg-night")
    assert channel.credentials["bot_token"] == "123:SECRET-BOT-TOKEN"
    assert channel.default_team == outages
    assert "https://helpdesk.utility.example/hooks/telegram/tg-night/" in output
    assert "SECRET-BOT-TOKEN" not in output and "hook-secret" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--credentials", "{nope"], "not valid JSON"),
        (["--credentials", "[1]"], "must be a JSON object"),
        (["--credentials", "{}"], "needs credentials: bot_token, secret_token"),
        (["--team", "nobody"], "no team with slug"),
    ],
)
def test_it_refuses_bad_input_with_a_specific_message(db, args, message):
    base = ["--kind", "telegram", "--key", "tg-x", "--name", "X", "--credentials", CREDS]
    with pytest.raises(CommandError, match=message):
        run(*base, *args)
    assert not Channel.objects.exists()


def test_it_refuses_a_duplicate_key_unless_updating(db):
    run("--kind", "telegram", "--key", "tg-x", "--name", "X", "--credentials", CREDS)
    with pytest.raises(CommandError, match="exists"):
        run("--kind", "telegram", "--key", "tg-x", "--name", "X", "--credentials", CREDS)
    run("--kind", "telegram", "--key", "tg-x", "--name", "Renamed", "--update")
    channel = Channel.objects.get(key="tg-x")
    assert channel.name == "Renamed" and channel.credentials["secret_token"] == "hook-secret"
