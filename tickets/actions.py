"""The only writer of ticket state and the only publisher of live events.

`check_*` functions validate and authorize and raise `tickets.errors.ActionError`s; `do_*`
functions write in one transaction, append `TicketEvent`s, and publish live events after
commit. Every `do_*` locks the rows it changes (PostgreSQL `SELECT ... FOR UPDATE`; the
embedded SQLite database takes its write lock at BEGIN instead), so two agents or workers
acting at once serialize instead of overwriting each other.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.signals import post_save, pre_save
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
from .language import Detection, conversation_language, detect
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
from .rawrows import Columns
from .rawwrites import Insert, Update
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
    # Only a page watching this ticket shows its messages (it joined the ticket's group): sent
    # to the queue and team groups too, every socket there would receive and drop it — a
    # third of all socket deliveries with 500 agents (bench/live.py).
    publish_on_commit({ticket_group(ticket.pk)}, event)


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


def _resolve_contact(
    sender: Sender, events: list[TicketEvent], language: str = ""
) -> tuple[Contact, bool]:
    """The contact of this sender, locked (two messages of one person arriving at once must
    not open two tickets): found by any of the sender's identities, or created (then True:
    a contact this message created has no tickets yet). Identities it lacks are attached.
    Two contacts sharing a phone or an email are one person: they are merged (recorded and
    reversible). A name alone never merges anyone."""
    pairs = _sender_identities(sender)
    # One query finds the identities and locks their contacts.
    found = _find_identities(pairs)
    by_pair = {(i.kind, i.value): i for i in found}
    contact_ids = {i.contact_id for i in found}

    if not contact_ids:
        created = _create_contact(sender, pairs, language)
        if created is None:
            # Another worker created this person a moment ago: use theirs.
            return _resolve_contact(sender, events, language)
        events.append(
            _new_event(
                "contact.created", contact_id=created.pk, identities=[f"{k}:{v}" for k, v in pairs]
            )
        )
        return created, True

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
    return contact, False


@functools.cache
def _receive_sql() -> dict[str, Any]:
    """Hand-written statements of the receive path on PostgreSQL (built once per process):
    the same rows the ORM queries read and write, without compiling them per message
    (bench/ingest.py: the ORM's query compilation was most of a message's CPU)."""
    identity, contact = Columns(Identity, "i"), Columns(Contact, "c")
    ticket = Columns(Ticket, "t")
    return {
        "identity": identity,
        "contact": contact,
        "ticket": ticket,
        # %s is the WHERE clause: one (kind, value) test per identity of the sender.
        "identities": (
            f"SELECT {identity.sql}, {contact.sql} FROM tickets_identity i "  # noqa: S608
            "JOIN tickets_contact c ON c.id = i.contact_id WHERE {} FOR UPDATE OF c"
        ),
        "conversation": (
            f"SELECT {ticket.sql} FROM tickets_ticket t "  # noqa: S608
            "WHERE t.contact_id = %s AND t.channel_id = %s AND t.thread_key = %s "
            "AND NOT t.status = %s ORDER BY t.id DESC LIMIT 1 FOR UPDATE OF t"
        ),
        "recent_tickets": (
            "SELECT count(*) FROM tickets_ticket WHERE contact_id = %s AND created_at >= %s"
        ),
        # A ticket number from the subject ("[#123]"), if the ticket is this contact's.
        "ticket_ref": (
            f"SELECT {ticket.sql} FROM tickets_ticket t "  # noqa: S608
            "WHERE t.id = %s AND t.contact_id = %s FOR UPDATE OF t"
        ),
        # The ticket of the latest of this contact's messages that the message answers.
        "replied_ticket": (
            f"SELECT {ticket.sql} FROM tickets_ticket t WHERE t.id = ("  # noqa: S608
            "SELECT m.ticket_id FROM tickets_message m "
            "JOIN tickets_ticket c ON c.id = m.ticket_id "
            "WHERE m.channel_id = %s AND m.platform_message_id = ANY(%s) AND c.contact_id = %s "
            "ORDER BY m.id DESC LIMIT 1) FOR UPDATE OF t"
        ),
        # Prepared on the server (routing's _prepared_cursor): parsed and planned once per
        # connection, not per message.
        "insert_contact": Insert(Contact, cursor=_prepared_cursor),
        "insert_identity": Insert(Identity, cursor=_prepared_cursor),
        "insert_ticket": Insert(Ticket, cursor=_prepared_cursor),
        # A ticket routed before its INSERT (_route_new) comes with its id.
        "insert_routed_ticket": Insert(Ticket, cursor=_prepared_cursor, explicit_pk=True),
        "insert_message": Insert(Message, cursor=_prepared_cursor),
        "insert_event": Insert(TicketEvent, cursor=_prepared_cursor),
        "update_ticket": Update(Ticket, cursor=_prepared_cursor),
        "update_contact": Update(Contact, cursor=_prepared_cursor),
    }


def _fast_path() -> bool:
    return connection.vendor == "postgresql"


def _find_identities(pairs: list[tuple[str, str]]) -> list[Identity]:
    """The sender's identities that exist, each with its contact, the contacts locked."""
    if not _fast_path():
        query = Q()
        for kind, value in pairs:
            query |= Q(kind=kind, value=value)
        return list(
            Identity.objects.filter(query)
            .select_related("contact")
            .select_for_update(of=("contact",))
        )
    sql = _receive_sql()
    identity, contact = sql["identity"], sql["contact"]
    where = " OR ".join(["(i.kind = %s AND i.value = %s)"] * len(pairs))
    with _prepared_cursor() as cursor:
        cursor.execute(sql["identities"].format(where), [v for pair in pairs for v in pair])
        rows = cursor.fetchall()
    found = []
    for row in rows:
        item = identity.build(row)
        Identity.contact.field.set_cached_value(item, contact.build(row, identity.width))
        found.append(item)
    return found


def _create_contact(sender: Sender, pairs: list[tuple[str, str]], language: str) -> Contact | None:
    """A new contact with these identities, or None when another worker has just created one
    of the identities (nothing of ours is left behind then)."""
    contact = Contact(
        display_name=sender.display_name[:200],
        language=(language or sender.language)[:8],
        last_seen_at=timezone.now(),
    )
    identities = [Identity(kind=k, value=v, label=sender.display_name[:200]) for k, v in pairs]
    if not _fast_path() or post_save.has_listeners(Contact) or pre_save.has_listeners(Contact):
        try:
            with transaction.atomic():
                contact.save(force_insert=True)
                for item in identities:
                    item.contact = contact
                Identity.objects.bulk_create(identities)
        except IntegrityError:
            return None
        return contact
    # One statement instead of a savepoint, two INSERTs and its release. A conflicting
    # identity (committed by another worker; an uncommitted one makes this wait for it) is
    # skipped, not raised, so the transaction stays usable: the contact is then removed again.
    sql = _receive_sql()
    insert_contact, insert_identity = sql["insert_contact"], sql["insert_identity"]
    identities_sql = insert_identity.sql(
        len(pairs), computed={"contact_id": "(SELECT id FROM c)"}, on_conflict="DO NOTHING"
    )
    statement = (
        f"WITH c AS ({insert_contact.sql()}), i AS ({identities_sql}) "  # noqa: S608
        "SELECT (SELECT id FROM c), (SELECT count(*) FROM i)"
    )
    params = insert_contact.params(contact)
    for item in identities:
        params += insert_identity.params(item, without=("contact_id",))
    with _prepared_cursor() as cursor:
        cursor.execute(statement, params)
        pk, inserted = cursor.fetchone()
        insert_contact.saved(contact, pk)
        if inserted == len(pairs):
            return contact
        cursor.execute(
            "WITH i AS (DELETE FROM tickets_identity WHERE contact_id = %s) "
            "DELETE FROM tickets_contact WHERE id = %s",
            [pk, pk],
        )
    return None


def _continued_ticket(contact: Contact, inbound: InboundMessage) -> Ticket | None:
    """The ticket a subject's ticket number, a reply's references or the conversation point
    to (locked), whatever its status."""
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
        ticket = (
            Ticket.objects.select_for_update(of=("self",))
            .filter(contact=contact, channel_id=inbound.channel_id, thread_key=inbound.thread_key)
            .exclude(status=Status.CLOSED)
            .order_by("-id")
            .first()
        )
    return ticket


def _continued_ticket_fast(contact: Contact, inbound: InboundMessage) -> Ticket | None:
    """_continued_ticket on PostgreSQL: each way of finding the ticket is one prepared
    statement that also locks it (the ORM took two per way, the second a re-read)."""
    sql = _receive_sql()
    tries: list[tuple[str, list[Any]]] = []
    if inbound.ticket_ref:
        tries.append((sql["ticket_ref"], [inbound.ticket_ref, contact.pk]))
    if inbound.reply_to:
        tries.append(
            (sql["replied_ticket"], [inbound.channel_id, list(inbound.reply_to), contact.pk])
        )
    # The common case: the latest open conversation.
    tries.append(
        (sql["conversation"], [contact.pk, inbound.channel_id, inbound.thread_key, Status.CLOSED])
    )
    with _prepared_cursor() as cursor:
        for statement, params in tries:
            cursor.execute(statement, params)
            row = cursor.fetchone()
            if row is not None:
                return sql["ticket"].build(row)
    return None


def _conversation_ticket(contact: Contact, inbound: InboundMessage) -> Ticket | None:
    """The ticket this message continues, locked; None when a new ticket must start."""
    ticket = (
        _continued_ticket_fast(contact, inbound)
        if _fast_path()
        else _continued_ticket(contact, inbound)
    )
    if ticket is None or ticket.status == Status.CLOSED:
        return None
    if ticket.status == Status.RESOLVED and (
        ticket.resolved_at is None
        or timezone.now() - ticket.resolved_at > settings.HELPDESK_REOPEN_WINDOW
    ):
        return None
    return ticket


def _insert(obj: Ticket | Message) -> None:
    """obj.save(force_insert=True), with the statement built once (see _receive_sql)."""
    if _fast_path():
        _receive_sql()["insert_" + type(obj)._meta.model_name].one(obj)
    else:
        obj.save(force_insert=True)


def _save_received(ticket: Ticket, fields: Iterable[str]) -> None:
    """_save(ticket, fields), with the statement built once (see _receive_sql)."""
    if not _fast_path():
        _save(ticket, fields)
        return
    ticket.version += 1
    ticket.updated_at = timezone.now()
    _receive_sql()["update_ticket"].save(ticket, {*fields, "version", "updated_at"})


def _insert_events_of_receive(events: list[TicketEvent]) -> None:
    if _fast_path():
        _receive_sql()["insert_event"].many(events)
    else:
        TicketEvent.objects.bulk_create(events)


@dataclass
class Received:
    ticket: Ticket | None
    message: Message | None
    created_ticket: bool = False
    duplicate: bool = False
    reopened: bool = False
    # How a new ticket was routed before its INSERT (do_receive_inbound with route=True).
    route: RouteResult | None = None


class _RouteNewFailed(Exception):
    """Routing a new ticket before its INSERT raised: the receive is redone without it."""


def do_receive_inbound(
    inbound: InboundMessage,
    *,
    channel: Channel | None = None,
    route: bool = False,
    savepoint: bool = True,
) -> Received:
    """Store one normalized inbound message: contact, ticket, message, events — once.

    Idempotent on (channel, platform message id): a redelivery returns `duplicate=True` and
    changes nothing (the unique constraint decides, so a race between two workers does too).
    Runs in one transaction. `channel` saves a query when the caller has it loaded.

    `route`: the caller routes the ticket next (route_after_receive). On PostgreSQL a ticket
    this message creates is then routed before it is inserted (_route_new), so it is written
    once, with its agent, instead of inserted and then updated.

    Without `savepoint` (only inside the caller's transaction) nothing is caught: a duplicate
    or a routing failure aborts the caller's transaction, which must then be rolled back and
    redone with one (channels_in.processing._apply_event).
    """
    if not inbound.platform_message_id:
        raise InvalidInput("an inbound message needs its platform message id")
    if channel is None or channel.pk != inbound.channel_id:
        channel = (
            Channel.objects.select_related("default_team").filter(pk=inbound.channel_id).first()
        )
        if channel is None:
            raise NotFound(f"channel {inbound.channel_id} does not exist")
    if not savepoint:
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("do_receive_inbound(savepoint=False) needs the caller's transaction")
        return _receive(inbound, channel, route=route and _fast_path())
    if route and _fast_path():
        try:
            return _receive_once(inbound, channel, route=True)
        except _RouteNewFailed:
            # The savepoint took the half-routed receive back: store the message without it;
            # route_after_receive tries again the usual way (and keeps the message if that
            # fails too).
            log.exception(
                "routing the new ticket of message %s failed", inbound.platform_message_id
            )
    return _receive_once(inbound, channel, route=False)


def _receive_once(inbound: InboundMessage, channel: Channel, *, route: bool) -> Received:
    try:
        with transaction.atomic():
            return _receive(inbound, channel, route=route)
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


def _receive(inbound: InboundMessage, channel: Channel, *, route: bool = False) -> Received:
    now = timezone.now()
    events: list[TicketEvent] = []
    text = inbound.text.replace("\x00", "")
    detection = detect(text)
    detected = detection.language
    contact, new_contact = _resolve_contact(inbound.sender, events, detected or "")
    sender_address = normalize_identity(inbound.sender.kind, inbound.sender.value)
    # A contact this message created has no conversation to continue: no query for one.
    ticket = None if new_contact else _conversation_ticket(contact, inbound)
    created = reopened = False
    changed: set[str] = set()
    preview = _preview(text, inbound.kind)
    routed: tuple[RouteResult, list[TicketEvent]] | None = None
    created_priority = ""

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
        created_priority = ticket.priority_name
        if route:
            try:
                routed = _route_new(ticket, contact, channel)
            except Exception as exc:
                raise _RouteNewFailed from exc
            _receive_sql()["insert_routed_ticket"].one(ticket)
        else:
            _insert(ticket)
    else:
        if ticket.status == Status.RESOLVED:
            reopened = True
            _adjust_load(ticket.assignee_id, False, ticket.assignee_id, True)
            ticket.status = Status.OPEN
            ticket.resolved_at = None
            sla.apply_due_times(ticket, since=now)
            changed |= {"status", "resolved_at", "resolution_due", "first_response_due"}
        elif ticket.status == Status.PENDING:
            sla.resume_paused(ticket, now)
            ticket.status = Status.OPEN
            changed.add("status")
        if ticket.waiting_since is None:
            ticket.waiting_since = now
            changed.add("waiting_since")
        changed |= _stick_language(ticket, detection, events)
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
        _save_received(
            ticket, changed | sla.SLA_FIELDS | {"last_message_at", "preview", "message_count"}
        )

    message = Message(
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
    _insert(message)
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
                priority=created_priority,
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
    if routed is not None:
        events += routed[1]  # after the receive's own, as when routing runs after it
    _insert_events_of_receive(events)

    _publish_ticket("create" if created else "update", ticket)
    _publish_message(ticket, message)
    return Received(
        ticket=ticket,
        message=message,
        created_ticket=created,
        reopened=reopened,
        route=routed[0] if routed is not None else None,
    )


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
        if _fast_path():
            _receive_sql()["update_contact"].save(contact, [*fields, "last_seen_at", "updated_at"])
        else:
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
        value=float(contact.value),
        recent_tickets=_recent_tickets(ticket, contact),
    )
    changed = _set_sentiment(ticket, score.sentiment)
    if ticket.pk is not None and score.points <= ticket.priority_score and not score.safety:
        return changed
    old_priority = ticket.priority
    ticket.priority_score = max(score.points, ticket.priority_score if ticket.pk else 0)
    ticket.priority_reasons = _kept_reasons(ticket) + score.reasons
    changed |= {"priority_score", "priority_reasons"}
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
        fields = {"waiting_since", "last_message_at", "message_count", *sla.SLA_FIELDS}
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
            if ticket.status == Status.PENDING and new_status == Status.OPEN:
                sla.resume_paused(ticket, now)
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
        check_online(me)  # defined in the "live: presence" section
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
            elif old == Status.PENDING:
                sla.resume_paused(ticket, now)
        sla.refresh_next_due(ticket)
        fields |= sla.SLA_FIELDS
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
                "escalation_level",
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
    # Only a page watching this ticket shows its messages (it joined the ticket's group): sent
    # to the queue and team groups too, every socket there would receive and drop it — a
    # third of all socket deliveries with 500 agents (bench/live.py).
    publish_on_commit({ticket_group(ticket.pk)}, event)


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
    fields |= sla.SLA_FIELDS
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


# =========================================================================== live: presence,
# viewing, typing
#
# Presence is agent state, not ticket state, but others watch it live (supervisors, teammates)
# and reports are computed from its history, so it goes through actions like everything
# else: one PresenceLog row per change, login and logout, and a "presence" event after commit.
# Viewing and typing are ephemeral: published to the ticket's page group, never stored.
# (Imported here rather than in the import block at the top, which other sections share.)

import time as _time  # noqa: E402

from .events import ephemeral_event, presence_event, presence_groups, ticket_group  # noqa: E402
from .models import Presence, PresenceLog  # noqa: E402
from .queue import team_ids as _team_ids  # noqa: E402

PresenceReason = PresenceLog.Reason
VIEWING_OPS = ("start", "here", "stop")


def presence_grace() -> timedelta:
    """How long an agent's sockets may be gone before they count as offline."""
    return timedelta(seconds=getattr(settings, "HELPDESK_PRESENCE_GRACE_SECONDS", 120))


def viewing_ttl() -> int:
    return int(getattr(settings, "HELPDESK_VIEWING_TTL_SECONDS", 60))


def typing_ttl() -> int:
    return int(getattr(settings, "HELPDESK_TYPING_TTL_SECONDS", 6))


def check_online(agent: Agent) -> None:
    """Only online agents are given work: take-next refuses away and offline agents (routing
    applies the same rule when it picks an agent)."""
    if agent.presence != Presence.ONLINE:
        raise Conflict(
            f"you are {Presence(agent.presence).label.lower()}: set yourself online to take "
            "tickets",
            code="not_online",
        )


def _lock_agent(agent: Agent | int) -> Agent:
    pk = agent.pk if isinstance(agent, Agent) else agent
    try:
        return Agent.objects.select_for_update(of=("self",)).select_related("user").get(pk=pk)
    except Agent.DoesNotExist as exc:
        raise NotFound(f"agent {pk} does not exist") from exc


def _write_presence(
    agent: Agent, status: str, reason: str, *, previous: str | None = None
) -> PresenceLog:
    """Record one presence change (or a login/logout) on a locked agent and publish it."""
    now = timezone.now()
    old = agent.presence
    fields = []
    if old != status:
        agent.presence = status
        agent.presence_changed_at = now
        fields += ["presence", "presence_changed_at"]
    if reason == PresenceReason.LOGIN:
        # The page opens its socket in a moment; until then the login counts as a heartbeat,
        # or a heartbeat from yesterday would let the sweep take them offline at once.
        agent.last_heartbeat_at = now
        fields.append("last_heartbeat_at")
    if fields:
        agent.save(update_fields=fields)
    log_row = PresenceLog.objects.create(
        agent=agent, status=status, previous=previous or old, reason=reason, at=now
    )
    publish_on_commit(
        presence_groups(agent.pk, _team_ids(agent)),
        presence_event(
            agent.pk, agent.name, status, reason=reason, at=now.isoformat(), version=log_row.pk
        ),
    )
    return log_row


def do_set_presence(
    agent: Agent, status: str, *, reason: str = PresenceReason.MANUAL, actor: Agent | None = None
) -> PresenceLog | None:
    """Set an agent online, away or offline. Returns the log row, or None when nothing
    changed. Logins and logouts are always recorded (reports count sessions), even when the
    status stays the same; a supervisor may set another agent's status."""
    if status not in Presence.values:
        raise InvalidInput(
            f"presence must be one of {', '.join(Presence.values)}; got {status!r}",
            field="status",
        )
    if reason not in (
        PresenceReason.MANUAL,
        PresenceReason.LOGIN,
        PresenceReason.LOGOUT,
        PresenceReason.SUPERVISOR,
    ):
        raise InvalidInput(f"unknown presence reason {reason!r}", field="reason")
    if actor is not None and actor.pk != agent.pk:
        if not actor.is_supervisor:
            raise Forbidden("only supervisors set another agent's status")
        reason = PresenceReason.SUPERVISOR
    with transaction.atomic():
        me = _lock_agent(agent)
        if me.presence == status and reason not in (PresenceReason.LOGIN, PresenceReason.LOGOUT):
            return None
        return _write_presence(me, status, reason)


def do_mark_idle(agent: Agent | int) -> PresenceLog | None:
    """No keyboard or mouse for a while: an online agent becomes away (reason "idle"), so
    routing stops giving them tickets. Anything but online is left alone."""
    with transaction.atomic():
        me = _lock_agent(agent)
        if me.presence != Presence.ONLINE:
            return None
        return _write_presence(me, Presence.AWAY, PresenceReason.IDLE)


def do_mark_active(agent: Agent | int) -> PresenceLog | None:
    """The agent is back: undo what was automatic, and only that. Away because idle becomes
    online; offline because the connection was lost becomes what it was before. A status the
    agent chose (away for lunch) or a logout stays."""
    with transaction.atomic():
        me = _lock_agent(agent)
        if me.presence == Presence.ONLINE:
            return None
        last = PresenceLog.objects.filter(agent=me).order_by("-at", "-id").first()
        if last is None or last.status != me.presence:
            return None
        if last.reason == PresenceReason.IDLE and me.presence == Presence.AWAY:
            return _write_presence(me, Presence.ONLINE, PresenceReason.ACTIVE)
        if last.reason == PresenceReason.DISCONNECTED and me.presence == Presence.OFFLINE:
            back = last.previous if last.previous in (Presence.ONLINE, Presence.AWAY) else None
            return _write_presence(me, back or Presence.ONLINE, PresenceReason.ACTIVE)
        return None


def do_heartbeat(agent_id: int) -> None:
    """An agent's socket is alive: one UPDATE, no event. Callers throttle (the consumer writes
    at most every HELPDESK_HEARTBEAT_WRITE_SECONDS per socket)."""
    Agent.objects.filter(pk=agent_id).update(last_heartbeat_at=timezone.now())


def do_sweep_presence(now: datetime | None = None) -> int:
    """Periodic: agents still online or away whose sockets have all been gone longer than the
    grace period go offline (reason "disconnected"). Returns how many."""
    now = now or timezone.now()
    cutoff = now - presence_grace()
    stale = Q(last_heartbeat_at__lt=cutoff) | Q(
        last_heartbeat_at__isnull=True, presence_changed_at__lt=cutoff
    )
    ids = list(
        Agent.objects.filter(stale, presence__in=(Presence.ONLINE, Presence.AWAY))
        .order_by("pk")
        .values_list("pk", flat=True)[:1000]
    )
    swept = 0
    for pk in ids:
        with transaction.atomic():
            me = (
                Agent.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("user")
                .filter(pk=pk)
                .first()
            )
            # Re-checked under the lock: a heartbeat may have landed since the scan.
            seen = me.last_heartbeat_at or me.presence_changed_at if me is not None else None
            if me is None or me.presence == Presence.OFFLINE or seen is None or seen >= cutoff:
                continue
            _write_presence(me, Presence.OFFLINE, PresenceReason.DISCONNECTED)
            swept += 1
    return swept


def _clock_ms() -> int:
    return _time.time_ns() // 1_000_000


def do_announce_viewing(agent: Agent, ticket_id: int, op: str = "start") -> None:
    """`agent` has ticket `ticket_id` open ("start"), still has ("here"), or closed it
    ("stop"). Ephemeral: published to the ticket's page group, nothing stored.

    Precondition: the caller checked the agent may see the ticket (the consumer's watch does,
    with tickets.queue.can_see), so this costs no query."""
    if op not in VIEWING_OPS:
        raise InvalidInput(f"viewing op must be one of {', '.join(VIEWING_OPS)}", field="op")
    publish_on_commit(
        [ticket_group(ticket_id)],
        ephemeral_event(
            "viewing", op, ticket_id, agent.pk, agent.name, ttl=viewing_ttl(), version=_clock_ms()
        ),
    )


def do_announce_typing(agent: Agent, ticket_id: int, typing: bool = True) -> None:
    """`agent` is typing a reply on the ticket (or stopped). Same precondition as
    do_announce_viewing; the client repeats "start" while typing and forgets it after
    `ttl` seconds."""
    publish_on_commit(
        [ticket_group(ticket_id)],
        ephemeral_event(
            "typing",
            "start" if typing else "stop",
            ticket_id,
            agent.pk,
            agent.name,
            ttl=typing_ttl(),
            version=_clock_ms(),
        ),
    )


# =========================================================================== sla: escalation
# The periodic SLA job (tickets.tasks.escalate_sla). Each stage of a ticket's current
# deadline (at risk, then breached) is handled once: Ticket.escalation_level records it, and
# sla.refresh_next_due re-arms it when the deadline moves later (a reply, a resume from
# pending, a lower priority). Steps per policy: notify_supervisor, raise_priority, reassign.

_SLA_VERBS = {sla.AT_RISK: "sla.at_risk", sla.BREACHED: "sla.breached"}
_SLA_DEADLINES = {
    "first_response": "first response",
    "next_reply": "reply",
    "resolution": "resolution",
}


def do_escalate_sla(*, now: datetime | None = None, batch: int | None = None) -> dict[str, int]:
    """Apply the escalation steps of every ticket at risk or past its deadline whose stage
    is not handled yet. Safe to run concurrently and repeatedly: each ticket is re-checked
    under its row lock, and one that another worker holds is left for the next run."""
    now = now or timezone.now()
    limit = batch or getattr(settings, "HELPDESK_SLA_ESCALATION_BATCH", 1000)
    counts = {"at_risk": 0, "breached": 0}
    for level in sorted(Priority.values, reverse=True):  # the most urgent first
        for candidate in sla.escalation_candidates(now, level, limit):
            if sla.escalation_stage(candidate, now) <= candidate.escalation_level:
                continue  # at risk and already handled: not breached yet
            handled = _escalate_ticket(candidate.pk, now)
            if handled == sla.BREACHED:
                counts["breached"] += 1
            elif handled == sla.AT_RISK:
                counts["at_risk"] += 1
    return counts


def _escalate_ticket(ticket_id: int, now: datetime) -> int:
    """Handle the current stage of one ticket; the stage handled, or 0."""
    from .events import QUEUE_GROUP

    route = False
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update(skip_locked=True).filter(pk=ticket_id).first()
        if ticket is None:
            return 0
        policy = sla.policy_for(ticket)
        stage = sla.escalation_stage(ticket, now, policy)
        if stage <= ticket.escalation_level:
            return 0
        steps = policy.steps(stage)
        due, deadline = ticket.sla_due_at, sla.deadline_kind(ticket)
        what = _SLA_DEADLINES[deadline]
        if stage == sla.BREACHED:
            reason = f"{what} overdue"
        else:
            left = max(1, -(-int((due - now).total_seconds()) // 60))
            reason = f"{what} due within {left} min"
        old_level, old_assignee = ticket.escalation_level, ticket.assignee_id
        fields = {"escalation_level"}
        applied: list[str] = []
        if "notify_supervisor" in steps:
            applied.append("notify_supervisor")
        if "raise_priority" in steps and ticket.priority < Priority.URGENT:
            old_priority = ticket.priority
            ticket.priority = old_priority + 1
            ticket.priority_reasons = [
                *ticket.priority_reasons,
                {
                    "signal": "escalation",
                    "detail": f"raised to {ticket.priority_name}: SLA {reason}",
                    "points": 0,
                },
            ]
            sla.reprioritize_due_times(ticket, old_priority)
            fields |= {"priority", "priority_reasons", *sla.SLA_FIELDS}
            applied.append("raise_priority")
            _event(
                "ticket.priority",
                ticket=ticket,
                actor_kind=AuthorKind.SYSTEM,
                from_value=Priority(old_priority).label,
                to_value=ticket.priority_name,
                reason="escalation",
            )
        if "reassign" in steps:
            applied.append("reassign")
            if _sla_router() is not None:
                route = True  # after commit: routing releases the agent, picks someone else
            elif ticket.assignee_id is not None:
                # Back to the pool with the reason recorded, for take-next.
                _set_assignee(ticket, None, actor=None, reason=f"SLA {reason}", via="escalation")
                fields |= {"assignee", "assigned_at"}
        ticket.escalation_level = stage
        _save(ticket, fields)
        _event(
            _SLA_VERBS[stage],
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            from_value=old_level,
            to_value=stage,
            due=due.isoformat(),
            deadline=deadline,
            policy=policy.pk,
            policy_name=policy.name,
            steps=applied,
            reason=reason,
        )
        _publish_ticket("update", ticket, old_assignee=old_assignee)
        if "notify_supervisor" in applied:
            publish_on_commit(
                [QUEUE_GROUP],
                {
                    "type": "notice",
                    "op": "sla_breached" if stage == sla.BREACHED else "sla_at_risk",
                    "ticket": ticket.pk,
                    "subject": ticket.subject,
                    "priority": ticket.priority_name,
                    "team_id": ticket.team_id,
                    "assignee_id": old_assignee,
                    "sla_due_at": due.isoformat(),
                    "deadline": deadline,
                    "reason": reason,
                    "steps": applied,
                    "version": ticket.version,
                },
            )
    if route:
        _reroute_after_escalation(ticket_id, f"SLA {reason}")
    return stage


def _sla_router() -> Any:
    # The routing section of this module, when present: do_route_ticket(ticket, reassign=True)
    # releases the agent and assigns someone else, or leaves the ticket in the team's queue.
    return globals().get("do_route_ticket")


def _reroute_after_escalation(ticket_id: int, reason: str) -> None:
    router = _sla_router()
    if router is None:
        return
    try:
        router(ticket_id, reassign=True, reason=reason)
    except Exception:
        # The escalation is committed; without routing the ticket at least leaves the agent
        # who let it breach, for take-next.
        log.exception("routing after the SLA escalation of ticket %s failed", ticket_id)
        with transaction.atomic():
            ticket = _lock_ticket(ticket_id)
            old = ticket.assignee_id
            if old is not None and ticket.status in ACTIVE_STATUSES:
                _set_assignee(ticket, None, actor=None, reason=reason, via="escalation")
                _save(ticket, {"assignee", "assigned_at"})
                _publish_ticket("update", ticket, old_assignee=old)


# =========================================================================== attachments
#
# Media a platform only referenced (a Telegram file id, a WhatsApp media id, a CDN link) are
# fetched by the worker after the message is stored (channels_in.tasks.fetch_attachment).
# Storing the file, or recording why it could not be had, is ticket state: the agent sees it
# on the message, live. An attachment has no fetch-state column: `fetch_attempts` reaching
# ATTACHMENT_FETCH_MAX_ATTEMPTS means "given up" (a permanent error uses up every remaining
# attempt at once) and `fetch_error` says why.
# (Imported here rather than in the import block at the top, which other sections share.)

import mimetypes as _mimetypes  # noqa: E402
import re as _re  # noqa: E402
import secrets as _secrets  # noqa: E402

ATTACHMENT_FETCH_MAX_ATTEMPTS = 8
_CONTENT_TYPE = _re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def attachment_given_up(attachment: Attachment) -> bool:
    return not attachment.file and attachment.fetch_attempts >= ATTACHMENT_FETCH_MAX_ATTEMPTS


def _clean_content_type(value: str) -> str:
    """A plain `type/subtype` from a platform's Content-Type header, or "" when it is not
    one (a header is the platform's word, stored and later served back to browsers)."""
    main = (value or "").split(";", 1)[0].strip().lower()
    return main if len(main) <= 120 and _CONTENT_TYPE.match(main) else ""


def _extension(name: str) -> str:
    stem, dot, ext = name.replace("\\", "/").rsplit("/", 1)[-1].rpartition(".")
    return _re.sub(r"[^A-Za-z0-9]", "", ext)[:10].lower() if dot and stem else ""


def _storage_name(name: str) -> str:
    """A random file name with the original extension: files are served only by the
    authorized download view, and a media directory served by mistake is not enumerable."""
    ext = _extension(name)
    return _secrets.token_urlsafe(18) + (f".{ext}" if ext else "")


def _display_name(current: str, fetched: str | None, content_type: str) -> str:
    """Keep the platform's name; one without an extension ("photo-AQADx") borrows the fetched
    file's ("file_12.jpg") or its type's, so the download opens in the right program."""
    if _extension(current):
        return current
    ext = _extension(fetched or "")
    if not ext and content_type:
        ext = (_mimetypes.guess_extension(content_type) or "").lstrip(".")
    return f"{current}.{ext}"[:255] if ext else current


def _attachment_label(message: Message, attachment: Attachment) -> str:
    """What the agent reads in "Photo could not be downloaded: ..."."""
    family = attachment.content_type.split("/", 1)[0]
    if family == "image":
        return "Sticker" if message.kind == "sticker" else "Photo"
    if family == "audio":
        return "Voice message" if message.kind == "audio" else "Audio"
    if family == "video":
        return "Video"
    return "Document"


def _lock_attachment(attachment_id: int) -> tuple[Attachment, Message] | None:
    # Attachment, then message, then ticket: the order every action here takes.
    attachment = Attachment.objects.select_for_update().filter(pk=attachment_id).first()
    if attachment is None:
        return None
    message = Message.objects.select_for_update().get(pk=attachment.message_id)
    return attachment, message


def do_store_attachment_file(
    attachment_id: int, content: bytes, content_type: str, filename: str | None
) -> Attachment | None:
    """Store the fetched file of an attachment, once: the second of two fetches (a retry
    that raced, a replayed event) finds the file there and stores nothing. Publishes the
    message again, so an open ticket page shows the file."""
    max_bytes = settings.HELPDESK_MAX_ATTACHMENT_BYTES
    if len(content) > max_bytes:
        raise TooLarge(
            f"the file is {len(content)} bytes; the limit is {max_bytes} bytes", field="content"
        )
    with transaction.atomic():
        locked = _lock_attachment(attachment_id)
        if locked is None:
            return None
        attachment, message = locked
        if attachment.file:
            return attachment
        fetched_type = _clean_content_type(content_type)
        # Many file servers say octet-stream for everything; the platform's own word from
        # the webhook (image/jpeg) is better then.
        if fetched_type and fetched_type != "application/octet-stream":
            attachment.content_type = fetched_type
        attachment.name = _display_name(attachment.name, filename, attachment.content_type)
        attachment.size = len(content)
        attachment.fetch_error = ""
        # Written inside the transaction: a rollback after this leaves an orphaned file on
        # disk, never a row pointing at a missing one.
        attachment.file.save(_storage_name(attachment.name), ContentFile(content), save=False)
        attachment.save(update_fields=["file", "name", "content_type", "size", "fetch_error"])
        failed = list(message.payload.get("failed_attachments", []))
        kept = [f for f in failed if not (isinstance(f, dict) and f.get("id") == attachment.pk)]
        if kept != failed:
            message.payload = {**message.payload, "failed_attachments": kept}
            message.save(update_fields=["payload"])
        ticket = _lock_ticket(message.ticket_id)
        _save(ticket, set())
        _event(
            "attachment.stored",
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            message=message.pk,
            attachment=attachment.pk,
            size=attachment.size,
        )
        _publish_message_update(ticket, message)
    return attachment


def do_record_attachment_fetch_attempt(attachment_id: int, error: str) -> Attachment | None:
    """A transient failure (network, 5xx, 429): count it; the worker tries again later."""
    with transaction.atomic():
        attachment = Attachment.objects.select_for_update().filter(pk=attachment_id).first()
        if attachment is None or attachment.file or attachment_given_up(attachment):
            return attachment
        attachment.fetch_attempts += 1
        attachment.fetch_error = error[:2000]
        attachment.save(update_fields=["fetch_attempts", "fetch_error"])
    return attachment


def do_fail_attachment(attachment_id: int, reason: str) -> Attachment | None:
    """Give up on an attachment (a permanent error, or attempts exhausted): the reason goes on
    the attachment and into the message's payload (`failed_attachments`), where the ticket
    page and the API show "Photo could not be downloaded: <reason>"."""
    reason = " ".join(reason.split())[:500] or "unknown error"
    with transaction.atomic():
        locked = _lock_attachment(attachment_id)
        if locked is None:
            return None
        attachment, message = locked
        if attachment.file or attachment_given_up(attachment):
            return attachment
        attachment.fetch_attempts = max(
            attachment.fetch_attempts + 1, ATTACHMENT_FETCH_MAX_ATTEMPTS
        )
        attachment.fetch_error = reason
        attachment.save(update_fields=["fetch_attempts", "fetch_error"])
        entry = {
            "id": attachment.pk,
            "name": attachment.name,
            "label": _attachment_label(message, attachment),
            "reason": reason,
        }
        failed = [
            f
            for f in message.payload.get("failed_attachments", [])
            if not (isinstance(f, dict) and f.get("id") == attachment.pk)
        ]
        message.payload = {**message.payload, "failed_attachments": [*failed, entry]}
        message.save(update_fields=["payload"])
        ticket = _lock_ticket(message.ticket_id)
        _save(ticket, set())
        _event(
            "attachment.failed",
            ticket=ticket,
            actor_kind=AuthorKind.SYSTEM,
            message=message.pk,
            attachment=attachment.pk,
            error=reason,
        )
        _publish_message_update(ticket, message)
    return attachment


# =========================================================================== routing
# Routing rules and load-aware assignment (issue 5, part 2). tickets.routing holds the rule
# format, the evaluation and the ranking (pure, or reads only); the functions here take the
# locks and write. Lock order, so that concurrent workers never deadlock: the ticket first
# (FOR UPDATE; workers SKIP LOCKED), then at most one agent row waited for (the agent a
# re-route releases), then the new assignee only with FOR UPDATE SKIP LOCKED, re-checked for
# presence and capacity under the lock, and its open_count moved in the same transaction
# (BOTS-ROUTING C.3: 0 double assignments, 0 agents over capacity). SQLite ignores
# FOR UPDATE; there the IMMEDIATE transaction serializes routing instead.

from dataclasses import field as _field  # noqa: E402
from dataclasses import replace as _replace  # noqa: E402

from django.db import DEFAULT_DB_ALIAS, connection, connections  # noqa: E402
from django.db.models import Count, Exists, OuterRef, Sum  # noqa: E402

from . import routing  # noqa: E402
from .models import WORKABLE_STATUSES, SatisfactionRating  # noqa: E402
from .queue import team_ids as _routing_team_ids  # noqa: E402

_ONLINE, _OFFLINE = routing.Presence.ONLINE, routing.Presence.OFFLINE

# How many of the best-ranked agents one locking query tries.
_CLAIM_TRIES = 10


def _prepared_cursor() -> Any:
    """A cursor for hot statements (routing's, the receive path's). On PostgreSQL their text
    is constant and the parameters are bound server-side, so each is parsed and planned once
    per connection (a named prepared statement) instead of on every call: planning the
    routing lock query alone cost ~0.7 ms of PostgreSQL CPU per routing (bench/routing.py).
    Django's own cursors bind client-side and never prepare (to keep transaction-mode
    poolers working; the project connects directly or through Django's pool, which keeps a
    session per connection; PgBouncer >= 1.21 with max_prepared_statements also works).
    Wrapped like any Django cursor, so the statements are logged and counted."""
    global _PreparedStatements
    if connection.vendor != "postgresql":
        return connection.cursor()
    if _PreparedStatements is None:
        # Imported here: the embedded SQLite mode never loads the PostgreSQL backend.
        from django.db.backends.postgresql.base import ServerBindingCursor

        class PreparedStatements(ServerBindingCursor):  # type: ignore[misc,valid-type]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                kwargs.setdefault("prepare", True)
                result = super().execute(query, params, **kwargs)
                if self._query is None:
                    # psycopg keeps no query for a prepared execution; Django's query log
                    # (CaptureQueriesContext, connection.queries) reads the text there.
                    text = query if isinstance(query, bytes) else str(query).encode()
                    self._query = _LoggedQuery(text)
                return result

        _PreparedStatements = PreparedStatements
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django sets None, which turns preparing off altogether, even with prepare=True. A
        # threshold nothing reaches keeps automatic preparing off (Django's client-side
        # cursors never prepare anyway) and lets these statements ask for it.
        raw.prepare_threshold = 2**31
    return connection._prepare_cursor(_PreparedStatements(raw))


_PreparedStatements: Any = None


@dataclass(frozen=True)
class _LoggedQuery:
    query: bytes


def _db() -> Any:
    """This thread's connection object itself: `connection` is a proxy that looks it up
    (an asgiref Local) on every attribute, and a routing passes it to ~30 field
    conversions."""
    return connections[DEFAULT_DB_ALIAS]


@functools.cache
def _ticket_reader() -> tuple[str, Any]:
    """The ticket's columns for the lock query, and a function turning a row into a Ticket
    (what Ticket.objects.raw did, without its per-query setup: ~1 ms of CPU per routing)."""
    fields = Ticket._meta.concrete_fields
    columns = ", ".join(f"t.{connection.ops.quote_name(f.column)}" for f in fields)
    names = [f.attname for f in fields]
    convert = [(i, f.from_db_value) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    alias = connection.alias

    def build(row: Sequence[Any]) -> Ticket:
        values = list(row[: len(names)])
        db = _db()
        for i, from_db in convert:
            values[i] = from_db(values[i], None, db)
        return Ticket.from_db(alias, names, values)

    return columns, build


@dataclass
class RouteResult:
    """What routing did with one ticket.

    outcome: "assigned"; "queued" (nobody eligible: it waits in its team's queue for
    take-next); "kept" (a re-route found nobody else, the agent keeps it); "unchanged"
    (already assigned); "busy" (another transaction holds the ticket and is working on it);
    "not_routable" (not new or open)."""

    ticket_id: int
    outcome: str
    agent_id: int | None = None
    team_id: int | None = None
    step: str = ""
    steps: list[dict[str, Any]] = _field(default_factory=list)
    reason: str = ""


def _routing_event(
    ticket: Ticket,
    verb: str,
    *,
    actor: Agent | None,
    from_value: Any = None,
    to_value: Any = None,
    **data: Any,
) -> TicketEvent:
    # Unsaved: a routing run inserts all its events in one statement. Ids rather than
    # instances: the related-object descriptors cost more than the rest of the row.
    return TicketEvent(
        ticket_id=ticket.pk,
        contact_id=ticket.contact_id,
        actor_id=actor.pk if actor is not None else None,
        actor_kind=_actor_kind(actor),
        verb=verb,
        from_value=from_value,
        to_value=to_value,
        data=data,
    )


_EVENT_FIELDS = tuple(
    TicketEvent._meta.get_field(name)
    for name in (
        "ticket",
        "contact",
        "actor_kind",
        "actor",
        "verb",
        "from_value",
        "to_value",
        "data",
        "created_at",
    )
)


def _insert_events(events: Sequence[TicketEvent]) -> None:
    """bulk_create for routing's hot path: the same rows in one INSERT, without compiling
    the query (bench/routing.py: 0.6 ms of CPU down to 0.25 ms per routing)."""
    if not events:
        return
    sql, values = _events_insert(events)
    with _prepared_cursor() as cursor:
        cursor.execute(sql, values)


def _events_insert(events: Sequence[TicketEvent]) -> tuple[str, list[Any]]:
    db = _db()
    values = [
        field.get_db_prep_save(getattr(event, field.attname), db)
        for event in events
        for field in _EVENT_FIELDS
    ]
    row = "(" + ", ".join(["%s"] * len(_EVENT_FIELDS)) + ")"
    return (
        f"INSERT INTO {TicketEvent._meta.db_table} "  # noqa: S608 -- table and column names
        f"({', '.join(f.column for f in _EVENT_FIELDS)}) VALUES " + ", ".join([row] * len(events)),
        values,
    )


def _save_routed(ticket: Ticket, fields: set[str], events: Sequence[TicketEvent]) -> None:
    """_save the ticket's changed fields and _insert_events a routing's events. On
    PostgreSQL in one statement (the UPDATE as a data-modifying WITH of the INSERT): one
    round trip and one prepared statement instead of two, and no ORM update to compile
    (~1 ms of CPU per routing with _save)."""
    if connection.vendor != "postgresql" or not fields or not events:
        if fields:
            _save(ticket, fields)
        _insert_events(events)
        return
    ticket.version += 1
    ticket.updated_at = timezone.now()
    changed = [Ticket._meta.get_field(name) for name in sorted({*fields, "version", "updated_at"})]
    db = _db()
    quote = db.ops.quote_name
    values = [f.get_db_prep_save(getattr(ticket, f.attname), db) for f in changed]  # type: ignore[union-attr]
    insert, rows = _events_insert(events)
    with _prepared_cursor() as cursor:
        cursor.execute(
            f"WITH saved AS (UPDATE {Ticket._meta.db_table} SET "  # noqa: S608 -- names only
            + ", ".join(f"{quote(f.column)} = %s" for f in changed)  # type: ignore[union-attr]
            + f" WHERE id = %s) {insert}",
            [*values, ticket.pk, *rows],
        )


def _lock_for_routing(pk: int, *, wait: bool) -> Ticket | None:
    """The ticket, locked, with what routing reads about it in the same statement: the
    contact's tier, the channel kind, the tags, the required skills, the contact's previous
    agent and the candidates of the ticket's team. SQL rather than the ORM: it runs for
    every new ticket, and one statement instead of six is a large share of routing
    throughput (bench/routing.py)."""
    lock = ""
    if connection.features.has_select_for_update:
        lock = " FOR UPDATE OF t" + ("" if wait else " SKIP LOCKED")
    postgres = connection.vendor == "postgresql"
    columns, build = _ticket_reader() if postgres else ("t.*", None)
    sql = _routing_select(columns, f"t.id = %s{lock}")
    if build is None:
        found = list(Ticket.objects.raw(sql, [pk]))
        return found[0] if found else None
    with _prepared_cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    return _routing_ticket(build, row)


def _routing_ticket(build: Any, row: Sequence[Any]) -> Ticket:
    locked: Ticket = build(row)
    _annotate_for_routing(locked, row[-len(_ROUTING_ANNOTATIONS) :])
    return locked


def _annotate_for_routing(ticket: Ticket, values: Sequence[Any]) -> None:
    """What _route_locked reads beside the ticket's own fields, in _ROUTING_ANNOTATIONS' order."""
    for name, value in zip(_ROUTING_ANNOTATIONS, values, strict=True):
        setattr(ticket, name, value)


def _routing_select(columns: str, where: str, *, previous_ticket: bool = False) -> str:
    """_lock_for_routing's statement, for the tickets `where` selects. `previous_ticket`
    adds the id of the ticket routing_previous comes from (do_route_batch), as the last
    column."""
    ticket = Ticket._meta.db_table
    agg = routing.json_agg()
    tags = Ticket.tags.through._meta.db_table
    skills = Ticket.required_skills.through._meta.db_table
    return (
        f"SELECT {columns}, c.tier AS routing_tier, ch.kind AS routing_channel, "  # noqa: S608 -- table and column names only
        f"(SELECT {agg}(g.name) FROM {tags} tt JOIN {Tag._meta.db_table} g ON g.id = tt.tag_id "
        " WHERE tt.ticket_id = t.id) AS routing_tags, "
        f"(SELECT {agg}(rs.skill_id) FROM {skills} rs WHERE rs.ticket_id = t.id) "
        " AS routing_skills, "
        # COALESCE keeps the planner on the contact's index (ticket_thread_idx): with
        # stale statistics it took the assignee index and scanned the whole table.
        f"(SELECT p.assignee_id FROM {ticket} p WHERE p.contact_id = t.contact_id "
        "  AND COALESCE(p.assignee_id, 0) <> 0 AND p.id <> t.id ORDER BY p.id DESC LIMIT 1) "
        " AS routing_previous, "
        # Only a ticket waiting for an agent needs them (a redelivered task does not).
        "CASE WHEN t.assignee_id IS NULL THEN "
        f"{routing.candidates_sql('m.team_id = t.team_id', ticket='t')} END AS routing_candidates"
        + (
            f", (SELECT p.id FROM {ticket} p WHERE p.contact_id = t.contact_id "  # noqa: S608
            "  AND COALESCE(p.assignee_id, 0) <> 0 AND p.id <> t.id ORDER BY p.id DESC LIMIT 1)"
            if previous_ticket
            else ""
        )
        + f" FROM {ticket} t JOIN {Contact._meta.db_table} c ON c.id = t.contact_id "
        f"LEFT JOIN {Channel._meta.db_table} ch ON ch.id = t.channel_id "
        f"WHERE {where}"
    )


# The columns _lock_for_routing reads after the ticket's own, in its SELECT's order.
_ROUTING_ANNOTATIONS = (
    "routing_tier",
    "routing_channel",
    "routing_tags",
    "routing_skills",
    "routing_previous",
    "routing_candidates",
)


def _claim_agent(ids: Sequence[int], *, now: datetime, team_id: int | None = None) -> int | None:
    """Take the first of these agents (in this order) who is still online, accepting
    auto-assignment and under capacity: lock the row, skipping rows other transactions
    hold, and count the ticket in its open_count, in one statement. None when none is."""
    if not ids:
        return None
    agent = Agent._meta.db_table
    member = ""
    params: list[Any] = [now]
    if team_id is not None:
        member = f" JOIN {Agent.teams.through._meta.db_table} m ON m.agent_id = a.id"
        member += " AND m.team_id = %s"
        params.append(team_id)
    if connection.vendor == "postgresql":
        # The ids as one array parameter: the same text for every call, prepared once.
        listed, order = "= ANY(%s::bigint[])", "array_position(%s::bigint[], a.id)"
        params += [list(ids), _ONLINE, True, list(ids)]
    else:
        # The ids are integers from our own rows, written into the statement as such.
        listed = "IN (" + ", ".join(str(int(pk)) for pk in ids) + ")"
        order = "CASE a.id " + " ".join(f"WHEN {int(pk)} THEN {i}" for i, pk in enumerate(ids))
        order += " END"
        params += [_ONLINE, True]
    inner = (
        f"SELECT a.id FROM {agent} a{member} WHERE a.id {listed} "  # noqa: S608
        "AND a.presence = %s AND a.auto_assign = %s AND a.open_count < a.capacity "
        f"ORDER BY {order} LIMIT 1"
    )
    if connection.features.has_select_for_update_skip_locked:
        inner += " FOR UPDATE OF a SKIP LOCKED"
    with _prepared_cursor() as cursor:
        cursor.execute(
            f"UPDATE {agent} SET open_count = open_count + 1, last_assigned_at = %s "  # noqa: S608
            f"WHERE id = ({inner}) RETURNING id",
            params,
        )
        row = cursor.fetchone()
    return row[0] if row else None


def do_route_ticket(
    ticket: Ticket | int,
    *,
    actor: Agent | None = None,
    reassign: bool = False,
    wait: bool = False,
    reason: str = "",
) -> RouteResult:
    """Run the routing rules on a ticket, then give it to the best eligible online agent, or
    leave it in its team's queue for take-next.

    Idempotent: an assigned ticket is left alone ("unchanged") unless `reassign`, which
    releases its agent and routes it to someone else. Workers leave `wait` off: a ticket
    another transaction holds is skipped ("busy"), since that transaction is working on it.
    """
    pk = ticket.pk if isinstance(ticket, Ticket) else ticket
    with transaction.atomic():
        locked = _lock_for_routing(pk, wait=wait)
        if locked is None:
            if not Ticket.objects.filter(pk=pk).exists():
                raise NotFound(f"ticket {pk} does not exist")
            return RouteResult(pk, "busy", reason="another transaction holds the ticket")
        if locked.status not in WORKABLE_STATUSES:
            return RouteResult(
                pk,
                "not_routable",
                agent_id=locked.assignee_id,
                team_id=locked.team_id,
                reason=f"ticket {pk} is {locked.status}; only new and open tickets are routed",
            )
        if locked.assignee_id is not None and not reassign:
            return RouteResult(
                pk,
                "unchanged",
                agent_id=locked.assignee_id,
                team_id=locked.team_id,
                reason="already assigned",
            )
        return _route_locked(locked, actor=actor, keep=False, why=reason)


def _facts(ticket: Ticket, rules: routing.RuleSet, tags: Sequence[str]) -> routing.TicketFacts:
    # The tier and channel kind come from _lock_for_routing's annotations.
    return routing.facts_of(
        ticket,
        rules,
        tags=tags,
        channel_kind=getattr(ticket, "routing_channel", None) or "",
        tier=getattr(ticket, "routing_tier", None) or Tier.STANDARD,
    )


def _apply_decision(
    ticket: Ticket,
    decision: routing.Decision,
    rules: routing.RuleSet,
    *,
    actor: Agent | None,
    tags: list[str],
    required: set[int],
    events: list[TicketEvent],
    fields: set[str],
) -> dict[str, Any]:
    """Write what the rules decided onto the locked ticket; returns the changes made."""
    changes: dict[str, Any] = {}
    names = ", ".join(repr(m["name"]) for m in decision.matched)
    if decision.team is not None:
        team_id = rules.team_ids.get(decision.team)
        if team_id is None:
            decision.notes.append(f"team {decision.team!r} no longer exists")
        elif team_id != ticket.team_id:
            events.append(
                _routing_event(
                    ticket,
                    "ticket.transferred",
                    actor=actor,
                    from_value={"team": ticket.team_id, "agent": ticket.assignee_id},
                    to_value={"team": team_id, "agent": ticket.assignee_id},
                    via="routing",
                    note=f"routing rule {names}",
                )
            )
            ticket.team_id = team_id
            fields.add("team")
            changes["team"] = decision.team
    if decision.priority is not None and decision.priority != ticket.priority:
        old = ticket.priority
        ticket.priority = decision.priority
        ticket.priority_reasons = [
            *ticket.priority_reasons,
            {
                "signal": "routing",
                "detail": f"{Priority(old).label} → {Priority(decision.priority).label} "
                f"by routing rule {names}",
                "points": 0,
                "rules": decision.priority_rules,
            },
        ]
        sla.reprioritize_due_times(ticket, old)
        fields |= {"priority", "priority_reasons", "first_response_due", "resolution_due"}
        fields.add("sla_due_at")
        events.append(
            _routing_event(
                ticket,
                "ticket.priority",
                actor=actor,
                from_value=Priority(old).label,
                to_value=Priority(decision.priority).label,
                reason=f"routing rule {names}",
            )
        )
        changes["priority"] = Priority(decision.priority).label
    skill_ids = []
    for slug in decision.skills:
        if slug in rules.skill_ids:
            skill_ids.append(rules.skill_ids[slug])
        else:
            decision.notes.append(f"skill {slug!r} no longer exists")
    new_skills = [s for s in skill_ids if s not in required]
    if new_skills:
        ticket.required_skills.add(*new_skills)
        required.update(new_skills)
        changes["skills"] = [s for s in decision.skills if rules.skill_ids.get(s) in new_skills]
    new_tags = [t for t in decision.tags if t not in tags]
    if new_tags:
        for name in new_tags:
            tag, _ = Tag.objects.get_or_create(name=name)
            ticket.tags.add(tag)
        after = sorted({*tags, *new_tags})
        events.append(
            _routing_event(
                ticket, "ticket.tags", actor=actor, from_value=sorted(tags), to_value=after
            )
        )
        tags[:] = after
        changes["tags"] = new_tags
    if decision.matched:
        events.append(
            _routing_event(
                ticket,
                "routing.rules",
                actor=actor,
                rules=decision.matched,
                changes=changes,
                notes=decision.notes,
            )
        )
    return changes


def _route_locked(
    ticket: Ticket,
    *,
    actor: Agent | None,
    keep: bool,
    why: str,
    plan: _BatchPlan | None = None,
    unsaved: list[TicketEvent] | None = None,
) -> RouteResult:
    """Rules, then assignment, for a ticket this transaction has locked. With an assignee,
    this is a re-route: that agent is released and not chosen again (with `keep`, they keep
    the ticket when nobody else is eligible). With a `plan` (do_route_batch) the same
    decisions are taken against the batch's agent locks and loads, and the writes are left
    to the plan, which does them for the whole batch at once. With `unsaved` the ticket is
    not inserted yet (_route_new): its events go there, its fields stay on the instance, and
    the caller inserts and announces it."""
    claim = plan.claim if plan is not None else _claim_agent
    load = plan.load_candidates if plan is not None else routing.load_candidates
    save = plan.save if plan is not None else _save_routed
    if unsaved is not None:

        def save(ticket: Ticket, fields: set[str], events: Sequence[TicketEvent]) -> None:
            unsaved.extend(events)

    now = timezone.now()
    rules = routing.ruleset()
    events: list[TicketEvent] = []
    fields: set[str] = set()
    old_team, old_assignee = ticket.team_id, ticket.assignee_id
    # Read along with the lock (_lock_for_routing).
    tags = sorted(routing.json_value(ticket.routing_tags))  # type: ignore[attr-defined]
    required = {int(s) for s in routing.json_value(ticket.routing_skills)}  # type: ignore[attr-defined]
    previous = ticket.routing_previous  # type: ignore[attr-defined]

    decision = routing.Decision()
    changes: dict[str, Any] = {}
    if rules.rules:
        decision = routing.evaluate(rules.rules, _facts(ticket, rules, tags))
        changes = _apply_decision(
            ticket,
            decision,
            rules,
            actor=actor,
            tags=tags,
            required=required,
            events=events,
            fields=fields,
        )

    exclude: set[int] = set()
    if old_assignee is not None:
        exclude.add(old_assignee)
        # The one agent lock this transaction waits for (see the lock order above).
        Agent.objects.select_for_update().filter(pk=old_assignee).values_list("pk").first()

    chosen: int | None = None
    step, detail, points = "", "", None
    log_steps: list[dict[str, Any]] = []
    if decision.assign_to:
        target = rules.agent_ids.get(decision.assign_to)
        if target is None:
            log_steps.append({"step": "rule", "because": f"no agent {decision.assign_to!r}"})
        elif target in exclude:
            log_steps.append({"step": "rule", "because": "it is moving away from that agent"})
        else:
            chosen = claim([target], now=now, team_id=ticket.team_id)
            if chosen is not None:
                step, detail = "rule", f"routing rule assigns to {decision.assign_to}"
            else:
                log_steps.append(
                    {
                        "step": "rule",
                        "because": f"{decision.assign_to} is offline, at capacity, not "
                        "accepting auto-assignment or not in the ticket's team",
                    }
                )
        if chosen is None:
            events.append(
                _routing_event(
                    ticket,
                    "routing.step",
                    actor=actor,
                    step="exact",
                    pool="the usual ranking",
                    because=log_steps[-1]["because"],
                )
            )

    team = rules.team(ticket.team_id)
    need = routing.Need(
        team_ids=frozenset({ticket.team_id}) if ticket.team_id is not None else None,
        language=ticket.language,
        skills=frozenset(required),
        optional_skills=frozenset(
            rules.skill_ids[s] for s in decision.optional_skills if s in rules.skill_ids
        )
        - required,
        negative=routing.is_negative(ticket.sentiment),
        previous_agent=previous,
        exclude=frozenset(exclude),
    )
    candidate: routing.Candidate | None = None
    if chosen is None:
        steps = routing.widening(need, team, rules.teams)
        pools: dict[frozenset[int] | None, list[routing.Candidate]] = {}

        def read(key: frozenset[int] | None) -> list[routing.Candidate]:
            # Every pool is part of the widest (any team's agents with spare capacity): when
            # that one is empty, so is each narrower one. In a storm every agent is at
            # capacity, and each new ticket then costs one read instead of one per step.
            if plan is None and key is not None and not any(pools.values()):
                if None not in pools:
                    pools[None] = load(None)
                if not pools[None]:
                    return []
            return load(key)

        filtered: frozenset[int] | None = None
        if (
            ticket.team_id is not None
            and "team" not in changes
            and "skills" not in changes
            and not need.optional_skills
        ):
            # Read with the lock, already filtered on language and required skills; a rule
            # that moved the ticket or changed its skills makes them the wrong list.
            filtered = frozenset({ticket.team_id})
            pools[filtered] = routing.parse_candidates(
                ticket.routing_candidates,  # type: ignore[attr-defined]
                skills=need.skills,
            )
            if plan is not None:
                pools[filtered] = plan.current(pools[filtered])
        for index, stage in enumerate(steps):
            key = stage.need.team_ids
            if key not in pools:
                pools[key] = read(key)
            ranked = routing.rank(pools[key], stage.need)
            if not ranked and filtered is not None and key == filtered:
                # Nobody: read the whole team, to say why in the ticket's history. (Once: the
                # wider steps' pools, None for any team included, are read unfiltered.)
                pools[key] = read(key)
                filtered = None
            if ranked:
                chosen = claim([c.id for c, _, _ in ranked[:_CLAIM_TRIES]], now=now)
                if chosen is None:
                    # Every one of them was being assigned another ticket: read them again.
                    pools[key] = load(key)
                    ranked = routing.rank(pools[key], stage.need)
                    chosen = claim([c.id for c, _, _ in ranked[:_CLAIM_TRIES]], now=now)
            if chosen is not None:
                candidate, points, detail = next(r for r in ranked if r[0].id == chosen)
                step = stage.name
                break
            because = (
                f"all {len(ranked)} eligible {stage.description} were taking other tickets"
                if ranked
                else routing.explain(pools[key], stage.need, stage.description)
            )
            log_steps.append({"step": stage.name, "because": because})
            if index + 1 < len(steps):
                widened = steps[index + 1]
                events.append(
                    _routing_event(
                        ticket,
                        "routing.step",
                        actor=actor,
                        step=widened.name,
                        pool=widened.description,
                        because=because,
                    )
                )

    if chosen is None and keep and old_assignee is not None:
        events.append(
            _routing_event(
                ticket,
                "routing.kept",
                actor=actor,
                to_value=old_assignee,
                reason=why,
                because=log_steps[-1]["because"] if log_steps else "",
            )
        )
        save(ticket, fields, events)
        if fields:
            _publish_ticket("update", ticket, old_team=old_team)
        return RouteResult(
            ticket.pk,
            "kept",
            agent_id=old_assignee,
            team_id=ticket.team_id,
            steps=log_steps,
            reason=why,
        )

    if old_assignee is not None:
        _adjust_load(old_assignee, True, None, True)
    if chosen is not None:
        if candidate is not None and ticket.team_id not in candidate.team_ids:
            # Widened to the parent team or any team: the ticket follows its new agent.
            parent = team.parent_id if team else None
            if parent in candidate.team_ids:
                new_team = parent
            else:
                new_team = min(
                    candidate.team_ids,
                    key=lambda t: rules.teams[t].name if t in rules.teams else "",
                )
            events.append(
                _routing_event(
                    ticket,
                    "ticket.transferred",
                    actor=actor,
                    from_value={"team": ticket.team_id, "agent": old_assignee},
                    to_value={"team": new_team, "agent": chosen},
                    via="routing",
                    note=f"widened: {step}",
                )
            )
            ticket.team_id = new_team
            fields.add("team")
        # _claim_agent has counted the ticket in the agent's open_count.
        ticket.assignee_id = chosen
        ticket.assigned_at = now
        fields |= {"assignee", "assigned_at"}
        events.append(
            _routing_event(
                ticket,
                "ticket.assigned",
                actor=actor,
                from_value=old_assignee,
                to_value=chosen,
                via="routing",
                reason=why,
            )
        )
        events.append(
            _routing_event(
                ticket,
                "routing.assigned",
                actor=actor,
                to_value=chosen,
                step=step,
                why=detail,
                score=round(points, 4) if points is not None else None,
                negative=need.negative,
                previous_agent=need.previous_agent,
                reason=why,
            )
        )
        outcome = "assigned"
    else:
        if old_assignee is not None:
            ticket.assignee_id = None
            ticket.assigned_at = None
            fields |= {"assignee", "assigned_at"}
            events.append(
                _routing_event(
                    ticket,
                    "ticket.unassigned",
                    actor=actor,
                    from_value=old_assignee,
                    to_value=None,
                    via="routing",
                    reason=why,
                )
            )
        events.append(
            _routing_event(
                ticket,
                "routing.queued",
                actor=actor,
                team=ticket.team_id,
                because=log_steps[-1]["because"] if log_steps else "",
                reason=why,
            )
        )
        outcome = "queued"
    save(ticket, fields, events)
    if fields and unsaved is None:
        _publish_ticket("update", ticket, old_team=old_team, old_assignee=old_assignee)
    if chosen is not None and chosen != old_assignee:
        publish_on_commit(
            [agent_group(chosen)],
            {
                "type": "notice",
                "op": "assigned",
                "ticket": ticket.pk,
                "by": actor.name if actor else "routing",
                "subject": ticket.subject,
            },
        )
    return RouteResult(
        ticket.pk,
        outcome,
        agent_id=chosen,
        team_id=ticket.team_id,
        step=step,
        steps=log_steps,
        reason=detail if chosen is not None else (log_steps[-1]["because"] if log_steps else ""),
    )


# How many of a new ticket's candidates, best first, its routing reads (routing.rank_sql).
# More than the claim tries (_CLAIM_TRIES), so that Python's ranking of them picks from
# more than it claims; when none of them can be claimed, the whole team is read.
_BEST_CANDIDATES = 2 * _CLAIM_TRIES


@functools.lru_cache(maxsize=16)
def _route_new_sql(order: str, best: int) -> str:
    ticket = Ticket._meta.db_table
    candidates = routing.candidates_sql(
        "m.team_id = t.team_id", ticket="t", required_skills=False, best=best, order=order
    )
    return (
        # The id the ticket will have, and what _lock_for_routing reads with the lock that a
        # ticket not yet written can have: the contact's previous agent and the candidates of
        # its team (a new ticket has no tags or required skills yet). MATERIALIZED: one
        # nextval() and one previous agent, however often the rest refers to them.
        "WITH t AS MATERIALIZED (SELECT "  # noqa: S608 -- table and column names only
        f"nextval(pg_get_serial_sequence('{ticket}', 'id')) AS id, "
        "%s::bigint AS contact_id, %s::bigint AS team_id, %s::varchar AS language, "
        f"(SELECT p.assignee_id FROM {ticket} p WHERE p.contact_id = %s "
        " AND COALESCE(p.assignee_id, 0) <> 0 ORDER BY p.id DESC LIMIT 1) AS previous) "
        f"SELECT t.id, t.previous, {candidates} FROM t"
    )


def _route_new(
    ticket: Ticket, contact: Contact, channel: Channel
) -> tuple[RouteResult, list[TicketEvent]]:
    """Route a ticket being created, before it is inserted (PostgreSQL): its id is taken
    from the table's sequence, in the statement that reads its candidates, so the routing
    reads, claims an agent and writes its history exactly as for an inserted ticket, and the
    ticket is then written once with its agent and team. Inserting first and routing after
    cost a row lock query and an UPDATE that rewrote the new row in all fourteen of the
    ticket's indexes (the assignee is indexed, so it is never a HOT update): 5-12 % of
    PostgreSQL's CPU per new message, and two of its fifteen statements."""
    order = routing.rank_sql(negative=routing.is_negative(ticket.sentiment), previous="t.previous")
    with _prepared_cursor() as cursor:
        cursor.execute(
            _route_new_sql(order, _BEST_CANDIDATES),
            [contact.pk, ticket.team_id, ticket.language, contact.pk],
        )
        pk, previous, candidates = cursor.fetchone()
    ticket.pk = pk
    # Tier, channel kind, tags, required skills, previous agent, candidates.
    _annotate_for_routing(ticket, (contact.tier, channel.kind, [], [], previous, candidates))
    events: list[TicketEvent] = []
    result = _route_locked(ticket, actor=None, keep=False, why="", unsaved=events)
    return result, events


def route_after_receive(received: Received) -> RouteResult | None:
    """Route a ticket an inbound message has just created or reopened (on the worker, in the
    event's transaction). Nothing to do when it has an agent. A routing failure never loses
    the message: the ticket stays in its team's queue, where take-next and the sweeps find
    it."""
    if received.route is not None:
        return received.route  # routed before its INSERT (_route_new)
    ticket = received.ticket
    if (
        ticket is None
        or received.duplicate
        or not (received.created_ticket or received.reopened)
        or ticket.assignee_id is not None
    ):
        return None
    try:
        return do_route_ticket(ticket.pk)
    except Exception:
        # do_route_ticket's savepoint is rolled back; the message and ticket stay.
        log.exception("routing ticket %s failed; it waits in its team's queue", ticket.pk)
        return None


def do_reroute_stale(*, limit: int = 200) -> list[RouteResult]:
    """Assigned tickets whose agent went offline, or has left the customer waiting longer
    than HELPDESK_REROUTE_AFTER_MINUTES since the assignment, go back through routing (the
    agent is not chosen again). With nobody else eligible, an offline agent's ticket waits
    in the queue; an online agent keeps theirs, and it is looked at again N minutes later."""
    minutes = int(getattr(settings, "HELPDESK_REROUTE_AFTER_MINUTES", 10))
    cutoff = timezone.now() - timedelta(minutes=minutes)
    kept_lately = TicketEvent.objects.filter(
        ticket=OuterRef("pk"), verb="routing.kept", created_at__gt=cutoff
    )
    ids = list(
        Ticket.objects.filter(status__in=WORKABLE_STATUSES, assignee__isnull=False)
        .filter(
            Q(assignee__presence=_OFFLINE) | Q(waiting_since__lte=cutoff, assigned_at__lte=cutoff)
        )
        .exclude(Exists(kept_lately))
        .order_by(*QUEUE_ORDERING)
        .values_list("pk", flat=True)[:limit]
    )
    results: list[RouteResult] = []
    for pk in ids:
        with transaction.atomic():
            ticket = _lock_for_routing(pk, wait=False)
            if ticket is None or ticket.status not in WORKABLE_STATUSES or not ticket.assignee_id:
                continue
            presence = (
                Agent.objects.filter(pk=ticket.assignee_id)
                .values_list("presence", flat=True)
                .first()
            )
            # Checked again under the lock: the agent may have answered or come back.
            if presence == _OFFLINE:
                why, keep = "the agent went offline", False
            elif (
                ticket.waiting_since is not None
                and ticket.assigned_at is not None
                and ticket.waiting_since <= cutoff
                and ticket.assigned_at <= cutoff
            ):
                why, keep = f"no reply within {minutes} minutes", True
            else:
                continue
            results.append(_route_locked(ticket, actor=None, keep=keep, why=why))
    return results


def do_route_waiting_for(agent: Agent | int, *, limit: int | None = None) -> list[Ticket]:
    """An agent came online or freed capacity: give them the most urgent waiting tickets they
    may work (their teams, languages and skills), up to their spare capacity, in one
    transaction. Tickets other transactions hold are skipped."""
    pk = agent.pk if isinstance(agent, Agent) else agent
    with transaction.atomic():
        me = Agent.objects.select_for_update().filter(pk=pk).first()
        if me is None:
            raise NotFound(f"agent {pk} does not exist")
        spare = me.capacity - me.open_count
        if limit is not None:
            spare = min(spare, limit)
        if me.presence != _ONLINE or not me.auto_assign or spare <= 0:
            return []
        if not _routing_team_ids(me):
            return []  # routing never auto-assigns to someone outside every team
        tickets = list(
            workable_by(me)
            .order_by(*QUEUE_ORDERING)
            .select_for_update(skip_locked=True, of=("self",))[:spare]
        )
        if not tickets:
            return []
        now = timezone.now()
        Agent.objects.filter(pk=me.pk).update(
            open_count=F("open_count") + len(tickets), last_assigned_at=now
        )
        events: list[TicketEvent] = []
        for ticket in tickets:
            ticket.assignee = me
            ticket.assigned_at = now
            _save(ticket, {"assignee", "assigned_at"})
            events.append(
                _routing_event(
                    ticket,
                    "ticket.assigned",
                    actor=None,
                    from_value=None,
                    to_value=me.pk,
                    via="routing",
                    reason="agent available",
                )
            )
            events.append(
                _routing_event(
                    ticket,
                    "routing.assigned",
                    actor=None,
                    to_value=me.pk,
                    step="agent_available",
                    why="the most urgent waiting ticket this agent may work",
                )
            )
            _publish_ticket("update", ticket)
            publish_on_commit(
                [agent_group(me.pk)],
                {
                    "type": "notice",
                    "op": "assigned",
                    "ticket": ticket.pk,
                    "by": "routing",
                    "subject": ticket.subject,
                },
            )
        _insert_events(events)
    return tickets


# --------------------------------------------------------------------------- batch routing
# A backlog (a storm's, or tickets whose post-receive routing failed) routed as a set:
# do_route_batch locks many tickets in one statement, takes each one's decision with
# _route_locked as do_route_ticket would, in order, and writes the batch at the end: one
# agents UPDATE, the tickets' UPDATE and one events INSERT. Lock order as above: tickets
# first (SKIP LOCKED), then agents, only with SKIP LOCKED, never waited for, so a batch
# cannot deadlock with another batch or with do_route_ticket.

# Tickets one do_route_batch transaction routes: big enough to spread each statement's cost,
# small enough that a batch holds its agent locks only briefly (bench/routing.py).
ROUTE_BATCH_SIZE = 50

# Ticket columns the batch writes in one set-based UPDATE; a ticket a rule changed more of
# (priority, SLA) is saved on its own.
_BATCH_COLUMNS = ("assignee", "assigned_at", "team", "version", "updated_at")


class _BatchPlan:
    """The agents a batch has locked and the load it has given them, and the writes it owes.

    An agent is locked (FOR UPDATE SKIP LOCKED) the first time a ticket of the batch wants
    it, and re-checked for presence, auto-assignment and capacity under the lock; from then
    on this transaction owns its row, so the load tracked here is the agent's real load,
    and every later ticket of the batch ranks and claims against it as do_route_ticket would
    against the row. An agent another transaction holds is passed over, as _claim_agent
    passes over it."""

    def __init__(self) -> None:
        self.held: dict[int, list[Any]] = {}  # id -> [open_count, capacity, last_assigned_at]
        self.passed: set[int] = set()  # offline, not auto-assigning or full when locked
        self.busy: set[int] = set()  # held by another transaction
        self.taken: dict[int, int] = {}  # id -> tickets this batch gave the agent
        self.contended = False  # another transaction held an agent a ticket wanted
        self.saves: list[tuple[Ticket, set[str]]] = []
        self.events: list[TicketEvent] = []
        self.pending: tuple[Ticket, set[str], list[TicketEvent]] | None = None

    def _lock(self, ids: Sequence[int]) -> None:
        known = self.held.keys() | self.passed | self.busy
        want = sorted({pk for pk in ids if pk not in known})
        if not want:
            return
        with _prepared_cursor() as cursor:
            cursor.execute(
                f"SELECT id, open_count, capacity, presence, auto_assign "  # noqa: S608
                f"FROM {Agent._meta.db_table} WHERE id = ANY(%s::bigint[]) "
                "ORDER BY id FOR UPDATE SKIP LOCKED",
                [want],
            )
            rows = cursor.fetchall()
        found = set()
        for pk, open_count, capacity, presence, auto_assign in rows:
            found.add(pk)
            if presence == _ONLINE and auto_assign and open_count < capacity:
                self.held[pk] = [open_count, capacity, None]
            else:
                self.passed.add(pk)
        if len(found) < len(want):
            self.contended = True
            self.busy.update(set(want) - found)

    def claim(self, ids: Sequence[int], *, now: datetime, team_id: int | None = None) -> int | None:
        """_claim_agent against the batch's locks and loads."""
        if team_id is not None and ids:
            members = set(
                Agent.teams.through.objects.filter(agent_id__in=ids, team_id=team_id).values_list(
                    "agent_id", flat=True
                )
            )
            ids = [pk for pk in ids if pk in members]
        self._lock(ids)
        for pk in ids:
            state = self.held.get(pk)
            if state is not None and state[0] < state[1]:
                state[0] += 1
                state[2] = now
                self.taken[pk] = self.taken.get(pk, 0) + 1
                return pk
        return None

    def current(self, candidates: list[routing.Candidate]) -> list[routing.Candidate]:
        """The candidates as read at the batch's start, with the load and last assignment
        of the agents the batch holds, and without those it had to pass over."""
        out = []
        for c in candidates:
            if c.id in self.busy:
                # Wanted, maybe, by this ticket too: say so (see do_route_batch).
                self.contended = True
                continue
            if c.id in self.passed:
                continue
            state = self.held.get(c.id)
            if state is not None:
                if state[0] >= state[1]:
                    continue  # full now: the candidates' query would not list them
                c = _replace(
                    c,
                    open_count=state[0],
                    capacity=state[1],
                    last_assigned_at=state[2] or c.last_assigned_at,
                )
            out.append(c)
        return out

    def load_candidates(self, team_ids: frozenset[int] | None) -> list[routing.Candidate]:
        return self.current(routing.load_candidates(team_ids))

    def save(self, ticket: Ticket, fields: set[str], events: Sequence[TicketEvent]) -> None:
        """_save_routed, later: the version moves now, since the live events built right
        after this carry it."""
        if fields:
            ticket.version += 1
            ticket.updated_at = timezone.now()
        self.pending = (ticket, set(fields), list(events))

    def keep(self) -> None:
        if self.pending is not None:
            ticket, fields, events = self.pending
            if fields:
                self.saves.append((ticket, fields))
            self.events += events
        self.pending = None

    def write(self) -> None:
        """The batch's writes: agents, tickets, events, one statement each (the rare
        ticket a rule changed more of, one more)."""
        if self.taken:
            ids = sorted(self.taken)
            with _prepared_cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Agent._meta.db_table} a SET "  # noqa: S608
                    "open_count = a.open_count + v.n, last_assigned_at = v.at "
                    "FROM unnest(%s::bigint[], %s::int[], %s::timestamptz[]) AS v(id, n, at) "
                    "WHERE a.id = v.id",
                    [ids, [self.taken[pk] for pk in ids], [self.held[pk][2] for pk in ids]],
                )
        simple = [t for t, f in self.saves if f <= {"assignee", "assigned_at", "team"}]
        for ticket, fields in self.saves:
            if not fields <= {"assignee", "assigned_at", "team"}:
                ticket.save(update_fields=sorted({*fields, "version", "updated_at"}))
        if simple:
            # Every simple ticket's five columns: the unchanged ones are written back as
            # they are (this transaction holds the rows).
            with _prepared_cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Ticket._meta.db_table} t SET assignee_id = v.assignee, "  # noqa: S608
                    "assigned_at = v.assigned_at, team_id = v.team, version = v.version, "
                    "updated_at = v.updated_at FROM unnest(%s::bigint[], %s::bigint[], "
                    "%s::timestamptz[], %s::bigint[], %s::int[], %s::timestamptz[]) "
                    "AS v(id, assignee, assigned_at, team, version, updated_at) "
                    "WHERE t.id = v.id",
                    [
                        [t.pk for t in simple],
                        [t.assignee_id for t in simple],
                        [t.assigned_at for t in simple],
                        [t.team_id for t in simple],
                        [t.version for t in simple],
                        [t.updated_at for t in simple],
                    ],
                )
        if self.events:
            # Not prepared: its text changes with the number of rows.
            sql, values = _events_insert(self.events)
            with connection.cursor() as cursor:
                cursor.execute(sql, values)


def _lock_batch(ids: Sequence[int]) -> list[Ticket]:
    """The tickets among `ids` that wait for an agent and no other transaction holds,
    locked, in `ids`' order, read as _lock_for_routing reads one, plus routing_previous's
    ticket id (routing_previous_ticket)."""
    columns, build = _ticket_reader()
    sql = _routing_select(
        columns,
        "t.id = ANY(%s::bigint[]) AND t.assignee_id IS NULL AND t.status = ANY(%s) "
        "ORDER BY t.id FOR UPDATE OF t SKIP LOCKED",
        previous_ticket=True,
    )
    with _prepared_cursor() as cursor:
        cursor.execute(sql, [list(ids), list(WORKABLE_STATUSES)])
        rows = cursor.fetchall()
    by_id = {}
    for row in rows:
        ticket = _routing_ticket(build, row[:-1])
        ticket.routing_previous_ticket = row[-1]  # type: ignore[attr-defined]
        by_id[ticket.pk] = ticket
    return [by_id[pk] for pk in dict.fromkeys(ids) if pk in by_id]


def do_route_batch(ids: Sequence[int]) -> list[RouteResult]:
    """Route these tickets, in this order, in one transaction: each gets the decision
    do_route_ticket would give it after the ones before it (rules, eligibility, ranking,
    widening, previous agent, negative sentiment, events with why), with far fewer
    statements. Tickets already assigned, not routable, or that another transaction holds
    are left alone (results only for the tickets routed). A ticket that found every agent
    it wanted held by another transaction, and that no rule changed, is left untouched for
    the next pass ("busy") instead of being queued. PostgreSQL only (elsewhere: one
    do_route_ticket per ticket)."""
    if connection.vendor != "postgresql":
        results = [do_route_ticket(pk) for pk in ids]
        return [r for r in results if r.outcome in ("assigned", "queued")]
    results: list[RouteResult] = []
    with transaction.atomic():
        tickets = _lock_batch(ids)
        if not tickets:
            return []
        plan = _BatchPlan()
        # The contacts' tickets this batch assigns: a later ticket of the same contact has
        # the agent as its previous agent, as it would routed after them one by one.
        given: dict[int, list[tuple[int, int]]] = {}
        for ticket in tickets:
            mine = [g for g in given.get(ticket.contact_id, ()) if g[0] != ticket.pk]
            if mine:
                latest = max(mine)
                if latest[0] > (ticket.routing_previous_ticket or 0):  # type: ignore[attr-defined]
                    ticket.routing_previous = latest[1]  # type: ignore[attr-defined]
            plan.contended = False
            result = _route_locked(ticket, actor=None, keep=False, why="", plan=plan)
            pending = plan.pending
            if (
                result.outcome == "queued"
                and plan.contended
                and pending is not None
                and not pending[1]
                and not any(e.verb in ("ticket.tags", "ticket.transferred") for e in pending[2])
                and not any(e.data.get("changes") for e in pending[2] if e.verb == "routing.rules")
            ):
                plan.pending = None
                results.append(RouteResult(ticket.pk, "busy", reason="its agents were busy"))
                continue
            plan.keep()
            if result.outcome == "assigned" and result.agent_id is not None:
                given.setdefault(ticket.contact_id, []).append((ticket.pk, result.agent_id))
            results.append(result)
        plan.write()
    return results


def do_route_backlog(
    team_id: int | None = None, *, limit: int = ROUTE_BATCH_SIZE
) -> list[RouteResult]:
    """The most urgent waiting tickets routing has not looked at yet (of one team, or of
    all), routed with do_route_batch. Tickets routing already queued are left to
    do_route_waiting_for (an agent freeing capacity), so a sweep does not re-log them."""
    queued = TicketEvent.objects.filter(ticket=OuterRef("pk"), verb="routing.queued")
    waiting = Ticket.objects.filter(status__in=WORKABLE_STATUSES, assignee__isnull=True)
    if team_id is not None:
        waiting = waiting.filter(team_id=team_id)
    ids = list(
        waiting.exclude(Exists(queued))
        .order_by(*QUEUE_ORDERING)
        .values_list("pk", flat=True)[:limit]
    )
    return do_route_batch(ids) if ids else []


def do_route_waiting(*, limit: int = 500) -> int:
    """Periodic: every online agent with spare capacity in a team with waiting tickets gets
    them, the longest idle agent first. Returns how many tickets were assigned."""
    teams = set(
        Ticket.objects.filter(status__in=WORKABLE_STATUSES, assignee__isnull=True)
        .exclude(team__isnull=True)
        .values_list("team_id", flat=True)
        .distinct()
    )
    if not teams:
        return 0
    # New tickets routing has not looked at (a storm's backlog), as sets, team by team, the
    # rules and ranking deciding; then the agent-by-agent pass for the queued ones.
    assigned = 0
    for team_id in sorted(teams):
        for _ in range(max(1, limit // ROUTE_BATCH_SIZE)):
            results = do_route_backlog(team_id)
            assigned += sum(r.outcome == "assigned" for r in results)
            if not any(r.outcome in ("assigned", "queued") for r in results):
                break
    agent_ids = list(
        Agent.objects.filter(
            presence=_ONLINE,
            auto_assign=True,
            open_count__lt=F("capacity"),
            teams__in=teams,
        )
        .order_by(F("last_assigned_at").asc(nulls_first=True), "id")
        .values_list("pk", flat=True)
        .distinct()[:limit]
    )
    return assigned + sum(len(do_route_waiting_for(pk)) for pk in dict.fromkeys(agent_ids))


def do_reconcile_open_counts() -> list[dict[str, int]]:
    """Periodic: set each agent's open_count to their active tickets where it drifted, and
    record each correction. The agent row is locked before counting, so an assignment or a
    status change running at the same time is counted exactly once."""
    actual = dict(
        Ticket.objects.filter(status__in=ACTIVE_STATUSES, assignee__isnull=False)
        .values("assignee")
        .annotate(n=Count("id"))
        .values_list("assignee", "n")
    )
    drifted = [
        pk
        for pk, count in Agent.objects.values_list("pk", "open_count")
        if count != actual.get(pk, 0)
    ]
    changes: list[dict[str, int]] = []
    for pk in drifted:
        with transaction.atomic():
            row = Agent.objects.select_for_update().filter(pk=pk).values_list("open_count").first()
            if row is None:
                continue
            real = Ticket.objects.filter(assignee_id=pk, status__in=ACTIVE_STATUSES).count()
            if real == row[0]:
                continue
            Agent.objects.filter(pk=pk).update(open_count=real)
            TicketEvent.objects.create(
                actor_kind=AuthorKind.SYSTEM,
                verb="agent.open_count",
                from_value=row[0],
                to_value=real,
                data={"agent": pk, "reason": "reconciled with the agent's active tickets"},
            )
            changes.append({"agent": pk, "from": row[0], "to": real})
    if changes:
        log.warning("open_count drifted for %d agents; corrected: %s", len(changes), changes)
    return changes


def do_recompute_agent_stats() -> int:
    """Periodic: each agent's average first response over HELPDESK_FRT_WINDOW_DAYS (7) and
    Bayesian-smoothed CSAT, (sum + m * global mean) / (n + m), over
    HELPDESK_CSAT_WINDOW_DAYS (90) with m = HELPDESK_CSAT_PRIOR_WEIGHT (5), so one survey
    does not make an agent the best. A first response counts from the moment the ticket
    became the agent's (routing, take-next, an assignment); a reply that claims an
    unassigned ticket counts from the ticket's creation. Returns the agents updated."""
    now = timezone.now()
    since = now - timedelta(days=int(getattr(settings, "HELPDESK_FRT_WINDOW_DAYS", 7)))
    replies = list(
        TicketEvent.objects.filter(
            verb="message.sent",
            created_at__gte=since,
            data__first_response=True,
            actor__isnull=False,
            ticket__isnull=False,
        ).values_list("ticket_id", "actor_id", "created_at")
    )
    ticket_ids = sorted({r[0] for r in replies})
    created: dict[int, datetime] = {}
    handoffs: dict[int, list[tuple[datetime, Any, Any]]] = {}
    for start in range(0, len(ticket_ids), 2000):
        chunk = ticket_ids[start : start + 2000]
        created.update(Ticket.objects.filter(pk__in=chunk).values_list("pk", "created_at"))
        for tid, to_value, at, data in TicketEvent.objects.filter(
            ticket_id__in=chunk, verb="ticket.assigned"
        ).values_list("ticket_id", "to_value", "created_at", "data"):
            handoffs.setdefault(tid, []).append((at, to_value, (data or {}).get("via")))
    seconds: dict[int, list[float]] = {}
    for tid, agent_id, at in replies:
        begin = created.get(tid)
        if begin is None:
            continue
        mine = [
            when
            for when, to, via in handoffs.get(tid, ())
            if to == agent_id and when <= at and via != "reply"
        ]
        if mine:
            begin = max(begin, max(mine))
        seconds.setdefault(agent_id, []).append(max((at - begin).total_seconds(), 0.0))

    csat_since = now - timedelta(days=int(getattr(settings, "HELPDESK_CSAT_WINDOW_DAYS", 90)))
    prior = float(getattr(settings, "HELPDESK_CSAT_PRIOR_WEIGHT", 5))
    ratings = SatisfactionRating.objects.filter(created_at__gte=csat_since)
    overall = ratings.aggregate(total=Sum("score"), n=Count("id"))
    mean = overall["total"] / overall["n"] if overall["n"] else None
    per_agent = {
        a: (total, n)
        for a, total, n in ratings.filter(agent__isnull=False)
        .values("agent")
        .annotate(total=Sum("score"), n=Count("id"))
        .values_list("agent", "total", "n")
    }
    agents = list(Agent.objects.only("pk"))
    for agent in agents:
        times = seconds.get(agent.pk)
        agent.avg_first_response_seconds = sum(times) / len(times) if times else None
        total, n = per_agent.get(agent.pk, (0, 0))
        agent.csat_score = (total + prior * mean) / (n + prior) if mean is not None else None
        agent.csat_count = n
        agent.stats_updated_at = now
    Agent.objects.bulk_update(
        agents,
        ["avg_first_response_seconds", "csat_score", "csat_count", "stats_updated_at"],
        batch_size=500,
    )
    return len(agents)


# =========================================================================== end of routing


# =========================================================================== scoring
#
# Priority scoring, the conversation's language, aging, and versions of the scoring
# dictionary (issue 5). The receive path calls _stick_language, _recent_tickets,
# _set_sentiment and _kept_reasons; the periodic job calls do_age_waiting_tickets.
# (Imported here rather than in the import block at the top, which other sections share.)

from .models import ScoringConfig  # noqa: E402
from .priority import (  # noqa: E402
    ConfigError,
    aging_minutes,
    announce_version,
    current_config,
    validate_config,
)

# Reasons a new message's score does not replace: they explain a level the score did not set.
# Reasons a new message's rescoring keeps: earlier aging, a person's choice, a routing rule.
KEPT_REASONS = ("aging", "manual", "routing")


def _stick_language(ticket: Ticket, detection: Detection, events: list[TicketEvent]) -> set[str]:
    """Set the conversation's language when unknown; switch it only on a decisive message
    (long, confidently another configured language), recorded as an event. "ok" never does."""
    language = conversation_language(ticket.language, detection)
    if language == ticket.language:
        return set()
    if ticket.language:
        events.append(
            _new_event(
                "ticket.language",
                ticket=ticket,
                from_value=ticket.language,
                to_value=language,
                letters=detection.letters,
                confidence=round(detection.confidence, 3),
            )
        )
    ticket.language = language
    return {"language"}


def _recent_tickets(ticket: Ticket, contact: Contact) -> int:
    """The contact's tickets in the scoring window ("history.days"), this one included.

    One indexed count when a ticket opens for a contact we already knew; none for a contact
    created by this message (it has no other tickets) and none for a follow-up, which reuses
    the count its ticket opened with."""
    if ticket.pk is not None:
        reasons = ticket.priority_reasons
        counts = [int(r.get("tickets", 0)) for r in reasons if r.get("signal") == "history"]
        return max(counts, default=0)
    if contact.created_at >= ticket.created_at:
        return 1
    history = current_config().data["history"]
    if not history["points"]:
        return 0
    since = ticket.created_at - timedelta(days=history["days"])
    if _fast_path():
        with _prepared_cursor() as cursor:
            cursor.execute(_receive_sql()["recent_tickets"], [contact.pk, since])
            return int(cursor.fetchone()[0]) + 1
    return Ticket.objects.filter(contact_id=contact.pk, created_at__gte=since).count() + 1


def _set_sentiment(ticket: Ticket, sentiment: int) -> set[str]:
    """The ticket's sentiment is its most negative message so far (0: none), for routing."""
    if ticket.pk is None:
        ticket.sentiment = sentiment
        return set()
    if sentiment > ticket.sentiment:
        ticket.sentiment = sentiment
        return {"sentiment"}
    return set()


def _kept_reasons(ticket: Ticket) -> list[dict[str, Any]]:
    if ticket.pk is None:
        return []
    return [r for r in ticket.priority_reasons if r.get("signal") in KEPT_REASONS]


def _waited(minutes: int) -> str:
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def do_age_waiting_tickets(*, now: datetime | None = None, batch: int = 200) -> int:
    """Raise by one level every active ticket whose customer has waited longer than the
    configured minutes for its level ("aging" in the scoring config), so a low ticket cannot
    starve behind a steady stream of normal ones. Returns how many were raised.

    Why a periodic job and not aging inside the queue's ORDER BY: the queue order
    (priority desc, sla_due_at, waiting_since, id) is what the partial indexes and keyset
    pages are built on; an expression over the waiting time would defeat both. Raising the
    stored level keeps every queue page an index scan, and the change is visible and
    explained (an "aging" reason, a ticket.priority event). Within a level the SLA deadline
    already puts the longest-waiting first. SLA due times stay as promised at the original
    level (aging reorders work; it does not move deadlines). A level a person chose
    (priority_locked) is left alone. Levels are taken from the top down, so one run raises
    a ticket at most one level; tickets locked by another transaction wait for the next run.
    """
    now = now or timezone.now()
    raised = 0
    for level, minutes in sorted(aging_minutes().items(), reverse=True):
        if level >= Priority.URGENT:
            continue
        cutoff = now - timedelta(minutes=minutes)
        done: set[int] = set()
        while True:
            with transaction.atomic():
                tickets = list(
                    Ticket.objects.select_for_update(skip_locked=True)
                    .filter(
                        status__in=ACTIVE_STATUSES,
                        priority=level,
                        priority_locked=False,
                        waiting_since__lte=cutoff,
                    )
                    .exclude(pk__in=done)
                    .order_by("waiting_since", "id")[:batch]
                )
                events = [_age_ticket(ticket, now) for ticket in tickets]
                TicketEvent.objects.bulk_create(events)
            done.update(t.pk for t in tickets)
            raised += len(tickets)
            if len(tickets) < batch:
                break
    return raised


def _age_ticket(ticket: Ticket, now: datetime) -> TicketEvent:
    old = ticket.priority
    ticket.priority = old + 1
    minutes = int((now - (ticket.waiting_since or now)).total_seconds() // 60)
    ticket.priority_reasons = [
        *ticket.priority_reasons,
        {
            "signal": "aging",
            "detail": f"waiting {_waited(minutes)}: {Priority(old).label} → "
            f"{Priority(ticket.priority).label}",
            "points": 0,
        },
    ]
    _save(ticket, {"priority", "priority_reasons"})
    _publish_ticket("update", ticket)
    return _new_event(
        "ticket.priority",
        ticket=ticket,
        actor_kind=AuthorKind.SYSTEM,
        from_value=Priority(old).label,
        to_value=Priority(ticket.priority).label,
        reason="aging",
        waited_minutes=minutes,
    )


def check_scoring_admin(agent: Agent) -> None:
    if not agent.is_admin:
        raise Forbidden("only admins may change the scoring configuration")


def do_save_scoring_config(data: Any, *, actor: Agent | None, note: str = "") -> ScoringConfig:
    """Save `data` as the next version; it applies to messages received from then on (every
    process notices within HELPDESK_SCORING_CHECK_SECONDS). Versions are never edited."""
    if actor is not None:
        check_scoring_admin(actor)
    note = check_text(note, what="note", allow_empty=True)[:200]
    try:
        data = validate_config(data)
    except ConfigError as exc:
        raise InvalidInput(str(exc), field="data") from exc
    try:
        with transaction.atomic():
            # Two saves at once pick the same number; the unique constraint refuses one.
            versions = ScoringConfig.objects.order_by("-version")
            latest = versions.values_list("version", flat=True).first()
            config = ScoringConfig.objects.create(
                version=(latest or 0) + 1, data=data, note=note, created_by=actor
            )
            version = config.version
            transaction.on_commit(lambda: announce_version(version))
    except IntegrityError as exc:  # another admin saved the same version number first
        raise Conflict("another version was saved a moment ago; reload and try again") from exc
    return config


def do_restore_scoring_config(
    version: int, *, actor: Agent | None, note: str = ""
) -> ScoringConfig:
    """Save an old version's data again as the newest version."""
    if actor is not None:
        check_scoring_admin(actor)
    old = ScoringConfig.objects.filter(version=version).first()
    if old is None:
        raise NotFound(f"scoring version {version} does not exist")
    return do_save_scoring_config(old.data, actor=actor, note=note or f"restored version {version}")
