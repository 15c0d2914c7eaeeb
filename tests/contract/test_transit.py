"""Transit contract (issue 10): fare tables and journey records on SQLite and
PostgreSQL; journey slots (single use + move in one step, compare-and-set) on the
in-process state and on Redis."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
from pathlib import Path

from suishen.app.storage.base import AuditRecord, Database, StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.app.storage.transit import KEEP_SLOT, GateTap, JourneyRecord, MoveKind, SlotMove
from suishen.verifiers.transit import (
    Journey,
    JourneyStatus,
    group_journeys,
    settle,
    settle_groups,
)
from tests.contract.conftest import StateKit

DAY_MS = 86_400_000
BASE_MS = 1_800_000_000_000


def journey(fare: int, status: JourneyStatus = JourneyStatus.COMPLETE) -> Journey:
    return Journey("metro", "metro-co", status, fare, "L1-S01-G1", 1_800_000_000,
                   "L2-S12-G3", 1_800_000_600)


async def test_fare_tables_upsert_and_read(db: Database) -> None:
    network = f"n{secrets.token_hex(4)}"
    assert network not in await db.transit.fare_tables()
    await db.transit.put_fare_table(network, '{"a": 1}', now=1)
    await db.transit.put_fare_table(network, '{"a": 2}', now=2)
    assert (await db.transit.fare_tables())[network] == '{"a": 2}'


async def test_journeys_round_trip_newest_first_and_paged(db: Database) -> None:
    handle, other = os.urandom(10), os.urandom(10)
    at = BASE_MS + secrets.randbelow(10**6) * DAY_MS
    records = [JourneyRecord(at + i, handle, journey(300 + i)) for i in range(5)]
    offline = JourneyRecord(at + 9, handle, Journey(
        "bus", "bus-co", JourneyStatus.SINGLE_TAP, 200, "B1-V1", 1_800_000_000), offline=True)
    await db.transit.append_journeys([*records, offline])
    await db.transit.append_journeys([JourneyRecord(at, other, journey(1))])
    await db.transit.append_journeys([])
    page = await db.transit.journeys_for_subject(handle, limit=4)
    assert [e.record for e in page] == [offline, records[4], records[3], records[2]]
    rest = await db.transit.journeys_for_subject(handle, limit=10, before_id=page[-1].id)
    assert [e.record for e in rest] == [records[1], records[0]]
    assert page[0].record.offline is True and page[1].record.offline is False



async def test_a_days_journeys_are_added_up_by_the_database(db: Database) -> None:
    """Settlement's query on every backend answers what the pure core computes from the
    journeys themselves: groups by operator, network and status, in the window only."""
    start = BASE_MS + secrets.randbelow(10**6) * DAY_MS  # a day no other test writes
    rng = random.Random(start)
    # "Shentong-Metro" sorts first in Python, last in a linguistic collation
    kinds = [("metro", "metro-co"), ("ferry", "bus-ferry-co"), ("bus", "bus-ferry-co"),
             ("metro", "Shentong-Metro")]
    records = []
    for _ in range(300):
        network, operator = rng.choice(kinds)
        status = rng.choice([s for s in JourneyStatus if s is not JourneyStatus.OPEN])
        records.append(JourneyRecord(start + rng.randrange(DAY_MS), os.urandom(10), Journey(
            network, operator, status, rng.randrange(0, 2000), "A-1", 1_800_000_000),
            offline=rng.random() < 0.2))
    edges = [JourneyRecord(start - 1, os.urandom(10), journey(7)),  # the day before
             JourneyRecord(start + DAY_MS, os.urandom(10), journey(9))]  # end exclusive
    await db.transit.append_journeys([*records, *edges])
    groups = await db.transit.journey_groups(start, start + DAY_MS)
    assert groups == group_journeys(r.journey for r in records)
    assert settle_groups(groups) == settle(r.journey for r in records)
    assert sum(g.fares for g in groups) == sum(r.journey.fare for r in records)
    assert await db.transit.journey_groups(start + 2 * DAY_MS, start + 3 * DAY_MS) == []
    edge = await db.transit.journey_groups(start + DAY_MS, start + DAY_MS + 1)
    assert [(g.journeys, g.fares) for g in edge] == [(1, 9)]


async def test_a_batch_is_all_or_nothing(db: Database) -> None:
    handle = os.urandom(10)
    bad = JourneyRecord(BASE_MS, handle, journey(-5))  # the table refuses a negative fare
    try:
        await db.transit.append_journeys([JourneyRecord(BASE_MS, handle, journey(1)), bad])
    except Exception as exc:
        assert "refused" in str(exc) or "error" in str(exc).lower()
    else:  # pragma: no cover - the CHECK constraint must refuse it
        raise AssertionError("a negative fare was stored")
    assert await db.transit.journeys_for_subject(handle, limit=10) == []


async def test_a_journey_record_the_database_refuses_is_a_dead_letter(db: Database) -> None:
    """Journey records get the audit writer's treatment (one queued writer): a record
    refused for its content is set aside, the others are written, the queue drains."""
    from suishen.app.observability import Metrics
    from suishen.app.services.transit import JourneyWriter

    metrics = Metrics()
    writer = JourneyWriter(db, metrics, batch_size=50, flush_interval=60.0, max_queue=1000,
                           clock=lambda: 1_800_000_000.0)
    handle = os.urandom(10)
    for i in range(10):  # fares 3 and 8 are negative: the CHECK constraint refuses them
        writer.record(JourneyRecord(BASE_MS + i, handle, journey(-1 if i in (3, 8) else i)))
    await writer.flush()
    assert writer.pending == 0
    stored = await db.transit.journeys_for_subject(handle, limit=20)
    assert sorted(e.record.journey.fare for e in stored) == [0, 1, 2, 4, 5, 6, 7, 9]
    dead = [d for d in map(json.loads, await db.transit.journey_dead_letters())
            if d["subject_handle"] == handle.hex()]
    assert sorted(d["at_ms"] for d in dead) == [BASE_MS + 3, BASE_MS + 8]
    assert all(d["fare"] == -1 for d in dead)
    sample = metrics.registry.get_sample_value
    assert sample("suishen_journeys_dead_letter_total") == 2
    assert sample("suishen_journeys_written_total") == 8


# --- gate uploads ---------------------------------------------------------------------
def gate_tap(handle: bytes, use: bytes, gate: str, at: int, scene: str = "metro") -> GateTap:
    # the use is made unique to the citizen: the PostgreSQL store is shared by the tests
    return GateTap("partner-1", gate, use + handle, handle, scene, "in", gate, at)


def history_of(tap: GateTap, outcome: str) -> AuditRecord:
    return AuditRecord(tap.decided_at * 1000, tap.partner_id, "gates", tap.scene, tap.checkpoint,
                       tap.direction, "ok" if outcome == "accepted" else "replayed",
                       tap.subject_handle, "0102", "rid", offline=True)


async def test_gate_taps_are_stored_once_per_gate_and_journeys_replaced(db: Database) -> None:
    handle = os.urandom(10)
    at = 1_800_000_000 + secrets.randbelow(10**6) * 86_400
    one, two = gate_tap(handle, b"u1", "G1", at), gate_tap(handle, b"u2", "G1", at + 60)
    seen: list[list[GateTap]] = []

    def pairing(h: bytes, scene: str, taps: list[GateTap]) -> list[JourneyRecord]:
        assert (h, scene) == (handle, "metro")
        seen.append(taps)
        # one journey per stored tap: enough to see the replacement
        return [JourneyRecord(t.decided_at * 1000, h, journey(len(taps)), offline=True)
                for t in taps]

    batch = [one, two, one]  # the same tap twice in one batch: the second is a duplicate
    outcomes = await db.transit.store_gate_taps(
        batch, received_at=at, audit_of=lambda i, o: history_of(batch[i], o), pairing=pairing)
    assert outcomes == ["accepted", "accepted", "duplicate"]
    twin = gate_tap(handle, b"u1", "G2", at + 5)  # the same use at another gate
    outcomes = await db.transit.store_gate_taps(
        [twin, two], received_at=at, audit_of=lambda i, o: history_of(twin, o), pairing=pairing)
    assert outcomes == ["duplicate_use", "duplicate"]
    assert [len(taps) for taps in seen] == [2, 3]
    stored = [e.record for e in await db.transit.journeys_for_subject(handle, limit=10)]
    assert len(stored) == 3 and all(r.offline and r.journey.fare == 3 for r in stored)
    history = [e.record for e in await db.audit.for_subject(handle, limit=10)]
    assert [(r.reason, r.offline) for r in history] == [
        ("replayed", True), ("ok", True), ("ok", True)]
    # online journeys of the citizen are not touched by the replacement
    online = JourneyRecord(at * 1000, handle, journey(7))
    await db.transit.append_journeys([online])
    await db.transit.store_gate_taps([gate_tap(handle, b"u3", "G1", at + 99)], received_at=at,
                                     audit_of=lambda i, o: history_of(twin, o), pairing=pairing)
    stored = [e.record for e in await db.transit.journeys_for_subject(handle, limit=10)]
    assert online in stored and len(stored) == 5


async def test_a_gate_upload_is_one_transaction(db: Database) -> None:
    handle = os.urandom(10)
    tap = gate_tap(handle, b"u1", "G1", 1_800_000_000)

    def failing(h: bytes, scene: str, taps: list[GateTap]) -> list[JourneyRecord]:
        raise RuntimeError("pairing failed half way")

    try:
        await db.transit.store_gate_taps([tap], received_at=1, pairing=failing,
                                         audit_of=lambda i, o: history_of(tap, o))
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the failure was swallowed")
    assert await db.audit.for_subject(handle, limit=10) == []
    bad = JourneyRecord(1, handle, journey(-1))  # refused by the CHECK: rolls back too
    try:
        await db.transit.store_gate_taps([tap], received_at=1, pairing=lambda *a: [bad],
                                         audit_of=lambda i, o: history_of(tap, o))
    except Exception as exc:
        assert not isinstance(exc, AssertionError)
    assert await db.audit.for_subject(handle, limit=10) == []
    assert await db.transit.journeys_for_subject(handle, limit=10) == []
    outcomes = await db.transit.store_gate_taps(
        [tap], received_at=1, pairing=lambda *a: None, audit_of=lambda i, o: history_of(tap, o))
    assert outcomes == ["accepted"]  # nothing of the failed attempts was kept
    assert len(await db.audit.for_subject(handle, limit=10)) == 1


# --- journey slots --------------------------------------------------------------------
ENTER = b'[1800000000,"L1-S01-G1"]'


def enter(now: int = 1_800_000_000, passback: int = 120) -> SlotMove:
    return SlotMove(MoveKind.ENTER, ENTER, now, passback, 600)


async def test_first_use_and_move(state: StateBackend) -> None:
    key, slot = os.urandom(16), os.urandom(20)
    # A first use moves the slot: empty -> the entry.
    assert await state.first_use_and_move(key, ttl_seconds=60, slot=slot, move=enter()) == (
        True, None, ENTER)
    # A used key moves nothing and reads nothing.
    assert await state.first_use_and_move(
        key, ttl_seconds=60, slot=slot, move=SlotMove(MoveKind.CLEAR)) == (False, None, None)
    assert await state.swap_slot(slot, expected=None, value=b"x", ttl_seconds=60) == (
        False, ENTER)
    # Another entry within the passback leaves the slot; an exit clears it; keep keeps.
    assert await state.first_use_and_move(
        os.urandom(16), ttl_seconds=60, slot=slot, move=enter(1_800_000_030)) == (
        True, ENTER, ENTER)
    assert await state.first_use_and_move(
        os.urandom(16), ttl_seconds=60, slot=slot, move=KEEP_SLOT) == (True, ENTER, ENTER)
    assert await state.first_use_and_move(
        os.urandom(16), ttl_seconds=60, slot=slot, move=SlotMove(MoveKind.CLEAR)) == (
        True, ENTER, None)
    assert await state.swap_slot(slot, expected=None, value=None, ttl_seconds=60) == (
        True, None)
    # the single-use key is the ordinary one: first_use sees it consumed
    assert await state.first_use(key, ttl_seconds=60) is False


# Slot values a move may find: what encode_entry writes (entries at and around the
# passback edge, negative and far-future clocks, checkpoints with JSON escapes) and what
# it never writes (garbage, near misses of the pattern), so that the Redis script and
# SlotMove.predict are compared on both sides of every branch.
def _found_values(rng: random.Random) -> list[bytes | None]:
    now = 1_800_000_000
    values: list[bytes | None] = [None, b"[", b"[,", b"[1800000000]", b"[-,1]",
                                  b"[1800000000 ,\"A\"]", b"[05,null]", b"x[1,2]",
                                  b"[1.5,\"A\"]", b"[99999999999999999999,null]",
                                  b"[-1800000000,null]", "[1,\"站\"]".encode()]
    for _ in range(60):
        at = now + rng.choice([-10**6, -121, -120, -119, -1, 0, 1, 5, 10**6]) + rng.randint(-2, 2)
        checkpoint = rng.choice([None, "L1-S01-G1", 'q"u\\o', "站台"])
        values.append(json.dumps([at, checkpoint], separators=(",", ":")).encode())
    return values


async def test_first_use_and_move_agrees_with_predict(state: StateBackend) -> None:
    rng = random.Random(20261203)
    moves = [KEEP_SLOT, SlotMove(MoveKind.CLEAR), enter(), enter(passback=0),
             enter(1_800_000_120), enter(1_700_000_000)]
    for found in _found_values(rng):
        for move in moves:
            slot = os.urandom(20)
            if found is not None:
                assert (await state.swap_slot(slot, expected=None, value=found,
                                              ttl_seconds=60))[0]
            first, seen, after = await state.first_use_and_move(
                os.urandom(16), ttl_seconds=60, slot=slot, move=move)
            assert (first, seen) == (True, found)
            assert after == move.predict(found), (found, move)
            # and the slot holds what the move says it left
            held = (await state.swap_slot(slot, expected=b"\x00never", value=None,
                                          ttl_seconds=60))[1]
            assert held == after, (found, move)


async def test_swap_slot_is_compare_and_set(state_kit: StateKit) -> None:
    one, two = await state_kit.new(), await state_kit.new()
    slot = os.urandom(20)
    assert await one.swap_slot(slot, expected=b"x", value=b"y", ttl_seconds=60) == (False, None)
    assert await one.swap_slot(slot, expected=None, value=b"a", ttl_seconds=60) == (True, None)
    assert await two.swap_slot(slot, expected=None, value=b"b", ttl_seconds=60) == (False, b"a")
    assert await two.swap_slot(slot, expected=b"a", value=None, ttl_seconds=60) == (True, None)
    assert await one.swap_slot(slot, expected=b"a", value=b"c", ttl_seconds=60) == (False, None)


async def test_concurrent_swaps_one_wins(state_kit: StateKit) -> None:
    states = [await state_kit.new() for _ in range(4)]
    slot = os.urandom(20)
    await states[0].swap_slot(slot, expected=None, value=b"open", ttl_seconds=60)
    results = await asyncio.gather(*(
        states[i % 4].swap_slot(slot, expected=b"open", value=None, ttl_seconds=60)
        for i in range(50)))
    assert sum(done for done, _ in results) == 1


async def test_slots_expire(state: StateBackend) -> None:
    slot = os.urandom(20)
    await state.swap_slot(slot, expected=None, value=b"v", ttl_seconds=1)
    await asyncio.sleep(2.1)
    assert await state.swap_slot(slot, expected=None, value=b"w", ttl_seconds=60) == (True, None)


async def test_embedded_slots_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "single-use.sqlite3"
    first = MemoryState(single_use_path=path)
    slot = os.urandom(20)
    await first.swap_slot(slot, expected=None, value=b"entry", ttl_seconds=600)
    await first.close()
    again = MemoryState(single_use_path=path)
    try:
        assert await again.swap_slot(slot, expected=None, value=b"x", ttl_seconds=60) == (
            False, b"entry")
    finally:
        await again.close()
