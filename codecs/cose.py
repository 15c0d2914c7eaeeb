"""COSE_Sign1 (RFC 9052 §4.2) structure: encode, strict decode, Sig_structure.

::

    COSE_Sign1 = #6.18([ protected: bstr .cbor header_map / bstr .size 0,
                         unprotected: header_map,
                         payload: bstr,
                         signature: bstr ])
    Sig_structure = ["Signature1", body_protected, external_aad, payload]

This module knows structure only; signing and verifying with keys live in
:mod:`suishen.keys.algorithms`. Header labels used here: 1 = ``alg``, 4 = ``kid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suishen.codecs import cbor
from suishen.errors import CodecError

TAG_SIGN1 = 18
HDR_ALG = 1
HDR_KID = 4


class COSEError(CodecError):
    """The bytes are not a COSE_Sign1 structure."""


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded COSE_Sign1 message; ``protected_raw`` is the exact signed bytes."""

    protected_raw: bytes
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        """The ``alg`` header parameter (protected first, as RFC 9052 recommends)."""
        if HDR_ALG in self.protected:
            return self.protected[HDR_ALG]
        return self.unprotected.get(HDR_ALG)

    @property
    def kid(self) -> Any:
        """The ``kid`` header parameter (protected first)."""
        if HDR_KID in self.protected:
            return self.protected[HDR_KID]
        return self.unprotected.get(HDR_KID)

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        """The Sig_structure bytes that the signature covers."""
        return sig_structure(self.protected_raw, self.payload, external_aad)


def sig_structure(protected_raw: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """``["Signature1", protected, external_aad, payload]`` as CBOR.

    An empty protected header map (``h'a0'``) is signed as a zero-length byte string, as
    RFC 9052 §3 requires.
    """
    if protected_raw == b"\xa0":
        protected_raw = b""
    # Built directly rather than through a generic encoder (it runs once per sign and per
    # verify): the fixed head array(4) + tstr "Signature1", then three byte strings with
    # shortest-form length heads -- byte for byte what cbor.dumps() of the list gives.
    return b"".join(
        (
            _SIG1_HEAD,
            _bstr_head(len(protected_raw)),
            protected_raw,
            _bstr_head(len(external_aad)),
            external_aad,
            _bstr_head(len(payload)),
            payload,
        )
    )


_SIG1_HEAD = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def _bstr_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (major type 2, shortest form)."""
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x100000000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def encode_sign1(
    protected_raw: bytes, unprotected: dict[Any, Any], payload: bytes, signature: bytes
) -> bytes:
    """Serialise a tagged COSE_Sign1 message."""
    if not unprotected and type(unprotected) is dict:
        # Every code the service signs: built directly (byte for byte what cbor.dumps()
        # gives; tests/test_issuer_fast_path.py compares them): tag 18, array(4), three
        # byte strings around the empty map.
        return b"".join((_SIGN1_HEAD, _bstr_head(len(protected_raw)), protected_raw, b"\xa0",
                         _bstr_head(len(payload)), payload, _bstr_head(len(signature)),
                         signature))
    return cbor.dumps(cbor.Tag(TAG_SIGN1, [protected_raw, unprotected, payload, signature]))


_SIGN1_HEAD = b"\xd2\x84"  # tag 18 (COSE_Sign1), array(4)


def decode_sign1(data: bytes, *, require_tag: bool = True) -> Sign1:
    """Strictly decode a COSE_Sign1 message; raise :class:`CodecError` otherwise."""
    item = cbor.loads(data)
    if isinstance(item, cbor.Tag):
        if item.number != TAG_SIGN1:
            raise COSEError(f"CBOR tag {item.number} is not COSE_Sign1 (18)")
        item = item.value
    elif require_tag:
        raise COSEError("COSE_Sign1 tag 18 missing")
    if not isinstance(item, list) or len(item) != 4:
        raise COSEError("COSE_Sign1 is not an array of four items")
    protected_raw, unprotected, payload, signature = item
    if not isinstance(protected_raw, bytes):
        raise COSEError("protected header is not a byte string")
    if not isinstance(unprotected, dict):
        raise COSEError("unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise COSEError("payload is not a byte string (detached payloads are not supported)")
    if not isinstance(signature, bytes):
        raise COSEError("signature is not a byte string")
    protected: dict[Any, Any] = {}
    if protected_raw:
        decoded = cbor.loads(protected_raw)
        if not isinstance(decoded, dict):
            raise COSEError("protected header is not a map")
        protected = decoded
    # RFC 9052 §3: a parameter MUST NOT appear in both buckets.
    if protected.keys() & unprotected.keys():
        raise COSEError("header parameter in both protected and unprotected buckets")
    return Sign1(protected_raw, protected, unprotected, payload, signature)
