"""The venue code: a static, signed code printed at a venue or shop (SPEC.md §6.3).

A venue code stays valid until its venue is revoked and must fit QR version 5 at level M
(122 alphanumeric characters; ``SC1:`` leaves 118 characters = 78 bytes of base45).
A CWT claims set, a kid and a 64-byte signature do not fit (docs/enterprise.md), so the
code is standard COSE with the smallest payload that names a venue.

Text
----
``SC1:`` + base45 (RFC 9285) of an **untagged** COSE_Sign1 (RFC 9052 §4.2), like every
other code of this service (one prefix, one alphabet, one scanner setting).

How a parser tells the kinds apart (:func:`suishen.codecs.sc1.parse_code`)
--------------------------------------------------------------------------
Personal and offline codes are *tagged* COSE_Sign1 (first byte ``d2``, tag 18); a venue
code is the untagged form (first byte ``84``, array(4)). The first byte of the decoded
bytes decides, before anything else is read: ``d2`` goes to the personal/offline
parsers, ``84`` to :func:`parse` here, anything else is ``malformed``. No byte is spent
on a kind claim, and a venue code can never be mistaken for a citizen's code (nor the
reverse: :func:`parse` refuses the tag).

The code, 78 bytes in every case
--------------------------------
::

    84                         array(4) (untagged COSE_Sign1)               1
    43 a1 01 26                protected: bstr(3) {1: alg}                  4
                               (alg -7 = 0x26 ES256, -8 = 0x27 EdDSA, -9 = 0x28
                               ESP256, -19 = 0x32 Ed25519: one-byte negative ints)
    a0                         unprotected: {}                              1
    45 <5 bytes>               payload: bstr(5), the venue id               1 + 5
    58 40 <64 bytes>           signature: bstr(64)                          2 + 64
                                                                    total  78

78 bytes are 117 base45 characters; with ``SC1:`` **121 ≤ 122** (QR 5-M). A sixth id
byte would make 123: the id is exactly :data:`VENUE_ID_BYTES` = 5 bytes (40 bits,
allocated at random by the service, unique by the store's primary key).

No ``kid``: even a one-byte kid would make 124 characters. A verifier tries each venue
key it holds (the venue key set is tiny: one active key, and a retired one during a
rotation, :mod:`suishen.app.services.venues`). The signature covers
``["Signature1", protected, external_aad, payload]`` with ``external_aad`` =
:data:`VENUE_AAD`, and venue keys are a key set of their own, so no other signature of
this service verifies as a venue code (domain separation at zero bytes on the wire).

No time claims: a venue code has no ``iat``/``exp`` — it is valid until the venue is
revoked (a list of venue ids in the trust bundle and the service's revoked set), and
printed codes survive rotations of the code-signing keys (they are not signed by them).

The venue id in APIs (``venue_id``) is the 5 bytes as 10 lower-case hex digits.

Decoding is strict: exactly the layout above (any other head byte, length, header
parameter or trailing byte is :class:`~suishen.errors.CodecError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from suishen.codecs import base45, cbor, cose
from suishen.errors import CodecError

VENUE_ID_BYTES = 5
VENUE_AAD = b"SC1 venue code"
CODE_BYTES = 78
FIRST_BYTE = 0x84  # untagged COSE_Sign1: array(4)
VENUE_ID_PATTERN = "^[0-9a-f]{10}$"
_VENUE_ID_RE = re.compile(VENUE_ID_PATTERN)
_LAYOUT = re.compile(
    rb"\x84"  # array(4), no tag
    rb"\x43(\xa1\x01([\x20-\x37]))"  # protected bstr(3) {1: alg (one-byte negative int)}
    rb"\xa0"  # unprotected {}
    rb"\x45(.{5})"  # payload bstr(5): the venue id
    rb"\x58\x40(.{64})",  # signature bstr(64)
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class VenueCode:
    """A parsed, unverified venue code."""

    alg: int
    venue_id: bytes
    protected_raw: bytes
    signature: bytes

    @property
    def venue_id_text(self) -> str:
        """The venue id as in APIs: 10 lower-case hex digits."""
        return self.venue_id.hex()

    def to_be_signed(self) -> bytes:
        """The Sig_structure bytes the signature covers (with :data:`VENUE_AAD`)."""
        return cose.sig_structure(self.protected_raw, self.venue_id, VENUE_AAD)


def protected_header(alg_cose: int) -> bytes:
    """The serialised protected header ``{1: alg}``."""
    raw = cbor.dumps({cose.HDR_ALG: alg_cose})
    if len(raw) != 3:
        raise CodecError("a venue code's alg is a one-byte negative COSE algorithm")
    return raw


def to_be_signed(alg_cose: int, venue_id: bytes) -> bytes:
    """What a venue key signs for ``venue_id``."""
    check_venue_id(venue_id)
    return cose.sig_structure(protected_header(alg_cose), venue_id, VENUE_AAD)


def encode(alg_cose: int, venue_id: bytes, signature: bytes) -> str:
    """The code text ``SC1:...`` (refuses anything outside the layout)."""
    check_venue_id(venue_id)
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise CodecError("a venue code's signature is 64 bytes")
    data = b"".join((bytes((FIRST_BYTE,)), b"\x43", protected_header(alg_cose), b"\xa0",
                     b"\x45", venue_id, b"\x58\x40", signature))
    text = "SC1:" + base45.encode(data)
    parse_bytes(data)  # never emit what a verifier would refuse
    return text


def parse_bytes(data: bytes) -> VenueCode:
    """Strictly parse the decoded bytes of a venue code (after ``SC1:`` and base45)."""
    if not isinstance(data, bytes):
        raise CodecError("a venue code is bytes")
    match = _LAYOUT.fullmatch(data)
    if match is None:
        raise CodecError("not a venue code: the layout is exactly 78 bytes as documented")
    protected_raw, alg_head, venue_id, signature = match.groups()
    alg = 0x1F - alg_head[0]  # major type 1 (0x20 + n) is -1 - n
    return VenueCode(alg=alg, venue_id=venue_id, protected_raw=protected_raw,
                     signature=signature)


def is_venue_layout(data: bytes) -> bool:
    """True when the decoded bytes start like a venue code (untagged COSE_Sign1); the
    dispatch test of :func:`suishen.codecs.sc1.parse_code`."""
    return bool(data) and data[0] == FIRST_BYTE


def check_venue_id(venue_id: object) -> None:
    """Raise :class:`CodecError` unless ``venue_id`` is :data:`VENUE_ID_BYTES` bytes."""
    if not isinstance(venue_id, bytes) or len(venue_id) != VENUE_ID_BYTES:
        raise CodecError(f"a venue id is {VENUE_ID_BYTES} bytes")


def venue_id_from_text(text: object) -> bytes:
    """The venue id of its API form (10 lower-case hex digits); :class:`CodecError`
    otherwise."""
    if not isinstance(text, str) or _VENUE_ID_RE.fullmatch(text) is None:
        raise CodecError("a venue_id is 10 lower-case hex digits")
    return bytes.fromhex(text)
