"""Device and trust-version contract: every test runs unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from suishen.app.storage.base import Database
from suishen.app.storage.devices import CredentialRow, Device
from suishen.errors import StorageError

NOW = 1_800_000_000
SLOT = 3600


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def row(device_id: str, slot: int, index: int) -> CredentialRow:
    return CredentialRow(device_id, slot, slot + SLOT, index, "abcd", b"\x02" + os.urandom(32))


async def new_device(db: Database, sub: str | None = None) -> Device:
    device = Device(uid("dev"), sub or uid("citizen"), "phone", NOW)
    await db.devices.create(device)
    return device


def slot(n: int) -> int:
    # a fresh slot range per call, so tests sharing one store never meet
    return (NOW // SLOT + n) * SLOT + secrets.randbelow(10**6) * SLOT * 100


async def test_device_round_trip_with_valid_until(db: Database) -> None:
    device = await new_device(db)
    got = await db.devices.get(device.device_id)
    assert got == device and got.valid_until is None
    base = slot(0)
    rows = [row(device.device_id, base + i * SLOT, 7 + i) for i in range(3)]
    assert await db.devices.add_credentials(rows) == rows
    got = await db.devices.get(device.device_id)
    assert got is not None and got.valid_until == base + 3 * SLOT
    assert [d.device_id for d in await db.devices.for_subject(device.sub)] == [device.device_id]
    assert await db.devices.get(uid("nope")) is None
    assert await db.devices.for_subject(uid("nobody")) == []


async def test_clashing_credentials_are_not_inserted(db: Database) -> None:
    one, two = await new_device(db), await new_device(db)
    base = slot(0)
    first = row(one.device_id, base, 42)
    assert await db.devices.add_credentials([first]) == [first]
    same_pair = row(two.device_id, base, 42)  # (slot, index) taken
    same_slot = row(one.device_id, base, 43)  # the device already has this slot
    same_key = CredentialRow(two.device_id, base + SLOT, base + 2 * SLOT, 1, "abcd",
                             first.device_key)  # key registered already
    fine = row(two.device_id, base, 44)
    assert await db.devices.add_credentials([same_pair, same_slot, same_key, fine]) == [fine]
    assert await db.devices.known_keys([first.device_key, b"\x03" + bytes(32)]) == {
        first.device_key
    }


async def test_credentials_of_an_unknown_device_are_refused(db: Database) -> None:
    with pytest.raises(StorageError):
        await db.devices.add_credentials([row(uid("ghost"), slot(0), 1)])


async def test_revoking_a_device_flips_its_unexpired_credentials_at_a_new_version(
    db: Database,
) -> None:
    device = await new_device(db)
    base = slot(0)
    ended = CredentialRow(device.device_id, base - SLOT, base, 5, "abcd", b"\x02" + os.urandom(32))
    live = [row(device.device_id, base + i * SLOT, 10 + i) for i in range(2)]
    await db.devices.add_credentials([ended, *live])
    before = (await db.devices.trust_version()).version
    revoked, pairs = await db.devices.revoke(device.device_id, now=base)
    assert revoked.status == "revoked" and revoked.revoked_at == base
    assert sorted(pairs) == [(base, 10), (base + SLOT, 11)]  # the ended one is not flipped
    head = await db.devices.trust_version()
    after = head.version
    assert after > before and head.at == base
    assert await db.devices.revoked([base, base + SLOT, base - SLOT]) == {
        base: [10], base + SLOT: [11]
    }
    assert set(await db.devices.revoked_device_credentials(after=base)) >= set(pairs)
    changes = await db.devices.changes_since(before)
    assert changes is not None and changes.version == after and not changes.reset
    assert changes.flips.get(base) == [10] and changes.flips.get(base + SLOT) == [11]
    # revoking again changes nothing
    again, pairs2 = await db.devices.revoke(device.device_id, now=base + 1)
    assert pairs2 == [] and again.revoked_at == base
    assert (await db.devices.trust_version()).version == after
    with pytest.raises(KeyError):
        await db.devices.revoke(uid("ghost"), now=base)


async def test_suspension_flips_and_reactivation_resets(db: Database) -> None:
    sub = uid("citizen")
    device = await new_device(db, sub)
    base = slot(0)
    await db.devices.add_credentials([row(device.device_id, base, 99)])
    before = (await db.devices.trust_version()).version
    version = await db.devices.subject_status(sub, suspended=True, now=base)
    assert version is not None and version > before
    assert await db.devices.revoked([base]) == {base: [99]}
    # not a revoked device: online, the suspended set refuses these codes instead
    assert (base, 99) not in await db.devices.revoked_device_credentials(after=base)
    assert await db.devices.subject_status(sub, suspended=True, now=base) is None  # no change
    reset = await db.devices.subject_status(sub, suspended=False, now=base + 1)
    assert reset is not None and reset > version
    assert await db.devices.revoked([base]) == {}
    changes = await db.devices.changes_since(before)
    assert changes is not None and changes.reset
    assert await db.devices.subject_status(uid("nobody"), suspended=True, now=base) is None


async def test_versions_are_monotonic_and_unknown_ones_are_none(db: Database) -> None:
    first = (await db.devices.trust_version()).version
    assert first >= 1
    heads = await asyncio.gather(*(db.devices.bump("tick", now=NOW) for _ in range(10)))
    bumped = [h.version for h in heads]
    assert len(set(bumped)) == 10 and min(bumped) > first
    keyed = await db.devices.bump("keys", now=NOW, keys=77)
    assert keyed.keys == 77 and (await db.devices.bump("tick", now=NOW)).keys == 77
    latest = (await db.devices.trust_version()).version
    assert latest == keyed.version + 1
    assert await db.devices.changes_since(latest + 1000) is None
    changes = await db.devices.changes_since(first)
    assert changes is not None and changes.since == first and changes.version == latest
