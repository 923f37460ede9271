from __future__ import annotations

from django.apps import AppConfig


class ChannelsInConfig(AppConfig):
    name = "channels_in"
    verbose_name = "Channels"
