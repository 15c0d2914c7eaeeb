"""Issuing server-signed codes (personal and enterprise: one layout, ``codecs/sc1.py``):
claims, blinding, signature, text.

Pure apart from randomness: ``cti`` comes from the OS CSPRNG unless the caller passes
one (tests pin it). Time is always a parameter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from suishen.codecs import cose, sc1
from suishen.keys.blinding import blind
from suishen.keys.signer import Signer

MIN_TTL, MAX_TTL = 5, 86_400


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A signed code and the times an app needs to show and refresh it."""

    text: str
    kid: str
    issued_at: int
    expires_at: int
    refresh_after: int
    cti: bytes
    code_kind: sc1.Kind = sc1.Kind.PERSONAL

    @property
    def kind(self) -> str:
        """``personal`` or ``enterprise`` (offline codes are made on devices)."""
        return self.code_kind.label


@dataclass(frozen=True, slots=True)
class Issuer:
    """Signs personal codes through a :class:`~suishen.keys.signer.Signer` (software
    today; a KMS or HSM signer fits the same seam) with the key's blinding secret."""

    signer: Signer
    blinding: bytes

    def __repr__(self) -> str:  # never show key material
        return f"Issuer(kid={self.kid.hex()}, alg={self.signer.algorithm})"

    @property
    def kid(self) -> bytes:
        """The signing key's id, as the code's header carries it."""
        return self.signer.kid

    def issue_personal(
        self, handle: bytes, *, now: int, ttl: int, cti: bytes | None = None,
        kind: sc1.Kind = sc1.Kind.PERSONAL,
    ) -> IssuedCode:
        """Sign a personal code for the citizen with this subject ``handle`` — or, with
        ``kind=Kind.ENTERPRISE``, an enterprise code for the agency ``handle`` (the same
        layout, ``codecs/sc1.py``).

        ``ttl`` is the lifetime in seconds (``MIN_TTL``..``MAX_TTL``); ``refresh_after``
        is half-way through it.
        """
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between {MIN_TTL} and {MAX_TTL} seconds")
        if kind not in (sc1.Kind.PERSONAL, sc1.Kind.ENTERPRISE):
            raise ValueError("the service signs personal and enterprise codes only")
        cti = os.urandom(sc1.CTI_BYTES) if cti is None else cti
        claims = sc1.PersonalClaims(
            sub=blind(handle, self.blinding, iat=now, cti=cti),
            iat=now,
            exp=now + ttl,
            cti=cti,
            kind=kind,
        )
        payload = sc1.encode_personal_claims(claims)
        protected = sc1.protected_header(self.signer.algorithm.cose, self.kid)
        signature = self.signer.sign(cose.sig_structure(protected, payload))
        text = sc1.to_text(cose.encode_sign1(protected, {}, payload, signature))
        return IssuedCode(
            text=text,
            kid=self.kid.hex(),
            issued_at=now,
            expires_at=now + ttl,
            refresh_after=now + ttl // 2,
            cti=cti,
            code_kind=kind,
        )
