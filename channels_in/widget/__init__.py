"""The web chat widget: a script tag on any site, a WebSocket at `/ws/widget/<channel_key>/`."""
