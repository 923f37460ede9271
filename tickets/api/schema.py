"""OpenAPI helpers: the error answers every operation documents."""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_array_type, build_basic_type, build_parameter_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from tickets.filters import CSVFilter


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer of the API."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input; `error.fields` names the fields and what is wrong with each.",
    401: "Not signed in: send `Authorization: Token <key>` or a session cookie.",
    403: "Signed in, but not allowed (not a helpdesk agent, or the role does not permit it).",
    404: "No such object, or one the caller may not see.",
    405: "The method is not allowed here.",
    409: "Conflicts with the current state (closed ticket, capacity reached, in use, ...).",
    413: "An attachment is larger than the limit.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


class CommaListFilterExtension(DjangoFilterExtension):
    """Documents the comma-separated filters of `tickets.filters` (CSVFilter) as OpenAPI
    arrays with `style: form, explode: false`, which is exactly `status=new,open`. The stock
    extension expects Django-style (value, label) choices and cannot read them."""

    target_class = "django_filters.rest_framework.DjangoFilterBackend"
    match_subclasses = True
    priority = 1

    def resolve_filter_field(
        self,
        auto_schema: Any,
        model: Any,
        filterset_class: Any,
        field_name: str,
        filter_field: Any,
    ) -> list[dict[str, Any]]:
        if not isinstance(filter_field, CSVFilter):
            return super().resolve_filter_field(
                auto_schema, model, filterset_class, field_name, filter_field
            )
        choices = filter_field.extra.get("choices")
        return [
            build_parameter_type(
                name=field_name,
                required=False,
                location=OpenApiParameter.QUERY,
                description=filter_field.extra.get("help_text") or "Comma-separated values.",
                schema=build_array_type(build_basic_type(OpenApiTypes.STR)),
                enum=list(choices) if choices else None,
                explode=False,
                style="form",
            )
        ]


class HelpdeskAutoSchema(AutoSchema):
    """Groups operations by resource (`tickets`, `contacts`, ...) instead of by API version."""

    def get_tags(self) -> list[str]:
        tokens = [t for t in self._tokenize_path() if not (t.startswith("v") and t[1:].isdigit())]
        return tokens[:1] or super().get_tags()
