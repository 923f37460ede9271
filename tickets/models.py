"""The core: contacts and their identities, tickets, messages, teams, agents, events.

Only `tickets.actions` writes ticket state; everything here is data and small, pure helpers.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

ACTIVE_STATUSES = ("new", "open", "pending")
WORKABLE_STATUSES = ("new", "open")


class Status(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class Priority(models.IntegerChoices):
    # Stored as integers so "most urgent first" is a plain descending index scan.
    LOW = 0, "low"
    NORMAL = 1, "normal"
    HIGH = 2, "high"
    URGENT = 3, "urgent"


class Topic(models.TextChoices):
    OUTAGE = "outage", "Outage"
    BILLING = "billing", "Billing"
    METER_READING = "meter_reading", "Meter reading"
    TARIFF = "tariff", "Tariff"
    CONTRACT = "contract", "Contract"
    MAINTENANCE = "maintenance", "Maintenance"
    OTHER = "other", "Other"


class Tier(models.TextChoices):
    STANDARD = "standard", "Standard"
    BUSINESS = "business", "Business"
    VIP = "vip", "VIP"
    LIFE_SUPPORT = "life_support", "Life support / medical register"


class IdentityKind(models.TextChoices):
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    X = "x", "X"
    VIBER = "viber", "Viber"
    VK = "vk", "VK"
    WIDGET = "widget", "Web chat"


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    SUPERVISOR = "supervisor", "Supervisor"
    ADMIN = "admin", "Admin"


class Presence(models.TextChoices):
    ONLINE = "online", "Online"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    description = models.TextField(blank=True)
    # The hours this team's SLA clocks run in; None: around the clock.
    business_hours = models.ForeignKey(
        "BusinessHours", null=True, blank=True, on_delete=models.SET_NULL, related_name="teams"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BusinessHours(models.Model):
    """A weekly schedule in a time zone, with holidays: when SLA clocks run."""

    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="Europe/Vilnius")
    # {"mon": [["08:00", "17:00"]], "tue": [...], ..., "sun": []}; several ranges per day allowed.
    week = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "business hours"

    def __str__(self) -> str:
        return self.name


class Holiday(models.Model):
    calendar = models.ForeignKey(BusinessHours, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="holiday_unique")]
        ordering = ["date"]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class Skill(models.Model):
    name = models.CharField(max_length=60, unique=True)
    slug = models.SlugField(max_length=60, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """A person who works tickets. A user without an Agent row has no access at all."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.AGENT)
    teams = models.ManyToManyField(Team, related_name="agents", blank=True)
    skills = models.ManyToManyField(Skill, through="AgentSkill", related_name="agents", blank=True)
    # Language codes from HELPDESK_LANGUAGES the agent answers in.
    languages = models.JSONField(default=list, blank=True)
    capacity = models.PositiveSmallIntegerField(default=10)
    # Active tickets assigned to this agent; kept in the same transaction as every ownership
    # change so routing can read it under a row lock (a periodic job reconciles drift).
    open_count = models.IntegerField(default=0)
    presence = models.CharField(max_length=8, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(default=timezone.now)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    # Set by the agent's live socket; an agent whose sockets have been gone longer than the
    # grace period is offline.
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    auto_assign = models.BooleanField(default=True)
    # Rolling figures for routing, recomputed from TicketEvents and ratings by a periodic job.
    avg_first_response_seconds = models.FloatField(null=True, blank=True)
    csat_score = models.FloatField(null=True, blank=True)  # Bayesian-smoothed, 1..5
    csat_count = models.PositiveIntegerField(default=0)
    stats_updated_at = models.DateTimeField(null=True, blank=True)
    signature = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def is_supervisor(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class AgentSkill(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE)
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE)
    proficiency = models.PositiveSmallIntegerField(default=3)  # 1 (basic) .. 5 (expert)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "skill"], name="agent_skill_unique")
        ]

    def __str__(self) -> str:
        return f"{self.skill_id} ({self.proficiency})"


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)
    color = models.CharField(max_length=7, default="#64748b")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    display_name = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=8, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    # Customer value as the utility's CRM reports it (e.g. yearly revenue); feeds priority.
    value = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    notes = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # Set when this contact was merged into another; identities and tickets moved there.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["display_name"], name="contact_name_idx")]

    def __str__(self) -> str:
        return self.display_name or f"Contact #{self.pk}"


class AccountNumber(models.Model):
    """A utility account (contract) number belonging to a contact; one person may have several."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="accounts")
    number = models.CharField(max_length=40, db_index=True)
    label = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "number"], name="account_contact_number")
        ]

    def __str__(self) -> str:
        return self.number


class Identity(models.Model):
    """How a contact is reached on one channel kind; unique per (kind, normalized value)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=12, choices=IdentityKind.choices)
    value = models.CharField(max_length=255)
    # What the platform called this person, for display (a username, a profile name).
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="identity_kind_value")
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class ContactMerge(models.Model):
    """A recorded merge of `source` into `target`, with what moved, so it can be undone."""

    target = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="merges_in")
    source = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="merges_out")
    actor = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.CharField(max_length=200, blank=True)
    identity_ids = models.JSONField(default=list)
    ticket_ids = models.JSONField(default=list)
    account_ids = models.JSONField(default=list)
    call_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"contact {self.source_id} into {self.target_id}"


class Ticket(models.Model):
    # No single-column indexes on contact, team and assignee: ticket_thread_idx,
    # ticket_team_status_idx and ticket_assignee_status_idx start with them, and every
    # assignment would maintain the extra ones too (migration 0005).
    contact = models.ForeignKey(
        Contact, on_delete=models.PROTECT, related_name="tickets", db_index=False
    )
    channel = models.ForeignKey(
        "channels_in.Channel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Distinguishes conversations of one contact on one channel (an email thread root, a
    # public post thread); "" means the channel's one private conversation with the contact.
    thread_key = models.CharField(max_length=255, blank=True, default="")
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    priority_score = models.SmallIntegerField(default=0)
    # [{"signal": "urgency", "detail": "нет света", "points": 30}, ...] shown to agents.
    priority_reasons = models.JSONField(default=list, blank=True)
    # Set when a person chose the level; automatic scoring then leaves the level alone.
    priority_locked = models.BooleanField(default=False)
    topic = models.CharField(max_length=20, choices=Topic.choices, default=Topic.OTHER)
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    language = models.CharField(max_length=8, blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, db_index=False)
    assignee = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
        db_index=False,
    )
    required_skills = models.ManyToManyField(Skill, blank=True, related_name="+")
    is_public = models.BooleanField(default=False)  # a public post rather than a private message
    # Negativity of the customer's words (0 = none); routing sends negative tickets to the
    # best-rated agents.
    sentiment = models.SmallIntegerField(default=0)
    # How far SLA escalation has gone: 0 none, 1 at risk handled, 2 breach handled.
    escalation_level = models.PositiveSmallIntegerField(default=0)
    first_response_due = models.DateTimeField(null=True, blank=True)
    resolution_due = models.DateTimeField(null=True, blank=True)
    # The next SLA deadline that matters: first response until answered, then resolution.
    # Always set, so the queue order is a plain index scan.
    sla_due_at = models.DateTimeField(default=timezone.now)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Since when the customer has been waiting for us; None when the ball is in their court.
    waiting_since = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(default=timezone.now)
    # The start of the last customer message, so the queue needs no join on messages.
    preview = models.CharField(max_length=160, blank=True)
    message_count = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Incremented by every action; live clients drop events older than what they render.
    version = models.IntegerField(default=1)

    class Meta:
        indexes = [
            # The queue: one ordering for everyone. Partial on active tickets (the queue is
            # a small slice of millions), per team, and the unassigned pool for take-next.
            models.Index(
                fields=["-priority", "sla_due_at", "waiting_since", "id"],
                name="queue_active_idx",
                condition=Q(status__in=ACTIVE_STATUSES),
            ),
            models.Index(
                fields=["team", "-priority", "sla_due_at", "waiting_since", "id"],
                name="queue_team_idx",
                condition=Q(status__in=ACTIVE_STATUSES),
            ),
            models.Index(
                fields=["team", "-priority", "sla_due_at", "waiting_since", "id"],
                name="queue_unassigned_idx",
                condition=Q(status__in=WORKABLE_STATUSES, assignee__isnull=True),
            ),
            models.Index(
                fields=["assignee", "-priority", "sla_due_at", "waiting_since", "id"],
                name="queue_assignee_idx",
                condition=Q(status__in=ACTIVE_STATUSES),
            ),
            # Any status, queue order (status=resolved lists, history).
            models.Index(
                fields=["-priority", "sla_due_at", "waiting_since", "id"], name="queue_all_idx"
            ),
            # Threading: the open ticket of this conversation.
            models.Index(
                fields=["contact", "channel", "thread_key", "-id"], name="ticket_thread_idx"
            ),
            models.Index(fields=["status", "resolved_at"], name="ticket_resolved_idx"),
            # The queue page's tab counts for an agent: (their teams OR assigned to them) per
            # status, each counted up to a cap.
            models.Index(fields=["team", "status"], name="ticket_team_status_idx"),
            models.Index(fields=["assignee", "status"], name="ticket_assignee_status_idx"),
            models.Index(fields=["created_at"], name="ticket_created_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).label

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class Direction(models.TextChoices):
    IN = "in", "Inbound"
    OUT = "out", "Outbound"


class AuthorKind(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    AGENT = "agent", "Agent"
    BOT = "bot", "Bot"
    SYSTEM = "system", "System"


class DeliveryStatus(models.TextChoices):
    RECEIVED = "received", "Received"  # inbound
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"
    NOT_SENT = "not_sent", "Not sent"  # internal notes and system messages


class Message(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    author_kind = models.CharField(max_length=8, choices=AuthorKind.choices)
    author = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    # What the message kind was on the platform: text, image, location, postback, call, ...
    kind = models.CharField(max_length=16, default="text")
    text = models.TextField(blank=True)
    # Sanitized (nh3) HTML for email bodies; never the raw HTML.
    html = models.TextField(blank=True)
    # Structured parts: pressed button, location, shared contact, quoted email, etc.
    payload = models.JSONField(default=dict, blank=True)
    channel = models.ForeignKey(
        "channels_in.Channel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    platform_message_id = models.CharField(max_length=255, null=True, blank=True)
    is_internal = models.BooleanField(default=False)
    delivery_status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.RECEIVED
    )
    delivery_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)  # the platform's own timestamp
    edited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Idempotency: a platform message is stored once per channel, whatever retries.
            models.UniqueConstraint(
                fields=["channel", "platform_message_id"],
                condition=Q(platform_message_id__isnull=False),
                name="message_platform_id_unique",
            )
        ]
        indexes = [models.Index(fields=["ticket", "id"], name="message_ticket_idx")]

    def __str__(self) -> str:
        return f"{self.direction} #{self.pk} on ticket {self.ticket_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    now = timezone.now()
    return f"attachments/{now:%Y/%m/%d}/{filename}"


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=300, blank=True)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=120, default="application/octet-stream")
    size = models.BigIntegerField(default=0)
    # Where the worker fetches the file from when the platform only sent a reference.
    source_url = models.CharField(max_length=1000, blank=True)
    fetch_attempts = models.PositiveSmallIntegerField(default=0)
    fetch_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """The transactional outbox: one row per outbound message, written in its transaction."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"  # permanent failure or retries exhausted: dead letter

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="delivery")
    channel = models.ForeignKey(
        "channels_in.Channel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_pending_idx",
                condition=Q(state__in=["queued", "sending"]),
            ),
            models.Index(
                fields=["-updated_at"], name="delivery_failed_idx", condition=Q(state="failed")
            ),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"delivery of message {self.message_id}: {self.state}"


class CannedResponse(models.Model):
    shortcut = models.SlugField(max_length=40, allow_unicode=True)
    title = models.CharField(max_length=120)
    # May use {{contact.name}}, {{ticket.id}}, {{agent.name}}, {{contact.account}}.
    body = models.TextField()
    language = models.CharField(max_length=8, blank=True)  # "" = any language
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE)  # None = all
    created_by = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    usage_count = models.IntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["shortcut", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["shortcut", "language", "team"],
                name="canned_shortcut_unique",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut} ({self.language or 'any'})"


class Call(models.Model):
    """A phone call logged by an agent on a contact's timeline."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="calls")
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    direction = models.CharField(max_length=8, choices=Direction.choices, default="inbound")
    phone = models.CharField(max_length=32, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    duration_seconds = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["contact", "-started_at"], name="call_contact_idx")]

    def __str__(self) -> str:
        return f"{self.direction} call with contact {self.contact_id}"


class TicketEvent(models.Model):
    """Append-only history: every report is computed from these rows."""

    # No single-column indexes on the foreign keys: the composite indexes in Meta start with
    # each of them (migration 0005).
    ticket = models.ForeignKey(
        Ticket,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    contact = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    actor_kind = models.CharField(max_length=8, choices=AuthorKind.choices)
    actor = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    verb = models.CharField(max_length=40)
    from_value = models.JSONField(null=True, blank=True)
    to_value = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["ticket", "id"], name="event_ticket_idx"),
            models.Index(fields=["verb", "created_at"], name="event_verb_time_idx"),
            models.Index(fields=["actor", "created_at"], name="event_actor_time_idx"),
            models.Index(fields=["contact", "id"], name="event_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.verb} on {self.ticket_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("TicketEvent rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("TicketEvent rows are append-only")


class PresenceLog(models.Model):
    """Every presence change, login and logout of an agent, with its time (reports: statuses
    by hour, operator events)."""

    class Reason(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGOUT = "logout", "Logged out"
        MANUAL = "manual", "Set by the agent"
        IDLE = "idle", "Idle"
        ACTIVE = "active", "Active again"
        DISCONNECTED = "disconnected", "Connection lost"
        SUPERVISOR = "supervisor", "Set by a supervisor"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="presence_log")
    status = models.CharField(max_length=8, choices=Presence.choices)
    previous = models.CharField(max_length=8, choices=Presence.choices, blank=True)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["agent", "at"], name="presence_agent_time_idx"),
            models.Index(fields=["at"], name="presence_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.status} ({self.reason})"


class SlaPolicy(models.Model):
    """First-response and resolution targets. The first active policy (by position) whose
    conditions match a ticket applies; the settings' defaults apply when none does."""

    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    priority = models.SmallIntegerField(
        choices=Priority.choices, null=True, blank=True
    )  # None: any
    channel_kind = models.CharField(max_length=10, blank=True)  # "": any channel
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE)  # None: any
    first_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()
    # Count only the team's business hours (and skip its holidays).
    business_hours_only = models.BooleanField(default=False)
    # {"at_risk_minutes": 15, "on_at_risk": ["notify_supervisor"],
    #  "on_breach": ["notify_supervisor", "raise_priority", "reassign"]}
    escalation = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name_plural = "SLA policies"

    def __str__(self) -> str:
        return self.name


class RoutingRule(models.Model):
    """An ordered rule: when every condition holds, its actions apply (set team, required
    skills, priority change, tag, assign to an agent). See tickets.routing for the format."""

    name = models.CharField(max_length=120)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    conditions = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=dict, blank=True)
    # Stop evaluating later rules when this one matched.
    stop = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class ScoringConfig(models.Model):
    """The priority dictionary and weights (urgency phrases per language, safety groups,
    negativity, tiers, influence, levels) and the topic keywords. Versions are immutable: an
    edit saves a new version; the newest applies."""

    version = models.PositiveIntegerField(unique=True)
    data = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"scoring v{self.version}"


class SatisfactionRating(models.Model):
    """A customer's rating of how a ticket was handled (1..5)."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="ratings")
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="ratings"
    )
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["agent", "created_at"], name="rating_agent_time_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=5), name="rating_score_1_5")
        ]

    def __str__(self) -> str:
        return f"{self.score} for ticket {self.ticket_id}"
