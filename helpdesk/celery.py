from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

app = Celery("helpdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def warm_up(**kwargs: object) -> None:
    """Build the language detector when a worker process starts, not on its first message."""
    from tickets.language import warm_up as warm_up_language

    warm_up_language()
