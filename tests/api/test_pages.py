"""The pages' HTTP side (SPEC.md §6.4, issue 12 item 3): a strict Content-Security-Policy
with no inline script or style, Cache-Control per resource, the pages' configuration in
both postures, the operators' stats endpoint. The pages themselves are driven in a real
browser in tests/browser/."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from suishen.app.main import create_app
from suishen.app.pages import STATIC
from suishen.verifiers.enterprise import EXTRA_ATTRIBUTES
from suishen.verifiers.policy import SCENES
from tests.api.conftest import ADMIN_TOKEN, Api, make_settings

PAGES = ("/app/", "/console/")
ASSETS = ("/app/app.js", "/app/app.css", "/app/icon.svg", "/app/offline.js", "/app/sw.js",
          "/app/confirm.js",
          "/app/vendor/qrcode-generator.js", "/console/console.js", "/console/console.css")
KEK = "ZmFrZS1rZWstZm9yLWFwaS10ZXN0cy0wMTIzNDU2Nzg"


def csp(response: httpx.Response) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]
    out: dict[str, list[str]] = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        out[name] = values
    return out


def assert_strict(policy: dict[str, list[str]]) -> None:
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    every = [v for values in policy.values() for v in values]
    for loose in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"):
        assert loose not in every


@pytest.mark.parametrize("path", PAGES)
async def test_pages_have_a_strict_csp_and_are_not_stored(api: Api, path: str) -> None:
    r = await api.client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    policy = csp(r)
    assert_strict(policy)
    assert policy["connect-src"] == ["'self'"]  # same-origin API only
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ASSETS)
async def test_static_assets_are_cacheable(api: Api, path: str) -> None:
    r = await api.client.get(path)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["etag"]
    assert_strict(csp(r))
    again = await api.client.get(path, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"] == "public, max-age=300"


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_revalidated_stays_no_store(api: Api, path: str) -> None:
    first = await api.client.get(path)
    again = await api.client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.headers["cache-control"] == "no-store"


async def test_page_paths_without_slash_redirect_and_unknown_files_are_404(api: Api) -> None:
    for path, target in (("/app", "/app/"), ("/console", "/console/"), ("/", "/app/")):
        r = await api.client.get(path)
        assert r.status_code in (301, 302, 307, 308)
        assert r.headers["location"].endswith(target)
    for path in ("/app/nope.js", "/app/../pages.py", "/app/%2e%2e/pages.py",
                 "/console/..%2fsettings.py"):
        r = await api.client.get(path)
        assert r.status_code == 404, path


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{tag}[{name}]")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag}[{name}] javascript: URL")
            if name in ("src", "href") and value and "//" in value:
                self.found.append(f"{tag}[{name}] not same-origin: {value}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline script text")


@pytest.mark.parametrize("page", sorted(STATIC.glob("*/*.html")), ids=lambda p: p.parent.name)
def test_pages_have_no_inline_script_or_style(page: Path) -> None:
    parser = _Inline()
    parser.feed(page.read_text())
    assert parser.found == []


@pytest.mark.parametrize("script", sorted(STATIC.glob("*/*.js")), ids=lambda p: p.name)
def test_scripts_build_the_page_without_html_strings(script: Path) -> None:
    # Text from the service (partner names, checkpoints, attributes) goes in with
    # textContent: no HTML parsing of data, no code from strings.
    text = script.read_text()
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                   "new Function", "localStorage.setItem(TOKEN"):
        assert banned not in text, banned


async def test_citizen_page_config_in_development(api: Api) -> None:
    r = await api.client.get("/app/config.json")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    config = r.json()
    assert config["dev_sign_in"] is True
    assert config["oidc"] is None
    # Only the sections whose endpoints this service has.
    assert config["sections"]["verifications"] is True
    routes = {route for route in json.dumps(api.app.openapi()["paths"]).split('"')}
    assert config["sections"]["devices"] is ("/v1/devices" in routes)
    assert config["sections"]["offline"] is ("/v1/devices" in routes)
    assert config["sections"]["journeys"] is ("/v1/me/journeys" in routes)
    assert config["sections"]["checkins"] is ("/v1/me/checkins" in routes)
    r = await api.client.get("/console/config.json")
    console = r.json()
    assert console["scenes"] == list(SCENES)
    assert "reader_id" in console["attributes"]
    assert console["enterprise_attributes"] == list(EXTRA_ATTRIBUTES)
    assert console["sections"] == {
        "enterprises": "/v1/admin/enterprises/{enterprise_id}" in routes,
        "venues": "/v1/admin/venues" in routes}


async def test_citizen_page_config_in_production_offers_oidc_only(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    settings = make_settings(
        tmp_path, env="production", key_encryption_key=KEK,
        idp_issuer="https://id.city.example/realms/citizens", idp_audience="suishen",
        idp_jwks=str(jwks), idp_client_id="suishen-app", idp_scope="openid citizen")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        config = (await client.get("/app/config.json")).json()
        assert config["dev_sign_in"] is False
        assert config["oidc"] == {"issuer": "https://id.city.example/realms/citizens",
                                  "client_id": "suishen-app", "scope": "openid citizen"}
        # The browser exchanges the code at the provider: its origin, and only it.
        app_policy = csp(await client.get("/app/"))
        assert_strict(app_policy)
        assert app_policy["connect-src"] == ["'self'", "https://id.city.example"]
        assert app_policy["form-action"] == ["'self'", "https://id.city.example"]  # logout
        assert csp(await client.get("/console/"))["connect-src"] == ["'self'"]
        assert (await client.post("/v1/dev/citizen-token", json={"sub": "x"})).status_code == 404


async def test_stats_need_the_admin_token(api: Api) -> None:
    r = await api.client.get("/v1/admin/stats")
    assert r.status_code == 401
    r = await api.client.get("/v1/admin/stats", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_stats_count_verifications_by_scene_and_reason(api: Api) -> None:
    partner = await api.partner(["library", "metro"])
    code = await api.code("stats-citizen")
    for _ in range(3):
        assert (await api.verify(partner, code, "library")).json()["valid"] is True
    await api.verify(partner, "SC1:ABC", "metro")
    await api.verify(partner, code, "metro", direction="in")
    await api.verify(partner, code, "metro", direction="in")  # single use: replayed
    r = await api.client.get("/v1/admin/stats", headers=api.admin)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    counts = {(v["scene"], v["reason"]): v["count"] for v in body["verifications"]}
    assert counts == {("library", "ok"): 3, ("metro", "malformed"): 1, ("metro", "ok"): 1,
                      ("metro", "replayed"): 1}
    assert isinstance(body["at_ms"], int) and body["at"].endswith("Z")
    assert ADMIN_TOKEN not in r.text
