"""Supervisors' operations pages, under /ops/ (included from helpdesk/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import ops_views

app_name = "ops"

urlpatterns = [
    path("dead-letters/", ops_views.dead_letters, name="dead-letters"),
    path("dead-letters/<int:pk>/retry/", ops_views.dead_letter_retry, name="dead-letter-retry"),
    path("events/", ops_views.events, name="events"),
    path("events/<int:pk>/", ops_views.event_detail, name="event"),
    path("events/<int:pk>/replay/", ops_views.event_replay, name="event-replay"),
]
