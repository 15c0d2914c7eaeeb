"""The closed list of signature algorithms, and public/private key wrappers.

Only two algorithms exist here, each bound to one key type:

=========  ===========  =========  =================================================
JOSE name  COSE alg     key type   signature bytes
=========  ===========  =========  =================================================
EdDSA      -8 (or -19)  Ed25519    64 (RFC 8032)
ES256      -7 (or -9)   P-256      64: r || s, each 32 bytes big-endian (RFC 9053 §2.1)
=========  ===========  =========  =================================================

RFC 9864 deprecated the polymorphic identifiers -7 (ES256) and -8 (EdDSA) in favour of
fully-specified ones: ESP256 (-9, ECDSA with P-256 and SHA-256) and Ed25519 (-19). A
verifier accepts both spellings of each (:meth:`Alg.from_cose`); both still bind to one
key type, so ``-19`` on a P-256 key is as wrong as ``-8`` on it. The issuer keeps
writing -7 and -8 (:attr:`Alg.cose`): every verifier deployed before RFC 9864 knows
them, and the header is the same size either way.

ECDSA signatures are malleable: if ``(r, s)`` is valid, so is ``(r, n - s)``, which
would give the same code a second byte form (a second text, a second hash, a second
entry in anything keyed on the text). :meth:`PrivateKey.sign` therefore always writes
the *low-S* form (``s <= n/2``, as Bitcoin's BIP 62/146 and libsecp256k1 do), and
:meth:`PublicKey.verify_canonical` -- what SC1 code verification uses -- refuses the
high-S twin. :meth:`PublicKey.verify` stays the plain RFC check, for foreign
signatures (the COSE working group examples) that were never normalised. Ed25519 is
not malleable this way (RFC 8032 requires ``S < L``; ``cryptography`` enforces it).

There is no "none", no HMAC, and no ES256 with any curve but P-256 (the strict issuer
profile: a vector that pairs ES512 with P-256 is refused). Anything else is
:class:`UnsupportedAlgorithm`.

``kid``: the first :data:`KID_BYTES` bytes of the RFC 7638 JWK thumbprint (SHA-256 over
the canonical JSON of the required public members), written as lower-case hex in JWKs
and CLIs and as raw bytes in COSE headers. Two bytes keep codes small; a key set refuses a
new key whose kid collides with one it holds, so kids are unique where they are used.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from suishen.errors import KeyManagementError

KID_BYTES = 2
SIGNATURE_BYTES = 64


class UnsupportedAlgorithm(KeyManagementError):
    """An algorithm or key type outside the closed list."""


class Alg(StrEnum):
    """Signature algorithms, by their JOSE names."""

    EDDSA = "EdDSA"
    ES256 = "ES256"

    @property
    def cose(self) -> int:
        """The COSE algorithm identifier."""
        return _COSE_BY_ALG[self]

    @classmethod
    def from_cose(cls, value: object) -> Alg:
        """Map a COSE ``alg`` header value (-7 or -9: ES256, -8 or -19: EdDSA); raise
        :class:`UnsupportedAlgorithm` for anything else."""
        if isinstance(value, int) and not isinstance(value, bool) and value in _ALG_BY_COSE:
            return _ALG_BY_COSE[value]
        raise UnsupportedAlgorithm(f"COSE algorithm {value!r} is not accepted")

    @classmethod
    def parse(cls, value: object) -> Alg:
        """Map a JOSE ``alg`` name; raise :class:`UnsupportedAlgorithm` otherwise."""
        for alg in cls:
            if value == alg.value:
                return alg
        raise UnsupportedAlgorithm(f"algorithm {value!r} is not accepted")


_EDDSA, _ES256 = Alg.EDDSA, Alg.ES256
_COSE_BY_ALG = {Alg.EDDSA: -8, Alg.ES256: -7}  # what the issuer writes
# Closed list of what verifiers accept: the polymorphic identifiers and RFC 9864's
# fully-specified ones (ESP256 -9, Ed25519 -19), each naming one key type.
COSE_ESP256, COSE_ED25519 = -9, -19
_ALG_BY_COSE = {-7: Alg.ES256, COSE_ESP256: Alg.ES256, -8: Alg.EDDSA, COSE_ED25519: Alg.EDDSA}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_ORDER = P256_ORDER // 2


def b64u(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError("base64url value must be a string")
    stripped = text.rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key bound to exactly one algorithm."""

    alg: Alg
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

    def __post_init__(self) -> None:
        # The binding verify() relies on: it dispatches on alg, not on the key's type.
        expected = ed25519.Ed25519PublicKey if self.alg is _EDDSA else ec.EllipticCurvePublicKey
        if not isinstance(self.key, expected):
            raise UnsupportedAlgorithm(f"a {self.alg} key must be a {expected.__name__}")

    @classmethod
    def from_raw(cls, alg: Alg, raw: bytes) -> PublicKey:
        """Ed25519: 32 raw bytes; P-256: the 65-byte uncompressed SEC1 point."""
        try:
            if alg is Alg.EDDSA:
                return cls(alg, ed25519.Ed25519PublicKey.from_public_bytes(raw))
            return cls(alg, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw))
        except ValueError as exc:
            raise KeyManagementError(f"invalid {alg} public key") from exc

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> PublicKey:
        """Import a public JWK; the ``alg`` member, when present, must match the key type."""
        if not isinstance(jwk, dict):
            raise KeyManagementError("JWK is not an object")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        try:
            if kty == "OKP" and crv == "Ed25519":
                alg, raw = Alg.EDDSA, b64u_decode(jwk["x"])
            elif kty == "EC" and crv == "P-256":
                x, y = b64u_decode(jwk["x"]), b64u_decode(jwk["y"])
                if len(x) != 32 or len(y) != 32:
                    raise KeyManagementError("P-256 coordinates must be 32 bytes")
                alg, raw = Alg.ES256, b"\x04" + x + y
            else:
                raise UnsupportedAlgorithm(f"key type {kty!r}/{crv!r} is not accepted")
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyManagementError("JWK lacks valid public coordinates") from exc
        if "alg" in jwk and jwk["alg"] != alg.value:
            raise UnsupportedAlgorithm(f"JWK alg {jwk['alg']!r} does not match its key type")
        return cls.from_raw(alg, raw)

    @property
    def raw(self) -> bytes:
        """Raw public bytes (see :meth:`from_raw`)."""
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def jwk_members(self) -> dict[str, str]:
        """The RFC 7638 required members, in lexicographic order."""
        raw = self.raw
        if self.alg is Alg.EDDSA:
            return {"crv": "Ed25519", "kty": "OKP", "x": b64u(raw)}
        return {"crv": "P-256", "kty": "EC", "x": b64u(raw[1:33]), "y": b64u(raw[33:65])}

    def thumbprint(self) -> bytes:
        """RFC 7638 JWK thumbprint (SHA-256)."""
        canonical = json.dumps(self.jwk_members(), separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(canonical.encode("ascii")).digest()

    def kid_bytes(self) -> bytes:
        """The short key id carried in code headers."""
        return self.thumbprint()[:KID_BYTES]

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (64 raw bytes) is valid for ``message``.

        Accepts either form of an ECDSA signature; see :meth:`verify_canonical`."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            if self.alg is _EDDSA:  # the key type is bound to alg (see from_raw)
                self.key.verify(signature, message)  # type: ignore[call-arg]
            else:
                self.key.verify(  # type: ignore[call-arg]
                    encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                         int.from_bytes(signature[32:], "big")),
                    message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    def verify_canonical(self, signature: bytes, message: bytes) -> bool:
        """Like :meth:`verify`, but MUST refuse an ECDSA signature whose ``s`` is above
        half the group order (the malleable twin of a low-S signature), so that one
        signed content has exactly one valid byte form. What SC1 codes are checked with.
        """
        if self.alg is _ES256 and (
            len(signature) != SIGNATURE_BYTES
            or int.from_bytes(signature[32:], "big") > _P256_HALF_ORDER
        ):
            return False
        return self.verify(signature, message)


def low_s(signature: bytes) -> bytes:
    """The low-S form of a raw 64-byte P-256 signature ``r || s``: ``s`` replaced by
    ``n - s`` when ``s > n/2`` (both verify; only the low form is canonical)."""
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    if s > _P256_HALF_ORDER:
        s = P256_ORDER - s
    return r + s.to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A signing key bound to exactly one algorithm."""

    alg: Alg
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, alg: Alg) -> PrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        if alg is Alg.EDDSA:
            return cls(alg, ed25519.Ed25519PrivateKey.generate())
        return cls(alg, ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_raw(cls, alg: Alg, raw: bytes) -> PrivateKey:
        """Ed25519: the 32-byte seed; P-256: the 32-byte private scalar."""
        try:
            if alg is Alg.EDDSA:
                return cls(alg, ed25519.Ed25519PrivateKey.from_private_bytes(raw))
            if len(raw) != 32:
                raise ValueError("P-256 private scalar must be 32 bytes")
            return cls(alg, ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
        except ValueError as exc:
            raise KeyManagementError(f"invalid {alg} private key") from exc

    @property
    def raw(self) -> bytes:
        """Raw private bytes (see :meth:`from_raw`)."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        return self.key.private_numbers().private_value.to_bytes(32, "big")

    def public(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(self.alg, self.key.public_key())

    def sign(self, message: bytes) -> bytes:
        """A 64-byte raw signature; for ES256 always in low-S form (see the module
        docstring), so that :meth:`PublicKey.verify_canonical` accepts it."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(message)
        r, s = decode_dss_signature(self.key.sign(message, _ECDSA_SHA256))
        if s > _P256_HALF_ORDER:  # low-S, as low_s() does, on the integers already decoded
            s = P256_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
