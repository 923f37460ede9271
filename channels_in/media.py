"""Downloading customers' media (photos, documents, voice) from the platforms, safely.

A media URL comes from a webhook body, so an attacker who can post to a webhook (or a platform
that forwards a link a customer typed) chooses what we fetch. Every download therefore:

- speaks only http(s), on the first URL and on every redirect hop (followed here, one by one,
  never by the HTTP client);
- never connects to a private, loopback, link-local or otherwise non-public address, unless
  the host and port are exactly those of a configured platform base URL
  (settings.HELPDESK_PLATFORM_URLS: tests run the fake platform on 127.0.0.1). Names are
  resolved here and the connection is pinned to the checked address (the TLS certificate is
  still verified for the name), so a name cannot resolve to a public address for the check
  and to 169.254.169.254 for the connection;
- sends credentials only to the origin they belong to, never across a redirect to another;
- streams with a hard size cap (settings.HELPDESK_MAX_ATTACHMENT_BYTES, whatever the
  Content-Length says) and an overall time budget, on top of the client's timeouts.

Errors are FetchErrors with a message an agent may read: hosts and HTTP statuses, never a URL
(Telegram puts the bot token in its file URLs).
"""

from __future__ import annotations

import contextlib
import email.message
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

from .base import FetchError, SendError
from .http import classify, client

__all__ = ["Auth", "download", "human_size", "origin", "raise_for_api", "request_failed"]

# Headers for one request to the original URL's origin (called per hop: OAuth 1.0a signs the
# exact URL). Never called for a hop on another origin.
Auth = Callable[[str], dict[str, str]]

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECTS = (301, 302, 303, 307, 308)


def fetch_seconds() -> float:
    """The most one download may take, start to end (a server dripping a byte every few
    seconds never trips the per-read timeout)."""
    return float(getattr(settings, "HELPDESK_MEDIA_FETCH_SECONDS", 120))


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


def platform_hosts() -> set[tuple[str, int]]:
    """(host, port) of every configured platform base URL: the only private addresses we
    ever connect to (an operator configured them; a payload did not)."""
    hosts = set()
    for base in settings.HELPDESK_PLATFORM_URLS.values():
        parsed = origin(str(base))
        if parsed is not None:
            hosts.add((parsed[1], parsed[2]))
    return hosts


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is 127.0.0.1 (older Pythons judge the IPv6 form as a whole).
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Target:
    """Where one request really goes: the URL to connect to (pinned to a checked address),
    with the Host header and TLS server name of the URL it stands for."""

    url: str
    host: str  # for messages: the name as the URL gave it
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


def resolve_target(url: str) -> Target:
    """Check one URL (the first or a redirect hop) and pin it to a public address; raise a
    permanent FetchError for anything we never fetch."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        explicit_port = parts.port
    except ValueError as exc:
        raise FetchError(f"the media link is not a valid URL ({exc})", permanent=True) from exc
    if scheme not in DEFAULT_PORTS:
        raise FetchError(
            f"refusing to fetch a {scheme + ':' if scheme else 'relative'} link: "
            "only http and https are fetched",
            permanent=True,
        )
    if not host:
        raise FetchError("the media link has no host", permanent=True)
    if parts.username is not None or parts.password is not None:
        raise FetchError("refusing to fetch a link that carries a user name", permanent=True)
    port = explicit_port or DEFAULT_PORTS[scheme]
    if (host, port) in platform_hosts():
        return Target(url=url, host=host)
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise FetchError(f"the host {host!r} is not a valid name", permanent=True) from exc
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if not is_public(str(literal)):
            raise FetchError(f"refusing to fetch from {host}: not a public address", permanent=True)
        return Target(url=url, host=host)
    try:
        infos = socket.getaddrinfo(ascii_host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        # Usually a DNS hiccup; a name that never resolves runs out of attempts.
        raise FetchError(f"cannot resolve {host}", permanent=False) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(is_public(a) for a in addresses):
        raise FetchError(
            f"refusing to fetch from {host}: it resolves to a private address", permanent=True
        )
    pinned = addresses[0]
    netloc = f"[{pinned}]" if ":" in pinned else pinned
    if explicit_port is not None:
        netloc = f"{netloc}:{explicit_port}"
    host_header = ascii_host if explicit_port is None else f"{ascii_host}:{explicit_port}"
    return Target(
        url=urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")),
        host=host,
        headers={"Host": host_header},
        extensions={"sni_hostname": ascii_host} if scheme == "https" else {},
    )


def download(url: str, *, auth: Auth | None = None) -> tuple[bytes, str, str | None]:
    """GET `url` within the limits above: (content, content type, file name or None)."""
    limit = int(settings.HELPDESK_MAX_ATTACHMENT_BYTES)
    deadline = time.monotonic() + fetch_seconds()
    first_origin = origin(url)
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = resolve_target(current)
        headers = dict(target.headers)
        if auth is not None and first_origin is not None and origin(current) == first_origin:
            headers.update(auth(current))
        try:
            with client().stream(
                "GET", target.url, headers=headers, extensions=target.extensions or None
            ) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"HTTP {response.status_code} from {target.host} without a Location",
                            permanent=True,
                        )
                    current = urljoin(current, location)
                    continue
                check_status(response, target.host)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large(int(declared), limit)
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    total += len(chunk)
                    if total > limit:
                        # Decoded bytes count: a small gzip body cannot inflate past the cap.
                        raise too_large(total, limit, at_least=True)
                    if time.monotonic() > deadline:
                        raise FetchError(
                            f"the download from {target.host} took longer than "
                            f"{fetch_seconds():.0f} s",
                            permanent=False,
                        )
                    chunks.append(chunk)
                # The server's suggested name, else the last part of the URL's path.
                name = filename_from(response.headers.get("content-disposition", ""))
                return (
                    b"".join(chunks),
                    response.headers.get("content-type", ""),
                    name or clean_name(unquote(urlsplit(current).path)),
                )
        except httpx.HTTPError as exc:
            raise request_failed(exc, target.host) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"the media link is not a valid URL ({exc})", permanent=True) from exc
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", permanent=True)


def too_large(size: int, limit: int, *, at_least: bool = False) -> FetchError:
    what = f"over {human_size(limit)}" if at_least else human_size(size)
    return FetchError(f"the file is {what}; the limit is {human_size(limit)}", permanent=True)


def check_status(response: httpx.Response, host: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise FetchError(f"HTTP {status} from {host}", permanent=False)
    if status in (404, 410):
        reason = "the platform no longer has this file"
    elif status in (401, 403):
        reason = "the platform refused the download"
    else:
        reason = "the platform rejected the request"
    raise FetchError(f"{reason} (HTTP {status} from {host})", permanent=True)


def request_failed(exc: httpx.HTTPError, host: str) -> FetchError:
    """A transport error as a FetchError: network trouble is transient; a body we cannot
    decode or a protocol we do not speak will not improve with retries."""
    permanent = isinstance(exc, httpx.DecodingError | httpx.UnsupportedProtocol)
    # The class name says enough (ConnectTimeout, ReadError); the text may carry the URL.
    return FetchError(f"{type(exc).__name__} talking to {host}", permanent=permanent)


def raise_for_api(response: httpx.Response, what: str) -> None:
    """An unsuccessful platform API answer (getFile, a media lookup) as a FetchError,
    transient or permanent as channels_in.http.classify judges it."""
    try:
        classify(response, what)
    except SendError as exc:
        raise FetchError(str(exc), permanent=exc.permanent) from exc


def filename_from(content_disposition: str) -> str | None:
    """The file name a Content-Disposition header suggests (RFC 6266, RFC 2231 encoded names
    included), reduced to a base name; None when there is none."""
    if not content_disposition:
        return None
    message = email.message.EmailMessage()
    name: Any = None
    with contextlib.suppress(Exception):  # a malformed header is just "no name"
        message["content-disposition"] = content_disposition
        name = message.get_filename()
    return clean_name(name) if isinstance(name, str) else None


def clean_name(name: str) -> str | None:
    """A file name reduced to its base name and printable characters, or None."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    return name[:200] or None
