"""The offline code: a device-signed COSE_Sign1 around a service-signed credential.

A phone with no network makes its own codes (SPEC.md §6.1). The service has issued it,
ahead of time, one *offline credential* per time slot: a CWT (RFC 8392) signed by the
code-signing key that binds the citizen's blinded subject to one device key (``cnf``,
RFC 8747) for one slot. A code is then a COSE_Sign1 signed by that slot's device key
whose protected header carries the credential in the ``kcwt`` header parameter (label
13, registered by RFC 9528 §10.6 for exactly this: "a CWT containing a COSE_Key in a
'cnf' claim"), and whose payload is the device's timestamp and counter. Everything is
standard COSE; only two claim labels are private (negative, RFC 8392 §4).

This module knows structure only. Signing and verifying with keys live in
:mod:`suishen.keys.offline`; the gate's decisions in :mod:`suishen.verifiers`.

Text
----
``SC1:`` + base45 (RFC 9285) of the tagged COSE_Sign1 below, like a personal code. The
``SC1`` format version does not change: the two kinds are told apart by their protected
header (``{alg, kid}`` for a server-signed code, ``{alg, kcwt}`` for an offline code),
so a verifier never guesses — and no byte is spent on a ``kind`` claim (the byte budget
below has none to spare).

The code (device-signed COSE_Sign1), worst case 240 bytes
---------------------------------------------------------
::

    d2                          tag 18 (COSE_Sign1)                                1
    84                          array(4)                                           1
    58 9e                       protected: bstr(158)                               2
      a2                          map(2)                                           1
      01 26                       alg (1): -7 ES256 or -9 ESP256 (device key)      2
      0d                          kcwt (13): the credential below, 154 bytes       1 + 154
    a0                          unprotected: {}                                    1
    4a                          payload: bstr(10) (9 when counter < 24)            1
      a2                          map(2)                                           1
      06 1a <uint32>              iat (6): the device's clock, NumericDate         6
      22 <uint8>                  counter (-3): codes made in this second, 0..255  1 + 1
    58 40 <64 bytes>            signature by the slot's device key (P-256)         2 + 64
                                                                          total    240

240 bytes are 360 base45 characters; with ``SC1:`` 364, within QR version 11 at level M
(366). The floor is set by content, not by CBOR: two 64-byte signatures and a 33-byte
compressed key are 161 bytes, 242 characters before a subject, a slot or a time is
written, so QR version 10-M (311 characters, 204 bytes) is out of reach for any format
that carries a service signature, a device key and a device signature (the issue's
"aimed at 10-M" is not met; see docs/offline.md).

The credential (service-signed CWT, untagged COSE_Sign1 inside ``kcwt``), 154 bytes
---------------------------------------------------------------------------------
::

    84                          array(4)                                           1
    47 a2 01 26 04 42 kk kk     protected: {1: alg, 4: kid(2)} (service key)       8
                                (alg -7 ES256, -8 EdDSA, -9 ESP256, -19 Ed25519)
    a0                          unprotected: {}                                    1
    58 4c                       payload: bstr(76)                                  2
      a5                          map(5)                                           1
      02 4a <10 bytes>            sub (2): the subject handle, blinded             12
      04 1a <uint32>              exp (4): end of the slot                         6
      05 1a <uint32>              nbf (5): start of the slot                       6
      08 a1 01 a4                 cnf (8): {1 (COSE_Key): map(4)                   4
         01 02                      kty (1): 2 EC2                                 2
         20 01                      crv (-1): 1 P-256                              2
         21 58 20 <32 bytes>        x (-2): the device key's x                     35
         22 f4|f5                   y (-3): sign bit (point compression, RFC 9053) 2
      21 1a <uint32>              status (-2): index in the slot's status list     6
    58 40 <64 bytes>            signature by the service's code-signing key        2 + 64
                                                                          total    154

The credential's signature covers ``["Signature1", protected, external_aad, payload]``
with ``external_aad`` = :data:`CREDENTIAL_AAD`: a credential is signed by the same key as
personal codes, and the distinct AAD makes it impossible to present one as the other
(domain separation at zero bytes on the wire). The device signature uses an empty AAD.

Claims and their meaning
------------------------
* ``sub``: the citizen's 10-byte handle XOR a pad keyed by the service's blinding secret
  over ``(nbf, status)``; ``(slot, status index)`` is unique, so pads never repeat and
  two credentials of one citizen look like two citizens' (see
  :mod:`suishen.keys.offline`).
* ``status``: a random index, unique within its slot, into that slot's revocation
  status list in the trust bundle (IETF Token Status List style; the draft's CWT
  ``status`` claim, 65535 with text keys, would cost 25 bytes, so the index travels in a
  private claim and the list is found by the slot).
* ``counter``: distinguishes two codes made by one device within the same second; with
  the credential and ``iat`` it names a code for replay memories.

Unlinkable across slots: each slot has its own device key, credential, index and
blinded ``sub``; what two codes of one citizen from two slots share (the header bytes,
the service's ``kid``) every other citizen's codes share too.

Decoding is strict: exact label sets, exact types and sizes, a point-compressed P-256
key, ``nbf < exp``; anything else is :class:`~suishen.errors.CodecError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from suishen.codecs import cbor, cose
from suishen.errors import CodecError

HDR_KCWT = 13
CREDENTIAL_AAD = b"SC1 offline credential"
HANDLE_BYTES = 10
COORD_BYTES = 32
KID_MIN_BYTES, KID_MAX_BYTES = 1, 16
MAX_COUNTER = 255
MAX_STATUS_INDEX = 0xFFFFFFFF
_UINT32_MAX = 0xFFFFFFFF

CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CNF = 2, 4, 5, 6, 8
CLAIM_STATUS, CLAIM_COUNTER = -2, -3
CNF_COSE_KEY = 1
KEY_KTY, KEY_CRV, KEY_X, KEY_Y = 1, -1, -2, -3
KTY_EC2, CRV_P256 = 2, 1

_CREDENTIAL_LABELS = frozenset({CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_CNF, CLAIM_STATUS})
_CODE_LABELS = frozenset({CLAIM_IAT, CLAIM_COUNTER})
_KEY_LABELS = frozenset({KEY_KTY, KEY_CRV, KEY_X, KEY_Y})
_CREDENTIAL_HEADER = frozenset({cose.HDR_ALG, cose.HDR_KID})
_CODE_HEADER = frozenset({cose.HDR_ALG, HDR_KCWT})


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A P-256 public key in point-compressed form: ``x`` and the parity of ``y``."""

    x: bytes
    y_odd: bool

    def sec1(self) -> bytes:
        """The 33-byte compressed SEC1 encoding (``02``/``03`` || x)."""
        return (b"\x03" if self.y_odd else b"\x02") + self.x


@dataclass(frozen=True, slots=True)
class CredentialClaims:
    """The claims of an offline credential; ``sub`` is the *blinded* handle."""

    sub: bytes
    nbf: int
    exp: int
    device_key: DeviceKey
    status_index: int


@dataclass(frozen=True, slots=True)
class CodeClaims:
    """What the device signs in each code: its clock and a per-second counter."""

    iat: int
    counter: int = 0


@dataclass(frozen=True, slots=True)
class Credential:
    """A parsed, unverified credential."""

    protected_raw: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes
    claims: CredentialClaims

    def to_be_signed(self) -> bytes:
        """The Sig_structure the service's signature covers (with the credential AAD)."""
        return cose.sig_structure(self.protected_raw, self.payload, CREDENTIAL_AAD)

    @property
    def ident(self) -> tuple[bytes, int, int]:
        """``(kid, nbf, status index)``: names the credential (unique per slot and key)."""
        return (self.kid, self.claims.nbf, self.claims.status_index)


@dataclass(frozen=True, slots=True)
class OfflineCode:
    """A parsed, unverified offline code: the outer message, its credential, its claims."""

    message: cose.Sign1
    alg: int
    credential: Credential
    claims: CodeClaims

    def to_be_signed(self) -> bytes:
        """The Sig_structure the device signature covers."""
        return self.message.to_be_signed()


# --- encoding ------------------------------------------------------------------------
def encode_credential_claims(claims: CredentialClaims) -> bytes:
    """Serialise credential claims in the documented order."""
    _check_credential(claims)
    key = claims.device_key
    return cbor.dumps(
        {
            CLAIM_SUB: claims.sub,
            CLAIM_EXP: claims.exp,
            CLAIM_NBF: claims.nbf,
            CLAIM_CNF: {
                CNF_COSE_KEY: {
                    KEY_KTY: KTY_EC2,
                    KEY_CRV: CRV_P256,
                    KEY_X: key.x,
                    KEY_Y: key.y_odd,
                }
            },
            CLAIM_STATUS: claims.status_index,
        }
    )


def credential_protected(alg_cose: int, kid: bytes) -> bytes:
    """The credential's protected header ``{1: alg, 4: kid}``."""
    return cbor.dumps({cose.HDR_ALG: alg_cose, cose.HDR_KID: kid})


def credential_to_be_signed(protected_raw: bytes, payload: bytes) -> bytes:
    """What the service signs for a credential."""
    return cose.sig_structure(protected_raw, payload, CREDENTIAL_AAD)


def encode_credential(protected_raw: bytes, payload: bytes, signature: bytes) -> bytes:
    """The credential as an untagged COSE_Sign1 array (the value of ``kcwt``)."""
    return cbor.dumps([protected_raw, {}, payload, signature])


def encode_code_claims(claims: CodeClaims) -> bytes:
    """Serialise the device's claims."""
    _check_code_claims(claims.iat, claims.counter)
    return cbor.dumps({CLAIM_IAT: claims.iat, CLAIM_COUNTER: claims.counter})


def code_protected(alg_cose: int, credential_raw: bytes) -> bytes:
    """The code's protected header ``{1: alg, 13: credential}``.

    The credential is embedded as a CBOR item (not re-wrapped in a byte string), so the
    header is built from the credential's exact bytes.
    """
    head = cbor.dumps({cose.HDR_ALG: alg_cose})  # a1 01 xx
    return b"\xa2" + head[1:] + bytes((HDR_KCWT,)) + credential_raw


# --- decoding ------------------------------------------------------------------------
def is_offline(message: cose.Sign1) -> bool:
    """True when a COSE_Sign1's protected header is the offline profile's."""
    return HDR_KCWT in message.protected


def parse(message: cose.Sign1) -> OfflineCode:
    """Strictly decode an offline code from its (already decoded) outer COSE_Sign1."""
    if message.unprotected:
        raise CodecError("offline codes carry no unprotected header parameters")
    if message.protected.keys() != _CODE_HEADER:
        raise CodecError("offline code protected header must hold exactly alg and kcwt")
    alg = message.protected[cose.HDR_ALG]
    if not _is_int(alg):
        raise CodecError("alg is not an integer")
    credential = _parse_credential(message.protected[HDR_KCWT])
    claims = decode_code_claims(message.payload)
    return OfflineCode(message=message, alg=alg, credential=credential, claims=claims)


# --- exact-layout fast path ------------------------------------------------------------
# As for personal codes (codecs/sc1.py), nearly every offline code a gate sees has exactly
# the documented layout (a status index >= 2^16 takes the 4-byte head; a counter below 24
# one byte). For those bytes one regular-expression match replaces the five CBOR decodes
# of the general path (140 us -> about 20 us, a fifth of a gate's decision; see
# benchmarks/offline_bench.py).
#
# Invariant: the fast path MUST accept only input that the general path accepts and MUST
# return an equal result; for anything else it returns None and the general path decides.
# Every head byte is pinned, so a match implies every structural check of the general
# path (tag, array and map sizes, the exact label sets once each, bstr lengths, no
# trailing bytes, integer algs (one-byte heads only), a 2-byte kid, an empty credential
# unprotected map, uint32 times and index, a compressed P-256 key, counter 0..255). The
# one value check a pattern cannot make, nbf < exp, falls back.
# tests/test_offline_fast_path.py checks the invariant property-based.
_OFFLINE_LAYOUT = re.compile(
    rb"\xd2\x84\x58\x9e"  # tag 18, array(4), protected bstr(158)
    rb"\xa2\x01([\x00-\x17\x20-\x37])\x0d"  # {1: alg, 13: credential
    rb"\x84\x47(\xa2\x01[\x00-\x17\x20-\x37]\x04\x42(..))"  # [bstr(7) {1: alg, 4: kid}
    rb"\xa0\x58\x4c("  # {}, bstr(76) claims:
    rb"\xa5\x02\x4a(.{10})\x04\x1a(.{4})\x05\x1a(.{4})"  # sub, exp, nbf
    rb"\x08\xa1\x01\xa4\x01\x02\x20\x01\x21\x58\x20(.{32})\x22([\xf4\xf5])"  # cnf
    rb"\x21\x1a(.{4}))"  # status
    rb"\x58\x40(.{64})"  # credential signature]}
    rb"\xa0"  # unprotected {}
    rb"(?:\x49(\xa2\x06\x1a(.{4})\x22([\x00-\x17]))"  # payload {iat, counter < 24}
    rb"|\x4a(\xa2\x06\x1a(.{4})\x22\x18(.)))"  # or counter as one more byte
    rb"\x58\x40(.{64})",  # device signature
    re.DOTALL,
)


def parse_fast(data: bytes) -> OfflineCode | None:
    """The exact-layout fast path (see above): an equal result, or None."""
    match = _OFFLINE_LAYOUT.fullmatch(data)
    if match is None:
        return None
    (alg_head, cred_protected, kid, cred_payload, sub, exp_raw, nbf_raw, x, y, status_raw,
     cred_sig, payload_a, iat_a, counter_a, payload_b, iat_b, counter_b, signature) = (
        match.groups()
    )
    exp, nbf = int.from_bytes(exp_raw, "big"), int.from_bytes(nbf_raw, "big")
    if exp <= nbf:
        return None
    cred_alg_head = cred_protected[2]  # a2 01 <alg> 04 42 <kid>
    claims = CredentialClaims(
        sub=sub,
        nbf=nbf,
        exp=exp,
        device_key=DeviceKey(x=x, y_odd=y == b"\xf5"),
        status_index=int.from_bytes(status_raw, "big"),
    )
    credential = Credential(
        cred_protected, _small_int(cred_alg_head), kid, cred_payload, cred_sig, claims
    )
    if payload_a is not None:
        payload, iat, counter = payload_a, int.from_bytes(iat_a, "big"), counter_a[0]
    else:
        payload, iat, counter = payload_b, int.from_bytes(iat_b, "big"), counter_b[0]
    alg = _small_int(alg_head[0])
    protected_raw = data[4:162]
    protected = {
        cose.HDR_ALG: alg,
        HDR_KCWT: [cred_protected, {}, cred_payload, cred_sig],
    }
    message = cose.Sign1(protected_raw, protected, {}, payload, signature)
    return OfflineCode(message, alg, credential, CodeClaims(iat=iat, counter=counter))


def _small_int(head: int) -> int:
    """A one-byte CBOR integer head: major 0 (``n``) or major 1 (``-1 - n``)."""
    return head if head < 0x18 else 0x1F - head


def parse_bytes(data: bytes) -> OfflineCode:
    """Decode an offline code's COSE bytes: the fast path, else the general one."""
    fast = parse_fast(data) if type(data) is bytes else None
    if fast is not None:
        return fast
    message = cose.decode_sign1(data)
    if not is_offline(message):
        raise CodecError("not an offline code")
    return parse(message)


def decode_code_claims(payload: bytes) -> CodeClaims:
    """Strictly decode the device's claims."""
    item = cbor.loads(payload)
    if not isinstance(item, dict) or item.keys() != _CODE_LABELS:
        raise CodecError("offline code claims are not exactly iat and counter")
    iat, counter = item[CLAIM_IAT], item[CLAIM_COUNTER]
    _check_code_claims(iat, counter)
    return CodeClaims(iat=iat, counter=counter)


def decode_credential_claims(payload: bytes) -> CredentialClaims:
    """Strictly decode credential claims."""
    item = cbor.loads(payload)
    if not isinstance(item, dict) or item.keys() != _CREDENTIAL_LABELS:
        raise CodecError("credential claims are not exactly sub, exp, nbf, cnf, status")
    cnf = item[CLAIM_CNF]
    if not isinstance(cnf, dict) or cnf.keys() != {CNF_COSE_KEY}:
        raise CodecError("cnf must hold exactly one COSE_Key")
    key = cnf[CNF_COSE_KEY]
    if not isinstance(key, dict) or key.keys() != _KEY_LABELS:
        raise CodecError("the confirmation key is not a compressed EC2 COSE_Key")
    kty, crv = key[KEY_KTY], key[KEY_CRV]
    if not (_is_int(kty) and _is_int(crv) and kty == KTY_EC2 and crv == CRV_P256):
        raise CodecError("the confirmation key is not an EC2 P-256 key")
    x, y = key[KEY_X], key[KEY_Y]
    if not isinstance(x, bytes) or len(x) != COORD_BYTES:
        raise CodecError("the confirmation key's x is not 32 bytes")
    if not _is_bool(y):
        raise CodecError("the confirmation key must be point-compressed (y is a sign bit)")
    claims = CredentialClaims(
        sub=item[CLAIM_SUB],
        nbf=item[CLAIM_NBF],
        exp=item[CLAIM_EXP],
        device_key=DeviceKey(x=x, y_odd=y),
        status_index=item[CLAIM_STATUS],
    )
    _check_credential(claims)
    return claims


def _parse_credential(item: Any) -> Credential:
    if not isinstance(item, list) or len(item) != 4:
        raise CodecError("kcwt is not an untagged COSE_Sign1")
    protected_raw, unprotected, payload, signature = item
    if not isinstance(protected_raw, bytes) or not protected_raw:
        raise CodecError("credential protected header is not a byte string")
    if unprotected != {}:
        raise CodecError("credentials carry no unprotected header parameters")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise CodecError("credential payload or signature is not a byte string")
    header = cbor.loads(protected_raw)
    if not isinstance(header, dict) or header.keys() != _CREDENTIAL_HEADER:
        raise CodecError("credential protected header must hold exactly alg and kid")
    alg, kid = header[cose.HDR_ALG], header[cose.HDR_KID]
    if not _is_int(alg):
        raise CodecError("credential alg is not an integer")
    if not isinstance(kid, bytes) or not KID_MIN_BYTES <= len(kid) <= KID_MAX_BYTES:
        raise CodecError("credential kid is not a short byte string")
    claims = decode_credential_claims(payload)
    return Credential(protected_raw, alg, kid, payload, signature, claims)


def _check_credential(claims: CredentialClaims) -> None:
    if not isinstance(claims.sub, bytes) or len(claims.sub) != HANDLE_BYTES:
        raise CodecError("sub is not a 10-byte string")
    if not (_is_uint32(claims.nbf) and _is_uint32(claims.exp)):
        raise CodecError("nbf and exp are NumericDates")
    if claims.exp <= claims.nbf:
        raise CodecError("exp is not after nbf")
    if not _is_uint32(claims.status_index):
        raise CodecError("status is not an index")
    key = claims.device_key
    if not isinstance(key.x, bytes) or len(key.x) != COORD_BYTES or not _is_bool(key.y_odd):
        raise CodecError("device key is not a compressed P-256 point")


def _check_code_claims(iat: object, counter: object) -> None:
    if not _is_uint32(iat):
        raise CodecError("iat is not a NumericDate")
    if not (_is_int(counter) and 0 <= counter <= MAX_COUNTER):  # type: ignore[operator]
        raise CodecError(f"counter is not 0..{MAX_COUNTER}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_uint32(value: object) -> bool:
    return _is_int(value) and 0 <= value <= _UINT32_MAX  # type: ignore[operator]
