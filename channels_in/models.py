"""The edge's data: connected channels (and, with the webhooks, the raw inbound event store)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ChannelKind(models.TextChoices):
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    X = "x", "X"
    VIBER = "viber", "Viber"
    VK = "vk", "VK"
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"
    WIDGET = "widget", "Web chat"


class Channel(models.Model):
    """One connected account or profile: a Telegram bot, a WhatsApp number, a mailbox, ..."""

    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    # URL-safe and public (it is in the webhook path); not a secret.
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    # Platform secrets. Write-only: never serialized by the API, never logged.
    credentials = models.JSONField(default=dict, blank=True)
    settings = models.JSONField(default=dict, blank=True)
    default_team = models.ForeignKey(
        "tickets.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class InboundEvent(models.Model):
    """One platform delivery, stored raw before anything else happens to it.

    The webhook answers 200 only after this row is committed, so an accepted delivery is never
    lost; the platform's own id makes a redelivery a no-op (unique on channel + platform id).
    Workers claim pending rows (pending -> processing, a compare-and-set) and parse them into
    messages; the sweeper returns rows a dead worker left in processing.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"  # claimed by a worker (see claimed_at)
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="events")
    platform_id = models.CharField(max_length=255)
    body = models.BinaryField()
    # What parsing needs besides the body (content type, query); never secrets or signatures.
    meta = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # What processing produced: counts of messages, receipts, edits and ignored items.
    result = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    # Not before this time: backoff after an error, or a wait for a message a receipt needs.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "platform_id"], name="event_channel_platform_id"
            )
        ]
        indexes = [
            # Workers claim due events oldest first: an index range scan on the pending slice.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="event_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["claimed_at"],
                name="event_processing_idx",
                condition=models.Q(status="processing"),
            ),
            models.Index(
                fields=["-received_at"],
                name="event_failed_idx",
                condition=models.Q(status="failed"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.platform_id} ({self.status})"


class ListeningCount(models.Model):
    """Public mentions seen per channel and day: those the listening rules made tickets of,
    and those only counted (a brand's timeline is mostly not service requests)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    ticketed = models.PositiveIntegerField(default=0)
    counted_only = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "day"], name="listening_channel_day")
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.day}: {self.ticketed}/{self.counted_only}"
