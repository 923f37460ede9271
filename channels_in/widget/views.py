"""`GET /widget/demo/<channel_key>/` — a fictional utility's page with the widget's script tag,
for admins to try a widget channel and for the browser tests. The page is served from the
helpdesk's own origin, so that origin must be in the channel's `allowed_origins` for the chat
to connect (a widget only talks to the sites it is configured for, the demo included)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from ..models import Channel
from .consumers import public_config

WIDGET_LANGUAGES = ("en", "pt", "ru", "zh", "lt")


def demo(request: HttpRequest, channel_key: str) -> HttpResponse:
    channel = Channel.objects.filter(kind="widget", key=channel_key, is_active=True).first()
    if channel is None:
        raise Http404("no active web chat widget with this key")
    # The page comes in Lithuanian or English; the widget may be told another language
    # (?widget_lang=ru) to see its strings, otherwise it follows the page.
    lang = "en" if request.GET.get("lang") == "en" else "lt"
    script_lang = request.GET.get("widget_lang", "")
    if script_lang not in WIDGET_LANGUAGES:
        script_lang = ""
    response = render(
        request,
        "channels_in/widget_demo.html",
        {
            "channel": channel,
            "lang": lang,
            "script_lang": script_lang,
            "color": public_config(channel, lang)["color"],
        },
    )
    response["X-Robots-Tag"] = "noindex"
    return response
