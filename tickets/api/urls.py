"""REST API at /api/v1/. Unknown paths under it answer with a JSON 404, like everything else."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, URLPattern, URLResolver, include, path, re_path, resolve
from rest_framework.routers import SimpleRouter

from .auth import TokenView
from .config import (
    AgentViewSet,
    CannedResponseViewSet,
    ChannelViewSet,
    TagViewSet,
    TeamViewSet,
)
from .contacts import ContactMergeViewSet, ContactViewSet
from .errors import error_body
from .sla import register as register_sla
from .views import TicketViewSet

router = SimpleRouter()
router.register("tickets", TicketViewSet, basename="ticket")
# Before `contacts`, or `contacts/merges/` would be read as the contact with id "merges".
router.register("contacts/merges", ContactMergeViewSet, basename="contact-merge")
router.register("contacts", ContactViewSet, basename="contact")
router.register("teams", TeamViewSet, basename="team")
router.register("agents", AgentViewSet, basename="agent")
router.register("tags", TagViewSet, basename="tag")
router.register("canned-responses", CannedResponseViewSet, basename="canned-response")
router.register("channels", ChannelViewSet, basename="channel")
register_sla(router)  # sla-policies, business-hours


def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    message = f"no API endpoint at {request.path}"
    if not request.path.endswith("/"):
        try:
            resolve(request.path + "/")
        except Resolver404:
            pass
        else:
            message += f"; did you mean {request.path}/ ?"
    return JsonResponse(error_body("not_found", message), status=404)


urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("scoring/", include("tickets.api.scoring")),  # scoring config, versions, preview
    path("", include("tickets.api.routing")),  # routing-rules, skills, tickets/<id>/route/
    path("", include("channels_in.api")),  # deliveries (dead letters), inbound events
    *router.urls,
    re_path(r"^(?P<rest>.*)$", not_found, name="api-not-found"),
]
