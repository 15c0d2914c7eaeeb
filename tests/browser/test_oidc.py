"""The citizen page's production sign-in: the OIDC authorisation-code flow with PKCE
against a small identity provider run by the test (discovery, authorize, token — the
three endpoints a browser talks to), and a production ``suishen serve`` that trusts it."""

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
from tests.browser.helpers import shown_code, verify
from tests.e2e.harness import Server, free_port

CLIENT_ID = "suishen-citizen-page"


class FakeIdP:
    """An OIDC provider for one test: issues one authorisation code per /authorize and
    exchanges it at /token only with the PKCE verifier of the challenge it was given."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.codes: dict[str, dict[str, str]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
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
                    self._json(200, {"issuer": idp.issuer,
                                     "authorization_endpoint": idp.issuer + "/authorize",
                                     "token_endpoint": idp.issuer + "/token",
                                     "code_challenge_methods_supported": ["S256"]})
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

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                idp.token_requests.append(form)
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
                now = int(time.time())
                token = jwt.encode({"iss": idp.issuer, "aud": "suishen", "sub": "310-oidc-citizen",
                                    "iat": now, "exp": now + 300},
                                   idp.key, algorithm="ES256", headers={"kid": "city-1"})
                self._json(200, {"access_token": token, "token_type": "Bearer",
                                 "expires_in": 300})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def jwks(self) -> dict[str, Any]:
        jwk = {**PublicKey(Alg.ES256, self.key.public_key()).jwk_members(), "kid": "city-1",
               "alg": "ES256", "use": "sig"}
        return {"keys": [jwk]}


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    provider = FakeIdP()
    provider.thread.start()
    yield provider
    provider.httpd.shutdown()
    provider.httpd.server_close()


def test_oidc_sign_in_with_pkce_in_production(open_tab, idp: FakeIdP, tmp_path: Path) -> None:
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(json.dumps(idp.jwks()))
    server = Server(tmp_path, SUISHEN_ENV="production", SUISHEN_IDP_ISSUER=idp.issuer,
                    SUISHEN_IDP_AUDIENCE="suishen", SUISHEN_IDP_JWKS=str(jwks),
                    SUISHEN_IDP_CLIENT_ID=CLIENT_ID).start()
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
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(json.dumps(idp.jwks()))
    server = Server(tmp_path, SUISHEN_ENV="production", SUISHEN_IDP_ISSUER=idp.issuer,
                    SUISHEN_IDP_AUDIENCE="suishen", SUISHEN_IDP_JWKS=str(jwks),
                    SUISHEN_IDP_CLIENT_ID=CLIENT_ID).start()
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
