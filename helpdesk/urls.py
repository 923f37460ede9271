from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
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

if settings.EMBEDDED or settings.DEBUG:
    # Production serves media from the proxy or object storage; the embedded default here.
    urlpatterns += [
        re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    ]
