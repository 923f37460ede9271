"""OAuth 1.0a "user context" request signing (HMAC-SHA1), as the X API asks for it.

Written from https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature
(the steps and the test vector in tests/channels_in/test_x.py come from that page) and
https://docs.x.com/fundamentals/authentication/oauth-1-0a/authorizing-a-request (the header).
RFC 5849 is the standard behind both. A handful of lines, so no package for it.

Only query and form-encoded body parameters take part in the signature; a JSON body (every X
API v2 write) does not, so v2 requests are signed over the oauth_* parameters and the query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

__all__ = ["authorization_header", "parse_authorization_header", "percent_encode", "signature"]


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding: everything but ALPHA, DIGIT, "-", ".", "_", "~"."""
    return quote(value, safe="~")


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    default_port = port is None or (scheme, port) in (("http", 80), ("https", 443))
    netloc = host if default_port else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def signature_base_string(method: str, url: str, params: Mapping[str, str]) -> str:
    """METHOD&encoded base URL&encoded, sorted, encoded parameter string (the docs' step 3)."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    pairs = [(percent_encode(k), percent_encode(v)) for k, v in [*query, *params.items()]]
    parameter_string = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    return "&".join(
        (method.upper(), percent_encode(_base_url(url)), percent_encode(parameter_string))
    )


def signature(
    method: str,
    url: str,
    params: Mapping[str, str],
    *,
    consumer_secret: str,
    token_secret: str,
) -> str:
    """The oauth_signature value: base64 HMAC-SHA1 of the base string, keyed with the encoded
    consumer secret and token secret joined by "&"."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(
        key.encode(), signature_base_string(method, url, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def authorization_header(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    form: Mapping[str, str] | None = None,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The `Authorization: OAuth ...` value for one request. `form` is the form-encoded body,
    if any (it is signed); pass nothing for a JSON body."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    oauth["oauth_signature"] = signature(
        method,
        url,
        {**oauth, **(form or {})},
        consumer_secret=consumer_secret,
        token_secret=token_secret,
    )
    return "OAuth " + ", ".join(
        f'{percent_encode(k)}="{percent_encode(v)}"' for k, v in sorted(oauth.items())
    )


def parse_authorization_header(value: str) -> dict[str, str]:
    """The oauth_* parameters of an `OAuth ...` header (tests check what was signed)."""
    if not value.startswith("OAuth "):
        return {}
    params: dict[str, str] = {}
    for part in value[len("OAuth ") :].split(","):
        name, _, quoted = part.strip().partition("=")
        params[name] = unquote(quoted.strip('"'))
    return params
