"""HTTP pages of the widget, included at `widget/` by helpdesk/urls.py."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("demo/<slug:channel_key>/", views.demo, name="widget-demo"),
]
