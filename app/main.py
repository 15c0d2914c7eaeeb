"""``create_app(settings)``: the FastAPI application, with a lifespan that opens and
closes the backends. No module-level state: tests build as many apps as they like.

::

    gates / apps / partners
            │ HTTPS
    ┌───────▼────────────────────────────────────────────────────────────┐
    │ EdgeMiddleware (request id, 413, latency)                          │
    │ routes: citizen · partner (/v1/verify fast route) · admin · public │
    │ services: codes · verify · subjects · partners · keys · audit      │
    │   └── pure core: verifiers → keys → codecs (no I/O, time as arg)   │
    │ storage: Database (SQLite | PostgreSQL) · State (memory | Redis)   │
    └────────────────────────────────────────────────────────────────────┘
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

import suishen
from suishen.app import problems
from suishen.app.observability import EdgeMiddleware, Metrics
from suishen.app.routes import admin, citizen, dev, partner, public
from suishen.app.runtime import Runtime, build_runtime
from suishen.app.settings import Settings


class SuishenApp(FastAPI):
    """FastAPI with a fast lane: ``POST /v1/verify`` goes straight to its bare ASGI
    endpoint (wrapped in the same :class:`EdgeMiddleware`), skipping FastAPI's
    middleware stack and route matching — about a fifth of a naive endpoint's cost,
    measured with ``benchmarks/http_bench.py``. Everything else takes the normal path."""

    fast_lane: dict[tuple[str, str], ASGIApp]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fast = self.fast_lane.get((scope["method"], scope["path"]))
            if fast is not None:
                scope["app"] = self
                await fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the application. ``runtime`` lets tests inject a prepared one."""
    settings = settings or (runtime.settings if runtime else Settings())
    settings.check_posture()

    metrics = runtime.metrics if runtime else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or await build_runtime(settings, metrics=metrics)
        app.state.runtime = rt
        await rt.start()
        try:
            yield
        finally:
            await rt.close()

    app = SuishenApp(
        title="Suishen code service",
        version=suishen.__version__,
        description="Short-lived signed QR codes for one city code: issue and verify.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(citizen.router)
    app.include_router(partner.router)
    app.router.routes.append(partner.verify_route)
    app.include_router(admin.router)
    app.include_router(public.router)
    if not settings.production:
        app.include_router(dev.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [*app.routes, *partner.docs_router.routes]
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    limit, log = settings.max_body_bytes, settings.access_log
    app.add_middleware(EdgeMiddleware, max_body_bytes=limit, metrics=metrics, access_log=log)
    app.fast_lane = {
        ("POST", "/v1/verify"): EdgeMiddleware(
            partner.verify_asgi, max_body_bytes=limit, metrics=metrics, access_log=log,
            route="/v1/verify",
        )
    }
    return app
