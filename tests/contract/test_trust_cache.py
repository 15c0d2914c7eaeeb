"""Shared trust-bundle cache contract (app/services/trust.py): two "processes" (two
TrustService and KeyManager instances on one database and one state backend) answer
the same signed bytes for a version, built once, on the in-process state and on Redis.

ES256 signatures are randomized, so equal signed bytes from two processes prove that
one process built and signed the bundle and the other served its result.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suishen.app.services.keys import CODES, TOKENS, KeyManager
from suishen.app.services.trust import TrustService, ensure_anchor
from suishen.app.storage.base import Database, StateBackend
from suishen.app.storage.devices import CredentialRow, Device
from suishen.app.storage.memory import MemoryState
from suishen.app.storage.redis_state import RedisState
from suishen.app.storage.sqlite import SQLiteDatabase
from suishen.errors import BackendUnavailable
from suishen.keys.algorithms import Alg
from suishen.keys.kek import KeyEncryptionKey
from suishen.sdk.gate import Gate
from tests.contract.conftest import StateKit

KEK = KeyEncryptionKey(bytes(range(32)))
NOW = 1_800_000_000
SLOT = 3_600


@dataclass
class Cluster:
    db: Database
    state_kit: StateKit
    now: list[int]

    async def process(self, *, lock_ms: int = 5_000, keep_ended: int = 0) -> TrustService:
        return (await self.process_and_keys(lock_ms=lock_ms, keep_ended=keep_ended))[0]

    async def process_and_keys(self, *, lock_ms: int = 5_000,
                               keep_ended: int = 0) -> tuple[TrustService, KeyManager]:
        state = await self.state_kit.new()
        keys = KeyManager(self.db.keysets, state, KEK, alg=Alg.ES256,
                          overlap_seconds={CODES: 90, TOKENS: 305},
                          clock=lambda: self.now[0])
        await keys.load_or_create()
        await ensure_anchor(self.db, keys, KEK, alg=Alg.ES256, now=self.now[0])
        return TrustService(self.db, keys, slot_seconds=SLOT, list_size=64,
                            refresh_seconds=900, lifetime_seconds=86_400,
                            clock=lambda: self.now[0], shared=state, lock_ms=lock_ms,
                            keep_ended_seconds=keep_ended), keys

    def lock_key(self, version: int) -> str:
        return f"trust:build:{version}:1"


@pytest.fixture
async def cluster(state_kit: StateKit, tmp_path: Path) -> AsyncIterator[Cluster]:
    db = await SQLiteDatabase.open(tmp_path / "db.sqlite3")
    await db.migrate()
    try:
        yield Cluster(db, state_kit, [NOW])
    finally:
        await db.close()


async def test_two_processes_serve_the_same_bytes_for_a_version(cluster: Cluster) -> None:
    a, b = await cluster.process(), await cluster.process()
    (sa, ba), (sb, bb) = await asyncio.gather(a.signed(), b.signed())
    assert sa == sb and ba == bb
    again, _ = await b.signed()
    assert again == sa
    # a later version (a tick): again one body for both, and the version only grows
    cluster.now[0] += 120
    (ta, va), (tb, vb) = await asyncio.gather(b.signed(), a.signed())
    assert ta == tb and va.version == vb.version > ba.version


async def test_a_key_rotation_in_one_process_and_a_tick_in_the_other_agree(
    cluster: Cluster,
) -> None:
    (a, keys_a), b = await cluster.process_and_keys(), await cluster.process()
    _, before = await a.signed()
    rotated = await keys_a.rotate(CODES)
    cluster.now[0] += 120  # b would tick while a bumps for its new keys
    (sa, ba), (sb, bb) = await asyncio.gather(a.signed(), b.signed())
    assert ba.version == bb.version > before.version and sa == sb
    active = [k for k in rotated.keys if k.state.value == "active"]
    assert {bytes.fromhex(k.kid) for k in active} <= {k.kid for k in ba.keys}


async def test_deltas_are_shared_too(cluster: Cluster) -> None:
    a, b = await cluster.process(), await cluster.process()
    _, first = await a.signed()
    await cluster.db.devices.bump("tick", now=cluster.now[0])
    (da, ca), (db_, cb) = await asyncio.gather(a.signed(first.version), b.signed(first.version))
    assert ca.is_delta and ca.since == first.version
    assert da == db_ and ca == cb
    full_a, _ = await a.signed()
    full_b, _ = await b.signed()
    assert full_a == full_b != da


async def test_while_another_process_builds_a_fresh_previous_bundle_is_served(
    cluster: Cluster,
) -> None:
    a = await cluster.process()
    _, old = await a.signed()
    head = await cluster.db.devices.bump("tick", now=cluster.now[0])
    state = await cluster.state_kit.new()
    assert await state.cache_add(cluster.lock_key(head.version), b"1", ttl_ms=60_000)
    try:
        start = time.monotonic()
        _, served = await a.signed()
        assert served.version == old.version  # no wait: within its refresh_after
        assert time.monotonic() - start < 1.0
    finally:
        await state.cache_delete(cluster.lock_key(head.version))
    _, now_served = await a.signed()
    assert now_served.version == head.version


async def test_a_process_with_nothing_waits_and_takes_over_a_dead_builders_lock(
    cluster: Cluster,
) -> None:
    await (await cluster.process()).signed()  # the code keys' version is in place
    head = await cluster.db.devices.bump("tick", now=cluster.now[0])
    state: StateBackend = await cluster.state_kit.new()
    # a builder that died: its lock is left to expire (400 ms)
    assert await state.cache_add(cluster.lock_key(head.version), b"1", ttl_ms=400)
    a = await cluster.process(lock_ms=400)
    start = time.monotonic()
    signed, bundle = await a.signed()
    assert time.monotonic() - start >= 0.3
    assert bundle.version == head.version
    b = await cluster.process(lock_ms=400)
    assert (await b.signed())[0] == signed


async def test_a_builder_that_never_finishes_is_a_503_not_a_hang(cluster: Cluster) -> None:
    await (await cluster.process()).signed()
    head = await cluster.db.devices.bump("tick", now=cluster.now[0])
    state = await cluster.state_kit.new()
    assert await state.cache_add(cluster.lock_key(head.version), b"1", ttl_ms=60_000)
    a = await cluster.process(lock_ms=200)  # holds nothing: it cannot serve an older one
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await a.signed()
        assert time.monotonic() - start < 3.0
    finally:
        await state.cache_delete(cluster.lock_key(head.version))


async def test_redis_down_means_bundles_built_locally_not_errors(tmp_path: Path) -> None:
    """A real fault: a Redis URL where nothing listens."""
    db = await SQLiteDatabase.open(tmp_path / "db.sqlite3")
    await db.migrate()
    down = RedisState.from_url("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        keys = KeyManager(db.keysets, MemoryState(), KEK, alg=Alg.ES256,
                          overlap_seconds={CODES: 90, TOKENS: 305}, clock=lambda: NOW)
        await keys.load_or_create()
        await ensure_anchor(db, keys, KEK, alg=Alg.ES256, now=NOW)
        trust = TrustService(db, keys, slot_seconds=SLOT, list_size=64, refresh_seconds=900,
                             lifetime_seconds=86_400, clock=lambda: NOW, shared=down)
        _, full = await trust.signed()
        assert not full.is_delta
        await db.devices.bump("tick", now=NOW)
        _, delta = await trust.signed(full.version)
        assert delta.is_delta and delta.since == full.version
    finally:
        await down.close()
        await db.close()


@pytest.mark.parametrize("keep_ended", [60, 0])
async def test_a_delta_just_after_the_hour_flips_the_slot_that_ended(
    cluster: Cluster, keep_ended: int,
) -> None:
    """A device revoked at 10:59:50, a gate that synced at 10:50 and syncs again at
    11:00:05: the delta flips the device's credential in the 10:00 slot too (the gate
    still holds it, and a code made at 10:59:59 is fresh until about 11:01), and the
    gate's list for that slot has the bit. With no grace (what deltas did before), the
    ended slot is left unflipped."""
    ended, current = NOW - SLOT, NOW
    cluster.now[0] = NOW - 600
    trust = await cluster.process(keep_ended=keep_ended)
    device = Device(f"dev-{secrets.token_hex(6)}", "citizen-x", "phone", NOW - 3000)
    await cluster.db.devices.create(device)
    rows = [CredentialRow(device.device_id, ended, ended + SLOT, 5, "abcd", b"\x02" * 33),
            CredentialRow(device.device_id, current, current + SLOT, 6, "abcd", b"\x03" * 33)]
    assert await cluster.db.devices.add_credentials(rows) == rows
    first, held = await trust.signed()
    gate = Gate.from_anchor_jwks(trust.anchor_jwks())
    gate.load_bundle(first)
    assert ended in held.lists and current in held.lists
    await cluster.db.devices.revoke(device.device_id, now=NOW - 10)
    cluster.now[0] = NOW + 5
    signed, delta = await trust.signed(since=held.version)
    assert delta.is_delta and ended not in delta.lists
    if keep_ended:
        assert delta.flips == {ended: (5,), current: (6,)}
    else:
        assert delta.flips == {current: (6,)}
    gate.load_bundle(signed)
    assert gate.trust._lists[current].get(6) == 1
    assert gate.trust._lists[ended].get(5) == (1 if keep_ended else 0)


@pytest.mark.parametrize("keep_ended", [90, 0])
async def test_a_full_bundle_just_after_the_hour_holds_the_slot_that_ended(
    cluster: Cluster, keep_ended: int,
) -> None:
    """A gate that takes a full bundle at 11:00:05 (new, or resyncing) gets the 10:00
    slot's list too, with the bit of a device revoked at 10:59:50, so the codes made at
    10:59:59 are judged (valid or revoked) rather than refused ``trust_expired``; the
    list is gone from bundles built once the grace has passed."""
    ended, current = NOW - SLOT, NOW
    cluster.now[0] = NOW - 600
    trust = await cluster.process(keep_ended=keep_ended)
    device = Device(f"dev-{secrets.token_hex(6)}", "citizen-y", "phone", NOW - 3000)
    await cluster.db.devices.create(device)
    rows = [CredentialRow(device.device_id, ended, ended + SLOT, 9, "abcd", b"\x02" * 33)]
    assert await cluster.db.devices.add_credentials(rows) == rows
    await trust.signed()
    await cluster.db.devices.revoke(device.device_id, now=NOW - 10)
    cluster.now[0] = NOW + 5
    signed, full = await trust.signed()
    assert not full.is_delta and current in full.lists
    gate = Gate.from_anchor_jwks(trust.anchor_jwks())
    gate.load_bundle(signed)
    if keep_ended:
        assert ended in full.lists and gate.trust._lists[ended].get(9) == 1
    else:
        assert ended not in full.lists and ended not in gate.trust._lists
    cluster.now[0] = NOW + keep_ended + 1000  # past the grace and the rebuild tick
    _, later = await trust.signed()
    assert later.version > full.version and ended not in later.lists
