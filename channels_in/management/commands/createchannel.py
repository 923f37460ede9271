"""`createchannel --kind telegram --key tg-main --name "Telegram" --credentials '{...}'`

Creates (or with --update, changes) a channel and prints its webhook URL. Credentials are
checked against what the platform's adapter needs and never printed back.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from channels_in.models import Channel, ChannelKind
from channels_in.registry import adapter_for
from tickets.models import Team


def _json_object(raw: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--{what} is not valid JSON: {exc.msg} at character {exc.pos}") from exc
    if not isinstance(value, dict):
        raise CommandError(f'--{what} must be a JSON object, like \'{{"name": "value"}}\'')
    return value


class Command(BaseCommand):
    help = "Create a channel (one connected account or profile) and print its webhook URL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", required=True, choices=ChannelKind.values)
        parser.add_argument("--key", required=True, help="URL-safe key used in the webhook path")
        parser.add_argument("--name", required=True)
        parser.add_argument("--credentials", default="{}", help="JSON object of platform secrets")
        parser.add_argument(
            "--channel-settings",
            dest="channel_settings",
            default="{}",
            help="JSON object of channel settings (listening rules, groups, bot flows)",
        )
        parser.add_argument("--team", help="slug of the default team for new tickets")
        parser.add_argument("--update", action="store_true", help="change an existing channel")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["key"]
        try:
            validate_slug(key)
        except ValidationError as exc:
            raise CommandError("--key may only hold letters, digits, '-' and '_'") from exc
        credentials = _json_object(options["credentials"], "credentials")
        channel_settings = _json_object(options["channel_settings"], "channel-settings")
        adapter = adapter_for(options["kind"])
        if adapter is not None:
            missing = [n for n in adapter.credential_names if not credentials.get(n)]
            if missing and not options["update"]:
                raise CommandError(
                    f"a {options['kind']} channel needs credentials: {', '.join(missing)}"
                )
        team = None
        if options["team"]:
            team = Team.objects.filter(slug=options["team"]).first()
            if team is None:
                raise CommandError(f"no team with slug {options['team']!r}")

        with transaction.atomic():
            channel = Channel.objects.select_for_update().filter(key=key).first()
            if channel is not None and not options["update"]:
                raise CommandError(f"a channel with key {key!r} exists; pass --update to change it")
            if channel is None and options["update"]:
                raise CommandError(f"no channel with key {key!r} to update")
            if channel is not None and channel.kind != options["kind"]:
                raise CommandError(
                    f"channel {key!r} is a {channel.kind} channel, not {options['kind']}"
                )
            channel = channel or Channel(kind=options["kind"], key=key)
            channel.name = options["name"]
            if credentials or channel.pk is None:
                channel.credentials = {**channel.credentials, **credentials}
            if channel_settings:
                channel.settings = {**channel.settings, **channel_settings}
            if team is not None:
                channel.default_team = team
            channel.save()

        url = f"{settings.SITE_URL}/hooks/{channel.kind}/{channel.key}/"
        self.stdout.write(
            self.style.SUCCESS(
                f"{'Updated' if options['update'] else 'Created'} "
                f"{channel.kind} channel {channel.key!r}"
            )
        )
        self.stdout.write(f"Webhook URL: {url}")
        names = ", ".join(sorted(channel.credentials)) or "none"
        self.stdout.write(f"Credentials stored (values hidden): {names}")
