"""RFC 9457 problem details: the one place where domain errors become HTTP responses.

Domain errors carry no status codes; :func:`install` registers handlers that map them
(and FastAPI's own 404/405/422) to ``application/problem+json``. No stack trace ever
reaches a client: unexpected exceptions are logged with the request id and answered
with a bare 500 problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from suishen.app.auth.errors import AuthError, InvalidSubject
from suishen.errors import (
    BackendUnavailable,
    BodyTooLarge,
    ConfigError,
    EnterpriseSuspended,
    InvalidRequest,
    IssuanceError,
    KeyManagementError,
    NotAnAgent,
    NotFound,
    RateLimited,
    SceneNotAllowed,
    SubjectSuspended,
    SuishenError,
    UnknownScene,
    UnsupportedMediaType,
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


_Rule = tuple[int, str | None, Callable[[Any], dict[str, str] | None] | None]


def _retry_after(exc: RateLimited) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)}


def _bearer(_: object) -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"}


def _retry_soon(_: object) -> dict[str, str]:
    return {"Retry-After": "5"}


# Domain error -> (status, problem type, headers). The most specific class on the error's
# MRO wins, so a subclass may have its own rule; a class without one inherits its
# parent's. This table is the only place where an error becomes an HTTP status.
_RULES: dict[type[BaseException], _Rule] = {
    AuthError: (401, "unauthorized", _bearer),
    InvalidRequest: (422, "validation", None),
    InvalidSubject: (422, "validation", None),
    UnknownScene: (422, "unknown-scene", None),
    UnsupportedMediaType: (415, "unsupported-media-type", None),
    BodyTooLarge: (413, None, None),
    NotFound: (404, "not-found", None),
    RateLimited: (429, "rate-limited", _retry_after),
    SceneNotAllowed: (403, "scene-forbidden", None),
    SubjectSuspended: (403, "suspended", None),
    NotAnAgent: (403, "not-agent", None),
    EnterpriseSuspended: (403, "enterprise-suspended", None),
    IssuanceError: (503, "issuance", _retry_soon),
}


def from_exception(exc: BaseException) -> Response:
    """Map any exception to a problem response: the one mapping, used by FastAPI's
    exception handlers and by the fast lane alike."""
    if isinstance(exc, SuishenError):
        return _domain(exc)
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "internal error; the request id identifies it in the logs")


def _domain(exc: SuishenError) -> Response:
    for cls in type(exc).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            status, type_, headers = rule
            return problem_response(status, str(exc) or _TITLES[status], type_=type_,
                                    headers=headers(exc) if headers else None)
    if isinstance(exc, BackendUnavailable):
        # the backend's own message may name hosts or paths: not for clients
        return problem_response(503, "a storage backend is unavailable; retry shortly",
                                type_="unavailable", headers={"Retry-After": "5"})
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
    app.add_exception_handler(SuishenError, on_any)
    app.add_exception_handler(Exception, on_any)
