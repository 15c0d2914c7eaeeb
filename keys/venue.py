"""Signing and verifying venue codes (:mod:`suishen.codecs.venue`) with venue keys.

Venue keys are a key set of their own (``venues``, :mod:`suishen.app.services.venues`):
never the code-signing keys, so rotating or revoking those never touches a printed
poster. A venue code carries no kid; :func:`verifying_key` tries each key it is given
(at most a handful) and names the one whose signature verifies.
"""

from __future__ import annotations

from collections.abc import Iterable

from suishen.codecs import venue as codec
from suishen.keys.algorithms import Alg, UnsupportedAlgorithm
from suishen.keys.keyring import KeyState, VerificationKey
from suishen.keys.signer import Signer


def make_code(signer: Signer, venue_id: bytes) -> str:
    """The venue code text for ``venue_id``, signed through the Signer seam."""
    alg = signer.algorithm.cose
    return codec.encode(alg, venue_id, signer.sign(codec.to_be_signed(alg, venue_id)))


def verifying_key(code: codec.VenueCode,
                  keys: Iterable[VerificationKey]) -> VerificationKey | None:
    """The key (active, retired or revoked; never pending) whose signature over the code
    verifies, trying unrevoked keys first; None when none does. The ``alg`` header must
    name the key's algorithm, and an ECDSA high-S twin never verifies (one signed
    content, one accepted text)."""
    try:
        alg = Alg.from_cose(code.alg)
    except UnsupportedAlgorithm:
        return None
    tbs = code.to_be_signed()
    ordered = sorted((k for k in keys if k.state is not KeyState.PENDING),
                     key=lambda k: k.state is KeyState.REVOKED)
    for key in ordered:
        if key.public.alg is alg and key.public.verify_canonical(code.signature, tbs):
            return key
    return None
