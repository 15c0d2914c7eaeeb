"""The naive baseline of SPEC §7: a bare FastAPI app, written the obvious way.

``POST /v1/verify`` parses the same JSON body as the service's verify route
(``{"code", "scene", "checkpoint", "direction"}``) with a pydantic model and checks ONE
signature: base45 (:mod:`suishen.codecs.base45`), ``cbor2.loads`` of the COSE_Sign1,
the ``Sig_structure`` built with ``cbor2.dumps``, and ``cryptography`` with the public key
named by the code's ``kid`` in the service's JWK Set. It then reads the claims for the
expiry and answers a small JSON through a pydantic response model. No authentication,
no replay check, no audit: that is what makes it the baseline. Handlers are ``async def``
(no thread-pool hop), the stronger of the two obvious ways to write them.

``POST /v1/codes`` is the matching naive issuance endpoint: it validates the citizen's
bearer JWT with PyJWT (ES256, ``iss``/``aud``/``exp``; the key is this app's own
stand-in identity provider, see ``POST /v1/dev/citizen-token``), signs a CWT-shaped
COSE_Sign1 with ``cryptography`` using the same algorithm as the service's active key,
and answers through a pydantic model with status 201.

Configuration (environment, or the command-line flags of the same names)::

    SUISHEN_NAIVE_JWKS   JWK Set sources, separated by commas or spaces: http(s) URLs
                         (e.g. http://127.0.0.1:8000/v1/keys) or file paths; every key of
                         every set is usable by kid (one service process per set)

Run::

    .venv/bin/python benchmarks/naive_app.py --port 8100 --jwks http://127.0.0.1:8000/v1/keys
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from suishen.codecs import base45

PREFIX = "SC1:"
COSE_ALG = {"ES256": -7, "EdDSA": -8}
IDP_ISSUER = "urn:suishen:naive-idp"
IDP_AUDIENCE = "suishen-naive"
CODE_TTL = 60
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _b64u(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        import httpx

        response = httpx.get(source, timeout=5.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data
    loaded: dict[str, Any] = json.loads(Path(source).read_text())
    return loaded


def load_keys(sources: str) -> tuple[dict[bytes, PublicKey], str]:
    """Public keys by kid bytes from every JWK Set, and the alg of the (first) active key."""
    keys: dict[bytes, PublicKey] = {}
    active_alg = ""
    for source in sources.replace(",", " ").split():
        for jwk in _load_jwks(source)["keys"]:
            key: PublicKey
            if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                x = int.from_bytes(_b64u(jwk["x"]), "big")
                y = int.from_bytes(_b64u(jwk["y"]), "big")
                key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            elif jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                key = ed25519.Ed25519PublicKey.from_public_bytes(_b64u(jwk["x"]))
            else:
                continue
            keys[bytes.fromhex(jwk["kid"])] = key
            if not active_alg and jwk.get("status", "active") == "active":
                active_alg = str(jwk.get("alg", ""))
    if not keys:
        raise SystemExit(f"naive_app: no usable key in {sources!r}")
    return keys, active_alg or "ES256"


class VerifyIn(BaseModel):
    code: str
    scene: str
    checkpoint: str | None = None
    direction: str | None = None


class VerifyOut(BaseModel):
    valid: bool
    reason: str


class TokenIn(BaseModel):
    sub: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int


class CodeOut(BaseModel):
    code: str
    kind: str
    issued_at: str
    expires_at: str
    refresh_after: str
    kid: str


def _rfc3339(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def create_app(sources: str) -> FastAPI:
    """The baseline app for the JWK Sets in ``sources``."""
    keys, alg = load_keys(sources)
    app = FastAPI(title="naive baseline")

    # Issuance: its own signing key of the service's algorithm, its own identity provider.
    signing_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    signing_key = ed25519.Ed25519PrivateKey.generate() if alg == "EdDSA" else (
        ec.generate_private_key(ec.SECP256R1())
    )
    signing_kid = secrets.token_bytes(2)
    protected = cbor2.dumps({1: COSE_ALG.get(alg, -7), 4: signing_kid})
    idp_key = ec.generate_private_key(ec.SECP256R1())
    idp_public = idp_key.public_key()

    @app.post("/v1/verify", response_model=VerifyOut)
    async def verify(body: VerifyIn) -> VerifyOut:
        if not body.code.startswith(PREFIX):
            return VerifyOut(valid=False, reason="unsupported_version")
        try:
            message = cbor2.loads(base45.decode(body.code[len(PREFIX):]))
            protected_raw, _unprotected, payload, signature = message.value
            header = cbor2.loads(protected_raw)
        except Exception:  # noqa: BLE001 - the naive way
            return VerifyOut(valid=False, reason="malformed")
        key = keys.get(header.get(4))
        if key is None:
            return VerifyOut(valid=False, reason="unknown_key")
        to_sign = cbor2.dumps(["Signature1", protected_raw, b"", payload])
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, to_sign)
            else:
                der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                           int.from_bytes(signature[32:], "big"))
                key.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return VerifyOut(valid=False, reason="bad_signature")
        claims = cbor2.loads(payload)
        if claims.get(4, 0) < time.time():
            return VerifyOut(valid=False, reason="expired")
        return VerifyOut(valid=True, reason="ok")

    @app.post("/v1/dev/citizen-token", response_model=TokenOut)
    async def citizen_token(body: TokenIn) -> TokenOut:
        now = int(time.time())
        token = jwt.encode(
            {"iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": body.sub, "iat": now,
             "exp": now + 3600},
            idp_key, algorithm="ES256",
        )
        return TokenOut(access_token=token, token_type="Bearer", expires_in=3600)  # noqa: S106

    @app.post("/v1/codes", response_model=CodeOut, status_code=201)
    async def issue(authorization: str = Header()) -> CodeOut:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise HTTPException(401, "bearer token required")
        try:
            claims = jwt.decode(token, idp_public, algorithms=["ES256"],
                                audience=IDP_AUDIENCE, issuer=IDP_ISSUER)
        except jwt.PyJWTError:
            raise HTTPException(401, "invalid token") from None
        now = int(time.time())
        sub = hashlib.sha256(claims["sub"].encode()).digest()[:10]
        payload = cbor2.dumps({2: sub, 4: now + CODE_TTL, 6: now, 7: secrets.token_bytes(8),
                               -1: 0})
        to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
        if isinstance(signing_key, ed25519.Ed25519PrivateKey):
            signature = signing_key.sign(to_sign)
        else:
            r, s = decode_dss_signature(signing_key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))
        return CodeOut(code=PREFIX + base45.encode(cose), kind="personal",
                       issued_at=_rfc3339(now), expires_at=_rfc3339(now + CODE_TTL),
                       refresh_after=_rfc3339(now + CODE_TTL // 2), kid=signing_kid.hex())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SPEC §7 naive baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--jwks", default=os.environ.get("SUISHEN_NAIVE_JWKS", ""),
                        help="JWK Set URLs or files, comma separated")
    args = parser.parse_args(argv)
    if not args.jwks:
        parser.error("give --jwks or SUISHEN_NAIVE_JWKS")
    import uvicorn

    uvicorn.run(create_app(args.jwks), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="warning", server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
