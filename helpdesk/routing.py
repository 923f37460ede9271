"""WebSocket routes, in two trust zones.

- Public: the chat widget runs on the utility's own sites, so its consumer checks each
  channel's `allowed_origins` itself and authenticates visitors with signed tokens.
- Staff: agents' live updates; same-origin only (ALLOWED_HOSTS) and the Django session.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from channels_in.widget.routing import websocket_urlpatterns as widget_websocket_urlpatterns
from tickets.consumers import AgentConsumer

public_websocket_urlpatterns: list[Any] = [*widget_websocket_urlpatterns]
staff_websocket_urlpatterns: list[Any] = [
    path("ws/agent/", AgentConsumer.as_asgi(), name="agent-socket"),
]

# Both, without the middleware (tests route consumers directly through this).
websocket_urlpatterns: list[Any] = [*public_websocket_urlpatterns, *staff_websocket_urlpatterns]


def websocket_application() -> Any:
    return URLRouter(
        [
            *public_websocket_urlpatterns,
            re_path(
                r"",
                AllowedHostsOriginValidator(
                    AuthMiddlewareStack(URLRouter(staff_websocket_urlpatterns))
                ),
            ),
        ]
    )
