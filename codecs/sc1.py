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
    20 00                      kind (-1, private): 0 personal, 2 enterprise 2
                                                                    total   37

Private claim labels (negative integers, RFC 8392 §4):

* ``-1`` kind: ``0`` personal (server-signed), ``1`` offline (device-signed: its own
  layout, :mod:`suishen.codecs.offline`), ``2`` enterprise (server-signed).

``sub`` is never the citizen's handle in clear: it is the 10-byte handle XORed with a
pad derived from the code's ``iat`` and ``cti`` under a blinding key that only the
service holds (see :mod:`suishen.keys.blinding`). Decoding is strict: unknown claims,
missing claims, wrong types or sizes are :class:`CodecError`.

Enterprise codes (kind 2, SPEC.md §6.3)
---------------------------------------
Byte for byte the personal layout above — 116 bytes, 178 characters, QR 7-M — with
``kind = 2`` (the claims end ``20 02``) and ``sub`` = the **agency handle** blinded per
code exactly like a citizen's handle. An agency handle is a random 10-byte value the
service allocates per (enterprise, agent) pair (``docs/enterprise.md``); only the
service maps it back to the enterprise and the agent. So the code carries the
enterprise and the agent in 10 bytes, and to anyone without the blinding key the
``sub`` of two codes of one enterprise (or one agent) looks like that of two
enterprises': a one-time pad per ``cti``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any

from suishen.codecs import base45, cbor, cose, offline, venue
from suishen.errors import CodecError, UnsupportedVersion

PREFIX = "SC1:"
MAX_CODE_CHARS = 1024
HANDLE_BYTES = 10
CTI_BYTES = 8
KID_MIN_BYTES, KID_MAX_BYTES = 1, 16
CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI, CLAIM_CNF = 2, 4, 5, 6, 7, 8
CLAIM_KIND = -1
_UINT32_MAX = 0xFFFFFFFF
_PROFILE_HEADER_LABELS = frozenset({cose.HDR_ALG, cose.HDR_KID})
_PERSONAL_LABELS = frozenset({CLAIM_SUB, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_KIND})


class Kind(IntEnum):
    """Code kinds, as carried in the private ``kind`` claim."""

    PERSONAL = 0
    OFFLINE = 1
    ENTERPRISE = 2

    @property
    def label(self) -> str:
        """The lower-case name used in APIs and scene policies."""
        return _KIND_LABELS[self]


_KIND_LABELS = {kind: kind._name_.lower() for kind in Kind}  # read per verification


@dataclass(frozen=True, slots=True)
class PersonalClaims:
    """The claims of a server-signed code (personal or enterprise: one layout); ``sub``
    is the *blinded* handle (a citizen's, or an agency's)."""

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


@lru_cache(maxsize=64)
def protected_header(alg_cose: int, kid: bytes) -> bytes:
    """The serialised protected header ``{1: alg, 4: kid}`` (memoised: a signing key
    issues every code with the same one)."""
    return cbor.dumps({cose.HDR_ALG: alg_cose, cose.HDR_KID: kid})


def parse(text: str) -> Envelope:
    """Decode an SC1 code up to (not including) signature and claims checks."""
    data = from_text(text)
    envelope = _parse_personal_layout(data)
    if envelope is not None:
        return envelope
    return _parse_general(data)


def parse_code(text: str) -> Envelope | offline.OfflineCode | venue.VenueCode:
    """Like :func:`parse`, for every kind of code: a server-signed code comes back as its
    :class:`Envelope`, an offline code (protected header ``{alg, kcwt}``) decoded by
    :mod:`suishen.codecs.offline`, a venue code (*untagged* COSE_Sign1, first byte
    ``84`` instead of the tag's ``d2``) by :mod:`suishen.codecs.venue`. Typed errors as
    :func:`parse`."""
    data = from_text(text)
    envelope = _parse_personal_layout(data)
    if envelope is not None:
        return envelope
    if venue.is_venue_layout(data):
        return venue.parse_bytes(data)
    fast = offline.parse_fast(data)
    if fast is not None:
        return fast
    message = cose.decode_sign1(data)
    if offline.HDR_KCWT in message.protected:
        return offline.parse(message)
    return _envelope_of(message)


def _parse_general(data: bytes) -> Envelope:
    """The general path of :func:`parse` (after the text layer): decides every input."""
    return _envelope_of(cose.decode_sign1(data))


def _envelope_of(message: cose.Sign1) -> Envelope:
    if message.unprotected:
        # The profile puts everything in the protected bucket; an unprotected alg or kid
        # would be attacker-controlled.
        raise CodecError("SC1 codes carry no unprotected header parameters")
    if message.protected.keys() != _PROFILE_HEADER_LABELS:
        raise CodecError("SC1 protected header must hold exactly alg and kid")
    alg, kid = message.protected[cose.HDR_ALG], message.protected[cose.HDR_KID]
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise CodecError("alg is not an integer")
    if not isinstance(kid, bytes) or not KID_MIN_BYTES <= len(kid) <= KID_MAX_BYTES:
        raise CodecError("kid is not a short byte string")
    return Envelope(message, alg, kid)


# --- exact-layout fast paths ----------------------------------------------------------
# Nearly every code a verifier sees is a personal code in exactly the layout documented
# at the top of this module. For those bytes, one regular-expression match replaces some
# twenty calls of the generic CBOR decoder (about half of the verifier's own work).
#
# Invariant: a fast path MUST accept only input that the general path accepts, and MUST
# return an equal result; for anything else it returns None and the general path decides
# (and names the error). Each pattern pins every head byte, so a match implies every
# check of the general path: the tag, array and map sizes, the bstr lengths, no trailing
# bytes, exactly the labels alg/kid (resp. sub/exp/iat/cti/kind) once each, an integer
# alg (only one-byte integer heads match), a 2-byte kid, uint32 NumericDates and
# kind = personal or enterprise. The one value check the pattern cannot make, exp > iat, falls back.
# tests/test_sc1_fast_path.py checks the invariant property-based (hypothesis) over
# valid, mutated, truncated and random input. It stays because it pays:
# benchmarks/sc1_fast_path_bench.py measured parse + claims at 10 us against 51 us for
# the general path, which is 16 % of a whole verification (213 us against 253 us, with
# the signature check) on the project machine, 2026-12-02.
_PERSONAL_COSE_LAYOUT = re.compile(
    rb"\xd2\x84"  # tag 18, array(4)
    rb"\x47(\xa2\x01([\x00-\x17\x20-\x37])\x04\x42(..))"  # protected {1: alg, 4: kid(2)}
    rb"\xa0"  # unprotected {}
    rb"\x58\x25(.{37})"  # payload bstr(37)
    rb"\x58\x40(.{64})",  # signature bstr(64)
    re.DOTALL,
)
_PERSONAL_CLAIMS_LAYOUT = re.compile(
    rb"\xa5"  # map(5)
    rb"\x02\x4a(.{10})"  # sub: bstr(10)
    rb"\x04\x1a(.{4})"  # exp: uint32
    rb"\x06\x1a(.{4})"  # iat: uint32
    rb"\x07\x48(.{8})"  # cti: bstr(8)
    rb"\x20([\x00\x02])",  # kind (-1): 0 personal, 2 enterprise
    re.DOTALL,
)


def _parse_personal_layout(data: bytes) -> Envelope | None:
    match = _PERSONAL_COSE_LAYOUT.fullmatch(data)
    if match is None:
        return None
    protected_raw, alg_head, kid, payload, signature = match.groups()
    head = alg_head[0]
    alg = head if head < 0x18 else 0x1F - head  # major 0: n; major 1 (0x20 + n): -1 - n
    message = cose.Sign1(
        protected_raw, {cose.HDR_ALG: alg, cose.HDR_KID: kid}, {}, payload, signature
    )
    return Envelope(message, alg, kid)


def _personal_claims_layout(payload: bytes) -> PersonalClaims | None:
    match = _PERSONAL_CLAIMS_LAYOUT.fullmatch(payload)
    if match is None:
        return None
    sub, exp_raw, iat_raw, cti, kind = match.groups()
    exp, iat = int.from_bytes(exp_raw, "big"), int.from_bytes(iat_raw, "big")
    if exp <= iat:
        return None
    # Positional: a frozen dataclass binds keywords at about twice the cost (issue 13).
    return PersonalClaims(sub, iat, exp, cti,
                          Kind.ENTERPRISE if kind == b"\x02" else Kind.PERSONAL)


# The documented claims layout as one struct: what cbor.dumps() of the claims map gives
# when both NumericDates need a uint32 head (every date since 1970-01-01T18:12:16Z) and
# the kind fits the initial byte; tests/test_issuer_fast_path.py checks it against
# cbor.dumps over many inputs.
_CLAIMS_LAYOUT = struct.Struct(">3s10s2sI2sI2s8s2B")


def encode_personal_claims(claims: PersonalClaims) -> bytes:
    """Serialise personal claims in the documented order."""
    _check_personal(claims.sub, claims.iat, claims.exp, claims.cti)
    kind = int(claims.kind)
    if claims.iat > 0xFFFF and 0 <= kind < 0x18:  # exp > iat; both are uint32 (checked)
        return _CLAIMS_LAYOUT.pack(b"\xa5\x02\x4a", claims.sub, b"\x04\x1a", claims.exp,
                                   b"\x06\x1a", claims.iat, b"\x07\x48", claims.cti,
                                   0x20, kind)
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
    if type(payload) is bytes:  # a bytearray must come out as bytes: the general path
        fast = _personal_claims_layout(payload)
        if fast is not None:
            return fast
    return _decode_claims_general(payload)


def _decode_claims_general(payload: bytes) -> PersonalClaims:
    """The general path of :func:`decode_claims`: decides every input."""
    claims = cbor.loads(payload)
    if not isinstance(claims, dict):
        raise CodecError("claims are not a map")
    kind = claims.get(CLAIM_KIND)
    if kind == Kind.PERSONAL and not isinstance(kind, bool):
        return _decode_personal(claims, Kind.PERSONAL)
    if kind == Kind.ENTERPRISE and not isinstance(kind, bool):
        return _decode_personal(claims, Kind.ENTERPRISE)
    if kind == Kind.OFFLINE and not isinstance(kind, bool):
        raise UnsupportedVersion("offline codes are not supported by this version")
    raise CodecError("unknown code kind")


def _decode_personal(claims: dict[Any, Any], kind: Kind) -> PersonalClaims:
    if claims.keys() != _PERSONAL_LABELS:
        raise CodecError(f"{kind.label} code claims are not exactly sub, exp, iat, cti, kind")
    sub, exp, iat, cti = claims[CLAIM_SUB], claims[CLAIM_EXP], claims[CLAIM_IAT], claims[CLAIM_CTI]
    _check_personal(sub, iat, exp, cti)
    return PersonalClaims(sub=sub, iat=iat, exp=exp, cti=cti, kind=kind)


def _check_personal(sub: object, iat: object, exp: object, cti: object) -> None:
    if not isinstance(sub, bytes) or len(sub) != HANDLE_BYTES:
        raise CodecError("sub is not a 10-byte string")
    if not isinstance(cti, bytes) or len(cti) != CTI_BYTES:
        raise CodecError("cti is not an 8-byte string")
    if not _is_numeric_date(iat):
        raise CodecError("iat is not a NumericDate")
    if not _is_numeric_date(exp):
        raise CodecError("exp is not a NumericDate")
    assert isinstance(iat, int) and isinstance(exp, int)
    if exp <= iat:
        raise CodecError("exp is not after iat")


def _is_numeric_date(value: object) -> bool:
    """A non-negative integer (not a bool) that fits the uint32 the layout gives it."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT32_MAX
