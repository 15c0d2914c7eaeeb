"""Hostile input on every endpoint: no 5xx, no stack trace, nothing stored, and the
classic JWT attacks answered with 401 problem+json."""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.api.conftest import Api

PAYLOADS: list[bytes] = [
    b"", b"{", b"}", b"null", b"[]", b"0", b'"x"', b"\xff\xfe\x00", b"{}" * 500,
    b'{"a":' * 50 + b"1" + b"}" * 50, json.dumps({"code": "\u0000" * 100}).encode(),
    json.dumps({"sub": "x" * 5000}).encode(), json.dumps({"status": ["active"]}).encode(),
    json.dumps({"name": {"$ne": 1}, "scenes": "metro"}).encode(),
    b'{"code": "SC1:' + b"A" * 1500 + b'", "scene": "library"}',
    "{\"code\": \"SC1:\u4e2d\u6587\", \"scene\": \"library\"}".encode(),
]


def _random_payloads(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.randint(0, 300)
        out.append(bytes(rng.getrandbits(8) for _ in range(size)))
    return out


async def test_no_5xx_from_any_input(api: Api) -> None:
    citizen = await api.citizen("hostile")
    partner = await api.partner(["library", "metro"])
    endpoints: list[tuple[str, str, dict[str, str]]] = [
        ("POST", "/v1/verify", partner["headers"]),
        ("POST", "/v1/codes", citizen),
        ("POST", "/v1/codes?format=%00", citizen),
        ("POST", "/v1/dev/citizen-token", {}),
        ("POST", "/v1/oauth/token", {"content-type": "application/x-www-form-urlencoded"}),
        ("PUT", "/v1/admin/subjects/x", api.admin),
        ("PUT", "/v1/admin/subjects/%FF%FE", api.admin),
        ("POST", "/v1/admin/partners", api.admin),
        ("POST", "/v1/admin/keys/rotate?alg=none", api.admin),
        ("POST", "/v1/admin/keys/zz/revoke", api.admin),
        ("GET", "/v1/me/verifications?limit=-1&before=x", citizen),
        ("GET", "/v1/admin/subjects/" + "a" * 300, api.admin),
    ]
    for method, path, headers in endpoints:
        for body in PAYLOADS + _random_payloads(hash(path) & 0xFFFF, 25):
            r = await api.client.request(method, path, headers={
                "content-type": "application/json", **headers}, content=body)
            assert r.status_code < 500, (method, path, body[:60], r.status_code, r.text)
            assert "Traceback" not in r.text
            if r.status_code >= 400:
                assert r.headers["content-type"] in ("application/problem+json",
                                                     "application/json")
    r = await api.client.get("/v1/admin/subjects/x", headers=api.admin)
    assert r.status_code == 404  # nothing was stored by the hostile PUTs


def _forge(header: dict[str, Any], claims: dict[str, Any], key: bytes = b"") -> str:
    def seg(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{seg(header)}.{seg(claims)}"
    if header.get("alg") == "HS256":
        import hashlib
        import hmac

        sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    return signing_input + "."


async def test_jwt_attacks_get_401(api: Api) -> None:
    idp = api.runtime.dev_idp
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "victim", "iat": now,
              "exp": now + 600}
    public_jwk = idp.jwks()["keys"][0]
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = idp.issue("victim", now=now)["access_token"]
    h, p, s = good.split(".")
    tokens = {
        "alg none": _forge({"alg": "none", "kid": idp.kid}, claims),
        "alg None": _forge({"alg": "None", "kid": idp.kid}, claims),
        "HS256 keyed with the public key": _forge({"alg": "HS256", "kid": idp.kid}, claims,
                                                  public_pem),
        "HS256 keyed with the JWK": _forge({"alg": "HS256", "kid": idp.kid}, claims,
                                           json.dumps(public_jwk).encode()),
        "expired": idp.issue("victim", now=now - 7200, ttl=60)["access_token"],
        "not yet valid": idp.issue("victim", now=now + 3600)["access_token"],
        "tampered payload": f"{h}.{p[:-2]}AA.{s}",
        "signature stripped": f"{h}.{p}.",
        "garbage": "not.a.jwt",
        "oversized": "a" * 9000,
    }
    foreign = ec.generate_private_key(ec.SECP256R1())
    tokens["foreign key, known kid"] = jwt.encode(claims, foreign, algorithm="ES256",
                                                   headers={"kid": idp.kid})
    tokens["wrong issuer"] = jwt.encode({**claims, "iss": "https://evil"}, foreign,
                                        algorithm="ES256", headers={"kid": idp.kid})
    for name, token in tokens.items():
        r = await api.client.post("/v1/codes", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json", name
        assert r.json()["status"] == 401
    assert (await api.client.post("/v1/codes", headers={"Authorization": f"Bearer {good}"}
                                  )).status_code == 201
