"""FastAPI dependencies: the runtime, and the three kinds of caller (citizen, partner,
operator). Token checks live in :mod:`suishen.app.auth`; these only read headers and
turn failures into 401/403 problems."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from suishen.app.auth.errors import AuthError, InvalidCitizenToken
from suishen.app.problems import HTTPProblem
from suishen.app.runtime import Runtime

MAX_AUTH_HEADER = 8192


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (set by the lifespan). ``async`` on purpose: FastAPI runs
    plain ``def`` dependencies in a thread pool, a hop per request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; 401 otherwise."""
    if not header or len(header) > MAX_AUTH_HEADER:
        raise HTTPProblem(401, "a bearer token is required", type_="unauthorized",
                          headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPProblem(401, "a bearer token is required", type_="unauthorized",
                          headers={"WWW-Authenticate": "Bearer"})
    return token


async def citizen_sub(request: Request, runtime: RuntimeDep) -> str:
    """The authenticated citizen's identity-provider ``sub``."""
    token = bearer(request.headers.get("authorization"))
    try:
        return await runtime.citizen_auth.validate(token, now=int(runtime.now()))
    except AuthError:
        raise
    except ValueError:
        raise InvalidCitizenToken("invalid token") from None


CitizenSub = Annotated[str, Depends(citizen_sub)]


async def operator(request: Request, runtime: RuntimeDep) -> None:
    """Require the operators' admin token (constant-time comparison)."""
    token = bearer(request.headers.get("authorization"))
    if not hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
        raise HTTPProblem(401, "invalid admin token", type_="unauthorized",
                          headers={"WWW-Authenticate": "Bearer"})


Operator = Depends(operator)
