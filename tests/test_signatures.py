"""Signature rules of SC1 codes: low-S ECDSA (issue 8 item 9), the closed list of COSE
algorithm identifiers with RFC 9864's fully-specified ones, and reasons judged on the
code's own claims before the key's window (issue 7 item 11)."""

from __future__ import annotations

import os

from suishen.codecs import cose, sc1
from suishen.keys.algorithms import P256_ORDER, Alg, PrivateKey
from suishen.keys.issuer import Issuer
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.verifiers.core import verify
from suishen.verifiers.policy import scene
from suishen.verifiers.reasons import Reason

NOW = 1_800_000_000
HALF = P256_ORDER // 2
LIBRARY = scene("library")


def _issuer(alg: Alg = Alg.ES256) -> Issuer:
    private = PrivateKey.generate(alg)
    return Issuer(private=private, kid=private.public().kid_bytes(), blinding=os.urandom(32))


def _ring(
    issuer: Issuer,
    state: KeyState = KeyState.ACTIVE,
    not_before: int | None = None,
    not_after: int | None = None,
) -> KeyRing:
    public = issuer.private.public()
    return KeyRing([VerificationKey(issuer.kid, public, state, not_before, not_after)])


def _high_s_twin(text: str) -> str:
    message = cose.decode_sign1(sc1.from_text(text))
    r, s = message.signature[:32], int.from_bytes(message.signature[32:], "big")
    twin = r + (P256_ORDER - s).to_bytes(32, "big")
    return sc1.to_text(cose.encode_sign1(message.protected_raw, {}, message.payload, twin))


# --- low S (issue 8 item 9) ---------------------------------------------------------------
def test_es256_signatures_are_always_low_s() -> None:
    # Unnormalised ECDSA gives a high s half of the time: 200 signatures would all be
    # low by chance with probability 2^-200.
    private = PrivateKey.generate(Alg.ES256)
    for i in range(200):
        signature = private.sign(i.to_bytes(4, "big"))
        assert int.from_bytes(signature[32:], "big") <= HALF
        assert private.public().verify_canonical(signature, i.to_bytes(4, "big"))


def test_issued_es256_codes_carry_low_s() -> None:
    issuer = _issuer()
    for _ in range(50):
        code = issuer.issue_personal(os.urandom(10), now=NOW, ttl=60)
        signature = cose.decode_sign1(sc1.from_text(code.text)).signature
        assert int.from_bytes(signature[32:], "big") <= HALF


def test_regression_high_s_twin_of_a_genuine_code_is_bad_signature() -> None:
    """Issue 8 item 9: a copy of a genuine code with (r, n - s) verified as ok, giving
    the same code a second byte form."""
    issuer = _issuer()
    code = issuer.issue_personal(os.urandom(10), now=NOW, ttl=60).text
    twin = _high_s_twin(code)
    assert twin != code
    message = cose.decode_sign1(sc1.from_text(twin))
    public = issuer.private.public()
    # Plain ECDSA accepts the twin; the canonical check does not.
    assert public.verify(message.signature, message.to_be_signed())
    assert not public.verify_canonical(message.signature, message.to_be_signed())
    ring = _ring(issuer)
    assert verify(code, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.OK
    assert verify(twin, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.BAD_SIGNATURE


def test_verify_canonical_leaves_eddsa_alone() -> None:
    private = PrivateKey.generate(Alg.EDDSA)
    signature = private.sign(b"m")
    assert private.public().verify_canonical(signature, b"m")
    assert not private.public().verify_canonical(signature[:-1], b"m")
