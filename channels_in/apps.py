from __future__ import annotations

from django.apps import AppConfig


class ChannelsInConfig(AppConfig):
    name = "channels_in"
    verbose_name = "Channels"

    def ready(self) -> None:
        from .registry import load_adapters  # apps must be loaded first

        load_adapters()
