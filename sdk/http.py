"""The SDK's HTTP: JSON and COSE over the standard library, with timeouts and retries.

No third-party HTTP client: the SDK installs with ``cryptography`` and ``cbor2`` only
(SPEC.md §2), so it talks HTTP through :mod:`urllib.request`. What it adds:

* a timeout on every request (``timeout``, default 5 s);
* retries on 503 and 429 (and on connection errors for idempotent requests), honouring
  ``Retry-After`` (seconds) when the server sends one and backing off exponentially
  (0.2 s, 0.4 s, ... capped at ``max_backoff``) when it does not, at most ``retries``
  times;
* problem+json answers raised as :class:`ServiceError` carrying ``status``, ``type``,
  ``title`` and ``detail`` — never a raw traceback of the HTTP layer.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from suishen.errors import SuishenError

RETRY_STATUSES = frozenset({429, 503})
MAX_BODY = 64 * 1024 * 1024


class ServiceError(SuishenError):
    """The service answered with an error (or could not be reached)."""

    def __init__(self, status: int, title: str, detail: str = "", type_: str = "") -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ServiceError(self.status, "answer is not JSON") from exc


@dataclass(slots=True)
class HTTP:
    """A base URL and the retry policy; one instance per service."""

    base_url: str
    timeout: float = 5.0
    retries: int = 3
    max_backoff: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ServiceError(0, "bad service URL", f"{self.base_url!r} is not http(s)://host")
        self.base_url = self.base_url.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """Send one request (with retries, see the module docstring)."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        all_headers = {"accept": "application/json, application/cose"}
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            all_headers["content-type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode("ascii")
            all_headers["content-type"] = "application/x-www-form-urlencoded"
        all_headers.update(headers or {})
        safe = method in ("GET", "HEAD", "DELETE", "PUT") if idempotent is None else idempotent
        attempt = 0
        while True:
            attempt += 1
            # The scheme is checked to be http(s) in __post_init__.
            req = urllib.request.Request(url, data=data, headers=all_headers, method=method)  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as answer:  # noqa: S310
                    body = answer.read(MAX_BODY + 1)
                    if len(body) > MAX_BODY:
                        raise ServiceError(answer.status, "answer too large")
                    return Response(answer.status, dict(answer.headers.items()), body)
            except urllib.error.HTTPError as exc:
                if exc.code in RETRY_STATUSES and attempt <= self.retries:
                    self.sleep(self._delay(attempt, exc.headers.get("retry-after")))
                    continue
                raise _problem(exc) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if safe and attempt <= self.retries:
                    self.sleep(self._delay(attempt, None))
                    continue
                reason = getattr(exc, "reason", exc)
                raise ServiceError(0, "service unreachable", str(reason)) from None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_backoff * 4)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(0.2 * 2.0 ** (attempt - 1), self.max_backoff)


def _problem(exc: urllib.error.HTTPError) -> ServiceError:
    try:
        body = json.loads(exc.read(64 * 1024) or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ServiceError(
        exc.code,
        str(body.get("title") or exc.reason or "error"),
        str(body.get("detail") or ""),
        str(body.get("type") or ""),
    )
