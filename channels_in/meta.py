"""What the WhatsApp Cloud API, Messenger and Instagram adapters share: Meta's webhook
handshake and signature, the Graph API's error format, and splitting text to a platform's limit.

Verification, as https://developers.facebook.com/docs/graph-api/webhooks/getting-started
documents it for every Meta product:

- Subscribing: Meta sends `GET ?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<n>`
  and expects the challenge back, as the whole body, only if the token is the one we set.
- Every event notification carries `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
  payload keyed with the app secret. Meta computes it over the body exactly as sent, which has
  non-ASCII characters escaped (`\\u00e7`) and slashes escaped (`\\/`): we hash the raw bytes and
  never a re-serialization.

`split_text` and `numbered_text` are not Meta-specific (the SMS adapter uses them too); they live
here because this module is ours and `channels_in/base.py` is the core's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse

from .base import Button, SendError, SignatureError, constant_time_equal
from .http import classify
from .models import Channel

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE_META = "HTTP_X_HUB_SIGNATURE_256"
# A challenge is a short number; anything longer is not from Meta and is not echoed back.
_MAX_CHALLENGE = 256


# --------------------------------------------------------------------------- verification


def handshake(channel: Channel, request: HttpRequest) -> HttpResponse | None:
    """Answer Meta's subscription request. Every GET is a handshake attempt: the right token
    gets the challenge (text/plain), anything else a 403 (SignatureError)."""
    if request.method != "GET":
        return None
    expected = str(channel.credentials.get("verify_token") or "")
    mode = request.GET.get("hub.mode", "")
    token = request.GET.get("hub.verify_token", "")
    challenge = request.GET.get("hub.challenge", "")
    if mode != "subscribe":
        raise SignatureError("a verification request needs hub.mode=subscribe", status=403)
    if not expected or not token or not constant_time_equal(token, expected):
        raise SignatureError("hub.verify_token does not match this channel's verify_token")
    if not challenge or len(challenge) > _MAX_CHALLENGE:
        raise SignatureError("hub.challenge is missing or too long")
    return HttpResponse(challenge, content_type="text/plain")


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(channel: Channel, request: HttpRequest, body: bytes) -> None:
    given = request.META.get(_SIGNATURE_META, "").strip()
    if not given:
        raise SignatureError(f"missing {SIGNATURE_HEADER}", status=401)
    secret = str(channel.credentials.get("app_secret") or "")
    if not secret:
        raise SignatureError(f"the channel has no app_secret to check {SIGNATURE_HEADER}")
    # Meta sends lowercase hex; accept either case of the same digest.
    if not constant_time_equal(given.lower(), signature(secret, body)):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def sign(channel: Channel, body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature(str(channel.credentials.get("app_secret") or ""), body)}


# --------------------------------------------------------------------------- Graph API errors

# Worth another try later: Graph API throttling and "try again" errors
# (https://developers.facebook.com/docs/graph-api/guides/error-handling), WhatsApp's throughput,
# pair-rate and spam-rate limits and service errors
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes)
# and Messenger's 1200 "temporary send message failure"
# (https://developers.facebook.com/docs/messenger-platform/error-codes). Meta answers most of
# them with HTTP 400, so the HTTP status alone would call them permanent.
TRANSIENT_CODES = frozenset(
    {1, 2, 4, 17, 32, 341, 613, 1200, 80007, 130429, 131000, 131016, 131048, 131056, 133004}
)

Explanations = Mapping[int | tuple[int, int], str]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def raise_for_graph(
    response: httpx.Response, what: str, explain: Explanations | None = None
) -> None:
    """Raise SendError for an unsuccessful Graph API answer, transient or permanent by Meta's
    error code (HTTP 429/5xx are always transient). `explain` maps a code, or a (code, subcode)
    pair, to the sentence an agent should read instead of Meta's terse message."""
    if response.is_success:
        return
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        classify(response, what)
        return
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    error_data = error.get("error_data")
    details = str(error_data.get("details") or "") if isinstance(error_data, dict) else ""
    hint = None
    if explain and code is not None:
        hint = explain.get((code, subcode or 0)) or explain.get(code)
    text = hint or str(error.get("message") or "unknown error")
    if details and not hint:
        text = f"{text}: {details}"
    label = f"code {code}" + (f"/{subcode}" if subcode else "")
    transient = (
        code in TRANSIENT_CODES or response.status_code == 429 or response.status_code >= 500
    )
    raise SendError(
        f"{what}: {text} ({label}, HTTP {response.status_code})"[:1000],
        permanent=not transient,
        code=str(code if code is not None else response.status_code),
    )


def describe_errors(errors: Any) -> str:
    """The errors[] array of a webhook (a failed status, an unsupported message) as one line."""
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        title = str(error.get("title") or error.get("message") or "error")
        error_data = error.get("error_data")
        details = str(error_data.get("details") or "") if isinstance(error_data, dict) else ""
        message = str(error.get("message") or "")
        extra = details or (message if message != title else "")
        code = error.get("code")
        parts.append(f"{title} ({code})" + (f": {extra}" if extra else ""))
    return "; ".join(parts)


# --------------------------------------------------------------------------- text


def _fits(text: str, limit: int, size: Callable[[str], int]) -> int:
    """The longest prefix length of `text` whose size is within `limit`."""
    if size(text) <= limit:
        return len(text)
    low, high = 0, min(len(text), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def split_text(text: str, limit: int, *, size: Callable[[str], int] = len) -> list[str]:
    """Split `text` into parts within `limit` (characters, or whatever `size` measures), at a
    paragraph, line, sentence or word boundary when one is in the second half of the window.
    Nothing is dropped: an agent's answer arrives whole, in several messages if it must."""
    parts: list[str] = []
    rest = text.strip()
    while rest:
        end = _fits(rest, limit, size)
        if end >= len(rest):
            parts.append(rest)
            break
        window = rest[:end]
        cut = -1
        for separator in ("\n\n", "\n", ". ", "。", "! ", "? ", " "):
            at = window.rfind(separator)
            if at >= end // 2:
                cut = at + len(separator)
                break
        if cut <= 0:
            cut = max(end, 1)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return parts or [""]


def numbered_text(text: str, buttons: Sequence[Button]) -> str:
    """Buttons a platform cannot show natively, as a numbered list under the text: the customer
    answers with the number or the words, which a bot or an agent reads like any message."""
    lines = "\n".join(f"{n}. {b.label or b.id}" for n, b in enumerate(buttons, start=1))
    return f"{text.rstrip()}\n\n{lines}" if text.strip() else lines


def links_text(text: str, urls: Sequence[str]) -> str:
    return "\n".join([text.rstrip(), *urls]).strip() if urls else text
