"""The production posture on a real process: an external identity provider (JWKS
file), no development endpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from suishen.keys.algorithms import Alg, PublicKey
from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e


def test_production_with_a_city_identity_provider(tmp_path: Path) -> None:
    idp_key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**PublicKey(Alg.ES256, idp_key.public_key()).jwk_members(), "kid": "city-1",
           "alg": "ES256", "use": "sig"}
    jwks_file = tmp_path / "idp-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    srv = Server(tmp_path, SUISHEN_ENV="production", SUISHEN_IDP_ISSUER="https://id.city.example",
                 SUISHEN_IDP_AUDIENCE="suishen", SUISHEN_IDP_JWKS=str(jwks_file)).start()
    try:
        r = httpx.post(srv.url + "/v1/dev/citizen-token", json={"sub": "x"})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

        def token(**claims: object) -> dict[str, str]:
            now = int(time.time())
            body = {"iss": "https://id.city.example", "aud": "suishen", "sub": "310-citizen",
                    "iat": now, "exp": now + 300, **claims}
            signed = jwt.encode(body, idp_key, algorithm="ES256", headers={"kid": "city-1"})
            return {"Authorization": f"Bearer {signed}"}

        r = httpx.post(srv.url + "/v1/codes", headers=token())
        assert r.status_code == 201, r.text
        assert r.json()["code"].startswith("SC1:")
        assert httpx.post(srv.url + "/v1/codes", headers=token(aud="other")).status_code == 401
        assert httpx.post(srv.url + "/v1/codes",
                          headers=token(exp=int(time.time()) - 3600)).status_code == 401
        assert "310-citizen" not in srv.log()  # no personal identifiers in the logs
    finally:
        srv.stop()
