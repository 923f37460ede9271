"""Small pieces every API view shares: who is calling, ids from paths and bodies, strict
request serializers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request

from tickets.auth import one_query_available, user_by_token
from tickets.errors import Forbidden, NotFound
from tickets.models import Agent

from .permissions import IsStaffMember, agent_of
from .schema import HelpdeskAutoSchema

# Primary keys are bigints; anything outside this range cannot name a row.
MAX_ID = 2**63 - 1


class AgentTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, loading the user's Agent in the same query: every API
    request needs it, and a query saved per request matters at queue-refresh rates."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if one_query_available():
            # One hand-written query (user, agent, team ids), nothing cached: a deleted
            # token fails on the next request.
            found = user_by_token(key)
            if found is None:
                raise exceptions.AuthenticationFailed("invalid token")
            user, token = found
        else:
            model = self.get_model()
            try:
                token = model.objects.select_related("user", "user__agent").get(key=key)
            except model.DoesNotExist as exc:
                raise exceptions.AuthenticationFailed("invalid token") from exc
            user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("this account is disabled")
        return (user, token)


class SafeJSONParser(JSONParser):
    """JSON, where a body nested too deeply for Python's decoder is a 400 like any other
    malformed JSON (DRF only turns ValueError into a parse error; this is RecursionError)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from exc


PARSERS = [SafeJSONParser, FormParser, MultiPartParser]


class StaffAPIMixin:
    """Authentication and the default permission of every helpdesk API view."""

    authentication_classes = [AgentTokenAuthentication, SessionAuthentication]
    permission_classes = [IsStaffMember]
    parser_classes = PARSERS
    schema = HelpdeskAutoSchema()
    request: Request

    @property
    def agent(self) -> Agent:
        agent = agent_of(self.request)
        if agent is None:  # the permission classes ran first; this is a programming error
            raise Forbidden("this account is not a helpdesk agent")
        return agent


def parse_id(raw: Any, *, what: str) -> int:
    """An id from a URL path. Anything that cannot be a primary key names nothing: 404, the
    same answer as an id that does not exist."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    else:
        raise NotFound(f"{what} {raw!r} does not exist")
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"{what} {raw!r} does not exist")
    return value


class IdField(serializers.IntegerField):
    """A primary key in a request body: a positive integer within the bigint range."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class RejectUnknownFieldsMixin:
    """A request naming a field we do not know is an error, not something to ignore quietly:
    a typo (`asignee`) would otherwise look like success."""

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(self.fields)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                writable = sorted(
                    name for name, field in self.fields.items() if not field.read_only
                )
                raise serializers.ValidationError(
                    {
                        name: [f"unknown field; expected one of: {', '.join(writable)}"]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A request body serializer that rejects unknown fields."""


def check_storable_json(value: Any, *, what: str, depth: int = 0) -> None:
    """Raise a ValidationError for JSON that PostgreSQL's jsonb cannot store: a NUL character
    (U+0000) in any key or string, or nesting deeper than anyone means."""
    if depth > 32:
        raise serializers.ValidationError(f"{what} is nested too deeply (at most 32 levels)")
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError(f"{what} contains a NUL character (\\u0000)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable_json(key, what=what, depth=depth + 1)
            check_storable_json(item, what=what, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_storable_json(item, what=what, depth=depth + 1)


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Validate the request body with `serializer_class` (400 with per-field messages)."""
    serializer = serializer_class(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
