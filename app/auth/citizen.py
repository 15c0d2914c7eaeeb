"""Validating citizens' bearer tokens: OIDC-style JWTs from the city identity provider.

What a token MUST satisfy to name a citizen (SPEC §4); anything else is
:class:`~suishen.app.auth.errors.InvalidCitizenToken`:

* at most :data:`MAX_TOKEN_CHARS` ASCII characters, JWS compact form (three segments),
  checked *before* any decoding so that an oversized header cannot cost us work;
* header ``alg`` on a closed list of asymmetric algorithms chosen at construction
  (never ``none``, never ``HS*``: a verifier holding only public keys must not accept a
  MAC made with one of them), no ``crit``/``b64`` extensions;
* the key is chosen by ``kid`` from the provider's JWK Set only — ``jku``, ``x5u`` and
  embedded ``jwk`` headers are ignored — and its key type MUST fit ``alg`` (an RSA key
  verifies RS*/PS*, a P-256 key ES256, an Ed25519 key EdDSA; a JWK that declares ``alg``
  verifies that algorithm alone);
* a valid signature (PyJWT, with the key's algorithm bound);
* ``iss`` equal to the configured issuer, ``aud`` equal to (or a list containing) the
  configured audience;
* ``exp`` present, ``nbf`` and ``iat`` when present, all finite numbers, judged against
  the caller's ``now`` with ``leeway`` seconds of clock skew. PyJWT reads the clock
  itself, so it only checks the signature here and the time claims are checked below;
* ``sub`` a printable string of 1..255 characters.

:class:`JwksSource` loads and caches the provider's JWK Set from a file or an http(s)
URL. An unknown ``kid`` triggers a refetch at most once per ``min_refetch_seconds``
(a stream of forged kids must not become a stream of requests to the provider); the
set is also refreshed once it is older than ``max_age_seconds`` so that keys the
provider withdraws stop verifying. A failed fetch keeps the keys already cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx
import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from suishen.app.auth.errors import InvalidCitizenToken
from suishen.app.text import is_valid_subject

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "MAX_TOKEN_CHARS",
    "CitizenTokenValidator",
    "JwksSource",
]

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS: Final = 8 * 1024
MAX_KID_CHARS: Final = 256
MAX_JWKS_BYTES: Final = 1024 * 1024
MIN_RSA_BITS: Final = 2048

DEFAULT_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA")

_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# Which algorithms a key of a given type (and curve) can verify. Nothing symmetric.
_ALGS_BY_KEY_TYPE: Final[Mapping[tuple[str, str | None], frozenset[str]]] = {
    ("RSA", None): _RSA_ALGS,
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("EC", "P-521"): frozenset({"ES512"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
    ("OKP", "Ed448"): frozenset({"EdDSA"}),
}
ASYMMETRIC_ALGORITHMS: Final[frozenset[str]] = frozenset(
    alg for algs in _ALGS_BY_KEY_TYPE.values() for alg in algs
)
# Members that only private or symmetric JWKs have: a public JWK Set carrying them is
# misconfigured, and such a key is not used.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# Only the signature is left to PyJWT; the minimum RSA size is enforced, not warned about.
_JWS = jwt.PyJWS(options={"enforce_minimum_key_length": True})


# --- the JWK Set ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Entry:
    """One usable JWK: the algorithms it may verify, each with its bound PyJWK."""

    kid: str | None
    by_alg: Mapping[str, jwt.PyJWK]
    default_alg: str


@dataclass(frozen=True, slots=True)
class _Keys:
    entries: tuple[_Entry, ...] = ()
    by_kid: Mapping[str, tuple[_Entry, ...]] = field(default_factory=dict)
    # The usable JWKs as canonical JSON: what tells a withdrawn or replaced key apart.
    ids: frozenset[str] = frozenset()


class _FetchError(Exception):
    """The JWK Set could not be loaded (the message is for the log, not for clients)."""


def _redact(url: str) -> str:
    """A URL fit for logs: no user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _parse_jwks(raw: bytes | Mapping[str, Any]) -> _Keys:
    """Usable keys of a JWK Set; :class:`_FetchError` when there are none."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes) else raw
    except (ValueError, RecursionError) as exc:
        raise _FetchError(f"JWK Set is not JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise _FetchError("a JWK Set is an object with a 'keys' array")
    entries: list[_Entry] = []
    ids: set[str] = set()
    for jwk in data["keys"]:
        entry = _entry(jwk)
        if entry is not None:
            entries.append(entry)
            ids.add(json.dumps(jwk, sort_keys=True))
    skipped = len(data["keys"]) - len(entries)
    if skipped:
        log.warning("identity provider JWK Set: %d key(s) not usable and ignored", skipped)
    if not entries:
        raise _FetchError("JWK Set has no usable signature keys")
    by_kid: dict[str, tuple[_Entry, ...]] = {}
    for entry in entries:
        if entry.kid is not None:
            by_kid[entry.kid] = (*by_kid.get(entry.kid, ()), entry)
    return _Keys(tuple(entries), by_kid, frozenset(ids))


def _entry(jwk: object) -> _Entry | None:
    """A usable public signature key, or None (symmetric, private, weak, unknown type)."""
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS.intersection(jwk):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    kty = jwk.get("kty")
    crv = None if kty == "RSA" else jwk.get("crv")
    if not isinstance(kty, str) or not (crv is None or isinstance(crv, str)):
        return None
    family = _ALGS_BY_KEY_TYPE.get((kty, crv))
    kid = jwk.get("kid")
    if family is None or not (kid is None or isinstance(kid, str)):
        return None
    declared = jwk.get("alg")
    if declared is not None and declared not in family:
        return None  # e.g. an RSA key declared for HS256: never trusted
    algs = sorted(family) if declared is None else [declared]
    try:
        by_alg = {alg: jwt.PyJWK(jwk, algorithm=alg) for alg in algs}
    except (PyJWTError, ValueError, TypeError):
        return None
    any_key = next(iter(by_alg.values())).key
    if kty == "RSA" and getattr(any_key, "key_size", 0) < MIN_RSA_BITS:
        return None
    default = declared or ("RS256" if kty == "RSA" else algs[0])
    return _Entry(kid=kid, by_alg=by_alg, default_alg=default)


class JwksSource:
    """The identity provider's JWK Set, from a file path or an http(s) URL, cached.

    Loading happens on first use, when the cached set is older than
    ``max_age_seconds``, and when a token names a ``kid`` the cache does not hold — each
    at most once per ``min_refetch_seconds`` (failed attempts count too, so an
    unreachable provider is not hammered). A file is re-parsed only when its
    modification time or size changed. A failed load logs a warning and keeps the keys
    already cached. ``now`` is any clock the caller uses consistently (seconds).

    No network client is built here: a URL source opens a short-lived
    :class:`httpx.AsyncClient` per fetch (fetches are rare) unless one is injected.
    """

    def __init__(
        self,
        source: str,
        *,
        min_refetch_seconds: float = 30.0,
        max_age_seconds: float = 300.0,
        timeout: float = 3.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ValueError("the JWK Set source must be a file path or an http(s) URL")
        if min_refetch_seconds < 0 or max_age_seconds <= 0 or timeout <= 0:
            raise ValueError("refetch interval, maximum age and timeout must be positive")
        scheme = urlsplit(source).scheme.lower()
        url: str | None = None
        path: Path | None = None
        if scheme in ("http", "https"):
            url = source
            if scheme == "http":
                log.warning(
                    "identity provider JWK Set is fetched over plain http: %s", _redact(source)
                )
        elif scheme == "file":
            path = Path(unquote(urlsplit(source).path))
        else:
            path = Path(source)
        self._setup(
            url=url,
            path=path,
            min_refetch_seconds=min_refetch_seconds,
            max_age_seconds=max_age_seconds,
            timeout=timeout,
            http_client=http_client,
        )

    def _setup(
        self,
        *,
        url: str | None,
        path: Path | None,
        min_refetch_seconds: float,
        max_age_seconds: float,
        timeout: float,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        self._url = url
        self._path = path
        self._min_refetch = min_refetch_seconds
        self._max_age = max_age_seconds
        self._timeout = timeout
        self._client = http_client
        self._keys = _Keys()
        self._file_stamp: tuple[int, int] | None = None
        self._last_attempt: float | None = None
        self._last_success: float | None = None
        self._lock = asyncio.Lock()
        self._on_withdrawal: list[Callable[[], None]] = []
        self.fetch_count = 0  # loads that produced a new set (for metrics and tests)

    @classmethod
    def from_static(cls, jwks: Mapping[str, Any]) -> JwksSource:
        """A source serving a fixed JWK Set from memory, never refetched (the development
        identity provider). ValueError when the set has no usable key."""
        self = cls.__new__(cls)
        self._setup(
            url=None,
            path=None,
            min_refetch_seconds=math.inf,
            max_age_seconds=math.inf,
            timeout=1.0,
            http_client=None,
        )
        try:
            self._keys = _parse_jwks(jwks)
        except _FetchError as exc:
            raise ValueError(str(exc)) from None
        return self

    def __repr__(self) -> str:
        where = _redact(self._url) if self._url else (str(self._path) if self._path else "memory")
        return f"JwksSource({where!r}, keys={len(self._keys.entries)})"

    def on_withdrawal(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a load drops or changes a key the set held (caches
        of tokens that key verified must then forget them)."""
        self._on_withdrawal.append(callback)

    @property
    def is_static(self) -> bool:
        """True for a set served from memory."""
        return self._url is None and self._path is None

    # --- lookup ---------------------------------------------------------------------
    async def key_for(self, kid: str | None, *, now: float, alg: str | None = None) -> jwt.PyJWK:
        """The verification key for a token header's ``kid`` (and ``alg``).

        Without ``kid`` the set MUST hold exactly one key. With ``alg`` the key's type
        MUST fit it and the returned PyJWK is bound to that algorithm; without it, to the
        key's declared (or default) algorithm. :class:`InvalidCitizenToken` when there is
        no such key after the refetch the rate limit allows."""
        if self._stale(now) and self._may_attempt(now) and not self._lock.locked():
            await self._refresh(now)
        found = self._lookup(kid, alg)
        if found is None and self._lock.locked():
            # A load is under way (first use, or another token's unknown kid): its
            # result may hold the key, so wait for it rather than fail.
            async with self._lock:
                pass
            found = self._lookup(kid, alg)
        if found is None and self._may_attempt(now):
            await self._refresh(now)
            found = self._lookup(kid, alg)
        if found is None:
            raise InvalidCitizenToken("token signing key is not known")
        if found is False:
            raise InvalidCitizenToken("token algorithm does not fit its signing key")
        assert isinstance(found, jwt.PyJWK)
        return found

    def _lookup(self, kid: str | None, alg: str | None) -> jwt.PyJWK | bool | None:
        """The key; False when the kid exists but no key of it fits ``alg``; None when
        the kid is unknown."""
        candidates: tuple[_Entry, ...]
        if kid is None:
            candidates = self._keys.entries if len(self._keys.entries) == 1 else ()
        else:
            candidates = self._keys.by_kid.get(kid, ())
        if not candidates:
            return None
        for entry in candidates:
            chosen = entry.default_alg if alg is None else alg
            key = entry.by_alg.get(chosen)
            if key is not None:
                return key
        return False

    def _stale(self, now: float) -> bool:
        return self._last_success is None or now - self._last_success >= self._max_age

    def _may_attempt(self, now: float) -> bool:
        if self.is_static:
            return False
        last = self._last_attempt
        # A clock that went backwards does not lock the source out.
        return last is None or now < last or now - last >= self._min_refetch

    # --- loading --------------------------------------------------------------------
    async def refresh(self, *, now: float) -> bool:
        """Load the set now, ignoring the rate limit (startup, operator action).
        True when usable keys were loaded (or a file was unchanged)."""
        self._last_attempt = None
        return await self._refresh(now)

    async def _refresh(self, now: float) -> bool:
        async with self._lock:
            if not self._may_attempt(now):
                return False  # someone else refreshed while we waited
            self._last_attempt = now
            try:
                keys = await (self._load_url() if self._url else self._load_file())
            except _FetchError as exc:
                log.warning("identity provider JWK Set not refreshed: %s", exc)
                return False
            if keys is not None:
                withdrawn = not self._keys.ids <= keys.ids
                self._keys = keys
                self.fetch_count += 1
                if withdrawn:
                    for callback in self._on_withdrawal:
                        callback()
            self._last_success = now
            return True

    async def _load_url(self) -> _Keys:
        assert self._url is not None
        try:
            async with asyncio.timeout(self._timeout):
                if self._client is not None:
                    body = await self._get(self._client, self._url)
                else:
                    async with httpx.AsyncClient(timeout=self._timeout) as client:
                        body = await self._get(client, self._url)
        except TimeoutError:
            raise _FetchError(f"timed out after {self._timeout} s") from None
        except httpx.HTTPError as exc:
            raise _FetchError(f"{type(exc).__name__}: {exc}") from None
        return _parse_jwks(body)

    @staticmethod
    async def _get(client: httpx.AsyncClient, url: str) -> bytes:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise _FetchError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise _FetchError("JWK Set larger than 1 MiB")
            return bytes(body)

    async def _load_file(self) -> _Keys | None:
        """The parsed file, or None when it has not changed since the last load."""
        assert self._path is not None
        try:
            return await asyncio.to_thread(self._read_file, self._path)
        except OSError as exc:
            raise _FetchError(f"cannot read {self._path}: {exc.strerror}") from None

    def _read_file(self, path: Path) -> _Keys | None:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._file_stamp:
                return None
            if st.st_size > MAX_JWKS_BYTES:
                raise _FetchError("JWK Set larger than 1 MiB")
            keys = _parse_jwks(handle.read(MAX_JWKS_BYTES + 1))
        self._file_stamp = stamp
        return keys


# --- the validator ----------------------------------------------------------------------
class CitizenTokenValidator:
    """Checks citizens' bearer tokens; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksSource,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        algs = tuple(algorithms)
        if not algs:
            raise ValueError("at least one algorithm is required")  # none must not mean any
        refused = sorted(set(algs) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise ValueError(f"only asymmetric signature algorithms are accepted: {refused}")
        if not 0 <= leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.algorithms = frozenset(algs)
        self.leeway = leeway

    async def validate(self, token: str, *, now: int) -> str:
        """The citizen's ``sub``; :class:`InvalidCitizenToken` for any failure."""
        sub: str = (await self.validate_claims(token, now=now))["sub"]
        return sub

    async def validate_claims(self, token: str, *, now: int) -> dict[str, Any]:
        """All claims of a valid token (``sub`` checked as for :meth:`validate`)."""
        header = self._header(token)
        alg: str = header["alg"]
        key = await self.jwks.key_for(header.get("kid"), now=now, alg=alg)
        try:
            payload = _JWS.decode(token, key=key, algorithms=[alg])
        except InvalidSignatureError:
            raise InvalidCitizenToken("token signature is invalid") from None
        except PyJWTError:
            raise InvalidCitizenToken("token is malformed") from None
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            raise InvalidCitizenToken("token claims are not JSON") from None
        if not isinstance(claims, dict):
            raise InvalidCitizenToken("token claims are not a JSON object")
        self._check_claims(claims, now)
        return claims

    def _header(self, token: object) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise InvalidCitizenToken("token is missing")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidCitizenToken("token is too long or not ASCII")
        if token.count(".") != 2:
            raise InvalidCitizenToken("token is not a signed JWT")
        try:
            header = _JWS.get_unverified_header(token)
        except (PyJWTError, ValueError, RecursionError):
            raise InvalidCitizenToken("token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidCitizenToken("token algorithm is not accepted")
        if "crit" in header or "b64" in header:
            raise InvalidCitizenToken("token uses unsupported header extensions")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            raise InvalidCitizenToken("token key id is malformed")
        return header

    def _check_claims(self, claims: Mapping[str, Any], now: int) -> None:
        if claims.get("iss") != self.issuer:
            raise InvalidCitizenToken("token issuer is not accepted")
        aud = claims.get("aud")
        if aud != self.audience and not (isinstance(aud, list) and self.audience in aud):
            raise InvalidCitizenToken("token audience is not accepted")
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise InvalidCitizenToken("token has no expiry")
        if now >= exp + self.leeway:
            raise InvalidCitizenToken("token has expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidCitizenToken("token is not valid yet")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise InvalidCitizenToken("token is issued in the future")
        if not is_valid_subject(claims.get("sub")):
            raise InvalidCitizenToken("token subject is missing or invalid")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim: a finite number (not a bool — and not NaN or Infinity, which
    Python's JSON parser accepts and which would make ``exp`` never expire)."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidCitizenToken(f"token claim {name!r} is not a valid date")
    return float(value)
