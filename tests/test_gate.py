"""The offline gate (sdk/gate.py, verifiers/trust.py) with a fixed ``now``: bundles,
deltas, rollback, anchors, clock floor, trust health, replay memory and the state file
(issue 9 items 5 and 8)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from suishen.codecs import bundle as codec
from suishen.keys import bundle as signing
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.issuer import Issuer
from suishen.keys.signer import SoftwareSigner
from suishen.sdk.gate import Gate
from suishen.verifiers.trust import BundleRollback, DeltaMismatch

SLOT = 3600
T0 = 1_800_000_000  # a slot boundary (T0 % 3600 == 0)
SIZE = 1000
BLINDING = os.urandom(32)
assert T0 % SLOT == 0


@dataclass
class City:
    """A tiny service: one code-signing key, one anchor, credentials by slot."""

    key: PrivateKey = field(default_factory=lambda: PrivateKey.generate(Alg.EDDSA))
    anchor: PrivateKey = field(default_factory=lambda: PrivateKey.generate(Alg.ES256))
    version: int = 0
    revoked: dict[int, set[int]] = field(default_factory=dict)

    @property
    def kid(self) -> bytes:
        return self.key.public().kid_bytes()

    def keys(self, state: str = "active") -> tuple[codec.BundleKey, ...]:
        pub = self.key.public()
        return (codec.BundleKey(self.kid, pub.alg.cose, pub.raw, T0 - 86_400, None, state),)

    def bundle(self, now: int, *, state: str = "active", keep_ended: int = 0) -> codec.Bundle:
        self.version += 1
        sizes = {s: SIZE for s in signing.horizon_slots(now, SLOT, keep_ended=keep_ended)}
        return signing.build(
            version=self.version, now=now, keys=self.keys(state), slot_seconds=SLOT,
            list_sizes=sizes, revoked=self.revoked, keep_ended=keep_ended,
        )

    def sign(self, bundle: codec.Bundle) -> bytes:
        return signing.sign(self.anchor, self.anchor.public().kid_bytes(), bundle)

    def gate(self, **options) -> Gate:
        anchor = self.anchor.public()
        return Gate.with_anchors({anchor.kid_bytes(): anchor}, **options)

    def wallet(self, slot_start: int, index: int, handle: bytes = b"\x07" * 10):
        device = PrivateKey.generate(Alg.ES256)
        credential = koff.issue_credential(
            self.key, self.kid, BLINDING, handle=handle, nbf=slot_start,
            exp=slot_start + SLOT, device=device.public(), status_index=index,
        )
        return lambda iat, counter=0: koff.make_code(device, credential, iat=iat, counter=counter)


@pytest.fixture
def city() -> City:
    return City()


def test_offline_code_ok_then_replayed_then_other_direction(city: City) -> None:
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0)))
    code = city.wallet(T0, 5)(T0 + 10)
    first = gate.verify(code, scene="metro", direction="in", now=T0 + 12)
    assert (first.valid, first.reason, first.kind) == (True, "ok", "offline")
    assert not first.degraded and first.trust == "fresh"
    assert gate.verify(code, scene="metro", direction="in", now=T0 + 13).reason == "replayed"
    assert gate.verify(code, scene="metro", direction="out", now=T0 + 14).reason == "ok"
    # a second code of the same slot (new counter) is a new code
    again = city.wallet(T0, 6)
    assert gate.verify(again(T0 + 10), scene="metro", direction="in", now=T0 + 12).valid


def test_personal_codes_verify_with_the_bundle_keys(city: City) -> None:
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0)))
    issuer = Issuer(SoftwareSigner(city.key, city.kid), BLINDING)
    issued = issuer.issue_personal(b"\x01" * 10, now=T0, ttl=60)
    decision = gate.verify(issued.text, scene="library", now=T0 + 5)
    assert (decision.valid, decision.kind) == (True, "personal")


GRACE = signing.ended_grace(skew=30, offline_lifetime=30)  # the gate defaults: 90 s


def test_horizon_slots_keep_the_slot_that_ended_within_the_grace() -> None:
    end = T0 + SLOT
    assert signing.horizon_slots(end + 5, SLOT)[0] == end
    assert signing.horizon_slots(end + 5, SLOT, keep_ended=GRACE)[:2] == [T0, end]
    assert signing.horizon_slots(end + GRACE - 1, SLOT, keep_ended=GRACE)[0] == T0
    assert signing.horizon_slots(end + GRACE, SLOT, keep_ended=GRACE)[0] == end
    assert signing.horizon_slots(end - 5, SLOT, keep_ended=GRACE)[0] == T0
    # the horizon's end does not move with the grace
    assert (signing.horizon_slots(end + 5, SLOT, keep_ended=GRACE)[-1]
            == signing.horizon_slots(end + 5, SLOT)[-1])


def test_a_full_bundle_just_after_the_hour_keeps_the_slot_that_ended(city: City) -> None:
    """A gate that takes a full bundle at 11:00:05 (a new gate, a resync, a delta the
    service would not make) still judges the codes made at 10:59:59 with slot 10:00's
    list: valid, or revoked when the device was; before stop 24 the bundle had no list
    for that slot and every such code was refused ``trust_expired``."""
    end = T0 + SLOT
    make, revoked_make = city.wallet(T0, 41), city.wallet(T0, 42)
    city.revoked.setdefault(T0, set()).add(42)
    late, revoked_late = make(end - 1), revoked_make(end - 1)
    old = city.gate()
    old.load_bundle(city.sign(city.bundle(end + 5)))  # without the grace: as before
    assert old.verify(late, scene="library", now=end + 10).reason == "trust_expired"
    gate = city.gate()
    bundle = city.bundle(end + 5, keep_ended=GRACE)
    assert T0 in bundle.lists and end in bundle.lists
    gate.load_bundle(city.sign(bundle))
    assert gate.verify(late, scene="library", now=end + 10).reason == "ok"
    assert gate.verify(revoked_late, scene="library", now=end + 10).reason == "revoked"
    # The grace is what a code of the slot can be fresh for: past it, nothing of the
    # slot verifies, and neither the bundle nor the gate keeps its list.
    past = end + GRACE
    assert T0 not in city.bundle(past, keep_ended=GRACE).lists
    assert gate.verify(make(end - 1, 1), scene="library", now=past).reason == "expired"


def test_the_gate_keeps_an_ended_slot_for_the_grace_not_just_the_skew(city: City) -> None:
    """A gate holding slot T0 takes deltas issued after T0 ended: it keeps the slot's
    list while a code of the slot can still be fresh (lifetime + 2 x skew), then drops
    it. It used to drop it after ``skew`` seconds, refusing codes still fresh."""
    end = T0 + SLOT

    def synced(gate: Gate) -> Gate:
        held = city.bundle(end - 600)
        gate.load_bundle(city.sign(held))
        for at in (end + 45, end + GRACE + 1):
            full = city.bundle(at)
            gate.load_bundle(city.sign(signing.delta(full, since=held, flips={})))
            held = full
            if at == end + 45:  # past the skew, inside the grace
                assert T0 in gate.trust._lists
                assert gate.verify(late, scene="library", now=end + 58).reason == "ok"
        return gate

    late = city.wallet(T0, 7)(end + 29)  # inside the slot by the skew
    assert T0 not in synced(city.gate()).trust._lists
    # a gate's own lifetime and skew set its grace
    short, held = city.gate(lifetime=10, skew=5), city.bundle(end - 600)
    short.load_bundle(city.sign(held))
    after = city.bundle(end + 26)  # past 10 + 2 x 5 s
    short.load_bundle(city.sign(signing.delta(after, since=held, flips={})))
    assert T0 not in short.trust._lists


def test_revocation_reaches_the_gate_with_a_delta(city: City) -> None:
    gate = city.gate()
    first = city.bundle(T0)
    gate.load_bundle(city.sign(first))
    make = city.wallet(T0, 42)
    assert gate.verify(make(T0 + 10), scene="library", now=T0 + 11).valid
    city.revoked.setdefault(T0, set()).add(42)  # the device is revoked at the service
    second = city.bundle(T0 + 60)
    d = signing.delta(second, since=first, flips={T0: {42}})
    assert d.flips == {T0: (42,)} and not d.lists
    gate.load_bundle(city.sign(d))
    assert gate.trust.bundle is not None and gate.trust.bundle.version == second.version
    assert gate.verify(make(T0 + 70), scene="library", now=T0 + 71).reason == "revoked"


def test_a_delta_just_after_the_hour_flips_the_slot_that_ended(city: City) -> None:
    """The gate keeps the slot that just ended for ``skew`` seconds (its codes can still
    be fresh), so a delta made then must flip it too: a code the revoked device made at
    10:59:59 is refused at 11:00:10, not accepted (found in stop 21, fixed in stop 23)."""
    gate = city.gate()
    end = T0 + SLOT  # the hour that ends slot T0
    first = city.bundle(end - 600)  # the gate synced at 10:50: it holds slot T0
    gate.load_bundle(city.sign(first))
    make = city.wallet(T0, 42)
    late_code = make(end - 1)  # made at 10:59:59, before the revocation reached the gate
    city.revoked.setdefault(T0, set()).add(42)  # revoked at 10:59:50
    second = city.bundle(end + 5)  # built at 11:00:05: its lists start at slot `end`
    assert T0 not in second.lists
    d = signing.delta(second, since=first, flips={T0: {42}}, keep_ended=60)
    assert d.flips == {T0: (42,)}
    gate.load_bundle(city.sign(d))
    assert gate.verify(late_code, scene="library", now=end + 10).reason == "revoked"
    # without the grace the flip is left out (what deltas did before), and the code passes
    old = city.gate()
    old.load_bundle(city.sign(first))
    plain = signing.delta(second, since=first, flips={T0: {42}})
    assert plain.flips == {}
    old.load_bundle(city.sign(plain))
    assert old.verify(late_code, scene="library", now=end + 10).reason == "ok"
    # a gate that no longer holds the ended slot skips its flips; a slot that has not
    # ended and is not held is still a mismatch
    bare = city.gate()
    later = city.bundle(end + 40)  # built after the gate's skew: slot T0 dropped
    bare.load_bundle(city.sign(later))
    newest = city.bundle(end + 50)
    bare.load_bundle(city.sign(signing.delta(newest, since=later, flips={T0: {42}},
                                             keep_ended=60, since_slots=[T0, *later.lists])))
    assert bare.trust.bundle is not None and bare.trust.bundle.version == newest.version
    assert bare.verify(late_code, scene="library", now=end + 55).reason == "trust_expired"
    ahead = city.bundle(end + 60)
    unheld = replace(signing.delta(ahead, since=newest, flips={}),
                     flips={end + 30 * SLOT: (1,)})
    with pytest.raises(DeltaMismatch):
        bare.load_bundle(city.sign(unheld))
    # slots that ended longer ago than the grace are not flipped (the gate dropped them)
    assert signing.delta(city.bundle(end + 61), since=first, flips={T0: {42}},
                         keep_ended=60).flips == {}


def test_full_bundle_with_revocation(city: City) -> None:
    city.revoked = {T0: {9}}
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0)))
    assert gate.verify(city.wallet(T0, 9)(T0 + 1), scene="bus", now=T0 + 2).reason == "revoked"
    assert gate.verify(city.wallet(T0, 8)(T0 + 1), scene="bus", now=T0 + 2).reason == "ok"


def test_no_rollback_and_deltas_only_for_their_version(city: City) -> None:
    gate = city.gate()
    old, new = city.bundle(T0), city.bundle(T0 + 60)
    gate.load_bundle(city.sign(new))
    with pytest.raises(BundleRollback):
        gate.load_bundle(city.sign(old))
    gate.load_bundle(city.sign(new))  # the same version again: no-op
    newer = city.bundle(T0 + 120)
    stale_delta = signing.delta(newer, since=old, flips={})
    with pytest.raises(DeltaMismatch):
        gate.load_bundle(city.sign(stale_delta))
    fresh = city.gate()
    with pytest.raises(DeltaMismatch):  # a delta for a gate with nothing
        fresh.load_bundle(city.sign(signing.delta(newer, since=new, flips={})))


def test_bundle_from_another_anchor_is_refused(city: City) -> None:
    gate = city.gate()
    impostor = City(key=city.key)
    with pytest.raises(signing.UntrustedBundle):
        gate.load_bundle(impostor.sign(impostor.bundle(T0)))


def test_clock_floor_raises_a_gate_clock_set_to_the_past(city: City) -> None:
    gate = city.gate()
    make = city.wallet(T0, 1)
    old_code = make(T0 + 5)
    gate.load_bundle(city.sign(city.bundle(T0 + 1800)))
    # The gate's clock says T0 + 6, when old_code would be fresh; the floor is the
    # bundle's issued_at - skew, where it is long expired.
    decision = gate.verify(old_code, scene="metro", direction="in", now=T0 + 6)
    assert decision.clock_raised and decision.reason == "expired"


def test_degraded_between_refresh_after_and_expires_at(city: City) -> None:
    gate = city.gate()
    bundle = city.bundle(T0)
    gate.load_bundle(city.sign(bundle))
    at = bundle.refresh_after + 10
    decision = gate.verify(city.wallet(T0, 2)(at), scene="metro", direction="in", now=at)
    assert (decision.valid, decision.degraded, decision.trust) == (True, True, "degraded")


def test_a_slot_beyond_the_bundle_fails_closed_even_in_transit(city: City) -> None:
    gate = city.gate()
    bundle = city.bundle(T0)
    gate.load_bundle(city.sign(bundle))
    late = bundle.expires_at + 3 * SLOT
    slot = late - late % SLOT
    assert slot not in signing.horizon_slots(T0, SLOT)
    decision = gate.verify(city.wallet(slot, 3)(late), scene="metro", direction="in", now=late)
    assert (decision.reason, decision.trust) == ("trust_expired", "expired")


def test_hard_expiry_transit_accepts_flagged_others_fail_closed(city: City) -> None:
    gate = city.gate()
    built = city.bundle(T0)
    short = signing.build(
        version=built.version + 1, now=T0, keys=city.keys(), slot_seconds=SLOT,
        list_sizes={s: SIZE for s in signing.horizon_slots(T0, SLOT)}, revoked={},
        lifetime=2 * SLOT, refresh=SLOT,
    )
    gate.load_bundle(city.sign(short))
    at = T0 + 3 * SLOT + 100  # past expires_at, inside a slot the bundle holds
    make = city.wallet(T0 + 3 * SLOT, 11)
    metro = gate.verify(make(at), scene="metro", direction="in", now=at + 1)
    assert (metro.valid, metro.degraded, metro.trust) == (True, True, "expired")
    library = gate.verify(make(at, 1), scene="library", now=at + 1)
    assert (library.valid, library.reason) == (False, "trust_expired")
    strict = city.gate(accept_expired_trust=frozenset())
    strict.load_bundle(city.sign(short))
    assert strict.verify(make(at, 2), scene="metro", direction="in", now=at + 1).reason == (
        "trust_expired"
    )


def test_a_gate_with_no_bundle_fails_closed(city: City) -> None:
    gate = city.gate()
    decision = gate.verify(city.wallet(T0, 1)(T0), scene="metro", direction="in", now=T0)
    assert decision.reason == "trust_expired" and decision.trust == "none"
    assert gate.verify("SC1:???", scene="metro", now=T0).reason == "malformed"
    assert gate.verify("XY9:ABC", scene="metro", now=T0).reason == "unsupported_version"


def test_revoked_code_signing_key_in_the_bundle(city: City) -> None:
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0, state="revoked")))
    assert gate.verify(city.wallet(T0, 1)(T0), scene="metro", now=T0).reason == "revoked"


def test_state_file_keeps_trust_replay_floor_and_log(city: City, tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    city.revoked = {T0: {13}}
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0 + 600)))
    code = city.wallet(T0, 1)(T0 + 610)
    assert gate.verify(code, scene="metro", direction="in", now=T0 + 611).valid
    gate.save(path)
    assert "BEGIN" not in path.read_text()  # no key material of any kind
    again = city.gate()
    again.restore(path, now=T0 + 612)
    assert again.verify(code, scene="metro", direction="in", now=T0 + 612).reason == "replayed"
    assert again.verify(city.wallet(T0, 13)(T0 + 612), scene="bus", now=T0 + 613).reason == (
        "revoked"
    )
    assert again.trust.floor() == T0 + 600 - 30
    assert [e["reason"] for e in again.take_log()] == ["ok", "replayed", "revoked"]
    # a newer bundle still applies on top of the restored one; an older one does not
    again.load_bundle(city.sign(city.bundle(T0 + 900)))
    with pytest.raises(BundleRollback):
        again.load_bundle(city.sign(signing.build(
            version=1, now=T0, keys=city.keys(), slot_seconds=SLOT, list_sizes={}, revoked={},
        )))


def test_a_corrupt_state_file_is_a_clear_error(city: City, tmp_path: Path) -> None:
    from suishen.errors import VerificationError

    path = tmp_path / "gate.json"
    for content in ("not json", json.dumps({"format": 99}), json.dumps({"format": 1})):
        path.write_text(content)
        with pytest.raises(VerificationError):
            city.gate().restore(path, now=T0)


def test_log_is_bounded_to_the_newest_decisions(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log keeps the newest ``MAX_LOG`` decisions in order, whether or not it was
    read in between (entries are built lazily, on read)."""
    import suishen.sdk.gate as gate_module

    monkeypatch.setattr(gate_module, "MAX_LOG", 5)
    gate = city.gate()
    gate.load_bundle(city.sign(city.bundle(T0)))
    for i in range(4):
        gate.verify(f"SC1:bad{i}", scene="library", now=T0 + i)
    assert [e["decided_at"] for e in gate.log] == [T0, T0 + 1, T0 + 2, T0 + 3]
    for i in range(4, 9):
        gate.verify(f"SC1:bad{i}", scene="library", now=T0 + i)
    log = gate.take_log()
    assert [e["decided_at"] for e in log] == [T0 + i for i in range(4, 9)]
    assert [e["code"] for e in log] == [f"SC1:bad{i}" for i in range(4, 9)]
    assert all(e["reason"] == "malformed" and e["scene"] == "library" for e in log)
    gate.forget_uploaded(2)
    assert [e["decided_at"] for e in gate.log] == [T0 + 6, T0 + 7, T0 + 8]
