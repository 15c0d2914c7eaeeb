"""The SC1 code: text layout, COSE header profile and CWT claims, byte by byte.

Text
----
``SC1:`` followed by base45 (RFC 9285) of a tagged COSE_Sign1 message. The text uses only
the QR alphanumeric alphabet. ``SC1`` is the format version: any other prefix is
:class:`UnsupportedVersion` (never guessed); text longer than :data:`MAX_CODE_CHARS` is
refused before anything is decoded.

COSE_Sign1 of a personal code (116 bytes in every case, both algorithms)
---------------------------------------------------------------------------
::

    d2                         tag 18 (COSE_Sign1)                          1
    84                         array(4)                                     1
    47 a2 01 26 04 42 kk kk    protected: bstr(7) {1: alg, 4: kid(2)}       8
                               (alg -7 = 0x26 ES256, -8 = 0x27 EdDSA)
    a0                         unprotected: {}                              1
    58 25 <37 bytes>           payload: bstr(37), the claims below          2 + 37
    58 40 <64 bytes>           signature: bstr(64)                          2 + 64
                                                                    total 116

116 bytes are 174 base45 characters; with ``SC1:`` that is 178, exactly the capacity of
QR version 7 at error-correction level M in alphanumeric mode.

Claims (a CWT claims set, RFC 8392), in this order::

    a5                         map(5)                                       1
    02 4a <10 bytes>           sub (2): blinded subject handle              12
    04 1a <uint32>             exp (4): expiry, NumericDate                 6
    06 1a <uint32>             iat (6): issued at, NumericDate              6
    07 48 <8 bytes>            cti (7): random code id                      10
    20 00                      kind (-1, private): 0 personal, 1 offline    2
                                                                    total   37

Private claim labels (negative integers, RFC 8392 §4):

* ``-1`` kind: ``0`` personal (server-signed), ``1`` offline (device-signed, later).

``sub`` is never the citizen's handle in clear: it is the 10-byte handle XORed with a
pad derived from the code's ``iat`` and ``cti`` under a blinding key that only the
service holds (see :mod:`suishen.keys.blinding`). Decoding is strict: unknown claims,
missing claims, wrong types or sizes are :class:`CodecError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from suishen.codecs import base45, cbor, cose
from suishen.errors import CodecError, UnsupportedVersion

PREFIX = "SC1:"
MAX_CODE_CHARS = 1024
HANDLE_BYTES = 10
CTI_BYTES = 8
KID_MIN_BYTES, KID_MAX_BYTES = 1, 16
CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI, CLAIM_CNF = 2, 4, 5, 6, 7, 8
CLAIM_KIND = -1
_UINT32_MAX = 0xFFFFFFFF


class Kind(IntEnum):
    """Code kinds, as carried in the private ``kind`` claim."""

    PERSONAL = 0
    OFFLINE = 1

    @property
    def label(self) -> str:
        """The lower-case name used in APIs and scene policies."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class PersonalClaims:
    """The claims of a personal code; ``sub`` is the *blinded* handle."""

    sub: bytes
    iat: int
    exp: int
    cti: bytes
    kind: Kind = Kind.PERSONAL


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed but unverified code: the COSE message and its profile headers."""

    message: cose.Sign1
    alg: int
    kid: bytes


def to_text(cose_bytes: bytes) -> str:
    """``SC1:`` + base45."""
    return PREFIX + base45.encode(cose_bytes)


def from_text(text: str) -> bytes:
    """The COSE bytes inside an SC1 code text; typed errors for anything else."""
    if not isinstance(text, str):
        raise CodecError("a code is text")
    if len(text) > MAX_CODE_CHARS:
        raise CodecError(f"code longer than {MAX_CODE_CHARS} characters")
    if not text.startswith(PREFIX):
        head, sep, _ = text.partition(":")
        if sep and head:
            raise UnsupportedVersion(f"unknown code prefix {head[:8]!r}")
        raise UnsupportedVersion("code has no SC1: prefix")
    return base45.decode(text[len(PREFIX) :])


def protected_header(alg_cose: int, kid: bytes) -> bytes:
    """The serialised protected header ``{1: alg, 4: kid}``."""
    return cbor.dumps({cose.HDR_ALG: alg_cose, cose.HDR_KID: kid})


def parse(text: str) -> Envelope:
    """Decode an SC1 code up to (not including) signature and claims checks."""
    message = cose.decode_sign1(from_text(text))
    if message.unprotected:
        # The profile puts everything in the protected bucket; an unprotected alg or kid
        # would be attacker-controlled.
        raise CodecError("SC1 codes carry no unprotected header parameters")
    if set(message.protected) != {cose.HDR_ALG, cose.HDR_KID}:
        raise CodecError("SC1 protected header must hold exactly alg and kid")
    alg, kid = message.protected[cose.HDR_ALG], message.protected[cose.HDR_KID]
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise CodecError("alg is not an integer")
    if not isinstance(kid, bytes) or not KID_MIN_BYTES <= len(kid) <= KID_MAX_BYTES:
        raise CodecError("kid is not a short byte string")
    return Envelope(message, alg, kid)


def encode_personal_claims(claims: PersonalClaims) -> bytes:
    """Serialise personal claims in the documented order."""
    _check_personal(claims.sub, claims.iat, claims.exp, claims.cti)
    return cbor.dumps(
        {
            CLAIM_SUB: claims.sub,
            CLAIM_EXP: claims.exp,
            CLAIM_IAT: claims.iat,
            CLAIM_CTI: claims.cti,
            CLAIM_KIND: int(claims.kind),
        }
    )


def decode_claims(payload: bytes) -> PersonalClaims:
    """Strictly decode a claims payload and dispatch on its kind."""
    claims = cbor.loads(payload)
    if not isinstance(claims, dict):
        raise CodecError("claims are not a map")
    kind = claims.get(CLAIM_KIND)
    if kind == Kind.PERSONAL and not isinstance(kind, bool):
        return _decode_personal(claims)
    if kind == Kind.OFFLINE and not isinstance(kind, bool):
        raise UnsupportedVersion("offline codes are not supported by this version")
    raise CodecError("unknown code kind")


def _decode_personal(claims: dict[Any, Any]) -> PersonalClaims:
    if set(claims) != {CLAIM_SUB, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_KIND}:
        raise CodecError("personal code claims are not exactly sub, exp, iat, cti, kind")
    sub, exp, iat, cti = (claims[k] for k in (CLAIM_SUB, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI))
    _check_personal(sub, iat, exp, cti)
    return PersonalClaims(sub=sub, iat=iat, exp=exp, cti=cti, kind=Kind.PERSONAL)


def _check_personal(sub: object, iat: object, exp: object, cti: object) -> None:
    if not isinstance(sub, bytes) or len(sub) != HANDLE_BYTES:
        raise CodecError("sub is not a 10-byte string")
    if not isinstance(cti, bytes) or len(cti) != CTI_BYTES:
        raise CodecError("cti is not an 8-byte string")
    for name, value in (("iat", iat), ("exp", exp)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _UINT32_MAX:
            raise CodecError(f"{name} is not a NumericDate")
    assert isinstance(iat, int) and isinstance(exp, int)
    if exp <= iat:
        raise CodecError("exp is not after iat")
