from __future__ import annotations

from typing import Any

# WebSocket routes; the agents' live updates and the chat widget add theirs here.
websocket_urlpatterns: list[Any] = []
