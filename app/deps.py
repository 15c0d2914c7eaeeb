"""FastAPI dependencies: the runtime, and the three kinds of caller (citizen, partner,
operator). Token checks live in :mod:`suishen.app.auth`; these only read headers and
raise domain errors (:mod:`suishen.app.problems` turns them into problem+json)."""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from suishen.app.auth.errors import (
    AuthError,
    InvalidAdminToken,
    InvalidCitizenToken,
    MissingBearerToken,
)
from suishen.app.runtime import Runtime
from suishen.errors import RateLimited

MAX_AUTH_HEADER = 8192


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (set by the lifespan). ``async`` on purpose: FastAPI runs
    plain ``def`` dependencies in a thread pool, a hop per request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; :class:`MissingBearerToken`
    otherwise."""
    if not header or len(header) > MAX_AUTH_HEADER:
        raise MissingBearerToken()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingBearerToken()
    return token


async def authenticate_citizen(runtime: Runtime, header: str | None) -> str:
    """The identity-provider ``sub`` of the citizen behind an ``Authorization`` header
    (the one check of a citizen's bearer token, for FastAPI routes and the fast lane)."""
    token = bearer(header)
    try:
        return await runtime.citizen_auth.validate(token, now=int(runtime.now()))
    except AuthError:
        raise
    except ValueError:
        raise InvalidCitizenToken("invalid token") from None


async def citizen_sub(request: Request, runtime: RuntimeDep) -> str:
    """The authenticated citizen's identity-provider ``sub``."""
    return await authenticate_citizen(runtime, request.headers.get("authorization"))


CitizenSub = Annotated[str, Depends(citizen_sub)]


class FailureThrottle:
    """Failed authentications per client address, in process: after ``limit`` failures
    within ``window`` seconds an address is refused (429) until the window has passed.
    Guessing admin tokens or partner secrets from one address is slowed to a crawl; the
    state is per process and bounded (the oldest addresses are forgotten)."""

    def __init__(self, *, limit: int = 10, window: float = 60.0, max_clients: int = 10_000):
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, tuple[float, int]] = {}

    def retry_after(self, client: str, now: float) -> int:
        """Seconds the client must wait, 0 when it may try."""
        started, count = self._failures.get(client, (now, 0))
        if now - started >= self.window:
            self._failures.pop(client, None)
            return 0
        return max(1, math.ceil(started + self.window - now)) if count >= self.limit else 0

    def failed(self, client: str, now: float) -> None:
        started, count = self._failures.get(client, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures.pop(next(iter(self._failures)))
        self._failures[client] = (started, count + 1)


def client_address(request: Request) -> str:
    """The peer address (the proxy's, behind one: throttles then apply per proxy)."""
    return request.client.host if request.client else "-"


def auth_throttle(request: Request, name: str) -> FailureThrottle:
    """The app's throttle ``name`` (created on first use; one per app, no globals)."""
    throttles: dict[str, FailureThrottle] = request.app.state._state.setdefault(
        "auth_throttles", {})
    return throttles.setdefault(name, FailureThrottle())


def throttled(retry_after: int) -> RateLimited:
    """The error for an address that failed to authenticate too often."""
    return RateLimited("too many failed authentications; retry later", retry_after=retry_after)


async def operator(request: Request, runtime: RuntimeDep) -> None:
    """Require the operators' admin token (constant-time comparison); failures are
    throttled per client address."""
    throttle, client, now = auth_throttle(request, "admin"), client_address(request), runtime.now()
    wait = throttle.retry_after(client, now)
    if wait:
        raise throttled(wait)
    try:
        token = bearer(request.headers.get("authorization"))
    except MissingBearerToken:
        throttle.failed(client, now)
        raise
    if not hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
        throttle.failed(client, now)
        raise InvalidAdminToken()


def auth_first(check: Callable[[Request], Awaitable[Any]] | None) -> type[APIRoute]:
    """A route class that answers in the order 401, 413, 422: ``check`` (the caller's
    authentication) runs first, then the whole body is read (a body over the limit is
    413 even without Content-Length), and only then does FastAPI parse and validate it.
    Without it FastAPI parses the body before any dependency runs (422 to anonymous
    callers) and turns a body that grows past the limit into 400."""

    class AuthFirstRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def run(request: Request) -> Response:
                if check is not None:
                    await check(request)
                await request.body()
                return await handler(request)

            return run

    return AuthFirstRoute


async def _operator_check(request: Request) -> None:
    await operator(request, request.app.state.runtime)


OperatorFirst = auth_first(_operator_check)
BodyFirst = auth_first(None)  # routes whose authentication is a dependency, or none
