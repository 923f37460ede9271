"""The priority dictionary and weights over the API (mounted at /api/v1/scoring/).

- `GET  scoring/`                the configuration in force and the list of versions
- `POST scoring/`                save a new version: {"data": {...}, "note": "..."}, or
                                 restore an old one: {"restore": 3, "note": "..."} (admins)
- `GET  scoring/versions/<n>/`   one version with its data
- `POST scoring/preview/`        score a text: level, points, reasons, topic, language

Supervisors and admins read and preview; only admins save. Agents get 403: the dictionary
is configuration, and every ticket already shows the reasons of its own score. The JSON
shape of `data` is documented in `tickets.priority`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tickets import actions
from tickets.errors import NotFound
from tickets.models import ScoringConfig, Tier
from tickets.priority import ConfigError, compile_config, current_config, preview

from .common import StaffAPIMixin, StrictSerializer, check_storable_json, parse_id, validated
from .permissions import IsSupervisor, agent_of
from .schema import errors

MAX_FOLLOWERS = 10**10
HISTORY_LIMIT = 200


class SupervisorReadAdminWrite(BasePermission):
    message = "only supervisors and admins may see the scoring configuration; only admins change it"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        if agent is None:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return bool(agent.is_supervisor)
        return bool(agent.is_admin)


def _config_data(value: Any) -> dict[str, Any]:
    """A configuration from a request body, checked: every problem with its path."""
    check_storable_json(value, what="data")
    try:
        return compile_config(value).data
    except ConfigError as exc:
        raise serializers.ValidationError(exc.errors) from exc


class ScoringWriteSerializer(StrictSerializer):
    data = serializers.JSONField(
        required=False, help_text="The whole configuration (see GET for the current one)."
    )
    restore = serializers.IntegerField(
        required=False, min_value=1, help_text="Save this old version again as the newest."
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")

    def validate_data(self, value: Any) -> dict[str, Any]:
        return _config_data(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("data" in attrs) == ("restore" in attrs):
            raise serializers.ValidationError(
                {"data": ["send either data (a new configuration) or restore (a version number)"]}
            )
        return attrs


class PreviewSerializer(StrictSerializer):
    text = serializers.CharField(trim_whitespace=False)
    tier = serializers.ChoiceField(choices=Tier.choices, default=Tier.STANDARD)
    followers = serializers.IntegerField(min_value=0, max_value=MAX_FOLLOWERS, default=0)
    verified = serializers.BooleanField(default=False)
    public = serializers.BooleanField(default=False)
    data = serializers.JSONField(
        required=False, help_text="Score with this unsaved configuration instead."
    )

    def validate_text(self, value: str) -> str:
        text = value.replace("\x00", "")
        if not text.strip():
            raise serializers.ValidationError("the text is empty")
        limit = settings.HELPDESK_MAX_MESSAGE_CHARS
        if len(text) > limit:
            raise serializers.ValidationError(f"{len(text)} characters; the limit is {limit}")
        return text

    def validate_data(self, value: Any) -> dict[str, Any]:
        return _config_data(value)


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.name", default=None, read_only=True)

    class Meta:
        model = ScoringConfig
        fields = ["version", "note", "created_by", "created_at"]


class VersionDetailSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "data"]


def _versions() -> Any:
    return ScoringConfig.objects.select_related("created_by__user").order_by("-version")


@extend_schema(tags=["scoring"])
class ScoringView(StaffAPIMixin, APIView):
    permission_classes = [SupervisorReadAdminWrite]

    @extend_schema(
        summary="The scoring configuration in force, and its versions",
        responses={
            200: inline_serializer(
                "ScoringState",
                {
                    "version": serializers.IntegerField(help_text="0: the built-in default"),
                    "data": serializers.JSONField(),
                    "versions": VersionSerializer(many=True),
                },
            ),
            **errors(401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        versions = list(_versions()[:HISTORY_LIMIT])
        newest = versions[0] if versions else None
        data = newest.data if newest is not None else current_config().data
        return Response(
            {
                "version": newest.version if newest is not None else 0,
                "data": data,
                "versions": VersionSerializer(versions, many=True).data,
            }
        )

    @extend_schema(
        summary="Save a new version, or restore an old one (admins)",
        request=ScoringWriteSerializer,
        responses={201: VersionDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        values = validated(ScoringWriteSerializer, request)
        if "restore" in values:
            config = actions.do_restore_scoring_config(
                values["restore"], actor=self.agent, note=values["note"]
            )
        else:
            config = actions.do_save_scoring_config(
                values["data"], actor=self.agent, note=values["note"]
            )
        config = _versions().get(pk=config.pk)
        return Response(VersionDetailSerializer(config).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["scoring"])
class ScoringVersionView(StaffAPIMixin, APIView):
    permission_classes = [IsSupervisor]

    @extend_schema(
        summary="One version of the scoring configuration",
        responses={200: VersionDetailSerializer, **errors(401, 403, 404)},
    )
    def get(self, request: Request, version: str) -> Response:
        number = parse_id(version, what="scoring version")
        config = _versions().filter(version=number).first()
        if config is None:
            raise NotFound(f"scoring version {number} does not exist")
        return Response(VersionDetailSerializer(config).data)


@extend_schema(tags=["scoring"])
class ScoringPreviewView(StaffAPIMixin, APIView):
    permission_classes = [IsSupervisor]

    @extend_schema(
        summary="Score a text as a customer message (changes nothing)",
        request=PreviewSerializer,
        responses={
            200: inline_serializer(
                "ScoringPreview",
                {
                    "version": serializers.IntegerField(
                        help_text="the version used; 0: built-in default or unsaved data"
                    ),
                    "level": serializers.ChoiceField(choices=["low", "normal", "high", "urgent"]),
                    "points": serializers.IntegerField(),
                    "safety": serializers.BooleanField(),
                    "sentiment": serializers.IntegerField(),
                    "reasons": serializers.ListField(child=serializers.DictField()),
                    "topic": serializers.CharField(),
                    "language": serializers.CharField(allow_null=True),
                    "language_method": serializers.CharField(),
                    "language_confidence": serializers.FloatField(),
                    "foreign_language": serializers.CharField(allow_null=True),
                },
            ),
            **errors(400, 401, 403),
        },
    )
    def post(self, request: Request) -> Response:
        values = validated(PreviewSerializer, request)
        config = compile_config(values["data"]) if "data" in values else None
        return Response(
            preview(
                values["text"],
                tier=values["tier"],
                followers=values["followers"],
                verified=values["verified"],
                is_public=values["public"],
                config=config,
            )
        )


urlpatterns: list[URLPattern] = [
    path("", ScoringView.as_view(), name="api-scoring"),
    path("versions/<str:version>/", ScoringVersionView.as_view(), name="api-scoring-version"),
    path("preview/", ScoringPreviewView.as_view(), name="api-scoring-preview"),
]
