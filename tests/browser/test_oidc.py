"""The citizen page's production sign-in: the OIDC authorisation-code flow with PKCE
against a small identity provider run by the test (discovery, authorize, token, end
session — the endpoints a browser talks to), and a production ``suishen serve`` that
trusts it; the token refreshed before it expires (refresh_token grant), a clear "signed
out" when it cannot be, and logout at the provider."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from suishen.keys.algorithms import Alg, PublicKey
from tests.browser.conftest import Tab
from tests.browser.helpers import next_code, shown_code, verify
from tests.e2e.harness import Server, free_port

CLIENT_ID = "suishen-citizen-page"


class FakeIdP:
    """An OIDC provider for one test: issues one authorisation code per /authorize and
    exchanges it at /token only with the PKCE verifier of the challenge it was given.
    Tokens last ``lifetime`` seconds; with ``refresh`` it also issues refresh tokens
    (single use, rotated at every refresh_token grant; ``refuse_refresh`` answers
    ``invalid_grant`` instead), with ``end_session`` it has an end-session endpoint
    (RP-Initiated Logout) that records the request and redirects back."""

    def __init__(self, lifetime: int = 300, refresh: bool = False,
                 refuse_refresh: bool = False, end_session: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.lifetime, self.refresh, self.refuse_refresh = lifetime, refresh, refuse_refresh
        self.end_session = end_session
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.issued: list[dict[str, Any]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.logout_requests: list[tuple[str, dict[str, str]]] = []
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    meta = {"issuer": idp.issuer,
                            "authorization_endpoint": idp.issuer + "/authorize",
                            "token_endpoint": idp.issuer + "/token",
                            "code_challenge_methods_supported": ["S256"]}
                    if idp.end_session:
                        meta["end_session_endpoint"] = idp.issuer + "/logout"
                    self._json(200, meta)
                    return
                if url.path == "/logout":
                    self._logout("GET", {k: v[0] for k, v in parse_qs(url.query).items()})
                    return
                if url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    idp.authorize_requests.append(q)
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = q
                    self.send_response(302)
                    self.send_header("Location", q["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": q["state"]}))
                    self.end_headers()
                    return
                self._json(404, {"error": "not_found"})

            def _logout(self, method: str, form: dict[str, str]) -> None:
                idp.logout_requests.append((method, form))
                self.send_response(303)
                self.send_header("Location", form["post_logout_redirect_uri"])
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path == "/logout":
                    self._logout("POST", form)
                    return
                idp.token_requests.append(form)
                if form.get("grant_type") == "refresh_token":
                    presented = form.get("refresh_token", "")
                    if (idp.refuse_refresh or presented not in idp.refresh_tokens
                            or form.get("client_id") != CLIENT_ID):
                        self._json(400, {"error": "invalid_grant"})
                        return
                    idp.refresh_tokens.discard(presented)  # rotated: single use
                    self._json(200, idp.tokens())
                    return
                grant = idp.codes.pop(form.get("code", ""), None)  # single use
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if (grant is None or grant["code_challenge"] != challenge
                        or grant["redirect_uri"] != form.get("redirect_uri")
                        or form.get("client_id") != CLIENT_ID
                        or form.get("grant_type") != "authorization_code"):
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(200, idp.tokens())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def tokens(self) -> dict[str, Any]:
        """A token response: an access token for the service, an ID token for the page,
        and with ``refresh`` a new refresh token."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "310-oidc-citizen", "iat": now,
                  "exp": now + self.lifetime}

        def sign(audience: str) -> str:
            return jwt.encode({**claims, "aud": audience}, self.key, algorithm="ES256",
                              headers={"kid": "city-1"})

        body: dict[str, Any] = {"access_token": sign("suishen"), "id_token": sign(CLIENT_ID),
                                "token_type": "Bearer", "expires_in": self.lifetime}
        if self.refresh:
            body["refresh_token"] = secrets.token_urlsafe(24)
            self.refresh_tokens.add(body["refresh_token"])
        self.issued.append(body)
        return body

    def jwks(self) -> dict[str, Any]:
        jwk = {**PublicKey(Alg.ES256, self.key.public_key()).jwk_members(), "kid": "city-1",
               "alg": "ES256", "use": "sig"}
        return {"keys": [jwk]}


@pytest.fixture
def make_idp() -> Iterator[Any]:
    """``make_idp(**options)``: a started :class:`FakeIdP`, stopped after the test."""
    started: list[FakeIdP] = []

    def make(**options: Any) -> FakeIdP:
        provider = FakeIdP(**options)
        provider.thread.start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.httpd.shutdown()
        provider.httpd.server_close()


@pytest.fixture
def idp(make_idp: Any) -> FakeIdP:
    provider: FakeIdP = make_idp()
    return provider


def production_server(idp: FakeIdP, tmp_path: Path) -> Server:
    """A production ``suishen serve`` that trusts ``idp`` for citizens, started."""
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(json.dumps(idp.jwks()))
    return Server(tmp_path, SUISHEN_ENV="production", SUISHEN_IDP_ISSUER=idp.issuer,
                  SUISHEN_IDP_AUDIENCE="suishen", SUISHEN_IDP_JWKS=str(jwks),
                  SUISHEN_IDP_CLIENT_ID=CLIENT_ID).start()


def oidc_sign_in(tab: Tab, server: Server) -> None:
    tab.page.goto(server.url + "/app/")
    tab.page.wait_for_selector("#oidc-box", state="visible")
    tab.page.click("#oidc-submit")
    tab.page.wait_for_selector("#signed-in", state="visible")


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_oidc_sign_in_with_pkce_in_production(open_tab, idp: FakeIdP, tmp_path: Path) -> None:
    server = production_server(idp, tmp_path)
    try:
        partner = server.register_partner(["library"])
        tab = open_tab("citizen-oidc")
        page = tab.page
        page.goto(server.url + "/app/")
        page.wait_for_selector("#oidc-box", state="visible")
        assert page.is_hidden("#dev-form")  # no development sign-in in production
        tab.shot("sign-in")
        page.click("#oidc-submit")
        page.wait_for_selector("#signed-in", state="visible")
        # The authorisation code has left the address bar.
        assert page.url == server.url + "/app/"
        (asked,) = idp.authorize_requests
        assert asked["response_type"] == "code"
        assert asked["client_id"] == CLIENT_ID
        assert asked["code_challenge_method"] == "S256"
        assert len(asked["code_challenge"]) == 43  # base64url of a SHA-256
        assert asked["redirect_uri"] == server.url + "/app/"
        assert len(asked["state"]) >= 16
        (exchanged,) = idp.token_requests
        assert len(exchanged["code_verifier"]) >= 43  # RFC 7636: 43..128 characters
        code = shown_code(tab)
        assert verify(server, partner, code, "library")["valid"] is True
        tab.shot("my-code")
    finally:
        server.stop()


def test_a_forged_oidc_redirect_is_refused(open_tab, idp: FakeIdP, tmp_path: Path) -> None:
    """A redirect to /app/?code=...&state=... that this tab did not start (login CSRF) is
    not exchanged, and the code leaves the address bar."""
    server = production_server(idp, tmp_path)
    try:
        tab = open_tab("citizen-oidc-forged")
        tab.page.goto(server.url + "/app/?code=stolen&state=attacker")
        tab.page.wait_for_selector("#notice", state="visible")
        assert tab.page.get_attribute("#notice", "data-key") == "err.oidc_state"
        assert tab.page.url == server.url + "/app/"
        assert idp.token_requests == []
        assert tab.page.is_visible("#oidc-box")
    finally:
        server.stop()


def test_the_token_is_refreshed_before_it_expires(open_tab, make_idp, tmp_path: Path) -> None:
    """Tokens of 12 s: the page uses its refresh token at 3/4 of the lifetime (a minute
    early for real lifetimes), keeps the rotated one, and works on past the first
    token's expiry."""
    idp = make_idp(lifetime=12, refresh=True)
    server = production_server(idp, tmp_path)
    try:
        partner = server.register_partner(["library"])
        tab = open_tab("citizen-oidc-refresh")
        signed_in_at = time.time()
        oidc_sign_in(tab, server)
        first = idp.issued[0]
        token = "sessionStorage.getItem('suishen.citizen.token')"
        assert tab.page.evaluate(token) == first["access_token"]
        wait_until(lambda: len(idp.token_requests) >= 2, 20, "no refresh_token grant")
        refresh = idp.token_requests[1]
        assert refresh == {"grant_type": "refresh_token", "client_id": CLIENT_ID,
                           "refresh_token": first["refresh_token"]}
        assert time.time() < signed_in_at + 12  # before the first token expired
        tab.page.wait_for_function(
            f"() => sessionStorage.getItem('suishen.citizen.token') === "
            f"{json.dumps(idp.issued[1]['access_token'])}")
        session = json.loads(tab.page.evaluate(
            "sessionStorage.getItem('suishen.citizen.session')"))
        assert session["refresh_token"] == idp.issued[1]["refresh_token"]  # rotated
        # Past the first token's expiry the page still gets codes.
        time.sleep(max(0.0, signed_in_at + 13 - time.time()))
        assert tab.page.is_visible("#signed-in")
        assert verify(server, partner, next_code(tab), "library")["valid"] is True
        tab.shot("refreshed")
        # A token the service refuses before the page expected it: one refresh, one retry.
        tab.allowed_statuses.add(401)
        tab.page.evaluate("sessionStorage.setItem('suishen.citizen.token', 'not-a-token')")
        grants = len(idp.token_requests)
        assert verify(server, partner, next_code(tab), "library")["valid"] is True
        assert len(idp.token_requests) >= grants + 1  # (the timer may also have run)
        assert idp.token_requests[-1]["grant_type"] == "refresh_token"
        assert tab.page.evaluate(token) == idp.issued[-1]["access_token"]
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["no-refresh-token", "refresh-refused"])
def test_signed_out_in_words_when_the_token_cannot_be_renewed(
        open_tab, make_idp, tmp_path: Path, case: str) -> None:
    idp = make_idp(lifetime=8, refresh=case == "refresh-refused",
                   refuse_refresh=case == "refresh-refused")
    server = production_server(idp, tmp_path)
    try:
        tab = open_tab(f"citizen-oidc-{case}")
        tab.allowed_statuses.add(400)  # the provider's invalid_grant
        oidc_sign_in(tab, server)
        shown_code(tab)
        tab.page.wait_for_selector("#oidc-box", state="visible", timeout=15_000)
        notice = tab.page.locator("#notice")
        assert notice.get_attribute("data-key") == "err.session_ended"
        assert "重新登录" in notice.inner_text()
        assert tab.page.evaluate("sessionStorage.getItem('suishen.citizen.token')") is None
        assert tab.page.evaluate("sessionStorage.getItem('suishen.citizen.session')") is None
        grants = [r["grant_type"] for r in idp.token_requests]
        assert grants == (["authorization_code", "refresh_token"] if case == "refresh-refused"
                          else ["authorization_code"])
        tab.shot("session-ended")
    finally:
        server.stop()


def test_logout_ends_the_session_at_the_provider(open_tab, make_idp, tmp_path: Path) -> None:
    idp = make_idp(end_session=True)
    server = production_server(idp, tmp_path)
    try:
        tab = open_tab("citizen-oidc-logout")
        oidc_sign_in(tab, server)
        shown_code(tab)
        tab.page.click("#signout")
        tab.page.wait_for_selector("#oidc-box", state="visible")
        # The provider was told (POST: the ID token is in no URL) and sent the browser back.
        wait_until(lambda: idp.logout_requests, 10, "no end-session request")
        ((method, form),) = idp.logout_requests
        assert method == "POST"
        assert form == {"client_id": CLIENT_ID, "post_logout_redirect_uri": server.url + "/app/",
                        "id_token_hint": idp.issued[0]["id_token"]}
        assert tab.page.url == server.url + "/app/"
        tab.page.wait_for_selector('#notice[data-key="signout.done"]')
        for key in ("token", "session"):
            assert tab.page.evaluate(f"sessionStorage.getItem('suishen.citizen.{key}')") is None
        tab.shot("logged-out")
    finally:
        server.stop()
