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
