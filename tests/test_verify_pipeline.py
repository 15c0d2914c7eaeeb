"""Unit tests of the pure pipeline (``suishen.verifiers.core.verify``) and the stateful
in-process ``suishen.verifiers.memory.Verifier``, with a fixed ``now``: every reason,
clock-skew boundaries, single use, key rotation and revocation, subject suspension,
and subject blinding. Each test runs for both algorithms (the ``code_alg`` fixture)."""

from __future__ import annotations

import os

import pytest

from suishen.codecs import cose, sc1
from suishen.errors import UnknownScene, VerificationError, WrongKeyEncryptionKey
from suishen.keys.algorithms import Alg
from suishen.keys.blinding import blind, unblind
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing, KeyState
from suishen.keys.keyset import KeySet
from suishen.verifiers.core import DEFAULT_SKEW, Decision, verify
from suishen.verifiers.memory import InMemoryReplay, InMemoryRevocations, Verifier
from suishen.verifiers.policy import AcceptKinds, AllOf, ScenePolicy, scene
from suishen.verifiers.reasons import Reason

HANDLE = bytes.fromhex("0123456789abcdef0123")
OTHER_HANDLE = bytes.fromhex("fedcba9876543210fedc")
TTL = 60
SKEW = DEFAULT_SKEW
LIBRARY = scene("library")


@pytest.fixture(scope="module")
def code(issuer: Issuer, t0: int) -> str:
    """A personal code for HANDLE issued at t0, living TTL seconds."""
    return issuer.issue_personal(HANDLE, now=t0, ttl=TTL).text


@pytest.fixture(scope="module")
def ring(keyset: KeySet, kek: KeyEncryptionKey) -> KeyRing:
    """The service's view: keys with their blinding secrets."""
    return keyset.keyring(kek)


def check(text: object, ring: KeyRing, now: int, policy: ScenePolicy = LIBRARY,
          **kw: object) -> Decision:
    return verify(text, keys=ring, policy=policy, now=now, **kw)  # type: ignore[arg-type]


def tamper(text: str, edit: str) -> str:
    """Re-encode the code after changing its signature or payload."""
    message = cose.decode_sign1(sc1.from_text(text))
    signature, payload = message.signature, message.payload
    if edit == "signature":
        signature = bytes([signature[0] ^ 0x80]) + signature[1:]
    elif edit == "payload":
        payload = payload[:-1] + bytes([payload[-1] ^ 0x01])
    return sc1.to_text(cose.encode_sign1(message.protected_raw, {}, payload, signature))


# --- every reason -------------------------------------------------------------------------
def test_ok(code: str, ring: KeyRing, issuer: Issuer, t0: int) -> None:
    decision = check(code, ring, t0 + 1)
    assert decision.reason is Reason.OK and decision.valid
    assert decision.kid == issuer.kid.hex()
    assert decision.kind == "personal"
    assert decision.claims is not None
    assert (decision.claims.iat, decision.claims.exp) == (t0, t0 + TTL)
    assert decision.expires_at == t0 + TTL
    assert decision.subject_handle == HANDLE
    assert decision.replay_key is None  # library: re-scannable


@pytest.mark.parametrize(
    "text",
    ["SC1:", "SC1:AAA", "SC1:" + "A" * 10, "SC1:abc", "SC1:" + "0" * 2000, None, 42,
     b"SC1:AAA", ["SC1:"], "SC1:\u00e9\u00e9\u00e9"],
)
def test_malformed(text: object, ring: KeyRing, t0: int) -> None:
    assert check(text, ring, t0).reason is Reason.MALFORMED


@pytest.mark.parametrize("prefix", ["SC2:", "HC1:", "sc1:", "SC1", "SC:", "", "SC10:"])
def test_unsupported_version(prefix: str, code: str, ring: KeyRing, t0: int) -> None:
    text = prefix + code[len(sc1.PREFIX):]
    assert check(text, ring, t0 + 1).reason is Reason.UNSUPPORTED_VERSION


def test_unknown_key(code: str, kek: KeyEncryptionKey, code_alg: Alg, t0: int) -> None:
    stranger = KeySet.create(kek, now=t0 - 86_400, alg=code_alg).keyring(kek)
    decision = check(code, stranger, t0 + 1)
    assert decision.reason is Reason.UNKNOWN_KEY
    assert decision.claims is None and decision.subject_handle is None
    assert check(code, KeyRing([]), t0 + 1).reason is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("edit", ["signature", "payload"])
def test_bad_signature(edit: str, code: str, ring: KeyRing, t0: int) -> None:
    decision = check(tamper(code, edit), ring, t0 + 1)
    assert decision.reason is Reason.BAD_SIGNATURE
    assert decision.claims is None and decision.subject_handle is None


def test_expired_and_not_yet_valid(code: str, ring: KeyRing, t0: int) -> None:
    assert check(code, ring, t0 + TTL + SKEW + 1).reason is Reason.EXPIRED
    assert check(code, ring, t0 - SKEW - 1).reason is Reason.NOT_YET_VALID


def test_revoked_key(code: str, keyset: KeySet, kek: KeyEncryptionKey, t0: int) -> None:
    revoked = keyset.revoke(keyset.active().kid, now=t0)
    assert check(code, revoked.keyring(kek), t0 + 1).reason is Reason.REVOKED
    # A gate learns it from the published JWK Set (status "revoked").
    gate_ring = KeyRing.from_jwks(revoked.jwks(now=t0))
    assert check(code, gate_ring, t0 + 1).reason is Reason.REVOKED


def test_replayed(code: str, ring: KeyRing, t0: int) -> None:
    verifier = Verifier(ring)
    assert verifier.verify(code, scene="venue", now=t0 + 1).reason is Reason.OK
    assert verifier.verify(code, scene="venue", now=t0 + 2).reason is Reason.REPLAYED


def test_scene_not_allowed_through_a_policy(code: str, ring: KeyRing, t0: int) -> None:
    # No built-in scene refuses personal codes; a policy that accepts only offline codes
    # shows the pipeline applying the scene rule after the cryptographic checks.
    offline_only = ScenePolicy("offline-only", AllOf((AcceptKinds(frozenset({"offline"})),)),
                               single_use=True, transit=True)
    decision = check(code, ring, t0 + 1, offline_only, direction="in")
    assert decision.reason is Reason.SCENE_NOT_ALLOWED
    assert decision.replay_key is None  # a refused code consumes nothing
    # ... and time is judged before the scene.
    assert check(code, ring, t0 + TTL + SKEW + 1, offline_only).reason is Reason.EXPIRED


def test_all_of_refuses_an_empty_rule_list() -> None:
    with pytest.raises(ValueError, match="at least one rule"):
        AllOf(())


def test_unknown_scene_is_an_error_not_a_decision(code: str, ring: KeyRing, t0: int) -> None:
    with pytest.raises(UnknownScene):
        Verifier(ring).verify(code, scene="moon", now=t0)
    with pytest.raises(UnknownScene):
        scene("Metro")


# --- clock skew ---------------------------------------------------------------------------
def test_expiry_boundary(code: str, ring: KeyRing, t0: int) -> None:
    exp = t0 + TTL
    assert check(code, ring, exp).reason is Reason.OK
    assert check(code, ring, exp + SKEW).reason is Reason.OK
    assert check(code, ring, exp + SKEW + 1).reason is Reason.EXPIRED


def test_issued_at_boundary(code: str, ring: KeyRing, t0: int) -> None:
    assert check(code, ring, t0).reason is Reason.OK
    assert check(code, ring, t0 - SKEW).reason is Reason.OK
    assert check(code, ring, t0 - SKEW - 1).reason is Reason.NOT_YET_VALID


@pytest.mark.parametrize("skew", [0, 5, 120])
def test_skew_is_configurable(skew: int, code: str, ring: KeyRing, t0: int) -> None:
    exp = t0 + TTL
    assert check(code, ring, exp + skew, skew=skew).reason is Reason.OK
    assert check(code, ring, exp + skew + 1, skew=skew).reason is Reason.EXPIRED
    assert check(code, ring, t0 - skew, skew=skew).reason is Reason.OK
    assert check(code, ring, t0 - skew - 1, skew=skew).reason is Reason.NOT_YET_VALID
    verifier = Verifier(ring, skew=skew)
    assert verifier.verify(code, scene="library", now=exp + skew).reason is Reason.OK
    assert verifier.verify(code, scene="library", now=exp + skew + 1).reason is Reason.EXPIRED


# --- single use ---------------------------------------------------------------------------
def test_metro_in_then_out(code: str, ring: KeyRing, t0: int) -> None:
    verifier = Verifier(ring)
    assert verifier.verify(code, scene="metro", direction="in", now=t0 + 1,
                           checkpoint="L2-S12-G3").reason is Reason.OK
    assert verifier.verify(code, scene="metro", direction="out", now=t0 + 20,
                           checkpoint="L2-S14-G1").reason is Reason.OK
    assert verifier.verify(code, scene="metro", direction="out", now=t0 + 21).reason is (
        Reason.REPLAYED)


def test_metro_in_twice_is_replayed_at_any_checkpoint(code: str, ring: KeyRing,
                                                      t0: int) -> None:
    verifier = Verifier(ring)
    first = verifier.verify(code, scene="metro", direction="in", now=t0 + 1, checkpoint="G1")
    assert first.reason is Reason.OK and first.replay_key is not None
    again = verifier.verify(code, scene="metro", direction="in", now=t0 + 2, checkpoint="G2")
    assert again.reason is Reason.REPLAYED
    assert again.replay_key is None and not again.valid
    # No direction counts as "in" in a transit scene.
    assert verifier.verify(code, scene="metro", now=t0 + 3).reason is Reason.REPLAYED


def test_single_use_is_per_scene(code: str, ring: KeyRing, t0: int) -> None:
    verifier = Verifier(ring)
    for name in ("metro", "bus", "ferry", "venue"):
        assert verifier.verify(code, scene=name, direction="in", now=t0 + 1).reason is Reason.OK
    for name in ("metro", "bus", "ferry", "venue"):
        assert verifier.verify(code, scene=name, direction="in", now=t0 + 2).reason is (
            Reason.REPLAYED)


@pytest.mark.parametrize("name", ["library", "hospital", "pharmacy"])
def test_rescannable_scenes(name: str, code: str, ring: KeyRing, t0: int) -> None:
    verifier = Verifier(ring)
    for i in range(3):
        decision = verifier.verify(code, scene=name, now=t0 + i)
        assert decision.reason is Reason.OK and decision.replay_key is None
    assert len(verifier.replay) == 0  # type: ignore[arg-type]


def test_rejected_presentations_consume_nothing(code: str, ring: KeyRing, t0: int) -> None:
    revocations = InMemoryRevocations([HANDLE])
    verifier = Verifier(ring, revocations=revocations)
    assert verifier.verify(code, scene="metro", direction="in", now=t0 + 1).reason is (
        Reason.REVOKED)
    revocations.discard(HANDLE)
    assert verifier.verify(code, scene="metro", direction="in", now=t0 + 2).reason is Reason.OK


def test_replay_memory_forgets_after_the_code_expired(code: str, ring: KeyRing, t0: int) -> None:
    replay = InMemoryReplay()
    verifier = Verifier(ring, replay=replay)
    assert verifier.verify(code, scene="bus", now=t0 + 1).reason is Reason.OK
    assert len(replay) == 1
    assert replay.first_use(b"other", expires_at=t0 + 10_000, now=t0 + TTL + SKEW + 1)
    assert len(replay) == 1  # the code's entry was purged, "other" was added


def test_full_replay_memory_fails_closed(code: str, ring: KeyRing, t0: int) -> None:
    replay = InMemoryReplay(max_entries=1)
    assert replay.first_use(b"someone else", expires_at=t0 + 100, now=t0)
    verifier = Verifier(ring, replay=replay)
    assert verifier.verify(code, scene="metro", now=t0 + 1).reason is Reason.REPLAYED


# --- key rotation and revocation ----------------------------------------------------------
def test_rotation_overlap(kek: KeyEncryptionKey, code_alg: Alg, t0: int) -> None:
    keyset = KeySet.create(kek, now=t0 - 86_400, alg=code_alg)
    old = keyset.issuer(kek)
    long_code = old.issue_personal(HANDLE, now=t0, ttl=3_600).text
    rotated = keyset.rotate(kek, now=t0 + 10, overlap_seconds=120)
    retired = rotated.get(old.kid.hex())
    assert retired.state is KeyState.RETIRED and retired.not_after == t0 + 130
    new = rotated.issuer(kek)
    assert new.kid != old.kid and new.signer.algorithm is code_alg
    new_code = new.issue_personal(OTHER_HANDLE, now=t0 + 10, ttl=TTL).text

    ring = rotated.keyring(kek)
    assert check(long_code, ring, t0 + 20).reason is Reason.OK
    assert check(new_code, ring, t0 + 20).subject_handle == OTHER_HANDLE
    # The retired key verifies until not_after (+ skew), then its codes are unknown_key
    # even though this one has not expired.
    assert check(long_code, ring, t0 + 130 + SKEW).reason is Reason.OK
    assert check(long_code, ring, t0 + 130 + SKEW + 1).reason is Reason.UNKNOWN_KEY
    # Gates see the same through the JWK Set, which drops the key once it expired.
    assert check(long_code, KeyRing.from_jwks(rotated.jwks(now=t0 + 20)), t0 + 20).valid
    later = KeyRing.from_jwks(rotated.jwks(now=t0 + 131))
    assert later.get(old.kid) is None
    assert check(long_code, later, t0 + 131).reason is Reason.UNKNOWN_KEY


def test_rotation_to_the_other_algorithm(kek: KeyEncryptionKey, code_alg: Alg, t0: int) -> None:
    other = Alg.EDDSA if code_alg is Alg.ES256 else Alg.ES256
    keyset = KeySet.create(kek, now=t0 - 86_400, alg=code_alg)
    rotated = keyset.rotate(kek, now=t0, overlap_seconds=90, alg=other)
    issued = rotated.issuer(kek).issue_personal(HANDLE, now=t0, ttl=TTL)
    assert check(issued.text, rotated.keyring(kek), t0 + 1).valid
    old = keyset.issuer(kek).issue_personal(HANDLE, now=t0, ttl=TTL)
    assert check(old.text, rotated.keyring(kek), t0 + 1).valid


def test_pending_key_does_not_verify_until_promoted(kek: KeyEncryptionKey, code_alg: Alg,
                                                     t0: int) -> None:
    keyset = KeySet.create(kek, now=t0 - 86_400, alg=code_alg)
    with_pending = keyset.add_key(kek, now=t0 - 3_600, alg=code_alg)
    promoted = with_pending.rotate(kek, now=t0, overlap_seconds=90)
    pending_kid = with_pending.keys[-1].kid
    assert promoted.active().kid == pending_kid  # rotation promotes the pending key
    issued = promoted.issuer(kek).issue_personal(HANDLE, now=t0, ttl=TTL)
    assert check(issued.text, with_pending.keyring(kek), t0 + 1).reason is Reason.UNKNOWN_KEY
    assert check(issued.text, promoted.keyring(kek), t0 + 1).reason is Reason.OK


def test_revoked_key_is_revoked_whatever_its_window(kek: KeyEncryptionKey, code_alg: Alg,
                                                    t0: int) -> None:
    keyset = KeySet.create(kek, now=t0 - 86_400, alg=code_alg)
    issued = keyset.issuer(kek).issue_personal(HANDLE, now=t0, ttl=TTL)
    rotated = keyset.rotate(kek, now=t0 + 1, overlap_seconds=3_600)
    revoked = rotated.revoke(issued.kid, now=t0 + 2)
    assert check(issued.text, rotated.keyring(kek), t0 + 3).reason is Reason.OK
    assert check(issued.text, revoked.keyring(kek), t0 + 3).reason is Reason.REVOKED
    # Revocation outranks the window: long after it closed, the answer is still revoked.
    assert check(issued.text, revoked.keyring(kek), t0 + 86_400).reason is Reason.REVOKED
    # A revoked key's ring entry holds no blinding secret.
    entry = revoked.keyring(kek).get(bytes.fromhex(issued.kid))
    assert entry is not None and entry.blinding is None


# --- suspended citizens -------------------------------------------------------------------
def test_suspended_subject_is_revoked(code: str, ring: KeyRing, t0: int) -> None:
    revocations = InMemoryRevocations()
    verifier = Verifier(ring, revocations=revocations)
    assert verifier.verify(code, scene="library", now=t0 + 1).reason is Reason.OK
    revocations.add(HANDLE)
    decision = verifier.verify(code, scene="library", now=t0 + 2)
    assert decision.reason is Reason.REVOKED
    assert decision.subject_handle == HANDLE  # the service knows whose code it was
    revocations.replace([OTHER_HANDLE])
    assert verifier.verify(code, scene="library", now=t0 + 3).reason is Reason.OK


def test_a_gate_without_blinding_secrets_cannot_see_suspensions(
    code: str, keyset: KeySet, t0: int
) -> None:
    # Documented limit of offline verification: suspensions reach gates through the
    # trust bundle, not through the code.
    gate = Verifier(KeyRing.from_jwks(keyset.jwks(now=t0)),
                    revocations=InMemoryRevocations([HANDLE]))
    assert gate.verify(code, scene="library", now=t0 + 1).reason is Reason.OK


# --- subject blinding ---------------------------------------------------------------------
def test_handle_only_with_the_blinding_secret(code: str, keyset: KeySet,
                                              kek: KeyEncryptionKey, t0: int) -> None:
    assert check(code, keyset.keyring(kek), t0 + 1).subject_handle == HANDLE
    assert check(code, keyset.keyring(), t0 + 1).subject_handle is None
    from_jwks = KeyRing.from_jwks(keyset.jwks(now=t0))
    assert all(key.blinding is None for key in from_jwks)
    decision = check(code, from_jwks, t0 + 1)
    assert decision.valid and decision.subject_handle is None
    with pytest.raises(WrongKeyEncryptionKey):
        keyset.keyring(KeyEncryptionKey(os.urandom(32)))


def test_two_codes_of_one_citizen_are_unlinkable(issuer: Issuer, t0: int) -> None:
    codes = [issuer.issue_personal(HANDLE, now=t0, ttl=TTL) for _ in range(50)]
    codes.append(issuer.issue_personal(HANDLE, now=t0 + 1, ttl=TTL, cti=codes[0].cti))
    subs = set()
    for issued in codes:
        raw = sc1.from_text(issued.text)
        claims = sc1.decode_claims(cose.decode_sign1(raw).payload)
        subs.add(claims.sub)
        assert HANDLE not in raw  # the clear handle is nowhere in the code's bytes
        assert claims.sub != HANDLE
    assert len(subs) == len(codes)  # a fresh sub per code, even with a repeated cti


def test_same_handle_under_another_key_set_blinds_differently(
    keyset: KeySet, kek: KeyEncryptionKey, code_alg: Alg, t0: int
) -> None:
    other = KeySet.create(kek, now=t0 - 86_400, alg=code_alg).issuer(kek)
    cti = bytes(8)
    a = keyset.issuer(kek).issue_personal(HANDLE, now=t0, ttl=TTL, cti=cti)
    b = other.issue_personal(HANDLE, now=t0, ttl=TTL, cti=cti)

    def sub(text: str) -> bytes:
        return sc1.decode_claims(cose.decode_sign1(sc1.from_text(text)).payload).sub

    assert sub(a.text) != sub(b.text)


def test_blind_round_trip() -> None:
    secret = bytes(range(32))
    cti = bytes.fromhex("0102030405060708")
    sub = blind(HANDLE, secret, iat=1, cti=cti)
    assert len(sub) == sc1.HANDLE_BYTES and sub != HANDLE
    assert unblind(sub, secret, iat=1, cti=cti) == HANDLE
    assert unblind(sub, secret, iat=2, cti=cti) != HANDLE
    assert unblind(sub, bytes(32), iat=1, cti=cti) != HANDLE
    with pytest.raises(ValueError, match="10 bytes"):
        blind(HANDLE[:9], secret, iat=1, cti=cti)


def test_decision_rejected_drops_the_replay_key(code: str, ring: KeyRing, t0: int) -> None:
    decision = check(code, ring, t0 + 1, scene("metro"), direction="in")
    assert decision.valid and decision.replay_key is not None
    rejected = decision.rejected(Reason.REPLAYED)
    assert not rejected.valid and rejected.replay_key is None
    assert rejected.subject_handle == decision.subject_handle


@pytest.mark.parametrize("direction", ["IN", "in ", "sideways", ""])
def test_stateful_verifier_refuses_unknown_directions(
    keyset: KeySet, kek: KeyEncryptionKey, issuer: Issuer, t0: int, direction: str
) -> None:
    verifier = Verifier(keyset.keyring(kek))
    code = issuer.issue_personal(b"\x07" * 10, now=t0, ttl=60).text
    with pytest.raises(VerificationError):
        verifier.verify(code, scene="metro", now=t0, direction=direction)
    assert verifier.verify(code, scene="metro", now=t0, direction="in").valid
