"""Signing and verifying trust bundles with trust-anchor keys.

A bundle (:mod:`suishen.codecs.bundle`) travels as a tagged COSE_Sign1 whose protected
header is ``{1: alg, 4: kid}`` of a trust-anchor key — a key set of its own, separate
from code signing, published at ``GET /v1/trust-anchor`` and provisioned into gates —
and whose signature covers the payload with ``external_aad`` = :data:`BUNDLE_AAD`
(domain separation: nothing else signed by any key of this service verifies as a
bundle). Gates hold the anchor's public keys (a JWK Set); a bundle signed by any other
key is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from suishen.codecs import bundle as codec
from suishen.codecs import cbor, cose
from suishen.errors import CodecError
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey, UnsupportedAlgorithm

BUNDLE_AAD = b"SC1 trust bundle"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


class UntrustedBundle(codec.BundleError):
    """A bundle not signed by a trust anchor the gate holds (or badly signed)."""


def sign(anchor: PrivateKey, kid: bytes, bundle: codec.Bundle) -> bytes:
    """The signed bundle (tagged COSE_Sign1 bytes)."""
    payload = codec.encode(bundle)
    protected = cbor.dumps({cose.HDR_ALG: anchor.alg.cose, cose.HDR_KID: kid})
    signature = anchor.sign(cose.sig_structure(protected, payload, BUNDLE_AAD))
    return cose.encode_sign1(protected, {}, payload, signature)


def open_signed(data: bytes, anchors: Mapping[bytes, PublicKey]) -> codec.Bundle:
    """Verify a signed bundle against the anchors (kid -> key) and decode it.

    Raises :class:`UntrustedBundle` for an unknown anchor or a bad signature and
    :class:`~suishen.codecs.bundle.BundleError` for anything malformed.
    """
    if not isinstance(data, bytes) or len(data) > MAX_BUNDLE_BYTES:
        raise codec.BundleError("a signed bundle is bytes of bounded size")
    try:
        message = cose.decode_sign1(data)
    except CodecError as exc:
        raise codec.BundleError(f"not a signed bundle: {exc}") from exc
    if message.unprotected or message.protected.keys() != {cose.HDR_ALG, cose.HDR_KID}:
        raise codec.BundleError("a bundle's protected header is exactly alg and kid")
    kid = message.protected[cose.HDR_KID]
    key = anchors.get(kid) if isinstance(kid, bytes) else None
    if key is None:
        raise UntrustedBundle("bundle not signed by a trust anchor this gate holds")
    try:
        alg = Alg.from_cose(message.protected[cose.HDR_ALG])
    except UnsupportedAlgorithm as exc:
        raise UntrustedBundle("bundle signature algorithm not accepted") from exc
    tbs = cose.sig_structure(message.protected_raw, message.payload, BUNDLE_AAD)
    if alg is not key.alg or not key.verify(message.signature, tbs):
        raise UntrustedBundle("bundle signature does not verify")
    return codec.decode(message.payload)
