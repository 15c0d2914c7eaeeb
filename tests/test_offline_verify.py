"""Judging offline codes (verifiers/offline.py) with a fixed ``now``: every reason and
each boundary of slot, freshness and skew (issue 9 item 8, the pure part)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suishen.codecs import cbor, cose, offline, sc1
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.verifiers.core import verify
from suishen.verifiers.offline import replay_id, verify_offline
from suishen.verifiers.policy import scene
from suishen.verifiers.reasons import Reason

SLOT_START = 1_800_000_000
SLOT = 3600
SKEW = 30
LIFETIME = 30
IAT = SLOT_START + 600
BLINDING = os.urandom(32)
HANDLE = b"\x42" * 10


@dataclass
class Status:
    revoked: set[tuple[int, int]] = field(default_factory=set)
    slots: set[int] = field(default_factory=lambda: {SLOT_START})

    def credential_revoked(self, slot_start: int, index: int) -> bool | None:
        if slot_start not in self.slots:
            return None
        return (slot_start, index) in self.revoked


@dataclass
class Subjects:
    suspended: set[bytes] = field(default_factory=set)

    def subject_revoked(self, handle: bytes) -> bool:
        return handle in self.suspended


@dataclass
class World:
    key: PrivateKey
    device: PrivateKey
    credential: bytes
    index: int

    def ring(self, state: KeyState = KeyState.ACTIVE, *, blinding: bool = False,
             not_before: int | None = None, not_after: int | None = None) -> KeyRing:
        return KeyRing([
            VerificationKey(
                self.key.public().kid_bytes(), self.key.public(), state,
                not_before, not_after, BLINDING if blinding else None,
            )
        ])

    def code(self, *, iat: int = IAT, counter: int = 0, device: PrivateKey | None = None) -> str:
        return koff.make_code(device or self.device, self.credential, iat=iat, counter=counter)


def world(alg: Alg = Alg.EDDSA) -> World:
    key = PrivateKey.generate(alg)
    device = PrivateKey.generate(Alg.ES256)
    index = 123_456
    credential = koff.issue_credential(
        key, key.public().kid_bytes(), BLINDING, handle=HANDLE, nbf=SLOT_START,
        exp=SLOT_START + SLOT, device=device.public(), status_index=index,
    )
    return World(key, device, credential, index)


def judge(text: str, w: World, *, now: int = IAT + 5, ring: KeyRing | None = None,
          status: Status | None = None, scene_name: str = "metro",
          subjects: Subjects | None = None, direction: str | None = "in"):
    return verify_offline(
        koff.parse_code(text), keys=ring or w.ring(), policy=scene(scene_name), now=now, skew=SKEW,
        status=status or Status(), lifetime=LIFETIME, direction=direction, subjects=subjects,
    )


@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_a_fresh_code_is_ok_with_a_replay_key(alg: Alg) -> None:
    w = world(alg)
    decision = judge(w.code(), w)
    assert decision.reason is Reason.OK and decision.valid
    assert decision.kind == "offline"
    assert decision.expires_at == IAT + LIFETIME
    assert decision.subject_handle is None  # a gate holds no blinding secret
    assert decision.replay_key is not None
    assert decision.replay_key.startswith(b"metro:in:")


def test_the_service_recovers_the_handle() -> None:
    w = world()
    decision = judge(w.code(), w, ring=w.ring(blinding=True))
    assert decision.reason is Reason.OK
    assert decision.subject_handle == HANDLE


def test_replay_key_names_credential_time_and_counter() -> None:
    w = world()
    variants = ((0, IAT), (1, IAT), (0, IAT + 1))
    a, b, c = (koff.parse_code(w.code(counter=n, iat=i)) for n, i in variants)
    again = koff.parse_code(w.code(counter=0, iat=IAT))  # a fresh ECDSA signature
    assert len({replay_id(a), replay_id(b), replay_id(c)}) == 3
    assert replay_id(again) == replay_id(a)
    inbound = judge(w.code(), w, direction="in").replay_key
    outbound = judge(w.code(), w, direction="out").replay_key
    assert inbound != outbound


def test_re_scannable_scene_has_no_replay_key() -> None:
    w = world()
    decision = judge(w.code(), w, scene_name="library")
    assert decision.reason is Reason.OK and decision.replay_key is None


@pytest.mark.parametrize(
    ("now", "iat", "reason"),
    [
        (IAT + LIFETIME + SKEW, IAT, Reason.OK),  # last fresh second
        (IAT + LIFETIME + SKEW + 1, IAT, Reason.EXPIRED),
        (IAT - SKEW, IAT, Reason.OK),  # device clock ahead by exactly the skew
        (IAT - SKEW - 1, IAT, Reason.NOT_YET_VALID),
        (SLOT_START - SKEW + 5, SLOT_START - SKEW, Reason.OK),  # slot start with skew
        (SLOT_START - SKEW + 5, SLOT_START - SKEW - 1, Reason.NOT_YET_VALID),
        (SLOT_START + SLOT + SKEW - 1, SLOT_START + SLOT + SKEW - 1, Reason.OK),
        (SLOT_START + SLOT + SKEW, SLOT_START + SLOT + SKEW, Reason.EXPIRED),  # slot over
    ],
)
def test_time_boundaries(now: int, iat: int, reason: Reason) -> None:
    w = world()
    assert judge(w.code(iat=iat), w, now=now).reason is reason


def test_unknown_and_revoked_keys() -> None:
    w = world()
    other = PrivateKey.generate(Alg.EDDSA)
    ring = KeyRing([VerificationKey(other.public().kid_bytes(), other.public(), KeyState.ACTIVE)])
    assert judge(w.code(), w, ring=ring).reason is Reason.UNKNOWN_KEY
    assert judge(w.code(), w, ring=w.ring(KeyState.REVOKED)).reason is Reason.REVOKED
    assert judge(w.code(), w, ring=w.ring(KeyState.PENDING)).reason is Reason.UNKNOWN_KEY


def test_key_window_is_judged_on_the_code_iat_after_its_claims() -> None:
    w = world()
    ring = w.ring(not_before=IAT + 100)  # the key's window starts after the code
    assert judge(w.code(), w, ring=ring).reason is Reason.UNKNOWN_KEY
    # a code from the future is not_yet_valid even though its key's window is ahead too
    ring = w.ring(not_before=IAT + 3600)
    assert judge(w.code(iat=IAT + 3000), w, ring=ring).reason is Reason.NOT_YET_VALID
    ring = w.ring(not_after=IAT - 100)
    assert judge(w.code(), w, ring=ring).reason is Reason.UNKNOWN_KEY


def test_bad_signatures() -> None:
    w = world()
    thief = PrivateKey.generate(Alg.ES256)
    assert judge(w.code(device=thief), w).reason is Reason.BAD_SIGNATURE
    # a key ring that holds the kid with a key of another algorithm
    es = PrivateKey.generate(Alg.ES256)
    ring = KeyRing([VerificationKey(w.key.public().kid_bytes(), es.public(), KeyState.ACTIVE)])
    assert judge(w.code(), w, ring=ring).reason is Reason.BAD_SIGNATURE


def test_a_device_alg_outside_the_list_is_a_bad_signature() -> None:
    w = world()
    protected = offline.code_protected(-8, w.credential)  # EdDSA claimed by the device
    payload = offline.encode_code_claims(offline.CodeClaims(iat=IAT))
    signature = w.device.sign(cose.sig_structure(protected, payload))
    text = sc1.to_text(cose.encode_sign1(protected, {}, payload, signature))
    assert judge(text, w).reason is Reason.BAD_SIGNATURE


def test_malformed_offline_codes_through_the_pipeline() -> None:
    """Decoding is the pipeline's first step (verifiers.core.verify): a code with the
    offline header but a broken credential is malformed, before any key is looked up."""
    w = world()
    message = cose.decode_sign1(sc1.from_text(w.code()))
    header = cbor.dumps({1: -7, 13: "not a credential"})
    broken = sc1.to_text(cose.encode_sign1(header, {}, message.payload, message.signature))
    decision = verify(broken, keys=KeyRing([]), policy=scene("metro"), now=IAT)
    assert decision.reason is Reason.MALFORMED
    ok = verify(w.code(), keys=w.ring(), policy=scene("metro"), now=IAT + 1,
                credentials=Status())
    assert (ok.reason, ok.kind, ok.expires_at) == (Reason.OK, "offline", IAT + 30)
    assert ok.offline_code is not None and ok.claims is None
    # without credential status (a bare JWK Set) an offline code cannot be judged
    bare = verify(w.code(), keys=w.ring(), policy=scene("metro"), now=IAT + 1)
    assert bare.reason is Reason.TRUST_EXPIRED


def test_revoked_credential_and_suspended_citizen() -> None:
    w = world()
    status = Status(revoked={(SLOT_START, w.index)})
    assert judge(w.code(), w, status=status).reason is Reason.REVOKED
    ring = w.ring(blinding=True)
    subjects = Subjects({HANDLE})
    assert judge(w.code(), w, ring=ring, subjects=subjects).reason is Reason.REVOKED
    # another citizen's suspension does not touch this one
    assert judge(w.code(), w, ring=ring, subjects=Subjects({b"\x01" * 10})).reason is Reason.OK


def test_no_status_list_for_the_slot_fails_closed() -> None:
    w = world()
    assert judge(w.code(), w, status=Status(slots=set())).reason is Reason.TRUST_EXPIRED


def test_scene_policy_applies_to_the_offline_kind() -> None:
    w = world()
    assert judge(w.code(), w, scene_name="hospital").reason is Reason.SCENE_NOT_ALLOWED


def test_a_forged_credential_with_a_trusted_kid_fails() -> None:
    """A credential minted by someone else but naming the service's kid."""
    w = world()
    forger = PrivateKey.generate(Alg.EDDSA)
    forged = koff.issue_credential(
        forger, w.key.public().kid_bytes(), BLINDING, handle=HANDLE, nbf=SLOT_START,
        exp=SLOT_START + SLOT, device=w.device.public(), status_index=1,
    )
    text = koff.make_code(w.device, forged, iat=IAT)
    assert judge(text, w).reason is Reason.BAD_SIGNATURE


def test_credential_edits_are_caught_by_the_service_signature() -> None:
    """Moving the slot window (nbf/exp) in a real credential breaks the service's
    signature even though the device re-signs the code."""
    w = world()
    protected_raw, _, payload, signature = cbor.loads(w.credential)
    claims = cbor.loads(payload)
    claims[4] += 86_400
    edited = offline.encode_credential(protected_raw, cbor.dumps(claims), signature)
    text = koff.make_code(w.device, edited, iat=IAT)
    assert judge(text, w).reason is Reason.BAD_SIGNATURE


_FUZZ_WORLD = world(Alg.ES256)
_FUZZ_CODE = sc1.from_text(_FUZZ_WORLD.code())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_offline_codes_never_crash_and_are_never_ok(data: st.DataObject) -> None:
    """Property-based (issue 9 item 8): any mutation of a genuine offline code goes
    through the whole pipeline without an exception and is never accepted."""
    raw = bytearray(_FUZZ_CODE)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 8))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    if bytes(raw) == _FUZZ_CODE:
        return
    text = data.draw(st.sampled_from([sc1.to_text(bytes(raw)), "SC1:" + bytes(raw).hex()]))
    decision = verify(text, keys=_FUZZ_WORLD.ring(blinding=True), policy=scene("metro"),
                      now=IAT + 1, credentials=Status(), direction="in")
    assert decision.reason is not Reason.OK
