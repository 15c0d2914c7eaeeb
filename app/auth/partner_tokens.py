"""OAuth 2.0 client credentials for partners (RFC 6749 §4.4): secrets and access tokens.

Client credentials
    ``client_id`` is ``"pc_"`` plus 16 URL-safe random characters (96 bits); the secret is
    32 random bytes as base64url (43 characters), shown to the operator once. It never
    starts with ``-`` (drawn again when it would: a command line reads ``--client-secret
    -x...`` as an unknown option, which broke 1 partner in 64; the redraw costs under 0.03
    bits of the 256). Only a hash is stored:
    ``"sha256$" + b64url(salt[16]) + "$" + b64url(SHA-256(salt || secret))``.
    A slow password hash (scrypt, Argon2) exists to make *guessable* passwords expensive
    to brute-force; these secrets are 256-bit uniformly random, so one SHA-256 is already
    beyond any search, and verification stays cheap on the token endpoint. The salt keeps
    equal secrets from having equal hashes. If human-chosen secrets are ever accepted,
    this MUST become a slow KDF.

Access tokens
    A JWT in the RFC 9068 profile, signed with the *active* key of a
    :class:`~suishen.keys.keyset.KeySet` (ES256 or EdDSA, per the key)::

        header  {"alg": "ES256" | "EdDSA", "kid": "<hex kid of the key record>",
                 "typ": "at+jwt"}
        claims  {"iss", "aud", "sub": client_id, "client_id", "iat", "exp",
                 "jti", "scope": "space separated scopes"}

    Verification is stateless: every key of the set that is active or retired and still
    inside its validity window verifies (so tokens signed before a rotation keep working
    for the overlap), pending and revoked keys never do. ``typ`` MUST be ``at+jwt``, so
    no other JWT signed with the same keys passes as an access token. ``iss``, ``aud``
    and ``exp``/``iat`` are checked against the caller's ``now`` with a small leeway; a
    token whose lifetime (``exp - iat``) exceeds ``max_lifetime`` (by default the
    lifetime it issues, ``ttl``) or whose ``iat`` lies beyond the leeway in the future
    is refused.

    Verification is on the hot path of ``POST /v1/verify``, so the PyJWT key objects are
    built once per key set, the compact form is parsed once (PyJWT's ``PyJWS.decode``
    would parse it a second time after we read ``kid``), and successful results are kept
    in a small LRU cache keyed by the token string. A cache hit re-checks everything that
    depends on ``now`` (token expiry and ``iat``, the key's window), so a hit answers
    exactly as a full verification would; the cache only skips the signature and JSON
    work. A new key set (rotation, revocation) means a new :class:`PartnerTokens` — see
    :meth:`PartnerTokens.with_keyset` — and so an empty cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

import jwt
from jwt.exceptions import PyJWTError

from suishen.app.auth.errors import InvalidClient, InvalidPartnerToken
from suishen.app.text import is_valid_subject
from suishen.errors import KeyManagementError
from suishen.keys.algorithms import b64u, b64u_decode
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyState, VerificationKey
from suishen.keys.keyset import KeySet
from suishen.keys.signer import Signer

__all__ = [
    "CLIENT_ID_PREFIX",
    "TOKEN_TYPE",
    "PartnerClaims",
    "PartnerTokens",
    "format_scope",
    "hash_secret",
    "new_client_credentials",
    "parse_basic_credentials",
    "verify_secret",
]

CLIENT_ID_PREFIX: Final = "pc_"
TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - the JWT "typ" of RFC 9068, not a secret
MAX_SECRET_CHARS: Final = 512
MAX_TOKEN_CHARS: Final = 4096
MAX_TTL: Final = 3600
_HASH_SCHEME: Final = "sha256"
_SALT_BYTES: Final = 16
_DUMMY_SALT: Final = bytes(_SALT_BYTES)
_DUMMY_DIGEST: Final = hashlib.sha256(b"no such client").digest()
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- client credentials ------------------------------------------------------------------
def new_client_credentials() -> tuple[str, str]:
    """A new ``(client_id, client_secret)``; store only :func:`hash_secret` of the secret."""
    secret = secrets.token_urlsafe(32)
    while secret.startswith("-"):
        secret = secrets.token_urlsafe(32)
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(12), secret


def hash_secret(secret: str) -> str:
    """The storable form of a client secret (see the module docstring for why SHA-256)."""
    if not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET_CHARS:
        raise ValueError(f"a client secret is 1..{MAX_SECRET_CHARS} characters")
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{_HASH_SCHEME}${b64u(salt)}${b64u(_digest(salt, secret))}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """True when ``secret`` matches the stored hash, compared in constant time.

    ``stored`` may be None (unknown client) or damaged: the answer is False after the same
    amount of hashing, so response time does not tell which client ids exist."""
    parsed = _parse_stored(stored)
    salt, expected = parsed if parsed is not None else (_DUMMY_SALT, _DUMMY_DIGEST)
    if not isinstance(secret, str) or len(secret) > MAX_SECRET_CHARS:
        secret = ""
    matches = hmac.compare_digest(_digest(salt, secret), expected)
    return matches and parsed is not None and secret != ""


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("utf-8", "surrogatepass")).digest()


def _parse_stored(stored: str | None) -> tuple[bytes, bytes] | None:
    if not isinstance(stored, str):
        return None
    scheme, _, rest = stored.partition("$")
    salt_text, _, digest_text = rest.partition("$")
    if scheme != _HASH_SCHEME:
        return None
    try:
        salt, digest = b64u_decode(salt_text), b64u_decode(digest_text)
    except (ValueError, binascii.Error):
        return None
    if len(salt) != _SALT_BYTES or len(digest) != hashlib.sha256().digest_size:
        return None
    return salt, digest


def parse_basic_credentials(authorization: str) -> tuple[str, str]:
    """``(client_id, client_secret)`` from an ``Authorization: Basic ...`` header value.

    RFC 6749 §2.3.1: both parts are form-urlencoded before base64, so they are decoded
    here. :class:`InvalidClient` for anything malformed (the detail never echoes it)."""
    if not isinstance(authorization, str) or len(authorization) > 2048:
        raise InvalidClient("malformed client credentials")
    scheme, _, param = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not param.strip():
        raise InvalidClient("client credentials must use the Basic scheme")
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("malformed client credentials") from None
    client_id, sep, secret = decoded.partition(":")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not sep or not client_id or not secret:
        raise InvalidClient("malformed client credentials")
    return client_id, secret


def format_scope(scopes: Iterable[str]) -> str:
    """Scopes as the space-separated ``scope`` string, duplicates dropped, order kept.
    ValueError for a scope that is not an RFC 6749 scope-token."""
    if isinstance(scopes, str):
        raise ValueError("scopes are a list of strings, not one string")
    out: dict[str, None] = {}
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(
                "a scope is 1..128 printable ASCII characters other than space, '\"' and '\\'"
            )
        out[scope] = None
    return " ".join(out)


# --- access tokens -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PartnerClaims:
    """What a valid partner access token says."""

    client_id: str
    scopes: frozenset[str]
    expires_at: int
    issued_at: int = 0
    jti: str = ""
    kid: str = ""

    def has_scope(self, scope: str) -> bool:
        """True when the token grants ``scope``."""
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class _VerifyKey:
    alg: str
    jwk: jwt.PyJWK
    window: VerificationKey


class PartnerTokens:
    """Issues and verifies partner access tokens with one key set.

    Immutable apart from its verification cache: after the key set changes, build the
    successor with :meth:`with_keyset` and swap it in. Rotate the partner key set with
    ``overlap_seconds`` of at least :attr:`min_overlap_seconds` so that tokens issued
    just before a rotation verify until they expire.
    """

    def __init__(
        self,
        keyset: KeySet,
        kek: KeyEncryptionKey,
        *,
        issuer: str = "urn:suishen",
        audience: str = "urn:suishen:partners",
        ttl: int = 300,
        max_lifetime: int | None = None,
        leeway: int = 5,
        cache_size: int = 4096,
        cache_seconds: int = 30,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        if isinstance(ttl, bool) or not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between 1 and {MAX_TTL} seconds")
        max_lifetime = ttl if max_lifetime is None else max_lifetime
        if isinstance(max_lifetime, bool) or not ttl <= max_lifetime <= MAX_TTL:
            raise ValueError(f"max_lifetime must be between ttl and {MAX_TTL} seconds")
        if not 0 <= leeway <= 60 or cache_size < 0 or cache_seconds < 0:
            raise ValueError("leeway is 0..60 seconds; cache size and seconds are >= 0")
        self._keyset = keyset
        self._kek = kek
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._keys = self._verify_keys(keyset)
        self._signer = self._unseal_signer(keyset, kek)
        # token -> (claims, valid_from, cached_until); valid_until is claims.expires_at
        self._cache: OrderedDict[str, tuple[PartnerClaims, int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PartnerTokens(keyset_version={self._keyset.version}, keys={sorted(self._keys)})"

    @property
    def keyset(self) -> KeySet:
        """The key set this instance signs and verifies with."""
        return self._keyset

    @property
    def min_overlap_seconds(self) -> int:
        """The overlap a rotation of the partner key set needs: ``max_lifetime + leeway``
        (the longest-lived token that verifies must outlive its key's retirement)."""
        return self.max_lifetime + self.leeway

    def with_keyset(self, keyset: KeySet) -> PartnerTokens:
        """The same configuration over another key set (after rotation or revocation).
        Returns ``self`` when the key set is unchanged, keeping the warm cache."""
        if keyset == self._keyset:
            return self
        return PartnerTokens(
            keyset,
            self._kek,
            issuer=self.issuer,
            audience=self.audience,
            ttl=self.ttl,
            max_lifetime=self.max_lifetime,
            leeway=self.leeway,
            cache_size=self._cache_size,
            cache_seconds=self._cache_seconds,
        )

    @staticmethod
    def _verify_keys(keyset: KeySet) -> dict[str, _VerifyKey]:
        keys: dict[str, _VerifyKey] = {}
        ring = {k.kid.hex(): k for k in keyset.keyring()}
        for record in keyset.keys:
            if record.state not in (KeyState.ACTIVE, KeyState.RETIRED):
                continue  # pending keys do not verify yet, revoked keys never again
            public = record.public_key()
            jwk = jwt.PyJWK({**public.jwk_members(), "alg": record.alg.value}, record.alg.value)
            keys[record.kid] = _VerifyKey(record.alg.value, jwk, ring[record.kid])
        return keys

    @staticmethod
    def _unseal_signer(keyset: KeySet, kek: KeyEncryptionKey) -> Signer | None:
        try:
            keyset.active()
        except KeyManagementError:
            return None  # e.g. the active key was revoked: verify-only until rotation
        return keyset.signer(kek)  # WrongKeyEncryptionKey surfaces here, early

    # --- issuing ---------------------------------------------------------------------
    def issue(self, client_id: str, scopes: Iterable[str], *, now: int) -> dict[str, Any]:
        """A token response ``{"access_token", "token_type": "Bearer", "expires_in",
        "scope"}`` for an already authenticated client.

        ValueError for a bad client id or scope; :class:`KeyManagementError` when the key
        set has no active key."""
        if self._signer is None:
            raise KeyManagementError("the partner key set has no active key")
        if not is_valid_subject(client_id):
            raise ValueError("client_id must be 1..255 printable characters")
        scope = format_scope(scopes)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "iat": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(16),
            "scope": scope,
        }
        token = sign_jwt(self._signer, claims, typ=TOKEN_TYPE)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.ttl,
            "scope": scope,
        }

    # --- verifying -------------------------------------------------------------------
    def verify(self, token: str, *, now: int) -> PartnerClaims:
        """The claims of a valid token; :class:`InvalidPartnerToken` otherwise."""
        if not isinstance(token, str):
            raise InvalidPartnerToken("token is missing")
        if self._cache_size:
            entry = self._cache_get(token)
            if entry is not None:
                claims, valid_from, cached_until = entry
                if valid_from <= now < cached_until and self._still_valid(claims, now):
                    return claims
        claims = self._verify_uncached(token, now)
        if self._cache_size:
            self._cache_put(token, claims, now)
        return claims

    def _still_valid(self, claims: PartnerClaims, now: int) -> bool:
        if now >= claims.expires_at + self.leeway:
            return False
        key = self._keys.get(claims.kid)
        return key is not None and key.window.in_window(now, self.leeway)

    def _cache_get(self, token: str) -> tuple[PartnerClaims, int, int] | None:
        with self._lock:
            entry = self._cache.get(token)
            if entry is not None:
                self._cache.move_to_end(token)
            return entry

    def _cache_put(self, token: str, claims: PartnerClaims, now: int) -> None:
        entry = (claims, claims.issued_at - self.leeway, now + self._cache_seconds)
        with self._lock:
            self._cache[token] = entry
            self._cache.move_to_end(token)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _verify_uncached(self, token: str, now: int) -> PartnerClaims:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise InvalidPartnerToken("token is missing or too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidPartnerToken("token is not a signed JWT")
        header = _json_object(parts[0])
        if header.get("typ") != TOKEN_TYPE or "crit" in header or "b64" in header:
            raise InvalidPartnerToken("token is not a partner access token")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise InvalidPartnerToken("token signing key is not known or revoked")
        if header.get("alg") != key.alg:  # closed list: exactly the key's own algorithm
            raise InvalidPartnerToken("token algorithm is not accepted")
        if not key.window.in_window(now, self.leeway):
            raise InvalidPartnerToken("token signing key no longer verifies")
        try:
            signature = _b64url(parts[2])
            valid = key.jwk.Algorithm.verify(
                f"{parts[0]}.{parts[1]}".encode("ascii"), key.jwk.key, signature
            )
        except (ValueError, PyJWTError):
            valid = False
        if not valid:
            raise InvalidPartnerToken("token signature is invalid")
        return self._claims(_json_object(parts[1]), kid, now)

    def _claims(self, claims: Mapping[str, Any], kid: str, now: int) -> PartnerClaims:
        if claims.get("iss") != self.issuer:
            raise InvalidPartnerToken("token issuer is not accepted")
        if claims.get("aud") != self.audience:
            raise InvalidPartnerToken("token audience is not accepted")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or _is_bool(exp, iat):
            raise InvalidPartnerToken("token times are missing or invalid")
        if now >= exp + self.leeway:
            raise InvalidPartnerToken("token has expired")
        if iat > now + self.leeway:
            raise InvalidPartnerToken("token is issued in the future")
        if exp - iat > self.max_lifetime:
            # Only this service issues these tokens, never for longer than max_lifetime: a
            # longer one was made with a stolen key or a misconfigured issuer, and would
            # outlive every rotation overlap.
            raise InvalidPartnerToken("token lifetime exceeds what this service issues")
        sub, scope, jti = claims.get("sub"), claims.get("scope"), claims.get("jti")
        if not is_valid_subject(sub) or claims.get("client_id", sub) != sub:
            raise InvalidPartnerToken("token subject is missing or invalid")
        if not isinstance(scope, str) or not isinstance(jti, str):
            raise InvalidPartnerToken("token scope or id is missing")
        return PartnerClaims(
            client_id=sub,
            scopes=frozenset(scope.split()),
            expires_at=exp,
            issued_at=iat,
            jti=jti,
            kid=kid,
        )


def _is_bool(*values: object) -> bool:
    return any(isinstance(value, bool) for value in values)


def _b64url(segment: str) -> bytes:
    """Strict base64url without padding: one encoding per byte string."""
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if b64u(raw) != segment:  # non-zero padding bits
        raise ValueError("not canonical base64url")
    return raw


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(segment))
    except (ValueError, RecursionError):
        raise InvalidPartnerToken("token is malformed") from None
    if not isinstance(value, dict):
        raise InvalidPartnerToken("token is malformed")
    return value


def sign_jwt(signer: Signer, claims: Mapping[str, Any], *, typ: str) -> str:
    """A compact JWS (RFC 7515) over ``claims``, signed through the
    :class:`~suishen.keys.signer.Signer` seam -- the same one code issuance uses, so a
    KMS or HSM signer serves both. JWS wants exactly the raw signature a signer makes:
    ``r || s`` for ES256 (RFC 7518 §3.4), 64 bytes for EdDSA (RFC 8037)."""
    header = {"alg": signer.algorithm.value, "kid": signer.kid.hex(), "typ": typ}
    signing_input = ".".join(
        b64u(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, dict(claims))
    )
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64u(signature)}"
