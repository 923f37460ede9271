from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

app = Celery("helpdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fix-up closes every database connection before and after each task, and in a
# prefork worker it closes the whole psycopg pool with them (celery/fixups/django.py,
# `_close_database`): every task then opened a new PostgreSQL backend and prepared our
# statements again — at 100 messages/s, one kick per message or two, that was most of the
# worker's CPU. The fix-up only skips the close when this (literal, un-namespaced) key is set;
# `release_connections` below does per task what Django does per request instead. The fix-up
# still drops the connections a forked pool process inherits (worker_process_init).
app.conf.CELERY_DB_REUSE_MAX = 1_000_000


@task_prerun.connect
@task_postrun.connect
def release_connections(sender: Any = None, **kwargs: object) -> None:
    """Hand the connection back to the pool (not close it), unless it is broken or left in a
    transaction: Django's request_started/request_finished behaviour, per task. Not for an
    eager task: it runs inside its caller's transaction (as the fix-up also skips it)."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@worker_process_init.connect
def warm_up(**kwargs: object) -> None:
    """Build the language detector when a worker process starts, not on its first message;
    then keep it and everything imported out of the collector's way (helpdesk.gctune)."""
    from helpdesk import gctune
    from tickets.language import warm_up as warm_up_language

    warm_up_language()
    gctune.tune()
