"""Signature rules of SC1 codes: low-S ECDSA (issue 8 item 9), the closed list of COSE
algorithm identifiers with RFC 9864's fully-specified ones, and reasons judged on the
code's own claims before the key's window (issue 7 item 11)."""

from __future__ import annotations

import os

import pytest

from suishen.codecs import cose, sc1
from suishen.keys.algorithms import P256_ORDER, Alg, PrivateKey, UnsupportedAlgorithm
from suishen.keys.issuer import Issuer
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.keys.signer import SoftwareSigner
from suishen.verifiers.core import verify
from suishen.verifiers.policy import scene
from suishen.verifiers.reasons import Reason

NOW = 1_800_000_000
HALF = P256_ORDER // 2
LIBRARY = scene("library")


def _issuer(alg: Alg = Alg.ES256) -> Issuer:
    private = PrivateKey.generate(alg)
    return Issuer(signer=SoftwareSigner.from_private(private), blinding=os.urandom(32))


def _private(issuer: Issuer) -> PrivateKey:
    assert isinstance(issuer.signer, SoftwareSigner)
    return issuer.signer.private


def _ring(
    issuer: Issuer,
    state: KeyState = KeyState.ACTIVE,
    not_before: int | None = None,
    not_after: int | None = None,
) -> KeyRing:
    public = _private(issuer).public()
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
    public = _private(issuer).public()
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


# --- reasons judged on the code's claims (issue 7 item 11) --------------------------------
def _resigned(issuer: Issuer, text: str, alg_cose: int) -> str:
    """``text`` with its protected header's alg replaced and the code re-signed."""
    message = cose.decode_sign1(sc1.from_text(text))
    protected = sc1.protected_header(alg_cose, issuer.kid)
    signature = _private(issuer).sign(cose.sig_structure(protected, message.payload))
    return sc1.to_text(cose.encode_sign1(protected, {}, message.payload, signature))


def test_regression_future_code_before_its_key_window_is_not_yet_valid() -> None:
    """A code dated an hour ahead, signed by a key whose window opens then, was
    answered unknown_key by a verifier whose clock is still before that window."""
    issuer = _issuer()
    later = NOW + 3600
    code = issuer.issue_personal(os.urandom(10), now=later, ttl=60).text
    ring = _ring(issuer, not_before=later)
    assert verify(code, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.NOT_YET_VALID
    # Once the verifier's clock reaches the window, the same code is fine.
    assert verify(code, keys=ring, policy=LIBRARY, now=later).reason is Reason.OK


def test_claims_first_never_lets_an_unknown_kid_through() -> None:
    trusted, stranger = _issuer(), _issuer()
    ring = _ring(trusted)
    for iat in (NOW - 3600, NOW, NOW + 3600):  # expired, fine, from the future
        code = stranger.issue_personal(os.urandom(10), now=iat, ttl=60).text
        assert verify(code, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.UNKNOWN_KEY


def test_claims_are_only_judged_under_a_good_signature() -> None:
    # A future-dated code under the trusted kid but signed by someone else says
    # bad_signature, not not_yet_valid: unsigned claims are never read as the code's.
    trusted, forger = _issuer(), _issuer()
    forged_issuer = Issuer(SoftwareSigner(_private(forger), trusted.kid), forger.blinding)
    code = forged_issuer.issue_personal(os.urandom(10), now=NOW + 3600, ttl=60).text
    reason = verify(code, keys=_ring(trusted), policy=LIBRARY, now=NOW).reason
    assert reason is Reason.BAD_SIGNATURE


def test_revoked_key_stays_revoked_before_the_claims() -> None:
    issuer = _issuer()
    code = issuer.issue_personal(os.urandom(10), now=NOW + 3600, ttl=60).text
    ring = _ring(issuer, state=KeyState.REVOKED)
    assert verify(code, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.REVOKED


def test_key_window_still_refuses_a_code_whose_own_times_are_fine() -> None:
    issuer = _issuer()
    code = issuer.issue_personal(os.urandom(10), now=NOW, ttl=86_400).text
    # pending key: never verifies
    pending = _ring(issuer, state=KeyState.PENDING)
    assert verify(code, keys=pending, policy=LIBRARY, now=NOW).reason is Reason.UNKNOWN_KEY
    # retired key whose overlap closed while the 24-hour code is still valid
    closed = _ring(issuer, state=KeyState.RETIRED, not_after=NOW + 100)
    at = NOW + 100 + 31
    assert verify(code, keys=closed, policy=LIBRARY, now=at).reason is Reason.UNKNOWN_KEY


def test_expired_code_of_a_closed_key_is_expired() -> None:
    issuer = _issuer()
    code = issuer.issue_personal(os.urandom(10), now=NOW, ttl=60).text
    closed = _ring(issuer, state=KeyState.RETIRED, not_after=NOW + 60)
    assert verify(code, keys=closed, policy=LIBRARY, now=NOW + 3600).reason is Reason.EXPIRED


# --- RFC 9864 fully-specified identifiers -------------------------------------------------
@pytest.mark.parametrize(
    ("alg", "polymorphic", "fully_specified"), [(Alg.ES256, -7, -9), (Alg.EDDSA, -8, -19)]
)
def test_fully_specified_identifiers_verify(alg: Alg, polymorphic: int,
                                            fully_specified: int) -> None:
    assert Alg.from_cose(polymorphic) is alg
    assert Alg.from_cose(fully_specified) is alg
    issuer = _issuer(alg)
    code = issuer.issue_personal(os.urandom(10), now=NOW, ttl=60).text
    # the issuer keeps writing the polymorphic identifier
    assert sc1.parse(code).alg == polymorphic == alg.cose
    renamed = _resigned(issuer, code, fully_specified)
    assert sc1.parse(renamed).alg == fully_specified
    ring = _ring(issuer)
    assert verify(renamed, keys=ring, policy=LIBRARY, now=NOW).reason is Reason.OK


@pytest.mark.parametrize(("alg", "wrong"), [(Alg.ES256, -19), (Alg.ES256, -8),
                                            (Alg.EDDSA, -9), (Alg.EDDSA, -7)])
def test_identifier_naming_the_other_key_type_is_bad_signature(alg: Alg, wrong: int) -> None:
    issuer = _issuer(alg)
    code = _resigned(issuer, issuer.issue_personal(os.urandom(10), now=NOW, ttl=60).text, wrong)
    reason = verify(code, keys=_ring(issuer), policy=LIBRARY, now=NOW).reason
    assert reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("value", [0, -35, -36, -47, -50, -53, 1, -9.0, True, "ES256", None])
def test_the_list_of_identifiers_is_closed(value: object) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        Alg.from_cose(value)
