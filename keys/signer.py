"""The signing seam: what code issuance and partner-token signing need from a key.

A :class:`Signer` has an algorithm, a kid and ``sign(bytes) -> bytes`` (the raw
signature: 64 bytes, ``r || s`` in low-S form for ES256, RFC 8032 for EdDSA). Code
issuance (:class:`suishen.keys.issuer.Issuer`) and partner access tokens
(:mod:`suishen.app.auth.partner_tokens`) sign only through it, so a signer whose key
never leaves a KMS or an HSM is one more class here -- issuance does not change.

:class:`SoftwareSigner` is the one that exists today: a private key unsealed into
process memory from the key set (:meth:`suishen.keys.keyset.KeySet.signer`). A remote
signer MUST return the same raw format (normalise a DER ECDSA signature with
:func:`suishen.keys.algorithms.low_s` after splitting it into ``r || s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from suishen.keys.algorithms import Alg, PrivateKey, PublicKey


class Signer(Protocol):
    """Signs with one key of one algorithm."""

    @property
    def algorithm(self) -> Alg:
        """The key's algorithm."""

    @property
    def kid(self) -> bytes:
        """The key id as raw bytes (what COSE headers carry; hex in JWTs and JWKs)."""

    def sign(self, message: bytes) -> bytes:
        """The raw signature over ``message``."""


@dataclass(frozen=True, slots=True)
class SoftwareSigner:
    """A :class:`Signer` over a private key held in this process."""

    private: PrivateKey
    key_id: bytes

    def __repr__(self) -> str:  # never show key material
        return f"SoftwareSigner(kid={self.key_id.hex()}, alg={self.private.alg})"

    @classmethod
    def from_private(cls, private: PrivateKey) -> SoftwareSigner:
        """A signer whose kid is the key's own (RFC 7638 thumbprint prefix)."""
        return cls(private, private.public().kid_bytes())

    @property
    def algorithm(self) -> Alg:
        """The key's algorithm."""
        return self.private.alg

    @property
    def kid(self) -> bytes:
        """The key id."""
        return self.key_id

    def public(self) -> PublicKey:
        """The matching verification key."""
        return self.private.public()

    def sign(self, message: bytes) -> bytes:
        """A raw signature (low-S for ES256)."""
        return self.private.sign(message)
