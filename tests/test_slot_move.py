"""The slot move a transit tap applies with its single use (``SlotMove``, predicted by
``slot_move`` before the slot is read) agrees with the journey rules (``tap``) on every
slot value the service writes: whatever the citizen's open entry, the direction, the
clock and the table, the slot after the move is the slot ``tap`` decides. (Redis's
script against ``SlotMove.predict``: ``tests/contract/test_transit.py``.)"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suishen.app.services.transit import decode_entry, encode_entry, slot_move
from suishen.app.storage.transit import MoveKind
from suishen.verifiers.transit import OpenEntry, parse_fare_table, tap

T0 = 1_800_000_000
METRO = {"operator": "metro-co", "zones": {"L1-S01": 1, "L2-S12": 2},
         "fares": {"0": 300, "1": 400}, "max_fare": 900}
TABLES = [
    parse_fare_table("metro", {**METRO, "exit_without_entry": "refuse"}),
    parse_fare_table("metro", {**METRO, "exit_without_entry": "charge_max"}),
    parse_fare_table("bus", {"operator": "bus-ferry-co", "flat_fare": 200, "max_fare": 200}),
]
checkpoints = st.one_of(st.none(), st.sampled_from(["L1-S01-G1", "L2-S12-G3"]),
                        st.text(max_size=12))
entries = st.one_of(st.none(), st.builds(
    OpenEntry, checkpoints, st.integers(T0 - 3 * 86_400, T0 + 86_400)))


@settings(max_examples=3000)
@given(table=st.sampled_from(TABLES), entry=entries,
       direction=st.sampled_from([None, "in", "out"]), checkpoint=checkpoints,
       offset=st.one_of(st.integers(-5, 5), st.integers(-200, 200), st.integers(-10**6, 10**6)),
       passback=st.sampled_from([0, 1, 120, 1_800]))
def test_the_move_leaves_what_tap_decides(table, entry, direction, checkpoint, offset,
                                         passback) -> None:
    found = encode_entry(entry)
    assert decode_entry(found) == entry  # the slot format round-trips
    now = (entry.at if entry is not None else T0) + offset
    step = tap(table, entry, direction=direction, checkpoint=checkpoint, now=now,
               passback_seconds=passback)
    decided = found if step.reason is not None else encode_entry(step.open_entry)
    move = slot_move(table, direction=direction, checkpoint=checkpoint, now=now,
                     passback_seconds=passback)
    assert move.predict(found) == decided


def test_each_kind_of_move_is_reached() -> None:
    kinds = {slot_move(table, direction=d, checkpoint="L1-S01-G1", now=T0,
                       passback_seconds=120).kind
             for table in TABLES for d in (None, "in", "out")}
    assert kinds == set(MoveKind)


@settings(max_examples=500)
@given(entry=entries)
def test_slot_values_keep_their_bytes(entry):
    """Slot values live in Redis across deploys: the encoder keeps json.dumps's compact,
    ASCII-escaped bytes (a changed byte would read as a slot the service did not write)."""
    import json

    want = None if entry is None else json.dumps(
        [entry.at, entry.checkpoint], separators=(",", ":")).encode()
    assert encode_entry(entry) == want
    assert decode_entry(want) == entry


@given(handle=st.binary(min_size=10, max_size=10), network=st.sampled_from(["metro", "bus", "线"]))
def test_the_slot_is_the_documented_keyed_hash(handle, network):
    """docs/transit.md: HMAC-SHA256(secret, network || 0x00 || handle)[:20], whatever
    slot() caches to compute it."""
    import hashlib
    import hmac

    from suishen.app.services.transit import TransitService

    secret = b"k" * 32
    service = TransitService(None, None, secret=secret, writer=None,  # type: ignore[arg-type]
                             metrics=None, passback_seconds=0)  # type: ignore[arg-type]
    want = hmac.new(secret, network.encode() + b"\x00" + handle, hashlib.sha256).digest()[:20]
    assert service.slot(handle, network) == want
    assert service.slot(handle, network) == want  # the keyed state is copied, not spent
