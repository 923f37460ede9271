"""What a widget visitor may see: their own conversation, as frames for the browser.

Everything is keyed by the verified visitor id. Each visitor's messages carry the thread key
`widget:<visitor>`, so the core keeps one ticket per visitor even when a pre-chat email or
phone makes two visitors (or a visitor and an email customer) the same contact: the contact
is unified for agents, the conversations stay apart for visitors.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from tickets.file_links import public_url
from tickets.models import AuthorKind, DeliveryStatus, Direction, Message, Status, Ticket

from ..models import Channel
from .tokens import widget_settings

DEFAULT_HISTORY = 50
MAX_HISTORY = 200
# Buttons a visitor may press: those on the last few bot/agent messages of their conversation.
BUTTON_LOOKBACK = 20
_VISIBLE_AUTHORS = (AuthorKind.CUSTOMER, AuthorKind.AGENT, AuthorKind.BOT)


def thread_key(visitor_id: str) -> str:
    return f"widget:{visitor_id}"


def group_name(channel_id: int, visitor_id: str) -> str:
    """The channel-layer group of one visitor's open sockets (every tab they have open).
    ASCII letters, digits and hyphens only, well under 100 characters."""
    return f"widget-{channel_id}-{visitor_id}"


def platform_message_id(visitor_id: str, client_id: str) -> str:
    return f"{visitor_id}:{client_id}"


def open_ticket(channel: Channel, visitor_id: str) -> Ticket | None:
    """The visitor's current conversation: the same ticket the core would append to."""
    return (
        Ticket.objects.filter(channel=channel, thread_key=thread_key(visitor_id))
        .exclude(status=Status.CLOSED)
        .order_by("-id")
        .first()
    )


def _visible(channel: Channel, visitor_id: str) -> Q:
    """Messages of the conversation the visitor may see: what they wrote themselves, and what
    was sent to them (never internal notes, system lines, or replies that failed)."""
    mine = Q(
        direction=Direction.IN,
        channel=channel,
        platform_message_id__startswith=f"{visitor_id}:",
    )
    to_me = Q(
        direction=Direction.OUT,
        channel=channel,
        is_internal=False,
        author_kind__in=(AuthorKind.AGENT, AuthorKind.BOT),
    ) & ~Q(delivery_status=DeliveryStatus.FAILED)
    return mine | to_me


def history(channel: Channel, visitor_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The last `limit` messages of the visitor's open conversation, oldest first."""
    ticket = open_ticket(channel, visitor_id)
    if ticket is None:
        return []
    if limit is None:
        limit = history_size(channel)
    messages = list(
        Message.objects.filter(_visible(channel, visitor_id), ticket=ticket)
        .select_related("author__user")
        .prefetch_related("attachments")
        .order_by("-id")[:limit]
    )
    messages.reverse()
    return [message_frame(m, channel, visitor_id) for m in messages]


def history_size(channel: Channel) -> int:
    try:
        size = int(widget_settings(channel).get("history_size") or DEFAULT_HISTORY)
    except (TypeError, ValueError):
        size = DEFAULT_HISTORY
    return max(0, min(size, MAX_HISTORY))


def offered_button(channel: Channel, visitor_id: str, button_id: str) -> str | None:
    """The label of a button recently offered to this visitor, or None: a visitor can only
    press buttons we actually showed them (the id is a bot's input, so it must be ours)."""
    ticket = open_ticket(channel, visitor_id)
    if ticket is None:
        return None
    recent = (
        Message.objects.filter(
            ticket=ticket,
            direction=Direction.OUT,
            channel=channel,
            is_internal=False,
            author_kind__in=(AuthorKind.AGENT, AuthorKind.BOT),
        )
        .order_by("-id")
        .values_list("payload", flat=True)[:BUTTON_LOOKBACK]
    )
    for payload in recent:
        for button in buttons_of(payload):
            if button["id"] == button_id:
                return button["label"]
    return None


def buttons_of(payload: Any) -> list[dict[str, str]]:
    """A message's buttons as [{"id", "label"}] (stored as dicts, or bare ids)."""
    raw = payload.get("buttons") if isinstance(payload, dict) else None
    if not isinstance(raw, list):
        return []
    buttons = []
    for item in raw:
        if isinstance(item, dict):
            button_id, label = str(item.get("id", "")), str(item.get("label", ""))
        else:
            button_id = label = str(item)
        if button_id:
            buttons.append({"id": button_id[:64], "label": (label or button_id)[:80]})
    return buttons


def author_name(channel: Channel, author_kind: str, first_name: str = "") -> str:
    """What the visitor sees above a reply: the agent's first name only (agents' full names
    stay inside the company), the bot's configured name; "" lets the widget say "Agent"/"Bot"
    in the visitor's language."""
    if author_kind == AuthorKind.BOT:
        # A name per language is the script's to pick (it knows the visitor's language).
        name = widget_settings(channel).get("bot_name")
        return name[:60] if isinstance(name, str) else ""
    if author_kind == AuthorKind.AGENT:
        return first_name[:60]
    return ""


def message_frame(message: Message, channel: Channel, visitor_id: str) -> dict[str, Any]:
    """One message as the widget renders it. Text stays text: the browser puts it in the page
    with textContent, so nothing here is HTML."""
    if message.direction == Direction.IN:
        client_id = (message.platform_message_id or "").split(":", 1)[-1]
        return {
            "type": "message",
            "id": message.pk,
            "author": "customer",
            "name": "",
            "text": message.text,
            "buttons": [],
            "at": message.created_at.isoformat(),
            "client_id": client_id,
        }
    first_name = ""
    if message.author is not None:
        first_name = message.author.user.first_name
    return {
        "type": "message",
        "id": message.pk,
        "author": "bot" if message.author_kind == AuthorKind.BOT else "agent",
        "name": author_name(channel, message.author_kind, first_name),
        "text": message.text,
        "buttons": buttons_of(message.payload),
        "attachments": [
            # Absolute: the widget runs on the utility's site, not ours.
            {"name": a.name, "url": public_url(a) if a.file else a.source_url}
            for a in message.attachments.all()
            if a.file or a.source_url.startswith(("http://", "https://"))
        ],
        "at": message.created_at.isoformat(),
    }
