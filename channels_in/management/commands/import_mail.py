"""`manage.py import_mail <path> --channel <key>`: bring an mbox file or a maildir into an
email channel, e.g. the history of a mailbox the helpdesk takes over.

Each message is stored as an InboundEvent exactly as the webhook and IMAP store them, so
importing twice (or importing what IMAP already fetched) adds nothing, and then processed
in-process by the same function the worker runs (or enqueued with --enqueue).
"""

from __future__ import annotations

import mailbox
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from channels_in import processing
from channels_in.base import PayloadError
from channels_in.email.adapter import event_id_for
from channels_in.models import Channel, InboundEvent
from channels_in.webhooks import enqueue, store_event, store_malformed


class Command(BaseCommand):
    help = (
        "Import an mbox file or a maildir into an email channel. Every message is stored as an "
        "inbound event (deduplicated by Message-ID: importing twice adds nothing) and turned "
        "into tickets; auto-replies and bounces never open tickets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="an mbox file or a maildir directory")
        parser.add_argument("--channel", required=True, help="the key of the email channel")
        parser.add_argument(
            "--format",
            choices=("mbox", "maildir"),
            help="default: maildir for a directory, mbox for a file",
        )
        parser.add_argument("--limit", type=int, default=0, help="import at most N messages")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="leave processing to the Celery workers instead of doing it here",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        key = options["channel"]
        channel = Channel.objects.filter(key=key, kind="email").first()
        if channel is None:
            known = ", ".join(
                Channel.objects.filter(kind="email").order_by("key").values_list("key", flat=True)
            )
            raise CommandError(
                f"there is no email channel with the key {key!r}"
                + (f" (email channels: {known})" if known else " (there are no email channels)")
            )
        box = self._open(path, options["format"])
        limit = options["limit"]
        if limit is not None and limit < 0:
            raise CommandError("--limit must be positive")
        keys = list(box.iterkeys())
        if limit:
            keys = keys[:limit]

        counts: Counter[str] = Counter()
        ignored: Counter[str] = Counter()
        errors: list[str] = []
        meta = {"content_type": "message/rfc822", "source": f"import:{path.name}"}
        progress = tqdm(keys, unit="mail", desc="importing", file=sys.stderr, disable=None)
        for msg_key in progress:
            try:
                raw = box.get_bytes(msg_key)
            except (OSError, KeyError, mailbox.Error) as exc:
                counts["failed"] += 1
                errors.append(f"{msg_key}: cannot read: {exc}")
                continue
            self._import_one(channel, raw, meta, options["enqueue"], counts, ignored, errors)
        progress.close()
        box.close()
        self._summary(len(keys), counts, ignored, errors, enqueued=options["enqueue"])

    def _open(self, path: Path, fmt: str | None) -> mailbox.Mailbox:
        fmt = fmt or ("maildir" if path.is_dir() else "mbox")
        if fmt == "maildir":
            if not path.is_dir() or not (path / "cur").is_dir() or not (path / "new").is_dir():
                raise CommandError(f"{path} is not a maildir (it needs cur/ and new/)")
            return mailbox.Maildir(str(path), factory=None, create=False)
        if not path.is_file():
            raise CommandError(f"{path} is not an mbox file (use --format maildir for a folder)")
        return mailbox.mbox(str(path), factory=None, create=False)

    def _import_one(
        self,
        channel: Channel,
        raw: bytes,
        meta: dict[str, Any],
        defer: bool,
        counts: Counter[str],
        ignored: Counter[str],
        errors: list[str],
    ) -> None:
        try:
            platform_id = event_id_for(raw)
        except PayloadError as exc:
            store_malformed(channel, raw, meta, exc)
            counts["failed"] += 1
            errors.append(f"malformed: {exc}")
            return
        event_id = store_event(channel, platform_id, raw, meta)
        if event_id is None:
            counts["duplicates"] += 1
            return
        if defer:
            enqueue(event_id)
            counts["enqueued"] += 1
            return
        # An unexpected error leaves the event pending with a backoff: the sweeper retries it.
        outcome = processing.process_event(event_id)
        if outcome.status in ("failed", "retry"):
            counts["failed"] += 1
            error = InboundEvent.objects.filter(pk=event_id).values_list("error", flat=True)
            errors.append(f"{platform_id}: {error.first() or 'failed'}")
            return
        for item, n in outcome.counts.items():
            if item == "message":
                counts["imported"] += n
            elif item == "duplicate":
                counts["duplicates"] += n
            elif item.startswith("receipt"):
                counts["bounces"] += n
            elif item.startswith("ignored:"):
                reason = item.removeprefix("ignored:")
                if reason.startswith("delivery report") or "bounce" in reason:
                    counts["bounces"] += n
                else:
                    counts["ignored"] += n
                    ignored[reason] += n

    def _summary(
        self,
        total: int,
        counts: Counter[str],
        ignored: Counter[str],
        errors: list[str],
        *,
        enqueued: bool,
    ) -> None:
        lines = [f"{total} messages read"]
        if enqueued:
            lines.append(f"  enqueued:               {counts['enqueued']}")
        else:
            lines.append(f"  imported:               {counts['imported']}")
        lines.append(f"  duplicates:             {counts['duplicates']}")
        lines.append(f"  failed:                 {counts['failed']}")
        if not enqueued:
            detail = ", ".join(f"{reason} {n}" for reason, n in sorted(ignored.items()))
            lines.append(
                f"  auto-replies ignored:   {counts['ignored']}"
                + (f" ({detail})" if detail else "")
            )
            lines.append(f"  bounces:                {counts['bounces']}")
        self.stdout.write("\n".join(lines))
        for error in errors[:20]:
            self.stderr.write(f"  {error}")
        if len(errors) > 20:
            self.stderr.write(f"  ... and {len(errors) - 20} more")
