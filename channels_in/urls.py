from __future__ import annotations

from django.urls import path

from .webhooks import webhook

urlpatterns = [
    path("<slug:kind>/<slug:channel_key>/", webhook, name="webhook"),
]
