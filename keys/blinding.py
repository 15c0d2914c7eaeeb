"""Per-code blinding of the subject handle, and pairwise subjects for partners.

Blinding (SPEC §3: no linkable identifier in a code)
----------------------------------------------------
``sub = handle XOR pad`` with ``pad = HMAC-SHA256(k_blind, "SC1-sub" || iat[8] || cti)[:10]``
where ``k_blind`` is a 32-byte random secret kept with each signing key (sealed with the
KEK like the private key) and ``iat``/``cti`` are the code's own claims.

Why outsiders cannot link two codes: HMAC-SHA256 is a PRF, so as long as the input
``(iat, cti)`` never repeats under one ``k_blind`` the pads are independent and uniformly
random, and ``sub`` is a one-time-pad encryption of the handle — to anyone without
``k_blind``, the ``sub`` of two codes of one citizen is distributed exactly like that of
two citizens. Nonce uniqueness: ``cti`` is 64 bits from the OS CSPRNG for every code and
``iat`` is the issuing second, so a repeat needs two codes in the same second under the
same key with the same random 64 bits (probability about n²/2⁶⁵ for n codes in one
second). A repeat would only reveal ``handle1 XOR handle2`` for those two codes. The
signature covers ``sub``, so the XOR construction needs no integrity of its own and adds
no bytes.

Pairwise subjects (SPEC §4)
---------------------------
``subject = base64url(HMAC-SHA256(k_pairwise, "SC1-pairwise" || partner_id || 0x00 ||
handle)[:16])``: stable per (citizen, partner), unrelated across partners. ``k_pairwise``
is a key-set-wide secret (it must survive signing-key rotation), sealed with the KEK.
"""

from __future__ import annotations

import hmac
from base64 import urlsafe_b64encode
from functools import lru_cache

from suishen.codecs.sc1 import HANDLE_BYTES

_BLIND_LABEL = b"SC1-sub"
_PAIRWISE_LABEL = b"SC1-pairwise"


@lru_cache(maxsize=64)
def _keyed(secret: bytes, label: bytes) -> hmac.HMAC:
    """HMAC-SHA256 under ``secret`` with ``label`` already absorbed: a copy of it and one
    update give the MAC of ``label || rest`` without keying (two SHA-256 blocks) again.
    A handful of secrets exist (one per signing key, one pairwise secret)."""
    return hmac.new(secret, label, "sha256")


def blind(handle: bytes, secret: bytes, *, iat: int, cti: bytes) -> bytes:
    """The ``sub`` claim for ``handle`` in the code with this ``iat`` and ``cti``."""
    if len(handle) != HANDLE_BYTES:
        raise ValueError(f"a subject handle is {HANDLE_BYTES} bytes")
    mac = _keyed(secret, _BLIND_LABEL).copy()
    mac.update(iat.to_bytes(8, "big") + cti)
    # XOR of two equal-length strings as integers: one C-level operation instead of a
    # per-byte generator (same bytes; both sides are exactly HANDLE_BYTES long).
    return (int.from_bytes(handle, "big") ^ int.from_bytes(mac.digest()[:HANDLE_BYTES], "big")
            ).to_bytes(HANDLE_BYTES, "big")


def unblind(sub: bytes, secret: bytes, *, iat: int, cti: bytes) -> bytes:
    """The clear handle behind a ``sub`` claim (XOR is its own inverse)."""
    return blind(sub, secret, iat=iat, cti=cti)


def pairwise_subject(secret: bytes, partner_id: str, handle: bytes) -> str:
    """The pseudonym a partner sees for a citizen."""
    mac = _keyed(secret, _PAIRWISE_LABEL).copy()
    mac.update(partner_id.encode("utf-8") + b"\x00" + handle)
    # base64url without padding (keys.algorithms.b64u): 16 bytes are 22 characters + "=="
    return urlsafe_b64encode(mac.digest()[:16])[:22].decode("ascii")
