from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import live_views, scoring_views, views
from .attachments import download as attachment_download
from .attachments import shared as attachment_shared

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.queue, name="queue"),
    path("scoring/", scoring_views.scoring, name="scoring"),
    path("take-next/", views.take_next, name="take-next"),
    path("tickets/<int:pk>/", views.ticket_detail, name="ticket"),
    path("attachments/<int:pk>/", attachment_download, name="attachment"),
    path("files/<str:token>/<path:name>", attachment_shared, name="attachment-public"),
    path("tickets/<int:pk>/reply/", views.ticket_reply, name="ticket-reply"),
    path("tickets/<int:pk>/status/", views.ticket_status, name="ticket-status"),
    path("tickets/<int:pk>/assign/", views.ticket_assign, name="ticket-assign"),
    path("tickets/<int:pk>/transfer/", views.ticket_transfer, name="ticket-transfer"),
    path("tickets/<int:pk>/priority/", views.ticket_priority, name="ticket-priority"),
    path("tickets/<int:pk>/tags/", views.ticket_tags, name="ticket-tags"),
    path("tickets/<int:pk>/call/", views.ticket_call, name="ticket-call"),
    path("tickets/<int:pk>/contact/", views.ticket_contact, name="ticket-contact"),
    path("tickets/<int:pk>/merge/", views.ticket_merge, name="ticket-merge"),
    path(
        "tickets/<int:pk>/merges/<int:merge_id>/undo/",
        views.ticket_unmerge,
        name="ticket-unmerge",
    ),
    # Live pages (static/js/live.js): fragments and state for live updates and re-sync.
    path("live/queue/rows/", live_views.queue_rows, name="live-queue-rows"),
    path("live/agents/", live_views.agents, name="live-agents"),
    path("live/presence/", live_views.set_presence, name="live-presence"),
    path("live/tickets/<int:pk>/messages/", live_views.ticket_messages, name="live-messages"),
]
