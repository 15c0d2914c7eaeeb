"""RFC 9457 problem details: the one place where domain errors become HTTP responses.

Domain errors carry no status codes; :func:`install` registers handlers that map them
(and FastAPI's own 404/405/422) to ``application/problem+json``. No stack trace ever
reaches a client: unexpected exceptions are logged with the request id and answered
with a bare 500 problem.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from suishen.errors import (
    BackendUnavailable,
    ConfigError,
    IssuanceError,
    KeyManagementError,
    SubjectSuspended,
    SuishenError,
    UnknownScene,
)

log = logging.getLogger("suishen.app")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://suishen.example/problems/"
_encoder = msgspec.json.Encoder()

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HTTPProblem(Exception):
    """Raised by route code to answer with a problem (the app layer's own error)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_ if type_ else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if extra:
        body.update(extra)
    return Response(_encoder.encode(body), status_code=status, headers=headers,
                    media_type=PROBLEM_JSON)


def from_exception(exc: Exception) -> Response:
    """Map any exception to a problem response (used by handlers and fast routes)."""
    if isinstance(exc, HTTPProblem):
        return problem_response(exc.status, exc.detail, type_=exc.type, headers=exc.headers,
                                extra=exc.extra)
    if isinstance(exc, SuishenError):
        return _domain(exc)
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "internal error; the request id identifies it in the logs")


def _domain(exc: SuishenError) -> Response:
    from suishen.app.auth.errors import AuthError

    if isinstance(exc, AuthError):
        return problem_response(401, str(exc) or "authentication failed", type_="unauthorized",
                                headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, BackendUnavailable):
        return problem_response(503, "a storage backend is unavailable; retry shortly",
                                type_="unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, SubjectSuspended):
        return problem_response(403, str(exc), type_="suspended")
    if isinstance(exc, UnknownScene):
        return problem_response(422, str(exc), type_="unknown-scene")
    if isinstance(exc, IssuanceError):
        return problem_response(503, str(exc), type_="issuance", headers={"Retry-After": "5"})
    if isinstance(exc, KeyManagementError | ConfigError):
        log.error("key or configuration error: %s", exc)
        return problem_response(500, "the service is misconfigured")
    log.error("unmapped domain error: %s", type(exc).__name__)
    return problem_response(500, "internal error")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            # FastAPI's answer to a body that is not JSON (invalid UTF-8 included): the
            # same 422 as a body that does not fit its schema, as /v1/verify answers
            return problem_response(422, "the body is not JSON", type_="validation")
        if exc.status_code == 404:
            detail = f"no resource at {request.url.path[:200]}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed here"
        return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))[:200]}
            for err in exc.errors()[:20]
        ]  # input values are NOT echoed: they may hold personal data
        return problem_response(422, "the request is not valid", type_="validation",
                                extra={"errors": errors})

    async def on_any(request: Request, exc: Exception) -> Response:
        return from_exception(exc)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPProblem, on_any)
    app.add_exception_handler(SuishenError, on_any)
    app.add_exception_handler(Exception, on_any)
