"""Anyone: public keys (cacheable), liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from suishen.app.deps import RuntimeDep
from suishen.errors import BackendUnavailable

router = APIRouter(tags=["public"])
# Shorter than the smallest rotation overlap (code lifetime + skew), so that gates that
# honour it always hold a key before codes signed by it appear.
JWKS_MAX_AGE = 30


def _jwks_response(request: Request, runtime: RuntimeDep) -> Response:
    view = runtime.keys.view()
    etag = f'"keys-{view.keyset.version}"'
    headers = {
        "Cache-Control": f"public, max-age={JWKS_MAX_AGE}",
        "ETag": etag,
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = view.keyset.jwks(now=int(runtime.now()))
    return Response(json.dumps(body), headers=headers, media_type="application/jwk-set+json")


@router.get("/v1/keys", responses={200: {"content": {"application/jwk-set+json": {}}}})
async def keys(request: Request, runtime: RuntimeDep) -> Response:
    """Public code-signing keys as a JWK Set (RFC 7517), with status and validity."""
    return _jwks_response(request, runtime)


@router.get("/.well-known/jwks.json", include_in_schema=False)
async def well_known_jwks(request: Request, runtime: RuntimeDep) -> Response:
    """Same as ``/v1/keys``."""
    return _jwks_response(request, runtime)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    """Readiness: storage reachable (database, and shared state when configured)."""
    checks: dict[str, str] = {}
    for name, ping in (("database", runtime.db.ping), ("state", runtime.state.ping)):
        try:
            await asyncio.wait_for(ping(), timeout=1.0)
            checks[name] = "ok"
        except (BackendUnavailable, TimeoutError):
            checks[name] = "unavailable"
    checks["audit"] = runtime.audit.health()  # "stalled": the audit queue is not draining
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
