"""``create_app(settings)``: the FastAPI application, with a lifespan that opens and
closes the backends. No module-level state: tests build as many apps as they like.

::

    gates / apps / partners
            │ HTTPS
    ┌───────▼────────────────────────────────────────────────────────────┐
    │ EdgeMiddleware (request id, 413, latency)                          │
    │ routes: citizen · partner (/v1/verify fast route) · admin · public │
    │ services: issuance · verify · subjects · partners · keys · audit   │
    │   └── pure core: verifiers → keys → codecs (no I/O, time as arg)   │
    │ storage: Database (SQLite | PostgreSQL) · State (memory | Redis)   │
    └────────────────────────────────────────────────────────────────────┘
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

import suishen
from suishen.app import problems
from suishen.app.observability import (
    Answer,
    EdgeMiddleware,
    FastEndpoint,
    FastRequest,
    Metrics,
    response_answer,
)
from suishen.app.pages import mount_pages
from suishen.app.routes import (
    admin,
    citizen,
    dev,
    devices,
    enterprises,
    partner,
    public,
    resolve,
    transit,
    venues,
)
from suishen.app.runtime import Runtime, build_runtime
from suishen.app.schemas import codes_openapi, verify_openapi
from suishen.app.settings import Settings
from suishen.verifiers.policy import SCENES


class _FastRouteInfo:
    """What ``scope["route"]`` holds for a fast route (read by latency metrics)."""

    def __init__(self, path: str) -> None:
        self.path = path


class SuishenApp(FastAPI):
    """FastAPI with a fast lane for hot routes.

    :meth:`fast_route` registers a :data:`~suishen.app.observability.FastEndpoint` for
    one method and path: an async function from a
    :class:`~suishen.app.observability.FastRequest` (headers and body already read) to
    an answer (status, body, headers). A request for it skips FastAPI's route matching,
    dependency injection and exception middleware — about a fifth of a naive
    endpoint's cost, measured with ``benchmarks/http_bench.py`` — and the
    :class:`EdgeMiddleware`'s rules are applied by its :meth:`EdgeMiddleware.fast`
    entry, which reads and sends without wrapping ``receive`` and ``send``. Every other
    middleware added with :meth:`add_middleware` still wraps it (the fast lane is built
    from ``user_middleware`` on the first request, as Starlette builds its own stack).
    The endpoint answers its own errors (problem+json); another method on a fast path
    is a 405 problem. Fast routes are absent from the generated OpenAPI document:
    describe them explicitly (see :func:`_add_verify`, :func:`_add_codes`).
    Everything else takes the normal path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast_endpoints: dict[str, dict[str, FastEndpoint]] = {}
        self._fast_lane: dict[str, dict[str, ASGIApp]] | None = None

    def fast_route(self, method: str, path: str, endpoint: FastEndpoint) -> None:
        """Serve ``method path`` (exact path, no parameters) with ``endpoint``."""
        if self._fast_lane is not None:
            raise RuntimeError("fast routes must be registered before the app serves")
        self._fast_endpoints.setdefault(path, {})[method.upper()] = endpoint

    def _build_fast_lane(self) -> dict[str, dict[str, ASGIApp]]:
        edge: EdgeMiddleware | None = None
        others = []
        for middleware in self.user_middleware:
            cls, args, kwargs = middleware
            if cls is EdgeMiddleware and edge is None:
                edge = EdgeMiddleware(_no_app, *args, **kwargs)
            else:
                others.append(middleware)
        if edge is None:
            raise RuntimeError("the fast lane needs the EdgeMiddleware")

        def wrap(endpoint: FastEndpoint, path: str) -> ASGIApp:
            app = edge.fast(endpoint, path, _FastRouteInfo(path))
            for cls, args, kwargs in reversed(others):
                app = cls(app, *args, **kwargs)
            return app

        lane: dict[str, dict[str, ASGIApp]] = {}
        for path, methods in self._fast_endpoints.items():
            lane[path] = {m: wrap(e, path) for m, e in methods.items()}
            lane[path][""] = wrap(_method_not_allowed(sorted(methods)), path)
        return lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._fast_lane is None:
                self._fast_lane = self._build_fast_lane()
            methods = self._fast_lane.get(scope["path"])
            if methods is not None:
                scope["app"] = self
                fast = methods.get(scope["method"]) or methods[""]
                await fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the fast lane's edge serves its endpoints only")  # pragma: no cover


def _method_not_allowed(allowed: list[str]) -> FastEndpoint:
    header = ", ".join(allowed)

    async def endpoint(request: FastRequest) -> Answer:
        return response_answer(problems.problem_response(
            405, f"method {request.scope['method'][:20]} is not allowed here",
            headers={"Allow": header}))

    return endpoint


def _problems(*answers: tuple[int, str]) -> dict[str, Any]:
    """OpenAPI error answers of a fast route (their schema is set by
    :func:`_document_security_and_problems`)."""
    problem = {"application/problem+json": {"schema": {"type": "object"}}}
    return {str(status): {"description": text, "content": problem} for status, text in answers}


def _add_verify(doc: dict[str, Any]) -> None:
    """The OpenAPI entry of the fast ``POST /v1/verify``, generated from its msgspec type."""
    schemas, components = verify_openapi()
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    doc["paths"]["/v1/verify"] = {"post": {
        "tags": ["partners"],
        "summary": "Verify",
        "operationId": "verify_v1_verify_post",
        "description": "Verify a code at a checkpoint. 200 for every code the service could "
                       "judge, valid or not; see ``reason``. Single use in the scenes "
                       + ", ".join(name for name, p in SCENES.items() if p.single_use) + ".",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": schemas["request"]}}},
        "responses": {
            "200": {"description": "the judgement",
                    "content": {"application/json": {"schema": schemas["answer"]}}},
            **_problems((401, "missing or invalid partner token"),
                        (403, "partner not registered for the scene"),
                        (413, "body too large"), (415, "body is not application/json"),
                        (422, "invalid request"), (429, "rate limit exceeded"),
                        (503, "a backend is unavailable")),
        },
    }}


def _add_codes(doc: dict[str, Any]) -> None:
    """The OpenAPI entry of the fast ``POST /v1/codes``, generated from its msgspec types."""
    schemas, components = codes_openapi()
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    doc["paths"]["/v1/codes"] = {"post": {
        "tags": ["citizens"],
        "summary": "Issue Code",
        "operationId": "issue_code_v1_codes_post",
        "description": "Issue the citizen's current personal code (no body, or "
                       "``{\"kind\": \"personal\"}``) or the code of an enterprise the "
                       "citizen is an authorised agent of (``{\"kind\": \"enterprise\", "
                       "\"enterprise_id\": ...}``). ``?format=png|svg`` answers the QR image, "
                       "with the expiry in ``X-Code-Expires-At`` and the next refresh in "
                       "``X-Code-Refresh-After``.",
        "parameters": [{"name": "format", "in": "query", "required": False,
                        "schema": {"enum": ["json", "png", "svg"], "type": "string",
                                   "default": "json", "title": "Format"}}],
        "requestBody": {"required": False,
                        "content": {"application/json": {"schema": schemas["request"]}}},
        "responses": {
            "201": {"description": "the code",
                    "content": {"application/json": {"schema": schemas["answer"]},
                                "image/png": {}, "image/svg+xml": {}}},
            **_problems((401, "missing or invalid citizen token"),
                        (403, "suspended citizen, or not an agent of the enterprise"),
                        (413, "body too large"), (415, "body is not application/json"),
                        (422, "invalid request"),
                        (503, "no active signing key, or enrolment while a backend is "
                              "unavailable")),
        },
    }}


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_ANSWERS = {
    "401": "missing or invalid credentials", "403": "not allowed for this caller",
    "404": "no such resource", "413": "body too large", "422": "invalid request",
    "429": "too many requests (see Retry-After)", "503": "a backend is unavailable; retry",
}
_SECURITY = {"citizens": "citizenBearer", "operators": "operatorBearer"}


def _document_security_and_problems(doc: dict[str, Any]) -> None:
    """Security schemes, per-operation security, and problem+json error answers."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    scopes = {f"verify:{scene}": f"verify codes in scene {scene}" for scene in SCENES}
    components["securitySchemes"] = {
        "citizenBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                          "description": "the identity provider's citizen access token"},
        "operatorBearer": {"type": "http", "scheme": "bearer",
                           "description": "the operators' admin token"},
        "partnerOAuth": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "/v1/oauth/token", "scopes": scopes}}},
    }
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in doc.get("paths", {}).items():
        for op in item.values():
            tags = op.get("tags", [])
            statuses: set[str] = {"503"}
            if "citizens" in tags or "operators" in tags:
                op["security"] = [{_SECURITY["citizens" if "citizens" in tags else "operators"]:
                                   []}]
                statuses |= {"401", "422"}
            if "operators" in tags:
                statuses.add("429")
            if path == "/v1/verify":
                op["security"] = [{"partnerOAuth": []}]
                statuses |= {"401", "403", "413", "415", "422", "429"}
            if "requestBody" in op:
                statuses |= {"413", "422"}
            if path == "/v1/oauth/token":  # RFC 6749 §5.2 errors, not problem+json
                oauth = {"application/json": {"schema": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"},
                                   "error_description": {"type": "string"}}}}}
                for status, text in (("400", "invalid request"), ("401", "invalid client"),
                                     ("429", "too many failed authentications")):
                    op.setdefault("responses", {})[status] = {"description": text,
                                                              "content": oauth}
            if path in ("/v1/codes", "/v1/devices", "/v1/devices/{device_id}/credentials"):
                statuses.add("403")  # a suspended citizen
            if path == "/v1/trust-bundle":
                op["security"] = [{"partnerOAuth": []}]
                statuses |= {"401", "422"}
            if "{" in path:
                statuses |= {"404", "422"}
            if "parameters" in op:
                statuses.add("422")
            responses = op.setdefault("responses", {})
            for status in sorted(statuses):
                if status == "422" or status not in responses:
                    responses[status] = {"description": _ANSWERS.get(status, "error"),
                                         "content": problem}
                elif "content" not in responses[status]:
                    responses[status]["content"] = problem
            for status, answer in responses.items():
                # an error a route declares itself (e.g. 415) is problem+json too
                if status[:1] in "45" and "content" not in answer:
                    answer["content"] = problem
    revoke = doc.get("paths", {}).get("/v1/devices/{device_id}", {}).get("delete")
    if revoke is not None:  # the owner or an operator
        revoke["security"] = [{"citizenBearer": []}, {"operatorBearer": []}]


def create_served_app() -> FastAPI:
    """The application as ``suishen serve`` runs it (uvicorn's factory): with the
    garbage collector's start-up objects frozen, see :func:`create_app`."""
    return create_app(freeze_gc=True)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               freeze_gc: bool = False) -> FastAPI:
    """Build the application. ``runtime`` lets tests inject a prepared one.

    ``freeze_gc``: once started, collect and :func:`gc.freeze` everything alive (modules,
    routes, keys, tables, the runtime: some 80,000 objects that live as long as the
    process). Without it CPython's full collection scans them all again every time
    enough new objects have survived, a pause of 30-70 ms in a serving process
    (measured on 2026-12-03 with a ``gc.callbacks`` probe under ``benchmarks/http_bench.py``)
    -- by itself far over the p99 budget of SPEC §7. Frozen objects are still freed by
    reference counting; only cyclic garbage among them would stay, and start-up
    objects do not become garbage. Off for the app objects tests make by the hundred
    in one process, on for ``suishen serve`` (:func:`create_served_app`)."""
    settings = settings or (runtime.settings if runtime else Settings())
    settings.check_posture()

    metrics = runtime.metrics if runtime else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or await build_runtime(settings, metrics=metrics)
        app.state.runtime = rt
        await rt.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
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
    app.include_router(devices.router)
    app.include_router(devices.trust_router)
    app.include_router(partner.router)
    app.include_router(admin.router)
    app.include_router(transit.admin)
    app.include_router(transit.citizen)
    app.include_router(enterprises.admin)
    app.include_router(resolve.router)
    app.include_router(transit.partner)
    app.include_router(public.router)
    app.include_router(venues.admin)
    app.include_router(venues.public)
    app.include_router(venues.citizen)
    if not settings.production:
        app.include_router(dev.router)
    mount_pages(app, settings)  # /app/ and /console/ (static files, after the API routes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )
            _add_verify(doc)
            _add_codes(doc)
            _document_security_and_problems(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    limit, log = settings.max_body_bytes, settings.access_log
    app.add_middleware(EdgeMiddleware, max_body_bytes=limit, metrics=metrics, access_log=log,
                       path_limits={
                           "/v1/gate-events": settings.gate_upload_max_bytes,
                           "/v1/devices": settings.device_body_bytes,
                           "/v1/devices/{device_id}/credentials":
                               settings.device_body_bytes,
                       })
    app.fast_route("POST", "/v1/verify", partner.verify_fast)
    app.fast_route("POST", "/v1/codes", citizen.issue_fast)
    return app
