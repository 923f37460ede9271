from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tickets import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hooks/", include("channels_in.urls")),
    path("widget/", include("channels_in.widget.urls")),
    path("api/v1/", include("tickets.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("ops/", include("channels_in.ops_urls")),
    path("", include("tickets.urls")),
]

# No /media/ route, embedded or not: customers' files are served by tickets.attachments only —
# to staff who may see the ticket, or through a signed, expiring link for files we send.
