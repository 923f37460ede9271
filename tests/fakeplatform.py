"""A local stand-in for the platforms' HTTP APIs: the one seam where tests fake the outside world.

It is a real HTTP server on 127.0.0.1, so the code under test (and a real Celery worker in a
subprocess) talks to it exactly as it would to api.telegram.org. Each platform kind gets a path
prefix: settings.HELPDESK_PLATFORM_URLS["telegram"] = "http://127.0.0.1:<port>/telegram".
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = ("telegram", "whatsapp", "messenger", "instagram", "x", "viber", "vk", "sms")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


@dataclass
class Rule:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    times: int | None  # None: forever
    headers: dict[str, str] = field(default_factory=dict)


class FakePlatform:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._counter = 1000
        handler = self._handler_class()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def urls(self) -> dict[str, str]:
        return {kind: f"{self.url}/{kind}" for kind in KINDS}

    def start(self) -> FakePlatform:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(
        self,
        method: str,
        path_regex: str,
        status: int = 200,
        body: Any = None,
        *,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer matching requests with `body` (JSON unless bytes/str). The newest rule wins;
        `times` limits how often a rule answers (e.g. fail twice, then succeed)."""
        with self._lock:
            self._rules.insert(
                0, Rule(method.upper(), re.compile(path_regex), status, body, times, headers or {})
            )

    def next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def sent(self, path_regex: str = ".*") -> list[Recorded]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if pattern.search(r.path)]

    def _answer(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            for rule in self._rules:
                if rule.method in (method, "*") and rule.pattern.search(path):
                    if rule.times is not None:
                        if rule.times <= 0:
                            continue
                        rule.times -= 1
                    return rule.status, rule.body, rule.headers
        return 404, {"error": f"fake platform has no rule for {method} {path}"}, {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                platform.requests.append(
                    Recorded(
                        self.command,
                        split.path,
                        parse_qs(split.query),
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                status, answer, headers = platform._answer(self.command, split.path)
                if callable(answer):
                    answer = answer(platform.requests[-1])
                if isinstance(answer, bytes):
                    payload, ctype = answer, "application/octet-stream"
                elif isinstance(answer, str):
                    payload, ctype = answer.encode(), "text/plain"
                else:
                    payload, ctype = json.dumps(answer).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", headers.get("Content-Type", ctype))
                for key, value in headers.items():
                    if key != "Content-Type":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
