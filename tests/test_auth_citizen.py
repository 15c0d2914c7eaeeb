"""Citizen bearer tokens: every classic JWT attack is refused, good tokens pass.

Each kind of bad token has its own test. Time is pinned (``now=``); the JWK Set comes
from a file, from memory, or from a real HTTP server on 127.0.0.1 that counts requests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from suishen.app.auth.citizen import (
    MAX_TOKEN_CHARS,
    CitizenTokenValidator,
    JwksSource,
)
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.errors import AuthError, InvalidCitizenToken, InvalidSubject
from suishen.errors import SuishenError

NOW = 1_800_000_000
ISS = "https://id.city.example"
AUD = "suishen"


# --- keys and tokens ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


def claims(**override: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "citizen-42",
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(override)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def sign(
    private: Any, alg: str, kid: str | None, payload: dict[str, Any] | None = None, **headers: Any
) -> str:
    hdrs: dict[str, Any] = dict(headers)
    if kid is not None:
        hdrs["kid"] = kid
    # The JWS layer directly: an attacker is not held to PyJWT's claim checks on encoding.
    body = json.dumps(payload if payload is not None else claims()).encode()
    return jwt.api_jws.encode(body, private, algorithm=alg, headers=hdrs)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def write_jwks(path: Path, *jwks: Any) -> None:
    path.write_text(json.dumps({"keys": list(jwks)}))
    # Make the change visible even on filesystems with coarse timestamps.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (1 + _bump())))


_counter = iter(range(10**6))


def _bump() -> int:
    return next(_counter)


@pytest.fixture
def jwks_file(tmp_path: Path, ec_key: Any, rsa_key: Any, ed_key: Any) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(
        path,
        public_jwk(ec_key, "ec-1", alg="ES256", use="sig"),
        public_jwk(rsa_key, "rsa-1"),  # no "alg": RS256 and PS256 both fit an RSA key
        public_jwk(ed_key, "ed-1", alg="EdDSA"),
    )
    return path


@pytest.fixture
def validator(jwks_file: Path) -> CitizenTokenValidator:
    return CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=JwksSource(str(jwks_file)))


async def rejected(validator: CitizenTokenValidator, token: Any, now: int = NOW) -> str:
    with pytest.raises(InvalidCitizenToken) as info:
        await validator.validate(token, now=now)
    detail = info.value.detail
    if isinstance(token, str) and len(token) > 8:
        assert token not in detail and token not in str(info.value)
    return detail


# --- good tokens ---------------------------------------------------------------------------
async def test_es256_token_returns_sub(validator: CitizenTokenValidator, ec_key: Any) -> None:
    assert await validator.validate(sign(ec_key, "ES256", "ec-1"), now=NOW) == "citizen-42"


async def test_rs256_with_2048_bit_rsa_key(validator: CitizenTokenValidator, rsa_key: Any) -> None:
    assert await validator.validate(sign(rsa_key, "RS256", "rsa-1"), now=NOW) == "citizen-42"


async def test_ps256_with_rsa_key_without_alg_member(
    validator: CitizenTokenValidator, rsa_key: Any
) -> None:
    assert await validator.validate(sign(rsa_key, "PS256", "rsa-1"), now=NOW) == "citizen-42"


async def test_eddsa_token(validator: CitizenTokenValidator, ed_key: Any) -> None:
    assert await validator.validate(sign(ed_key, "EdDSA", "ed-1"), now=NOW) == "citizen-42"


async def test_audience_list_containing_ours(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(aud=["other", AUD]))
    assert await validator.validate(token, now=NOW) == "citizen-42"


async def test_validate_claims_returns_all_claims(
    validator: CitizenTokenValidator, ec_key: Any
) -> None:
    got = await validator.validate_claims(sign(ec_key, "ES256", "ec-1"), now=NOW)
    assert got["iss"] == ISS and got["exp"] == NOW + 300


# --- algorithm attacks -----------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_is_rejected(validator: CitizenTokenValidator, alg: str) -> None:
    await rejected(validator, raw_token({"alg": alg, "kid": "ec-1"}, claims()))
    await rejected(validator, raw_token({"alg": alg}, claims()))


async def test_alg_missing_is_rejected(validator: CitizenTokenValidator) -> None:
    await rejected(validator, raw_token({"kid": "ec-1", "typ": "JWT"}, claims(), b"x" * 64))


def _hs256(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1", "ed-1"])
async def test_hs256_keyed_with_the_public_key_is_rejected(
    validator: CitizenTokenValidator, rsa_key: Any, ec_key: Any, ed_key: Any, kid: str
) -> None:
    private = {"rsa-1": rsa_key, "ec-1": ec_key, "ed-1": ed_key}[kid]
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_bytes = json.dumps(public_jwk(private, kid)).encode()
    for secret in (pem, jwk_bytes):
        for alg in ("HS256", "HS384", "HS512"):
            token = _hs256(secret, {"alg": alg, "typ": "JWT", "kid": kid}, claims())
            detail = await rejected(validator, token)
            assert "algorithm" in detail


async def test_hs256_is_rejected_even_if_the_validator_were_asked_to_accept_it(
    jwks_file: Path,
) -> None:
    for algs in (("HS256",), ("ES256", "HS256"), ("none",), ("ES256", "none"), ()):
        with pytest.raises(ValueError):
            CitizenTokenValidator(
                issuer=ISS, audience=AUD, jwks=JwksSource(str(jwks_file)), algorithms=algs
            )


async def test_algorithm_must_fit_the_key_type(
    validator: CitizenTokenValidator, ec_key: Any, rsa_key: Any
) -> None:
    # A P-256 key named by an RSA key's kid, and the other way round.
    assert "fit" in await rejected(validator, sign(ec_key, "ES256", "rsa-1"))
    assert "fit" in await rejected(validator, sign(rsa_key, "RS256", "ec-1"))


async def test_declared_alg_of_a_jwk_is_binding(tmp_path: Path, rsa_key: Any) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(rsa_key, "rsa-rs", alg="RS256"))
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=JwksSource(str(path)))
    assert await v.validate(sign(rsa_key, "RS256", "rsa-rs"), now=NOW) == "citizen-42"
    await rejected(v, sign(rsa_key, "PS256", "rsa-rs"))


async def test_algorithm_outside_the_configured_list(jwks_file: Path, rsa_key: Any) -> None:
    v = CitizenTokenValidator(
        issuer=ISS, audience=AUD, jwks=JwksSource(str(jwks_file)), algorithms=("ES256",)
    )
    await rejected(v, sign(rsa_key, "RS256", "rsa-1"))


async def test_crit_header_is_rejected(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", crit=["exp"], exp=1)
    await rejected(validator, token)


# --- keys ------------------------------------------------------------------------------------
async def test_foreign_key_with_a_known_kid(validator: CitizenTokenValidator) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    assert "signature" in await rejected(validator, sign(attacker, "ES256", "ec-1"))


async def test_embedded_jwk_and_jku_headers_are_ignored(validator: CitizenTokenValidator) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = sign(
        attacker,
        "ES256",
        "ec-1",
        jwk=public_jwk(attacker, "ec-1"),
        jku="https://evil.example/jwks.json",
    )
    await rejected(validator, token)


async def test_token_without_kid_needs_a_single_key_set(
    tmp_path: Path, validator: CitizenTokenValidator, ec_key: Any
) -> None:
    await rejected(validator, sign(ec_key, "ES256", None))  # three keys: ambiguous
    path = tmp_path / "one.json"
    write_jwks(path, public_jwk(ec_key, None))
    single = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=JwksSource(str(path)))
    assert await single.validate(sign(ec_key, "ES256", None), now=NOW) == "citizen-42"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_unusable_jwks_members_are_ignored(tmp_path: Path, ec_key: Any) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    strong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "jwks.json"
    write_jwks(
        path,
        {"kty": "oct", "kid": "oct-1", "k": b64(b"shared-secret"), "alg": "HS256"},
        public_jwk(weak, "weak"),
        public_jwk(strong, "hs-declared", alg="HS256"),
        public_jwk(strong, "enc", use="enc"),
        {**jwt.algorithms.ECAlgorithm.to_jwk(ec_key, as_dict=True), "kid": "private"},
        "not a key",
        public_jwk(ec_key, "good"),
    )
    v = CitizenTokenValidator(
        issuer=ISS,
        audience=AUD,
        jwks=JwksSource(str(path)),
        algorithms=("RS256", "ES256"),
    )
    assert await v.validate(sign(ec_key, "ES256", "good"), now=NOW) == "citizen-42"
    await rejected(
        v, jwt.encode(claims(), b"shared-secret" * 4, algorithm="HS256", headers={"kid": "oct-1"})
    )
    await rejected(v, sign(weak, "RS256", "weak"))
    await rejected(v, sign(strong, "RS256", "hs-declared"))
    await rejected(v, sign(strong, "RS256", "enc"))
    await rejected(v, sign(ec_key, "ES256", "private"))


# --- claims ---------------------------------------------------------------------------------
async def test_wrong_audience(validator: CitizenTokenValidator, ec_key: Any) -> None:
    for aud in ("other", ["other"], [], None, 42, AUD + " ", [["suishen"]]):
        token = sign(ec_key, "ES256", "ec-1", claims(aud=aud if aud is not None else _DROP))
        assert "audience" in await rejected(validator, token)


async def test_wrong_issuer(validator: CitizenTokenValidator, ec_key: Any) -> None:
    for iss in ("https://evil.example", ISS + "/", [ISS], _DROP):
        token = sign(ec_key, "ES256", "ec-1", claims(iss=iss))
        assert "issuer" in await rejected(validator, token)


async def test_expired_with_leeway(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(exp=NOW - 10))
    assert await validator.validate(token, now=NOW) == "citizen-42"  # within 30 s leeway
    assert await validator.validate(token, now=NOW + 19) == "citizen-42"
    assert "expired" in await rejected(validator, token, now=NOW + 20)
    assert "expired" in await rejected(validator, token, now=NOW + 10_000)


async def test_nbf_in_the_future(validator: CitizenTokenValidator, ec_key: Any) -> None:
    soon = sign(ec_key, "ES256", "ec-1", claims(nbf=NOW + 30))
    assert await validator.validate(soon, now=NOW) == "citizen-42"  # within leeway
    later = sign(ec_key, "ES256", "ec-1", claims(nbf=NOW + 31))
    assert "not valid yet" in await rejected(validator, later)


async def test_iat_in_the_future(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(iat=NOW + 3600))
    assert "future" in await rejected(validator, token)


async def test_missing_exp(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(exp=_DROP))
    assert "expiry" in await rejected(validator, token)


@pytest.mark.parametrize("exp", [float("inf"), float("nan"), True, "1900000000", [1], None])
async def test_exp_must_be_a_finite_number(
    validator: CitizenTokenValidator, ec_key: Any, exp: Any
) -> None:
    await rejected(validator, sign(ec_key, "ES256", "ec-1", claims(exp=exp)))


@pytest.mark.parametrize(
    "sub", [_DROP, "", None, 42, ["a"], "x" * 256, "bad\nsub", "bad\x00sub", "\u200b"]
)
async def test_bad_or_missing_sub(validator: CitizenTokenValidator, ec_key: Any, sub: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(sub=sub))
    assert "subject" in await rejected(validator, token)


async def test_longest_sub_is_accepted(validator: CitizenTokenValidator, ec_key: Any) -> None:
    token = sign(ec_key, "ES256", "ec-1", claims(sub="x" * 255))
    assert await validator.validate(token, now=NOW) == "x" * 255


# --- garbage ---------------------------------------------------------------------------------
async def test_garbage_tokens(validator: CitizenTokenValidator, ec_key: Any) -> None:
    good = sign(ec_key, "ES256", "ec-1")
    header, payload, signature = good.split(".")
    garbage: list[Any] = [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "...",
        ".",
        "a..b",
        "Bearer " + good,
        good + ".",
        good + ".x.y",  # five segments look like JWE
        good[:-10],
        good[: len(good) // 2],
        header + "." + payload,
        header + "." + payload + ".",
        f"{header}.{payload}.{signature[:-2]}",
        f"{header}.{payload}!.{signature}",
        f"{header}.{b64(b'[1,2,3]')}.{signature}",
        f"{b64(b'not json')}.{payload}.{signature}",
        f"{b64(b'[]')}.{payload}.{signature}",
        "é" + good,
        good.replace(".", "\u2024"),
        None,
        42,
        b"bytes." + good.encode(),
    ]
    for token in garbage:
        await rejected(validator, token)


async def test_tampered_payload(validator: CitizenTokenValidator, ec_key: Any) -> None:
    header, _payload, signature = sign(ec_key, "ES256", "ec-1").split(".")
    forged = b64(json.dumps(claims(sub="someone-else")).encode())
    assert "signature" in await rejected(validator, f"{header}.{forged}.{signature}")


async def test_payload_that_is_not_an_object(validator: CitizenTokenValidator, ec_key: Any) -> None:
    # Correctly signed, but the payload is a JSON array.
    token = jwt.api_jws.encode(b"[1, 2]", ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    await rejected(validator, token)


async def test_oversized_token_is_refused_before_parsing(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(ec_key, "ec-1"))
    source = JwksSource(str(path))
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    huge = sign(ec_key, "ES256", "ec-1", claims(pad="x" * MAX_TOKEN_CHARS))
    assert len(huge) > MAX_TOKEN_CHARS
    assert "too long" in await rejected(v, huge)
    assert "too long" in await rejected(v, "a" * 10_000_000)
    assert source.fetch_count == 0  # no key was even looked up


# --- file JWK Set: rate-limited refetch ------------------------------------------------------
async def test_unknown_kid_refetch_is_rate_limited(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(ec_key, "old"))
    source = JwksSource(str(path), min_refetch_seconds=30)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    assert await v.validate(sign(ec_key, "ES256", "old"), now=NOW) == "citizen-42"
    assert source.fetch_count == 1

    new_key = ec.generate_private_key(ec.SECP256R1())
    token = sign(new_key, "ES256", "new")
    assert "not known" in await rejected(v, token, now=NOW + 1)  # the file lacks it yet

    write_jwks(path, public_jwk(ec_key, "old"), public_jwk(new_key, "new"))
    for dt in (2, 10, 29):  # within the interval: no refetch, still unknown
        assert "not known" in await rejected(v, token, now=NOW + dt)
    assert source.fetch_count == 1
    assert await v.validate(token, now=NOW + 30) == "citizen-42"  # interval over: re-read
    assert source.fetch_count == 2


async def test_unchanged_file_is_not_reparsed(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(ec_key, "k"))
    source = JwksSource(str(path), min_refetch_seconds=1)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    await v.validate(sign(ec_key, "ES256", "k"), now=NOW)
    stranger = ec.generate_private_key(ec.SECP256R1())
    for dt in range(2, 20, 2):
        await rejected(v, sign(stranger, "ES256", "nope"), now=NOW + dt)
    assert source.fetch_count == 1


async def test_withdrawn_key_stops_verifying_after_max_age(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    other = ec.generate_private_key(ec.SECP256R1())
    write_jwks(path, public_jwk(ec_key, "a"), public_jwk(other, "b"))
    v = CitizenTokenValidator(
        issuer=ISS, audience=AUD, jwks=JwksSource(str(path), max_age_seconds=300)
    )
    token = sign(ec_key, "ES256", "a", claims(exp=NOW + 3600))
    assert await v.validate(token, now=NOW) == "citizen-42"
    write_jwks(path, public_jwk(other, "b"))
    assert await v.validate(token, now=NOW + 299) == "citizen-42"  # cached
    await rejected(v, token, now=NOW + 300)


async def test_missing_or_broken_file_keeps_cached_keys(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(ec_key, "a"))
    source = JwksSource(str(path), min_refetch_seconds=0, max_age_seconds=1)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    token = sign(ec_key, "ES256", "a", claims(exp=NOW + 3600))
    assert await v.validate(token, now=NOW) == "citizen-42"
    path.write_text("{not json")
    assert await v.validate(token, now=NOW + 5) == "citizen-42"
    path.unlink()
    assert await v.validate(token, now=NOW + 10) == "citizen-42"
    await rejected(v, sign(ec_key, "ES256", "other"), now=NOW + 15)


async def test_missing_file_on_first_use(tmp_path: Path, ec_key: Any) -> None:
    source = JwksSource(str(tmp_path / "absent.json"))
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    await rejected(v, sign(ec_key, "ES256", "a"))


def test_source_must_be_named() -> None:
    with pytest.raises(ValueError):
        JwksSource("")
    with pytest.raises(ValueError):
        JwksSource.from_static({"keys": []})


# --- URL JWK Set: a real HTTP server ---------------------------------------------------------
class JwksServer:
    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.hits += 1
                if outer.delay:
                    time.sleep(outer.delay)
                body = json.dumps(outer.jwks).encode()
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[JwksServer]:
    srv = JwksServer()
    yield srv
    srv.close()


async def test_url_jwks_fetch_and_rate_limited_refetch(server: JwksServer, ec_key: Any) -> None:
    server.jwks = {"keys": [public_jwk(ec_key, "a")]}
    source = JwksSource(server.url, min_refetch_seconds=30)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    token = sign(ec_key, "ES256", "a")
    for dt in range(5):
        assert await v.validate(token, now=NOW + dt) == "citizen-42"
    assert server.hits == 1  # cached

    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = sign(stranger, "ES256", "forged-kid")
    for dt in range(5, 35):  # a flood of unknown kids
        await rejected(v, forged, now=NOW + dt)
    assert server.hits == 2  # one refetch, at NOW+30: 30 s after the first load

    new_key = ec.generate_private_key(ec.SECP256R1())
    server.jwks = {"keys": [public_jwk(ec_key, "a"), public_jwk(new_key, "b")]}
    await rejected(v, sign(new_key, "ES256", "b"), now=NOW + 59)
    assert server.hits == 2
    assert await v.validate(sign(new_key, "ES256", "b"), now=NOW + 60) == "citizen-42"
    assert server.hits == 3


async def test_url_failures_keep_cached_keys(server: JwksServer, ec_key: Any) -> None:
    server.jwks = {"keys": [public_jwk(ec_key, "a")]}
    source = JwksSource(server.url, min_refetch_seconds=1, max_age_seconds=10)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    token = sign(ec_key, "ES256", "a", claims(exp=NOW + 3600))
    assert await v.validate(token, now=NOW) == "citizen-42"

    server.status = 500
    assert await v.validate(token, now=NOW + 20) == "citizen-42"  # stale, refetch fails
    server.status = 200
    server.jwks = {"keys": []}  # an empty set is a failure too, not "trust nothing"
    assert await v.validate(token, now=NOW + 40) == "citizen-42"
    assert server.hits == 3
    await rejected(v, sign(ec_key, "ES256", "zzz"), now=NOW + 60)


async def test_url_timeout(server: JwksServer, ec_key: Any) -> None:
    server.jwks = {"keys": [public_jwk(ec_key, "a")]}
    server.delay = 2.0
    source = JwksSource(server.url, timeout=0.2)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    started = time.monotonic()
    await rejected(v, sign(ec_key, "ES256", "a"))
    assert time.monotonic() - started < 1.5
    server.delay = 0


async def test_url_unreachable(ec_key: Any) -> None:
    source = JwksSource("http://127.0.0.1:9/jwks.json", timeout=0.5)
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source)
    await rejected(v, sign(ec_key, "ES256", "a"))


async def test_concurrent_first_use_fetches_once(server: JwksServer, ec_key: Any) -> None:
    server.jwks = {"keys": [public_jwk(ec_key, "a")]}
    server.delay = 0.1
    v = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=JwksSource(server.url))
    token = sign(ec_key, "ES256", "a")
    subs = await asyncio.gather(*(v.validate(token, now=NOW) for _ in range(20)))
    assert subs == ["citizen-42"] * 20
    assert server.hits == 1


# --- development identity provider -----------------------------------------------------------
async def test_dev_idp_round_trip() -> None:
    idp = DevIdentityProvider()
    response = idp.issue("alice", now=NOW, ttl=600)
    assert response["token_type"] == "Bearer" and response["expires_in"] == 600
    header = jwt.get_unverified_header(response["access_token"])
    assert header["alg"] == "ES256" and header["kid"] == idp.kid
    (jwk,) = idp.jwks()["keys"]
    assert jwk["kid"] == idp.kid and jwk["alg"] == "ES256" and "d" not in jwk
    v = idp.validator()
    assert await v.validate(response["access_token"], now=NOW + 1) == "alice"
    await rejected(v, response["access_token"], now=NOW + 630)
    assert "dev-idp" in idp.issuer and idp.audience == "suishen"
    assert repr(idp) == f"DevIdentityProvider(kid={idp.kid!r})"


async def test_dev_idp_tokens_do_not_cross_instances() -> None:
    one, two = DevIdentityProvider(), DevIdentityProvider()
    assert one.kid != two.kid
    await rejected(two.validator(), one.issue("alice", now=NOW)["access_token"])


async def test_dev_idp_token_accepted_by_generic_validator() -> None:
    idp = DevIdentityProvider()
    v = CitizenTokenValidator(
        issuer=idp.issuer, audience=idp.audience, jwks=JwksSource.from_static(idp.jwks())
    )
    assert await v.validate(idp.issue("bob", now=NOW)["access_token"], now=NOW) == "bob"


@pytest.mark.parametrize(
    "sub", ["", "x" * 256, "a\nb", "a\tb", "\x00", "a\u2028b", " alice", "alice ", 42, None]
)
def test_dev_idp_refuses_bad_subjects(sub: Any) -> None:
    with pytest.raises(InvalidSubject) as info:
        DevIdentityProvider().issue(sub, now=NOW)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SuishenError)
    assert not isinstance(info.value, AuthError)


@pytest.mark.parametrize("ttl", [0, -1, 86_401, True])
def test_dev_idp_refuses_bad_ttl(ttl: Any) -> None:
    with pytest.raises(ValueError):
        DevIdentityProvider().issue("alice", now=NOW, ttl=ttl)


def test_dev_idp_accepts_unicode_subjects() -> None:
    DevIdentityProvider().issue("市民-张三", now=NOW)
    DevIdentityProvider().issue("x" * 255, now=NOW)


def test_error_details_are_safe() -> None:
    assert InvalidCitizenToken().detail == "invalid citizen token"
    assert InvalidCitizenToken("token has expired").oauth_error == "invalid_token"
