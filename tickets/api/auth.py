"""Exchanging a username and password for an API token."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tickets.actions import check_staff
from tickets.errors import InvalidInput

from .common import PARSERS, validated
from .schema import errors
from .serializers import SignInSerializer, TokenSerializer


class TokenView(APIView):
    # No authentication: a stale session or token must not stand in the way of signing in,
    # and without session auth there is no CSRF check on this form-less endpoint.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = PARSERS

    @extend_schema(
        summary="Get an API token",
        description="Exchange a helpdesk agent's username and password for a token; send it "
        "as `Authorization: Token <key>`. The same token is returned until it is revoked.",
        request=SignInSerializer,
        responses={200: TokenSerializer, **errors(400, 403)},
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = validated(SignInSerializer, request)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            # One message for an unknown user, a wrong password and a disabled account: the
            # answer must not tell which usernames exist.
            raise InvalidInput(
                "unable to sign in with that username and password", code="invalid_credentials"
            )
        check_staff(user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
