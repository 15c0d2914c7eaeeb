"""The development identity provider (development posture only; SPEC §2 and §4).

It stands in for the city identity provider so that a partner developer can try the
service with one command: ``POST /v1/dev/citizen-token {"sub": "..."}`` returns a token
that the ordinary :class:`~suishen.app.auth.citizen.CitizenTokenValidator` accepts —
same validator, same checks, only the JWK Set comes from memory. In production this
module MUST NOT be wired in at all (the endpoint is absent, 404).

The signing key is a fresh P-256 key generated at construction and never stored, so
tokens do not survive a restart; ``kid`` is its RFC 7638 thumbprint (base64url).
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.errors import InvalidSubject
from suishen.app.text import MAX_SUBJECT_CHARS, is_valid_subject
from suishen.keys.algorithms import Alg, PublicKey, b64u

__all__ = ["DevIdentityProvider"]

MAX_TTL: Final = 86_400
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class DevIdentityProvider:
    """Issues ES256 citizen tokens for any subject (development only)."""

    issuer: Final = "urn:suishen:dev-idp"
    audience: Final = "suishen"
    algorithm: Final = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        key = private_key if private_key is not None else ec.generate_private_key(ec.SECP256R1())
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the development identity provider signs with a P-256 key")
        public = PublicKey(Alg.ES256, key.public_key())
        self._private = key
        self.kid: str = b64u(public.thumbprint())
        self._jwk: dict[str, str] = {
            **public.jwk_members(),
            "kid": self.kid,
            "alg": self.algorithm,
            "use": "sig",
        }

    @classmethod
    def derived(cls, secret: bytes) -> DevIdentityProvider:
        """The provider whose key is derived from ``secret`` (at least 32 bytes): every
        development process sharing a database, and so a key-encryption key, accepts
        the others' citizen tokens."""
        if len(secret) < 32:
            raise ValueError("the derivation secret must be at least 32 bytes")
        scalar = int.from_bytes(secret, "big") % (_P256_ORDER - 1) + 1
        return cls(ec.derive_private_key(scalar, ec.SECP256R1()))

    def __repr__(self) -> str:  # never show key material
        return f"DevIdentityProvider(kid={self.kid!r})"

    def issue(self, sub: str, *, now: int, ttl: int = 3600) -> dict[str, Any]:
        """A token response ``{"access_token", "token_type": "Bearer", "expires_in"}``.

        ``sub`` MUST be 1..255 printable characters without surrounding whitespace
        (:class:`InvalidSubject` otherwise); ``ttl`` 1..86400 seconds (ValueError)."""
        check_subject(sub)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between 1 and {MAX_TTL} seconds")
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(
            claims, self._private, algorithm=self.algorithm, headers={"kid": self.kid}
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (one key)."""
        return {"keys": [dict(self._jwk)]}

    def jwks_source(self) -> JwksSource:
        """A :class:`JwksSource` serving :meth:`jwks` from memory."""
        return JwksSource.from_static(self.jwks())

    def validator(self, *, leeway: int = 30) -> CitizenTokenValidator:
        """The ordinary validator, configured for this provider."""
        return CitizenTokenValidator(
            issuer=self.issuer,
            audience=self.audience,
            jwks=self.jwks_source(),
            algorithms=(self.algorithm,),
            leeway=leeway,
        )


def check_subject(sub: object) -> None:
    """Raise :class:`InvalidSubject` unless ``sub`` is fit for a token's ``sub`` claim
    (:func:`suishen.app.text.is_valid_subject`; the message says which part failed)."""
    if is_valid_subject(sub):
        return
    if not isinstance(sub, str) or not sub:
        raise InvalidSubject("sub must be a non-empty string")
    if len(sub) > MAX_SUBJECT_CHARS:
        raise InvalidSubject(f"sub must be at most {MAX_SUBJECT_CHARS} characters")
    if sub != sub.strip(" "):
        raise InvalidSubject("sub must not start or end with whitespace")
    raise InvalidSubject("sub must not contain control or other non-printable characters")
