"""WSGI entry point: production serves webhooks, the API and pages here (gunicorn)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

application = get_wsgi_application()

from helpdesk import gctune  # noqa: E402

gctune.tune()
