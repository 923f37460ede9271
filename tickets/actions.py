"""The only writer of ticket state and the only publisher of live events.

`check_*` functions validate and authorize and raise `tickets.errors.ActionError`s; `do_*`
functions write in one transaction, append `TicketEvent`s, and publish live events after
commit. Every `do_*` locks the rows it changes (PostgreSQL `SELECT ... FOR UPDATE`; the
embedded SQLite database takes its write lock at BEGIN instead), so two agents or workers
acting at once serialize instead of overwriting each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from channels_in.models import Channel

from . import sla
from .errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from .events import (
    agent_group,
    message_payload,
    publish_on_commit,
    team_group,
    ticket_event,
    ticket_groups,
)
from .identities import normalize_email, normalize_identity, normalize_phone
from .inbound import InboundAttachment, InboundMessage, Sender
from .language import detect_language
from .models import (
    ACTIVE_STATUSES,
    AccountNumber,
    Agent,
    Attachment,
    AuthorKind,
    Call,
    Contact,
    ContactMerge,
    Delivery,
    DeliveryStatus,
    Direction,
    Identity,
    Message,
    Priority,
    Status,
    Tag,
    Team,
    Ticket,
    TicketEvent,
    Tier,
)
from .priority import classify_topic, score_text
from .queue import QUEUE_ORDERING, can_see, can_work_team, workable_by
from .sanitize import sanitize_html

log = logging.getLogger(__name__)

SUBJECT_CHARS = 120
PREVIEW_CHARS = 160
KIND_LABELS = {
    "image": "Photo",
    "document": "Document",
    "audio": "Voice message",
    "video": "Video",
    "sticker": "Sticker",
    "location": "Location",
    "contact": "Shared contact",
    "postback": "Button",
    "call": "Phone call",
    "unsupported": "A message this channel cannot show",
    "mention": "Mention",
    "share": "Shared post",
}


# --------------------------------------------------------------------------- helpers


def _actor_kind(actor: Agent | None) -> str:
    return AuthorKind.AGENT if actor is not None else AuthorKind.SYSTEM


def _event(
    verb: str,
    *,
    ticket: Ticket | None = None,
    contact: Contact | None = None,
    actor: Agent | None = None,
    actor_kind: str | None = None,
    from_value: Any = None,
    to_value: Any = None,
    **data: Any,
) -> TicketEvent:
    return TicketEvent.objects.create(
        ticket=ticket,
        contact=contact or (ticket.contact if ticket is not None else None),
        actor=actor,
        actor_kind=actor_kind or _actor_kind(actor),
        verb=verb,
        from_value=from_value,
        to_value=to_value,
        data=data,
    )


def _lock_ticket(ticket: Ticket | int) -> Ticket:
    pk = ticket.pk if isinstance(ticket, Ticket) else ticket
    try:
        return Ticket.objects.select_for_update().get(pk=pk)
    except Ticket.DoesNotExist as exc:
        raise NotFound(f"ticket {pk} does not exist") from exc


def _save(ticket: Ticket, fields: Iterable[str]) -> None:
    ticket.version += 1
    ticket.updated_at = timezone.now()
    ticket.save(update_fields=sorted({*fields, "version", "updated_at"}))


def _adjust_load(
    old_agent_id: int | None, old_active: bool, new_agent_id: int | None, new_active: bool
) -> None:
    """Keep Agent.open_count equal to the active tickets assigned to each agent, in the same
    transaction as the ownership change."""
    old = old_agent_id if old_active else None
    new = new_agent_id if new_active else None
    if old == new:
        return
    if old is not None:
        Agent.objects.filter(pk=old).update(open_count=F("open_count") - 1)
    if new is not None:
        Agent.objects.filter(pk=new).update(open_count=F("open_count") + 1)


def _publish_ticket(
    op: str,
    ticket: Ticket,
    *,
    old_team: int | None = None,
    old_assignee: int | None = None,
    **extra: Any,
) -> None:
    publish_on_commit(
        ticket_groups(ticket, old_team, also_agents=(old_assignee,)),
        ticket_event(op, ticket, **extra),
    )


def _publish_message(ticket: Ticket, message: Message) -> None:
    event = {
        "type": "message",
        "op": "create",
        "message": message_payload(message),
        "ticket": ticket.pk,
        "version": ticket.version,
    }
    publish_on_commit(ticket_groups(ticket), event)


def _first_line(text: str, limit: int) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _preview(text: str, kind: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return KIND_LABELS.get(kind, kind.capitalize())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


# --------------------------------------------------------------------------- checks


def check_staff(user: Any) -> Agent:
    """The Agent behind a user, or Forbidden: a user without one has no access at all."""
    agent = getattr(user, "agent", None) if user is not None and user.is_authenticated else None
    if agent is None:
        raise Forbidden("this account is not a helpdesk agent")
    return agent


def check_can_work(agent: Agent, ticket: Ticket) -> None:
    if not can_see(agent, ticket):
        # The same answer as a ticket that does not exist: no probing other teams' tickets.
        raise NotFound(f"ticket {ticket.pk} does not exist")


def check_text(text: str, *, what: str, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text", field="text")
    cleaned = text.replace("\x00", "").strip()
    if not cleaned and not allow_empty:
        raise InvalidInput(f"{what} is empty", field="text")
    limit = settings.HELPDESK_MAX_MESSAGE_CHARS
    if len(cleaned) > limit:
        raise InvalidInput(
            f"{what} is {len(cleaned)} characters; the limit is {limit}", field="text"
        )
    return cleaned


def check_attachments(files: Sequence[Any]) -> None:
    limit = settings.HELPDESK_MAX_ATTACHMENTS_PER_MESSAGE
    if len(files) > limit:
        raise InvalidInput(
            f"{len(files)} attachments; at most {limit} per message", field="attachments"
        )
    max_bytes = settings.HELPDESK_MAX_ATTACHMENT_BYTES
    for upload in files:
        size = getattr(upload, "size", None) or 0
        if size > max_bytes:
            raise TooLarge(
                f"attachment {getattr(upload, 'name', '')!r} is {size} bytes; "
                f"the limit is {max_bytes} bytes",
                field="attachments",
            )


def _store_attachments(message: Message, files: Sequence[Any]) -> None:
    for upload in files:
        name = (getattr(upload, "name", "") or "attachment").rsplit("/", 1)[-1][:255]
        Attachment.objects.create(
            message=message,
            file=File(upload, name=name),
            name=name,
            content_type=(getattr(upload, "content_type", None) or "application/octet-stream")[
                :120
            ],
            size=getattr(upload, "size", 0) or 0,
        )


def _store_inbound_attachments(message: Message, attachments: Sequence[InboundAttachment]) -> None:
    max_bytes = settings.HELPDESK_MAX_ATTACHMENT_BYTES
    for item in attachments[: settings.HELPDESK_MAX_ATTACHMENTS_PER_MESSAGE]:
        name = (item.name or "attachment").rsplit("/", 1)[-1][:255]
        size = len(item.content) if item.content is not None else item.size
        if size > max_bytes:
            # Never reject a customer's message for its attachment: keep the message, say why.
            message.payload.setdefault("rejected_attachments", []).append(
                {"name": name, "size": size, "reason": f"over the {max_bytes}-byte limit"}
            )
            continue
        attachment = Attachment(
            message=message,
            name=name,
            content_type=item.content_type[:120],
            size=size,
            source_url=item.source_url[:1000],
        )
        if item.content is not None:
            attachment.file.save(name, ContentFile(item.content), save=False)
        attachment.save()


# --------------------------------------------------------------------------- inbound


def _sender_identities(sender: Sender) -> list[tuple[str, str]]:
    """The (kind, normalized value) pairs that identify this sender, strongest first."""
    pairs = [(sender.kind, normalize_identity(sender.kind, sender.value))]
    if sender.phone:
        try:
            pairs.append(("phone", normalize_phone(sender.phone)))
        except InvalidInput:
            log.info("ignoring an unparseable phone number from a %s sender", sender.kind)
    if sender.email:
        try:
            pairs.append(("email", normalize_email(sender.email)))
        except InvalidInput:
            log.info("ignoring an invalid email address from a %s sender", sender.kind)
    unique: list[tuple[str, str]] = []
    for pair in pairs:
        if pair not in unique:
            unique.append(pair)
    return unique


def _new_event(
    verb: str,
    *,
    ticket: Ticket | None = None,
    contact_id: int | None = None,
    actor_kind: str = AuthorKind.CUSTOMER,
    from_value: Any = None,
    to_value: Any = None,
    **data: Any,
) -> TicketEvent:
    """An unsaved event, for the hot path to insert several in one statement."""
    return TicketEvent(
        ticket=ticket,
        contact_id=contact_id
        if contact_id is not None
        else (ticket.contact_id if ticket else None),
        actor_kind=actor_kind,
        verb=verb,
        from_value=from_value,
        to_value=to_value,
        data=data,
    )


def _resolve_contact(sender: Sender, events: list[TicketEvent], language: str = "") -> Contact:
    """The contact of this sender, locked (two messages of one person arriving at once must
    not open two tickets): found by any of the sender's identities, or created. Identities it
    lacks are attached. Two contacts sharing a phone or an email are one person: they are
    merged (recorded and reversible). A name alone never merges anyone."""
    pairs = _sender_identities(sender)
    query = Q()
    for kind, value in pairs:
        query |= Q(kind=kind, value=value)
    # One query finds the identities and locks their contacts.
    found = list(
        Identity.objects.filter(query).select_related("contact").select_for_update(of=("contact",))
    )
    by_pair = {(i.kind, i.value): i for i in found}
    contact_ids = {i.contact_id for i in found}

    if not contact_ids:
        try:
            with transaction.atomic():
                contact = Contact.objects.create(
                    display_name=sender.display_name[:200],
                    language=(language or sender.language)[:8],
                    last_seen_at=timezone.now(),
                )
                Identity.objects.bulk_create(
                    [
                        Identity(contact=contact, kind=k, value=v, label=sender.display_name[:200])
                        for k, v in pairs
                    ]
                )
        except IntegrityError:
            # Another worker created this person a moment ago: use theirs.
            return _resolve_contact(sender, events, language)
        events.append(
            _new_event(
                "contact.created", contact_id=contact.pk, identities=[f"{k}:{v}" for k, v in pairs]
            )
        )
        return contact

    # The contact of the platform identity wins; otherwise the oldest of them.
    primary_identity = by_pair.get(pairs[0])
    if primary_identity is not None:
        contact = primary_identity.contact
    else:
        contact = min((i.contact for i in found), key=lambda c: c.pk)
    for other_id in sorted(contact_ids - {contact.pk}):
        other = next(i.contact for i in found if i.contact_id == other_id)
        shared = [f"{i.kind}:{i.value}" for i in found if i.contact_id == other_id]
        do_merge_contacts(contact, other, actor=None, reason="same " + ", ".join(shared))
    if len(contact_ids) > 1:
        contact.refresh_from_db()
    for kind, value in pairs:
        if (kind, value) not in by_pair:
            try:
                with transaction.atomic():
                    Identity.objects.create(
                        contact=contact, kind=kind, value=value, label=sender.display_name[:200]
                    )
            except IntegrityError:
                log.info("identity %s appeared concurrently; left with its contact", kind)
                continue
            events.append(
                _new_event(
                    "contact.identity_added", contact_id=contact.pk, to_value=f"{kind}:{value}"
                )
            )
    return contact


def _conversation_ticket(contact: Contact, inbound: InboundMessage) -> Ticket | None:
    """The ticket this message continues, locked; None when a new ticket must start."""
    ticket: Ticket | None = None
    candidate_id: int | None = None
    if inbound.ticket_ref:
        candidate_id = (
            Ticket.objects.filter(pk=inbound.ticket_ref, contact=contact)
            .values_list("pk", flat=True)
            .first()
        )
    if candidate_id is None and inbound.reply_to:
        candidate_id = (
            Message.objects.filter(
                channel_id=inbound.channel_id,
                platform_message_id__in=list(inbound.reply_to),
                ticket__contact=contact,
            )
            .order_by("-id")
            .values_list("ticket_id", flat=True)
            .first()
        )
    if candidate_id is not None:
        ticket = _lock_ticket(candidate_id)
    else:
        # The common case, one query: the latest open conversation, found and locked.
        ticket = (
            Ticket.objects.select_for_update(of=("self",))
            .filter(contact=contact, channel_id=inbound.channel_id, thread_key=inbound.thread_key)
            .exclude(status=Status.CLOSED)
            .order_by("-id")
            .first()
        )
    if ticket is None or ticket.status == Status.CLOSED:
        return None
    if ticket.status == Status.RESOLVED and (
        ticket.resolved_at is None
        or timezone.now() - ticket.resolved_at > settings.HELPDESK_REOPEN_WINDOW
    ):
        return None
    return ticket


@dataclass
class Received:
    ticket: Ticket | None
    message: Message | None
    created_ticket: bool = False
    duplicate: bool = False
    reopened: bool = False


def do_receive_inbound(inbound: InboundMessage, *, channel: Channel | None = None) -> Received:
    """Store one normalized inbound message: contact, ticket, message, events — once.

    Idempotent on (channel, platform message id): a redelivery returns `duplicate=True` and
    changes nothing (the unique constraint decides, so a race between two workers does too).
    Runs in one transaction. `channel` saves a query when the caller has it loaded.
    """
    if not inbound.platform_message_id:
        raise InvalidInput("an inbound message needs its platform message id")
    if channel is None or channel.pk != inbound.channel_id:
        channel = (
            Channel.objects.select_related("default_team").filter(pk=inbound.channel_id).first()
        )
        if channel is None:
            raise NotFound(f"channel {inbound.channel_id} does not exist")
    try:
        with transaction.atomic():
            return _receive(inbound, channel)
    except IntegrityError:
        existing = _existing_message(inbound)
        if existing is not None:  # a redelivery, or the same message stored by another worker
            return Received(ticket=existing.ticket, message=existing, duplicate=True)
        raise


def _existing_message(inbound: InboundMessage) -> Message | None:
    return (
        Message.objects.filter(
            channel_id=inbound.channel_id, platform_message_id=inbound.platform_message_id
        )
        .select_related("ticket")
        .first()
    )


# A follow-up from someone seen this recently does not rewrite the contact row.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


def _receive(inbound: InboundMessage, channel: Channel) -> Received:
    now = timezone.now()
    events: list[TicketEvent] = []
    text = inbound.text.replace("\x00", "")
    detected = detect_language(text) if text else None
    contact = _resolve_contact(inbound.sender, events, detected or "")
    sender_address = normalize_identity(inbound.sender.kind, inbound.sender.value)
    ticket = _conversation_ticket(contact, inbound)
    created = reopened = False
    changed: set[str] = set()
    preview = _preview(text, inbound.kind)

    if ticket is None:
        created = True
        language = detected or contact.language or inbound.sender.language
        if language not in settings.HELPDESK_LANGUAGES:
            language = ""
        ticket = Ticket(
            contact=contact,
            channel=channel,
            thread_key=inbound.thread_key[:255],
            subject=(
                _first_line(inbound.subject, SUBJECT_CHARS)
                or _first_line(text, SUBJECT_CHARS)
                or KIND_LABELS.get(inbound.kind, "Message")
            ),
            status=Status.NEW,
            language=language,
            team_id=channel.default_team_id,
            topic=classify_topic(f"{inbound.subject}\n{text}"),
            is_public=inbound.is_public,
            created_at=now,
            updated_at=now,
            waiting_since=now,
            last_message_at=now,
            preview=preview,
            message_count=1,
        )
        _score(ticket, contact, inbound, text)
        sla.apply_due_times(ticket, since=now)
        ticket.save(force_insert=True)
    else:
        if ticket.status == Status.RESOLVED:
            reopened = True
            _adjust_load(ticket.assignee_id, False, ticket.assignee_id, True)
            ticket.status = Status.OPEN
            ticket.resolved_at = None
            sla.apply_due_times(ticket, since=now)
            changed |= {"status", "resolved_at", "resolution_due", "first_response_due"}
        elif ticket.status == Status.PENDING:
            ticket.status = Status.OPEN
            changed.add("status")
        if ticket.waiting_since is None:
            ticket.waiting_since = now
            changed.add("waiting_since")
        if not ticket.language and detected:
            ticket.language = detected
            changed.add("language")
        if ticket.topic == "other" and text:
            topic = classify_topic(text)
            if topic != ticket.topic:
                ticket.topic = topic
                changed.add("topic")
        changed |= _score(ticket, contact, inbound, text)
        sla.refresh_next_due(ticket)
        ticket.last_message_at = now
        ticket.preview = preview
        ticket.message_count += 1
        _save(ticket, changed | {"sla_due_at", "last_message_at", "preview", "message_count"})

    message = Message.objects.create(
        ticket=ticket,
        direction=Direction.IN,
        author_kind=AuthorKind.CUSTOMER,
        kind=inbound.kind[:16],
        text=text,
        html=sanitize_html(inbound.html) if inbound.html else "",
        # Who wrote, as the platform addresses them: replies on this ticket go back there.
        payload={**inbound.payload, "from": sender_address},
        channel=channel,
        platform_message_id=inbound.platform_message_id[:255],
        delivery_status=DeliveryStatus.RECEIVED,
        sent_at=inbound.sent_at,
        created_at=now,
    )
    if inbound.attachments:
        _store_inbound_attachments(message, inbound.attachments)
        if message.payload.get("rejected_attachments"):
            message.save(update_fields=["payload"])

    _touch_contact(contact, inbound, ticket.language or detected or "", now)

    if created:
        events.append(
            _new_event(
                "ticket.created",
                ticket=ticket,
                to_value=ticket.status,
                channel=channel.kind,
                priority=ticket.priority_name,
            )
        )
    if reopened:
        events.append(
            _new_event(
                "ticket.reopened", ticket=ticket, from_value=Status.RESOLVED, to_value=Status.OPEN
            )
        )
    events.append(
        _new_event("message.received", ticket=ticket, message=message.pk, channel=channel.kind)
    )
    TicketEvent.objects.bulk_create(events)

    _publish_ticket("create" if created else "update", ticket)
    _publish_message(ticket, message)
    return Received(ticket=ticket, message=message, created_ticket=created, reopened=reopened)


def _touch_contact(contact: Contact, inbound: InboundMessage, language: str, now: datetime) -> None:
    """Update the contact only when something about them changed (or they were last seen a
    while ago): most messages are follow-ups that change nothing."""
    fields: list[str] = []
    claims = _claims(inbound.sender)
    if claims and contact.attributes.get("claimed") != claims:
        contact.attributes = {**contact.attributes, "claimed": claims}
        fields.append("attributes")
    if not contact.display_name and inbound.sender.display_name:
        contact.display_name = inbound.sender.display_name[:200]
        fields.append("display_name")
    if not contact.language and language:
        contact.language = language
        fields.append("language")
    if fields or contact.last_seen_at is None or now - contact.last_seen_at > LAST_SEEN_RESOLUTION:
        contact.last_seen_at = now
        contact.updated_at = now
        contact.save(update_fields=[*fields, "last_seen_at", "updated_at"])


def _claims(sender: Sender) -> dict[str, str]:
    """Unverified contact details, normalized where they parse (see Sender.claimed_email)."""
    claims: dict[str, str] = {}
    if sender.claimed_email:
        try:
            claims["email"] = normalize_email(sender.claimed_email)
        except InvalidInput:
            claims["email"] = sender.claimed_email[:254]
    if sender.claimed_phone:
        try:
            claims["phone"] = normalize_phone(sender.claimed_phone)
        except InvalidInput:
            claims["phone"] = sender.claimed_phone[:32]
    return claims


def _score(ticket: Ticket, contact: Contact, inbound: InboundMessage, text: str) -> set[str]:
    """Score this message; the ticket keeps the most urgent score any of its messages had."""
    score = score_text(
        f"{inbound.subject}\n{text}",
        tier=contact.tier,
        followers=inbound.sender.followers,
        verified=inbound.sender.verified,
        is_public=inbound.is_public,
    )
    if ticket.pk is not None and score.points <= ticket.priority_score and not score.safety:
        return set()
    old_priority = ticket.priority
    ticket.priority_score = max(score.points, ticket.priority_score if ticket.pk else 0)
    ticket.priority_reasons = score.reasons
    changed = {"priority_score", "priority_reasons"}
    if not ticket.priority_locked:
        level = max(score.level, ticket.priority if ticket.pk else Priority.LOW)
        if level != ticket.priority or ticket.pk is None:
            ticket.priority = level
            changed.add("priority")
            if ticket.pk is not None:
                sla.reprioritize_due_times(ticket, old_priority)
                changed |= {"first_response_due", "resolution_due"}
    return changed


# --------------------------------------------------------------------------- replies, notes


def _new_outbound(
    ticket: Ticket,
    agent: Agent | None,
    text: str,
    *,
    author_kind: str,
    internal: bool,
    payload: dict[str, Any] | None = None,
    kind: str = "text",
) -> Message:
    return Message.objects.create(
        ticket=ticket,
        direction=Direction.OUT,
        author_kind=author_kind,
        author=agent,
        kind=kind,
        text=text,
        payload=payload or {},
        channel_id=None if internal else ticket.channel_id,
        is_internal=internal,
        delivery_status=DeliveryStatus.NOT_SENT if internal else DeliveryStatus.QUEUED,
    )


def do_reply(
    ticket: Ticket,
    agent: Agent,
    text: str,
    *,
    attachments: Sequence[Any] = (),
    status: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Message:
    """An agent's answer: the outbound message and its delivery row in one transaction; the
    edge sends it after commit. Claims an unassigned ticket for the replying agent."""
    text = check_text(text, what="reply", allow_empty=bool(attachments))
    check_attachments(attachments)
    if status is not None and status not in (Status.OPEN, Status.PENDING, Status.RESOLVED):
        raise InvalidInput(
            f"a reply can leave the ticket open, pending or resolved, not {status!r}",
            field="status",
        )
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        check_can_work(agent, ticket)
        if ticket.status == Status.CLOSED:
            raise Conflict(
                f"ticket {ticket.pk} is closed; the customer's next message opens a new one"
            )
        if ticket.channel_id is None:
            raise Conflict(f"ticket {ticket.pk} has no channel to reply on")
        check_reply_possible(ticket, text)
        now = timezone.now()
        message = _new_outbound(
            ticket, agent, text, author_kind=AuthorKind.AGENT, internal=False, payload=payload
        )
        if attachments:
            _store_attachments(message, attachments)
        delivery = Delivery.objects.create(message=message, channel_id=ticket.channel_id)

        old_status, old_assignee = ticket.status, ticket.assignee_id
        fields = {"waiting_since", "sla_due_at", "last_message_at", "message_count"}
        if ticket.assignee_id is None:
            ticket.assignee = agent
            ticket.assigned_at = now
            fields |= {"assignee", "assigned_at"}
        if ticket.first_response_at is None:
            ticket.first_response_at = now
            fields.add("first_response_at")
        new_status = status or (
            Status.OPEN if ticket.status in (Status.NEW, Status.RESOLVED) else ticket.status
        )
        if new_status != ticket.status:
            ticket.status = new_status
            fields.add("status")
        if new_status == Status.RESOLVED and old_status != Status.RESOLVED:
            ticket.resolved_at = now
            fields.add("resolved_at")
        elif new_status != Status.RESOLVED and ticket.resolved_at is not None:
            ticket.resolved_at = None
            fields.add("resolved_at")
        ticket.waiting_since = None
        ticket.last_message_at = now
        ticket.message_count += 1
        sla.refresh_next_due(ticket)
        _adjust_load(
            old_assignee,
            old_status in ACTIVE_STATUSES,
            ticket.assignee_id,
            ticket.status in ACTIVE_STATUSES,
        )
        _save(ticket, fields)

        _event(
            "message.sent",
            ticket=ticket,
            actor=agent,
            message=message.pk,
            first_response=ticket.first_response_at == now,
        )
        if old_assignee is None:
            _event(
                "ticket.assigned",
                ticket=ticket,
                actor=agent,
                from_value=None,
                to_value=agent.pk,
                via="reply",
            )
        if ticket.status != old_status:
            _event(
                "ticket.status",
                ticket=ticket,
                actor=agent,
                from_value=old_status,
                to_value=ticket.status,
            )
        transaction.on_commit(lambda: dispatch_delivery(delivery.pk))
        _publish_ticket("update", ticket, old_assignee=old_assignee)
        _publish_message(ticket, message)
    return message


def check_reply_possible(ticket: Ticket, text: str = "") -> None:
    """Ask the edge whether this reply on the ticket's channel can go out now (a platform's
    messaging window, a public post's length, a switched-off channel); refuse it up front."""
    last_in = (
        Message.objects.filter(ticket=ticket, direction=Direction.IN)
        .order_by("-id")
        .values("created_at", "payload")
        .first()
    )
    reason = import_string(settings.HELPDESK_REPLY_CHECK)(
        ticket.channel_id,
        last_in["created_at"] if last_in else None,
        text=text,
        last_inbound=last_in["payload"] if last_in else {},
    )
    if reason:
        raise Conflict(reason, code="cannot_send")


def dispatch_delivery(delivery_id: int) -> None:
    """Hand a committed delivery to the edge (channels_in) by the configured dotted path."""
    try:
        import_string(settings.HELPDESK_DELIVERY_DISPATCHER)(delivery_id)
    except Exception:
        # The row is committed and stays queued; the outbound sweeper picks it up.
        log.exception("delivery %s not dispatched; it stays queued", delivery_id)


def do_add_note(
    ticket: Ticket, agent: Agent, text: str, *, attachments: Sequence[Any] = ()
) -> Message:
    """An internal note: visible to agents only, never sent to the customer."""
    text = check_text(text, what="note", allow_empty=bool(attachments))
    check_attachments(attachments)
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        check_can_work(agent, ticket)
        message = _new_outbound(ticket, agent, text, author_kind=AuthorKind.AGENT, internal=True)
        if attachments:
            _store_attachments(message, attachments)
        ticket.message_count += 1
        _save(ticket, {"message_count"})
        _event("note.added", ticket=ticket, actor=agent, message=message.pk)
        _publish_ticket("update", ticket)
        _publish_message(ticket, message)
    return message


# --------------------------------------------------------------------------- ownership


def _set_assignee(
    ticket: Ticket,
    assignee: Agent | None,
    *,
    actor: Agent | None,
    verb: str = "ticket.assigned",
    **data: Any,
) -> int | None:
    old = ticket.assignee_id
    new = assignee.pk if assignee is not None else None
    if old == new:
        return old
    ticket.assignee = assignee
    ticket.assigned_at = timezone.now() if assignee is not None else None
    active = ticket.status in ACTIVE_STATUSES
    _adjust_load(old, active, new, active)
    if assignee is not None:
        Agent.objects.filter(pk=assignee.pk).update(last_assigned_at=ticket.assigned_at)
    _event(
        verb if assignee is not None else "ticket.unassigned",
        ticket=ticket,
        actor=actor,
        from_value=old,
        to_value=new,
        **data,
    )
    return old


def do_assign(ticket: Ticket, assignee: Agent | None, *, actor: Agent | None) -> Ticket:
    """Assign to an agent who may work the ticket's team (None unassigns). Moving a ticket to
    another team is a transfer."""
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        if actor is not None:
            check_can_work(actor, ticket)
        if ticket.status == Status.CLOSED:
            raise Conflict(f"ticket {ticket.pk} is closed")
        if assignee is not None and not can_work_team(assignee, ticket.team_id):
            raise InvalidInput(
                f"{assignee.name} is not in the ticket's team; transfer the ticket instead",
                field="assignee",
            )
        if (
            actor is not None
            and not actor.is_supervisor
            and ticket.assignee_id not in (None, actor.pk)
        ):
            # An agent hands over their own tickets; taking a colleague's is a supervisor's call.
            raise Forbidden(
                f"ticket {ticket.pk} is assigned to {ticket.assignee.name}; "  # type: ignore[union-attr]
                "ask them or a supervisor to reassign it"
            )
        old = ticket.assignee_id
        if old == (assignee.pk if assignee else None):
            return ticket
        _set_assignee(ticket, assignee, actor=actor)
        _save(ticket, {"assignee", "assigned_at"})
        _publish_ticket("update", ticket, old_assignee=old)
        if assignee is not None and assignee != actor:
            publish_on_commit(
                [agent_group(assignee.pk)],
                {
                    "type": "notice",
                    "op": "assigned",
                    "ticket": ticket.pk,
                    "by": actor.name if actor else "routing",
                    "subject": ticket.subject,
                },
            )
    return ticket


def do_transfer(
    ticket: Ticket,
    *,
    actor: Agent | None,
    team: Team | None = None,
    agent: Agent | None = None,
    note: str = "",
) -> Ticket:
    """Move a ticket to another team and/or agent, with an optional internal note saying why."""
    if team is None and agent is None:
        raise InvalidInput("a transfer needs a team or an agent", field="team")
    note = check_text(note, what="transfer note", allow_empty=True)
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        if actor is not None:
            check_can_work(actor, ticket)
        if ticket.status == Status.CLOSED:
            raise Conflict(f"ticket {ticket.pk} is closed")
        target_team = team
        if target_team is None and agent is not None and not can_work_team(agent, ticket.team_id):
            # To an agent outside the ticket's team: the ticket follows them to their team.
            target_team = agent.teams.order_by("name").first()
        if (
            agent is not None
            and target_team is not None
            and not can_work_team(agent, target_team.pk)
        ):
            raise InvalidInput(f"{agent.name} is not in team {target_team.name}", field="agent")
        old_team, old_assignee = ticket.team_id, ticket.assignee_id
        fields: set[str] = set()
        if target_team is not None and target_team.pk != ticket.team_id:
            ticket.team = target_team
            fields.add("team")
        # A transfer hands the ticket over: the new owner, or the new team's pool.
        if agent is not None:
            _set_assignee(ticket, agent, actor=actor, verb="ticket.assigned", via="transfer")
        elif ticket.assignee_id is not None and "team" in fields:
            _set_assignee(ticket, None, actor=actor)
        fields |= {"assignee", "assigned_at"}
        note_message: Message | None = None
        if note:
            note_message = _new_outbound(
                ticket,
                actor,
                note,
                author_kind=_actor_kind(actor),
                internal=True,
                payload={"transfer": True},
            )
            ticket.message_count += 1
            fields.add("message_count")
        _save(ticket, fields)
        _event(
            "ticket.transferred",
            ticket=ticket,
            actor=actor,
            from_value={"team": old_team, "agent": old_assignee},
            to_value={"team": ticket.team_id, "agent": ticket.assignee_id},
            note=note,
        )
        _publish_ticket("update", ticket, old_team=old_team, old_assignee=old_assignee)
        if note_message is not None:
            _publish_message(ticket, note_message)
        notice = {
            "type": "notice",
            "op": "transferred",
            "ticket": ticket.pk,
            "by": actor.name if actor else "routing",
            "subject": ticket.subject,
            "note": note,
        }
        targets = [agent_group(agent.pk)] if agent is not None else []
        if target_team is not None and agent is None:
            targets.append(team_group(target_team.pk))
        if targets:
            publish_on_commit(targets, notice)
    return ticket


def do_take_next(agent: Agent) -> Ticket | None:
    """Claim the most urgent unassigned ticket this agent may work, atomically.

    `FOR UPDATE SKIP LOCKED` on PostgreSQL: two agents pressing at once get two different
    tickets. On SQLite the IMMEDIATE transaction serializes the whole claim.
    """
    with transaction.atomic():
        me = Agent.objects.select_for_update().get(pk=agent.pk)
        if me.open_count >= me.capacity:
            raise Conflict(
                f"you have {me.open_count} active tickets and your capacity is {me.capacity}; "
                "resolve or hand one over first"
            )
        ticket = (
            workable_by(agent)
            .order_by(*QUEUE_ORDERING)
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if ticket is None:
            return None
        _set_assignee(ticket, me, actor=me, via="take_next")
        fields = {"assignee", "assigned_at"}
        if ticket.status == Status.NEW:
            ticket.status = Status.OPEN
            fields.add("status")
            _event(
                "ticket.status",
                ticket=ticket,
                actor=me,
                from_value=Status.NEW,
                to_value=Status.OPEN,
            )
        _save(ticket, fields)
        _publish_ticket("update", ticket)
    return ticket


# --------------------------------------------------------------------------- status, priority, tags


_MANUAL_STATUSES = (Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED)


def do_set_status(ticket: Ticket, status: str, *, actor: Agent | None) -> Ticket:
    if status not in _MANUAL_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(_MANUAL_STATUSES)}; got {status!r}", field="status"
        )
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        if actor is not None:
            check_can_work(actor, ticket)
        old = ticket.status
        if old == status:
            return ticket
        if old == Status.CLOSED:
            raise Conflict(f"ticket {ticket.pk} is closed; closed tickets do not change")
        now = timezone.now()
        fields = {"status"}
        ticket.status = status
        if status == Status.RESOLVED:
            ticket.resolved_at = now
            ticket.waiting_since = None
            fields |= {"resolved_at", "waiting_since"}
        elif status == Status.CLOSED:
            ticket.closed_at = now
            ticket.resolved_at = ticket.resolved_at or now
            ticket.waiting_since = None
            fields |= {"closed_at", "resolved_at", "waiting_since"}
        else:
            if old == Status.RESOLVED:
                ticket.resolved_at = None
                sla.apply_due_times(ticket, since=now)
                fields |= {"resolved_at", "first_response_due", "resolution_due"}
            if status == Status.PENDING:
                ticket.waiting_since = None
                fields.add("waiting_since")
        sla.refresh_next_due(ticket)
        fields.add("sla_due_at")
        _adjust_load(
            ticket.assignee_id,
            old in ACTIVE_STATUSES,
            ticket.assignee_id,
            status in ACTIVE_STATUSES,
        )
        _save(ticket, fields)
        _event("ticket.status", ticket=ticket, actor=actor, from_value=old, to_value=status)
        _publish_ticket("update", ticket)
    return ticket


def do_set_priority(
    ticket: Ticket, level: int | str, *, actor: Agent | None, reason: str = ""
) -> Ticket:
    """A person's choice of level; later messages no longer change it."""
    names = {p.label: p.value for p in Priority}
    if isinstance(level, str) and level in names:
        level = names[level]
    if level not in Priority.values:
        raise InvalidInput(
            f"priority must be one of {', '.join(names)}; got {level!r}", field="priority"
        )
    reason = check_text(reason, what="reason", allow_empty=True)[:200]
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        if actor is not None:
            check_can_work(actor, ticket)
        old = ticket.priority
        ticket.priority = int(level)
        ticket.priority_locked = True
        who = actor.name if actor else "system"
        ticket.priority_reasons = [
            *[r for r in ticket.priority_reasons if r.get("signal") != "manual"],
            {
                "signal": "manual",
                "detail": f"set to {Priority(level).label} by {who}"
                + (f": {reason}" if reason else ""),
                "points": 0,
            },
        ]
        sla.reprioritize_due_times(ticket, old)
        _save(
            ticket,
            {
                "priority",
                "priority_locked",
                "priority_reasons",
                "first_response_due",
                "resolution_due",
                "sla_due_at",
            },
        )
        _event(
            "ticket.priority",
            ticket=ticket,
            actor=actor,
            from_value=Priority(old).label,
            to_value=Priority(level).label,
            reason=reason,
        )
        _publish_ticket("update", ticket)
    return ticket


def normalize_tag(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidInput("a tag must be text", field="tags")
    cleaned = "-".join(name.strip().lower().split())
    if not cleaned:
        raise InvalidInput("a tag cannot be empty", field="tags")
    if len(cleaned) > 50:
        raise InvalidInput(f"tag {cleaned[:20]!r}… is longer than 50 characters", field="tags")
    return cleaned


def do_update_tags(
    ticket: Ticket, *, actor: Agent | None, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> Ticket:
    to_add = sorted({normalize_tag(t) for t in add})
    to_remove = sorted({normalize_tag(t) for t in remove})
    with transaction.atomic():
        ticket = _lock_ticket(ticket)
        if actor is not None:
            check_can_work(actor, ticket)
        before = sorted(ticket.tags.values_list("name", flat=True))
        for name in to_add:
            tag, _ = Tag.objects.get_or_create(name=name)
            ticket.tags.add(tag)
        if to_remove:
            ticket.tags.remove(*Tag.objects.filter(name__in=to_remove))
        after = sorted(ticket.tags.values_list("name", flat=True))
        if after == before:
            return ticket
        _save(ticket, set())
        _event("ticket.tags", ticket=ticket, actor=actor, from_value=before, to_value=after)
        _publish_ticket("update", ticket, tags=after)
    return ticket


def do_close_resolved_tickets(older_than: timedelta | None = None) -> int:
    """Close tickets resolved longer ago than the reopen window (periodic job)."""
    cutoff = timezone.now() - (older_than or settings.HELPDESK_REOPEN_WINDOW)
    ids = list(
        Ticket.objects.filter(status=Status.RESOLVED, resolved_at__lt=cutoff).values_list(
            "id", flat=True
        )[:1000]
    )
    closed = 0
    for pk in ids:
        with transaction.atomic():
            ticket = _lock_ticket(pk)
            if ticket.status != Status.RESOLVED:
                continue
            ticket.status = Status.CLOSED
            ticket.closed_at = timezone.now()
            _save(ticket, {"status", "closed_at"})
            _event(
                "ticket.status",
                ticket=ticket,
                actor=None,
                from_value=Status.RESOLVED,
                to_value=Status.CLOSED,
                reason="reopen window passed",
            )
            _publish_ticket("update", ticket)
            closed += 1
    return closed


# --------------------------------------------------------------------------- contacts


def do_merge_contacts(
    target: Contact, source: Contact, *, actor: Agent | None, reason: str = ""
) -> ContactMerge:
    """Move the identities, accounts, tickets and calls of `source` onto `target`. Recorded in
    a ContactMerge so `do_unmerge_contacts` can put exactly those back."""
    if target.pk == source.pk:
        raise InvalidInput("a contact cannot be merged into itself", field="source")
    with transaction.atomic():
        locked = {
            c.pk: c
            for c in Contact.objects.select_for_update().filter(pk__in=[target.pk, source.pk])
        }
        if len(locked) != 2:
            raise NotFound("contact does not exist")
        target, source = locked[target.pk], locked[source.pk]
        if source.merged_into_id is not None:
            raise Conflict(f"contact {source.pk} was already merged into {source.merged_into_id}")
        if target.merged_into_id is not None:
            raise Conflict(
                f"contact {target.pk} was merged into {target.merged_into_id}; merge into that one"
            )
        merge = ContactMerge.objects.create(
            target=target,
            source=source,
            actor=actor,
            reason=reason[:200],
            identity_ids=list(source.identities.values_list("id", flat=True)),
            ticket_ids=list(source.tickets.values_list("id", flat=True)),
            account_ids=list(source.accounts.values_list("id", flat=True)),
            call_ids=list(source.calls.values_list("id", flat=True)),
        )
        source.identities.update(contact=target)
        source.calls.update(contact=target)
        existing_numbers = set(target.accounts.values_list("number", flat=True))
        source.accounts.exclude(number__in=existing_numbers).update(contact=target)
        tickets = list(Ticket.objects.select_for_update().filter(pk__in=merge.ticket_ids))
        for ticket in tickets:
            ticket.contact = target
            _save(ticket, {"contact"})
        source.merged_into = target
        source.updated_at = timezone.now()
        source.save(update_fields=["merged_into", "updated_at"])
        fields = ["updated_at"]
        for name in ("display_name", "language", "notes"):
            if not getattr(target, name) and getattr(source, name):
                setattr(target, name, getattr(source, name))
                fields.append(name)
        if Tier.values.index(source.tier) > Tier.values.index(target.tier):
            target.tier = source.tier
            fields.append("tier")
        target.updated_at = timezone.now()
        target.save(update_fields=fields)
        _event(
            "contact.merged",
            contact=target,
            actor=actor,
            from_value=source.pk,
            to_value=target.pk,
            merge=merge.pk,
            reason=reason[:200],
        )
        for ticket in tickets:
            _publish_ticket("update", ticket)
    return merge


def do_unmerge_contacts(merge: ContactMerge, *, actor: Agent | None) -> Contact:
    """Undo a merge: what moved goes back to the source contact."""
    with transaction.atomic():
        merge = ContactMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.undone_at is not None:
            raise Conflict(f"merge {merge.pk} was already undone")
        source = Contact.objects.select_for_update().get(pk=merge.source_id)
        Identity.objects.filter(pk__in=merge.identity_ids, contact_id=merge.target_id).update(
            contact=source
        )
        AccountNumber.objects.filter(pk__in=merge.account_ids, contact_id=merge.target_id).update(
            contact=source
        )
        Call.objects.filter(pk__in=merge.call_ids, contact_id=merge.target_id).update(
            contact=source
        )
        tickets = list(
            Ticket.objects.select_for_update().filter(
                pk__in=merge.ticket_ids, contact_id=merge.target_id
            )
        )
        for ticket in tickets:
            ticket.contact = source
            _save(ticket, {"contact"})
        source.merged_into = None
        source.updated_at = timezone.now()
        source.save(update_fields=["merged_into", "updated_at"])
        merge.undone_at = timezone.now()
        merge.undone_by = actor
        merge.save(update_fields=["undone_at", "undone_by"])
        _event(
            "contact.unmerged",
            contact=source,
            actor=actor,
            from_value=merge.target_id,
            to_value=source.pk,
            merge=merge.pk,
        )
        for ticket in tickets:
            _publish_ticket("update", ticket)
    return source


_CONTACT_FIELDS = {"display_name", "language", "tier", "value", "notes", "attributes"}


def do_update_contact(
    contact: Contact, *, actor: Agent | None, accounts: Sequence[str] | None = None, **changes: Any
) -> Contact:
    unknown = set(changes) - _CONTACT_FIELDS
    if unknown:
        raise InvalidInput(f"unknown contact fields: {', '.join(sorted(unknown))}")
    if "tier" in changes and changes["tier"] not in Tier.values:
        raise InvalidInput(f"tier must be one of {', '.join(Tier.values)}", field="tier")
    if changes.get("language") and changes["language"] not in settings.HELPDESK_LANGUAGES:
        raise InvalidInput(
            f"language must be one of {', '.join(settings.HELPDESK_LANGUAGES)}", field="language"
        )
    numbers: list[str] = []
    if accounts is not None:
        numbers = sorted({a.strip() for a in accounts if isinstance(a, str) and a.strip()})
        if any(len(n) > 40 for n in numbers):
            raise InvalidInput("an account number is longer than 40 characters", field="accounts")
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        before = {name: getattr(contact, name) for name in changes}
        for name, value in changes.items():
            setattr(contact, name, value)
        contact.updated_at = timezone.now()
        contact.save(update_fields=[*changes, "updated_at"])
        if accounts is not None:
            contact.accounts.exclude(number__in=numbers).delete()
            have = set(contact.accounts.values_list("number", flat=True))
            AccountNumber.objects.bulk_create(
                [AccountNumber(contact=contact, number=n) for n in numbers if n not in have]
            )
        _event(
            "contact.updated",
            contact=contact,
            actor=actor,
            from_value={k: str(v) for k, v in before.items()},
            to_value={k: str(v) for k, v in changes.items()},
            accounts=accounts is not None,
        )
    return contact


def do_log_call(
    contact: Contact,
    *,
    actor: Agent,
    direction: str = Call.Direction.INBOUND,
    phone: str = "",
    started_at: datetime | None = None,
    duration_seconds: int = 0,
    summary: str = "",
    ticket: Ticket | None = None,
) -> Call:
    """A phone call on the contact's timeline (and on a ticket's thread when given)."""
    if direction not in Call.Direction.values:
        raise InvalidInput(
            f"direction must be one of {', '.join(Call.Direction.values)}", field="direction"
        )
    if not isinstance(duration_seconds, int) or duration_seconds < 0 or duration_seconds > 86400:
        raise InvalidInput("duration_seconds must be between 0 and 86400", field="duration_seconds")
    summary = check_text(summary, what="call summary", allow_empty=True)
    if phone:
        phone = normalize_phone(phone)
    started = started_at or timezone.now()
    if started > timezone.now() + timedelta(minutes=5):
        raise InvalidInput("a call cannot start in the future", field="started_at")
    with transaction.atomic():
        if ticket is not None:
            ticket = _lock_ticket(ticket)
            check_can_work(actor, ticket)
            if ticket.contact_id != contact.pk:
                raise InvalidInput(f"ticket {ticket.pk} is not this contact's", field="ticket")
        call = Call.objects.create(
            contact=contact,
            ticket=ticket,
            agent=actor,
            direction=direction,
            phone=phone,
            started_at=started,
            duration_seconds=duration_seconds,
            summary=summary,
        )
        if ticket is not None:
            message = _new_outbound(
                ticket,
                actor,
                summary,
                author_kind=AuthorKind.AGENT,
                internal=True,
                kind="call",
                payload={
                    "call": call.pk,
                    "direction": direction,
                    "duration": duration_seconds,
                    "phone": phone,
                },
            )
            ticket.message_count += 1
            _save(ticket, {"message_count"})
            _publish_ticket("update", ticket)
            _publish_message(ticket, message)
        _event(
            "call.logged",
            ticket=ticket,
            contact=contact,
            actor=actor,
            call=call.pk,
            direction=direction,
            duration=duration_seconds,
        )
    return call


# ------------------------------------------------------------------ delivery, receipts, edits

_DELIVERY_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
}


def _publish_message_update(ticket: Ticket, message: Message) -> None:
    event = {
        "type": "message",
        "op": "update",
        "message": message_payload(message),
        "ticket": ticket.pk,
        "version": ticket.version,
    }
    publish_on_commit(ticket_groups(ticket), event)


def do_update_delivery_status(
    channel_id: int, platform_message_id: str, status: str, *, error: str = ""
) -> Message | None:
    """A platform's receipt for a message we sent. Receipts arrive out of order, so a status
    never moves backwards (a late "delivered" leaves "read" alone). Returns None when no
    message of ours has that id (yet)."""
    if status not in (*_DELIVERY_RANK, DeliveryStatus.FAILED):
        raise InvalidInput(f"unknown delivery status {status!r}", field="status")
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                channel_id=channel_id,
                platform_message_id=platform_message_id,
                direction=Direction.OUT,
            )
            .first()
        )
        if message is None:
            return None
        if status == DeliveryStatus.FAILED:
            delivery = Delivery.objects.filter(message=message).first()
            _fail_message(message, delivery, error or "the platform reported a failure")
            return message
        current = _DELIVERY_RANK.get(DeliveryStatus(message.delivery_status), -1)
        if _DELIVERY_RANK[DeliveryStatus(status)] <= current:
            return message
        old = message.delivery_status
        message.delivery_status = status
        message.save(update_fields=["delivery_status"])
        ticket = _lock_ticket(message.ticket_id)
        _save(ticket, set())
        _event(
            "message.delivery",
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            from_value=old,
            to_value=status,
            message=message.pk,
        )
        _publish_message_update(ticket, message)
    return message


def do_edit_inbound_message(channel_id: int, platform_message_id: str, text: str) -> Message | None:
    """The customer edited a message: show the new text, keep the old ones."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                channel_id=channel_id,
                platform_message_id=platform_message_id,
                direction=Direction.IN,
            )
            .first()
        )
        if message is None:
            return None
        if message.text == text:
            return message
        ticket = _lock_ticket(message.ticket_id)
        now = timezone.now()
        history = list(message.payload.get("edits", []))
        history.append({"text": message.text, "replaced_at": now.isoformat()})
        message.payload = {**message.payload, "edits": history}
        message.text = text
        message.edited_at = now
        message.save(update_fields=["payload", "text", "edited_at"])
        if ticket.message_count and ticket.last_message_at <= message.created_at:
            ticket.preview = _preview(text, message.kind)
        _save(ticket, {"preview"})
        _event("message.edited", ticket=ticket, actor_kind=AuthorKind.CUSTOMER, message=message.pk)
        _publish_message_update(ticket, message)
    return message


def do_mark_delivery_sent(delivery_id: int, platform_message_id: str) -> Delivery | None:
    """The platform accepted our message and gave it this id."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("message")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state == Delivery.State.SENT:
            return delivery
        now = timezone.now()
        delivery.state = Delivery.State.SENT
        delivery.attempts += 1
        delivery.last_error = ""
        delivery.updated_at = now
        delivery.save(update_fields=["state", "attempts", "last_error", "updated_at"])
        message = delivery.message
        message.platform_message_id = (platform_message_id or None) and platform_message_id[:255]
        message.sent_at = now
        fields = ["platform_message_id", "sent_at"]
        # A receipt may have raced ahead of this; never move the status backwards.
        if _DELIVERY_RANK.get(DeliveryStatus(message.delivery_status), -1) < 1:
            message.delivery_status = DeliveryStatus.SENT
            message.delivery_error = ""
            fields += ["delivery_status", "delivery_error"]
        message.save(update_fields=fields)
        ticket = _lock_ticket(message.ticket_id)
        _save(ticket, set())
        _event(
            "message.delivery",
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            from_value=DeliveryStatus.QUEUED,
            to_value=message.delivery_status,
            message=message.pk,
        )
        _publish_message_update(ticket, message)
    return delivery


def do_record_send_attempt(
    delivery_id: int, error: str, next_attempt_at: datetime
) -> Delivery | None:
    """A transient failure: count it and say when the next attempt is due."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.state in (Delivery.State.SENT, Delivery.State.FAILED):
            return delivery
        delivery.attempts += 1
        delivery.last_error = error[:2000]
        delivery.next_attempt_at = next_attempt_at
        delivery.state = Delivery.State.QUEUED
        delivery.updated_at = timezone.now()
        delivery.save(
            update_fields=["attempts", "last_error", "next_attempt_at", "state", "updated_at"]
        )
    return delivery


def do_mark_delivery_failed(delivery_id: int, error: str) -> Delivery | None:
    """A permanent failure, or retries exhausted: the message goes to the dead-letter list, the
    agents see the platform's error on the ticket, and the ticket comes back to the queue."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("message")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state in (Delivery.State.SENT, Delivery.State.FAILED):
            return delivery
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
        _fail_message(delivery.message, delivery, error)
    return delivery


def _fail_message(message: Message, delivery: Delivery | None, error: str) -> None:
    now = timezone.now()
    error = error[:2000] or "unknown error"
    if delivery is not None and delivery.state != Delivery.State.FAILED:
        delivery.state = Delivery.State.FAILED
        delivery.last_error = error
        delivery.updated_at = now
        delivery.save(update_fields=["state", "last_error", "updated_at"])
    message.delivery_status = DeliveryStatus.FAILED
    message.delivery_error = error
    message.save(update_fields=["delivery_status", "delivery_error"])
    ticket = _lock_ticket(message.ticket_id)
    note = _new_outbound(
        ticket,
        None,
        f"The reply could not be delivered: {error}",
        author_kind=AuthorKind.SYSTEM,
        internal=True,
        payload={"delivery_failed": message.pk},
    )
    old_status = ticket.status
    fields = {"message_count"}
    ticket.message_count += 1
    if ticket.status in (Status.PENDING, Status.RESOLVED):
        ticket.status = Status.OPEN
        ticket.resolved_at = None
        fields |= {"status", "resolved_at"}
        _adjust_load(ticket.assignee_id, old_status in ACTIVE_STATUSES, ticket.assignee_id, True)
    if ticket.waiting_since is None and ticket.status != Status.CLOSED:
        # The customer never got our answer: they are still waiting for one.
        ticket.waiting_since = now
        fields.add("waiting_since")
    sla.refresh_next_due(ticket)
    fields.add("sla_due_at")
    _save(ticket, fields)
    _event(
        "message.failed",
        ticket=ticket,
        actor_kind=AuthorKind.SYSTEM,
        message=message.pk,
        error=error,
    )
    if ticket.status != old_status:
        _event(
            "ticket.status",
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            from_value=old_status,
            to_value=ticket.status,
            reason="delivery failed",
        )
    _publish_message_update(ticket, message)
    _publish_message(ticket, note)
    _publish_ticket("update", ticket)


def do_retry_delivery(delivery: Delivery, *, actor: Agent) -> Delivery:
    """A supervisor sends a dead letter again."""
    if not actor.is_supervisor:
        raise Forbidden("only supervisors and admins may retry failed deliveries")
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("message")
            .get(pk=delivery.pk)
        )
        if delivery.state != Delivery.State.FAILED:
            raise Conflict(f"delivery {delivery.pk} is {delivery.state}, not failed")
        now = timezone.now()
        delivery.state = Delivery.State.QUEUED
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.updated_at = now
        delivery.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        message = delivery.message
        message.delivery_status = DeliveryStatus.QUEUED
        message.delivery_error = ""
        message.save(update_fields=["delivery_status", "delivery_error"])
        ticket = _lock_ticket(message.ticket_id)
        _save(ticket, set())
        _event("message.retried", ticket=ticket, actor=actor, message=message.pk)
        _publish_message_update(ticket, message)
        delivery_id = delivery.pk
        transaction.on_commit(lambda: dispatch_delivery(delivery_id))
    return delivery
