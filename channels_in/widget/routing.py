"""The widget's WebSocket route, included by helpdesk/routing.py."""

from __future__ import annotations

from typing import Any

from django.urls import path

from .consumers import WidgetConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/widget/<slug:channel_key>/", WidgetConsumer.as_asgi(), name="widget-socket"),
]
