from __future__ import annotations

from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Tickets"

    def ready(self) -> None:
        # Login/logout presence signals in every process; the presence task for workers.
        from . import presence  # noqa: F401
