"""WebSocket routes, in two trust zones.

- Public: the chat widget runs on the utility's own sites, so its consumer checks each
  channel's `allowed_origins` itself and authenticates visitors with signed tokens.
- Staff: agents' live updates; same-origin only (ALLOWED_HOSTS) and the Django session.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.middleware import BaseMiddleware
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.urls import path, re_path

from channels_in.widget.routing import websocket_urlpatterns as widget_websocket_urlpatterns
from tickets.consumers import AgentConsumer

public_websocket_urlpatterns: list[Any] = [*widget_websocket_urlpatterns]
staff_websocket_urlpatterns: list[Any] = [
    path("ws/agent/", AgentConsumer.as_asgi(), name="agent-socket"),
]

# Both, without the middleware (tests route consumers directly through this).
websocket_urlpatterns: list[Any] = [*public_websocket_urlpatterns, *staff_websocket_urlpatterns]


class SessionUserMiddleware(BaseMiddleware):
    """scope["session"] and scope["user"] from the session cookie, read once at connect.

    Channels' AuthMiddlewareStack does the same, and its session middleware also wraps every
    send() to save a modified session and set its cookie on HTTP responses. A WebSocket
    cannot set a cookie once open and no consumer here writes the session, yet those checks
    ran for every frame: ~5% of the ASGI process's CPU at 500 agent sockets (bench/live.py).
    A sign-out elsewhere still reaches the socket (the logout presence event closes it)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        scope = dict(scope)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        scope["session"] = store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        scope["user"] = await get_user(scope)
        return await super().__call__(scope, receive, send)


def websocket_application() -> Any:
    return URLRouter(
        [
            *public_websocket_urlpatterns,
            re_path(
                r"",
                AllowedHostsOriginValidator(
                    CookieMiddleware(SessionUserMiddleware(URLRouter(staff_websocket_urlpatterns)))
                ),
            ),
        ]
    )
