"""ASGI entry point: HTTP and WebSockets (`/ws/agent/`, `/ws/widget/<key>/`).

Production serves HTTP from gunicorn (WSGI, measured 2.5x faster for these views) and only
WebSockets from here; the embedded default serves both from this one process.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from helpdesk.routing import websocket_application  # noqa: E402

if settings.EMBEDDED and settings.CELERY_TASK_ALWAYS_EAGER:
    from helpdesk import embedded_beat

    embedded_beat.start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(),
    }
)

from helpdesk import gctune  # noqa: E402

gctune.tune()
