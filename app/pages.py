"""The pages for people (SPEC.md §6.4): the citizen page at ``/app/`` and the operator
console at ``/console/``. Static files from ``app/static/`` (no build step), served with
the headers that keep them safe:

* a strict **Content-Security-Policy**: scripts, styles and images from this origin only
  (no inline script or style anywhere, no ``eval``), API calls to this origin only — plus,
  for the citizen page in the OIDC flow, the identity provider's origin, where the
  browser exchanges its authorisation code (PKCE) for a token, refreshes it, and POSTs
  its logout (``form-action``); nothing may frame them;
* **Cache-Control** per resource: HTML pages ``no-store`` (a page shown after sign-out
  must not come back from a cache), other static assets ``public, max-age=300`` with
  the ETag StaticFiles sets (short: file names carry no version, there is no build step);
  the page configuration ``no-store``;
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.

Tokens never travel in a URL: the citizen's token and the operator's admin token are kept
in ``sessionStorage`` by the pages and sent in ``Authorization`` headers only; the OIDC
authorisation code the provider appends to ``/app/?code=...`` is single use, exchanged at
once and removed from the address bar (``history.replaceState``) before anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suishen.app.settings import Settings
from suishen.verifiers.enterprise import EXTRA_ATTRIBUTES
from suishen.verifiers.policy import ATTRIBUTES, SCENES

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CACHE = "no-store"
ASSET_CACHE = "public, max-age=300"


def content_security_policy(idp_origin: str = "") -> str:
    """The pages' CSP. ``idp_origin`` (the OIDC provider's) is added to ``connect-src``
    (its token endpoint: code exchange and refresh) and ``form-action`` (its
    end-session endpoint, where logout POSTs the ``id_token_hint``)."""
    extra = f" {idp_origin}" if idp_origin else ""
    connect = "'self'" + extra
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",  # the QR image is an SVG fetched with the token -> blob URL
        f"connect-src {connect}",
        "manifest-src 'self'",
        "worker-src 'self'",
        "base-uri 'none'",
        f"form-action 'self'{extra}",
        "frame-ancestors 'none'",
    ))


def origin_of(url: str | None) -> str:
    """``scheme://host[:port]`` of ``url``, or "" when it is not an http(s) URL."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


class PageHeaders:
    """ASGI wrapper for a static mount: security headers and Cache-Control by type."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control"]
                # By path, not content type: a 304 revalidation carries no content type
                # and must not turn a page cacheable (or an asset no-store).
                path = scope.get("path", "")
                status = message["status"]
                page = (path.endswith(("/", ".html", ".json"))
                        or (status >= 300 and status != 304))
                headers += [
                    (b"cache-control", (PAGE_CACHE if page else ASSET_CACHE).encode()),
                    (b"content-security-policy", self.csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every API route, from the OpenAPI document (built once,
    then cached; it lists the routes of included routers too)."""
    return {(method.upper(), path)
            for path, item in app.openapi().get("paths", {}).items() for method in item}


def page_config(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """What the citizen page needs to know: how to sign in, and which optional sections
    the service has (an endpoint that is not there is not shown — and not probed, so the
    browser logs no 404)."""
    paths = api_routes(app)
    oidc = None
    if settings.idp_issuer and settings.idp_client_id:
        oidc = {"issuer": settings.idp_issuer.rstrip("/"), "client_id": settings.idp_client_id,
                "scope": settings.idp_scope}
    return {
        "dev_sign_in": not settings.production,
        "oidc": oidc,
        "sections": {
            "verifications": ("GET", "/v1/me/verifications") in paths,
            "devices": ("GET", "/v1/devices") in paths,
            # Offline codes made in the browser: registering as a device is possible.
            "offline": ("POST", "/v1/devices") in paths,
            "journeys": ("GET", "/v1/me/journeys") in paths,
            "checkins": ("GET", "/v1/me/checkins") in paths,
        },
    }


def console_page_config(app: FastAPI) -> dict[str, Any]:
    """What the console needs to know: the one list of scenes and attributes (the
    policy table, :mod:`suishen.verifiers`), the enterprise attributes, and which
    optional sections the service has (as for the citizen page)."""
    paths = api_routes(app)
    return {
        "scenes": list(SCENES),
        "attributes": sorted(ATTRIBUTES),
        "enterprise_attributes": list(EXTRA_ATTRIBUTES),
        "sections": {
            "enterprises": ("PUT", "/v1/admin/enterprises/{enterprise_id}") in paths,
            "venues": ("POST", "/v1/admin/venues") in paths,
        },
    }


def mount_pages(app: FastAPI, settings: Settings) -> None:
    """Serve ``/app/`` and ``/console/`` (and their ``config.json``)."""
    router = APIRouter(include_in_schema=False)
    no_store = {"Cache-Control": PAGE_CACHE, "X-Content-Type-Options": "nosniff"}

    @router.get("/app/config.json")
    async def citizen_config(request: Request) -> JSONResponse:
        return JSONResponse(page_config(request.app, settings), headers=no_store)

    @router.get("/console/config.json")
    async def console_config(request: Request) -> JSONResponse:
        return JSONResponse(console_page_config(request.app), headers=no_store)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=302, headers=no_store)

    app.include_router(router)
    idp = origin_of(settings.idp_issuer) if settings.idp_client_id else ""
    for name, idp_origin in (("app", idp), ("console", "")):
        files = StaticFiles(directory=STATIC / name, html=True)
        app.mount(f"/{name}", PageHeaders(files, csp=content_security_policy(idp_origin)),
                  name=f"{name}-pages")
