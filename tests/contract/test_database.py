"""Database contract: every test runs unchanged on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from suishen.app.storage.base import (
    AuditRecord,
    Database,
    HandleTaken,
    Partner,
    PartnerExists,
)
from suishen.errors import StorageError, SuishenError
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet
from tests.contract.conftest import DatabaseKit

NOW = 1_800_000_000
KEK = KeyEncryptionKey(bytes(range(32)))


def handle() -> bytes:
    return os.urandom(10)


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


# --- subjects --------------------------------------------------------------------------------
async def test_unknown_subject_is_none(db: Database) -> None:
    assert await db.subjects.get(uid("nobody")) is None
    assert await db.subjects.get_by_handle(handle()) is None


async def test_enroll_creates_an_active_subject(db: Database) -> None:
    sub, h = uid("citizen"), handle()
    subject = await db.subjects.enroll(sub, handle=h, now=NOW)
    assert (subject.sub, subject.handle, subject.status) == (sub, h, "active")
    assert dict(subject.attributes) == {}
    assert (subject.created_at, subject.updated_at) == (NOW, NOW)
    assert not subject.suspended
    assert await db.subjects.get(sub) == subject
    assert await db.subjects.get_by_handle(h) == subject


async def test_enroll_is_idempotent_and_keeps_the_first_handle(db: Database) -> None:
    sub, first = uid("citizen"), handle()
    one = await db.subjects.enroll(sub, handle=first, now=NOW)
    two = await db.subjects.enroll(sub, handle=handle(), now=NOW + 5)
    assert two == one
    assert two.handle == first


async def test_concurrent_enrolment_of_one_sub_gives_one_subject(db: Database) -> None:
    sub = uid("citizen")
    results = await asyncio.gather(
        *(db.subjects.enroll(sub, handle=handle(), now=NOW) for _ in range(20))
    )
    assert len({r.handle for r in results}) == 1
    assert all(r == results[0] for r in results)
    assert await db.subjects.get(sub) == results[0]


async def test_enrol_with_a_taken_handle_raises_handle_taken(db: Database) -> None:
    h = handle()
    await db.subjects.enroll(uid("first"), handle=h, now=NOW)
    other = uid("second")
    with pytest.raises(HandleTaken):
        await db.subjects.enroll(other, handle=h, now=NOW)
    assert await db.subjects.get(other) is None  # a failed write changes nothing


async def test_upsert_creates_then_updates_and_keeps_the_handle(db: Database) -> None:
    sub, h = uid("citizen"), handle()
    created = await db.subjects.upsert(
        sub, status="active", attributes={"name": "张三", "reader_id": "R-1"}, handle=h, now=NOW
    )
    assert created.handle == h
    assert dict(created.attributes) == {"name": "张三", "reader_id": "R-1"}
    assert (created.created_at, created.updated_at) == (NOW, NOW)

    updated = await db.subjects.upsert(
        sub, status="suspended", attributes={"name": "张三"}, handle=handle(), now=NOW + 60
    )
    assert updated.handle == h  # an existing subject keeps its handle
    assert updated.status == "suspended" and updated.suspended
    assert dict(updated.attributes) == {"name": "张三"}  # replaced, not merged
    assert (updated.created_at, updated.updated_at) == (NOW, NOW + 60)
    assert await db.subjects.get(sub) == updated
    assert await db.subjects.get_by_handle(h) == updated


async def test_upsert_of_an_enrolled_subject_keeps_its_handle(db: Database) -> None:
    sub = uid("citizen")
    enrolled = await db.subjects.enroll(sub, handle=handle(), now=NOW)
    other = await db.subjects.enroll(uid("other"), handle=handle(), now=NOW)
    # The handle argument is ignored for an existing subject, even one that is taken.
    updated = await db.subjects.upsert(
        sub, status="active", attributes={"reader_id": "R-9"}, handle=other.handle, now=NOW + 1
    )
    assert updated.handle == enrolled.handle
    assert dict(updated.attributes) == {"reader_id": "R-9"}


async def test_upsert_of_a_new_subject_with_a_taken_handle(db: Database) -> None:
    taken = (await db.subjects.enroll(uid("first"), handle=handle(), now=NOW)).handle
    new = uid("second")
    with pytest.raises(HandleTaken):
        await db.subjects.upsert(new, status="active", attributes={}, handle=taken, now=NOW)
    assert await db.subjects.get(new) is None


async def test_upsert_refuses_an_unknown_status_with_a_storage_error(db: Database) -> None:
    sub = uid("citizen")
    with pytest.raises(StorageError) as info:
        await db.subjects.upsert(sub, status="banned", attributes={}, handle=handle(), now=NOW)
    assert not isinstance(info.value, HandleTaken)
    assert await db.subjects.get(sub) is None


async def test_suspended_handles(db: Database) -> None:
    a, b, c = uid("a"), uid("b"), uid("c")
    ha = (await db.subjects.upsert(a, status="suspended", attributes={}, handle=handle(),
                                   now=NOW)).handle
    hb = (await db.subjects.upsert(b, status="suspended", attributes={}, handle=handle(),
                                   now=NOW)).handle
    hc = (await db.subjects.enroll(c, handle=handle(), now=NOW)).handle
    suspended = set(await db.subjects.suspended_handles())
    assert {ha, hb} <= suspended
    assert hc not in suspended
    await db.subjects.upsert(a, status="active", attributes={}, handle=handle(), now=NOW + 1)
    suspended = set(await db.subjects.suspended_handles())
    assert ha not in suspended and hb in suspended
    assert all(isinstance(h, bytes) for h in suspended)


# --- partners --------------------------------------------------------------------------------
def partner(client_id: str, *, rate: int | None = 50) -> Partner:
    return Partner(
        client_id=client_id,
        name="Shanghai Library 上海图书馆",
        scenes=("library", "venue"),
        attributes=("name", "reader_id"),
        rate_limit_per_second=rate,
        secret_hash="$scrypt$n=16384,r=8,p=1$c2FsdA$aGFzaA",
        created_at=NOW,
    )


async def test_partner_create_and_get(db: Database) -> None:
    p, q = partner(uid("lib")), partner(uid("gate"), rate=None)
    await db.partners.create(p)
    await db.partners.create(q)
    assert await db.partners.get(p.client_id) == p
    assert await db.partners.get(q.client_id) == q
    assert await db.partners.get(uid("unknown")) is None


async def test_duplicate_client_id_fails_with_a_suishen_error(db: Database) -> None:
    p = partner(uid("lib"))
    await db.partners.create(p)
    with pytest.raises(SuishenError) as info:
        await db.partners.create(partner(p.client_id, rate=1))
    assert isinstance(info.value, PartnerExists)
    assert await db.partners.get(p.client_id) == p  # the first one is untouched


# --- key sets ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keysets() -> list[KeySet]:
    """v1, v2 (rotated), v3 (old key revoked) of one key set."""
    v1 = KeySet.create(KEK, now=NOW)
    v2 = v1.rotate(KEK, now=NOW + 10, overlap_seconds=90)
    v3 = v2.revoke(v1.keys[0].kid, now=NOW + 20)
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    return [v1, v2, v3]


async def test_keyset_load_missing(db: Database) -> None:
    assert await db.keysets.load(uid("codes")) is None


async def test_keyset_create_only_once(db: Database, keysets: list[KeySet]) -> None:
    name, v1, other = uid("codes"), keysets[0], KeySet.create(KEK, now=NOW)
    assert await db.keysets.save(name, v1, expected_version=None) is True
    assert await db.keysets.save(name, other, expected_version=None) is False
    assert await db.keysets.load(name) == v1


async def test_keyset_compare_and_swap(db: Database, keysets: list[KeySet]) -> None:
    name, (v1, v2, v3) = uid("tokens"), keysets
    assert await db.keysets.save(name, v2, expected_version=1) is False  # nothing stored yet
    assert await db.keysets.save(name, v1, expected_version=None)
    assert await db.keysets.save(name, v3, expected_version=2) is False  # wrong version
    assert await db.keysets.load(name) == v1
    assert await db.keysets.save(name, v2, expected_version=1) is True
    assert await db.keysets.save(name, v2, expected_version=1) is False  # stale now
    assert await db.keysets.save(name, v3, expected_version=2) is True
    loaded = await db.keysets.load(name)
    assert loaded == v3 and loaded is not None and loaded.version == 3


async def test_concurrent_compare_and_swap_has_one_winner(
    db: Database, keysets: list[KeySet]
) -> None:
    name, v1 = uid("codes"), keysets[0]
    await db.keysets.save(name, v1, expected_version=None)
    candidates = [v1.rotate(KEK, now=NOW + i, overlap_seconds=90) for i in range(10)]
    results = await asyncio.gather(
        *(db.keysets.save(name, c, expected_version=1) for c in candidates)
    )
    assert results.count(True) == 1
    assert await db.keysets.load(name) == candidates[results.index(True)]


async def test_concurrent_creation_has_one_winner(db: Database) -> None:
    name = uid("codes")
    candidates = [KeySet.create(KEK, now=NOW) for _ in range(8)]
    results = await asyncio.gather(
        *(db.keysets.save(name, c, expected_version=None) for c in candidates)
    )
    assert results.count(True) == 1
    assert await db.keysets.load(name) == candidates[results.index(True)]


# --- audit ------------------------------------------------------------------------------------
def record(h: bytes | None, i: int, **changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "at_ms": NOW * 1000 + i,
        "partner_id": "gate-1",
        "partner_name": "Metro Line 2",
        "scene": "metro",
        "checkpoint": f"L2-S12-G{i}",
        "direction": "in" if i % 2 else None,
        "reason": "ok" if i % 3 else "replayed",
        "subject_handle": h,
        "kid": "a1b2" if i % 4 else None,
        "request_id": f"req-{i}" if i % 5 else None,
    }
    fields.update(changes)
    return AuditRecord(**fields)  # type: ignore[arg-type]


async def test_audit_for_subject_newest_first(db: Database) -> None:
    mine, theirs = handle(), handle()
    batch = [record(mine if i % 2 == 0 else theirs, i) for i in range(12)]
    batch.append(record(None, 99, reason="malformed"))
    await db.audit.append(batch)
    entries = await db.audit.for_subject(mine, limit=100)
    assert [e.record for e in entries] == [r for r in reversed(batch) if r.subject_handle == mine]
    ids = [e.id for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


async def test_audit_pagination_with_before_id(db: Database) -> None:
    h = handle()
    batches = [[record(h, 10 * b + i) for i in range(3)] for b in range(3)]
    for batch in batches:  # several appends: ids keep growing across batches
        await db.audit.append(batch)
    expected = [r for batch in batches for r in batch][::-1]
    seen, before = [], None
    while True:
        page = await db.audit.for_subject(h, limit=4, before_id=before)
        assert len(page) <= 4
        if not page:
            break
        seen.extend(page)
        before = page[-1].id
    assert [e.record for e in seen] == expected
    assert len({e.id for e in seen}) == len(expected)
    assert len(await db.audit.for_subject(h, limit=2)) == 2
    assert await db.audit.for_subject(h, limit=5, before_id=seen[-1].id) == []


async def test_audit_append_empty_batch(db: Database) -> None:
    await db.audit.append([])


async def test_audit_batch_is_all_or_nothing(db: Database) -> None:
    h = handle()
    bad = [record(h, 1), record(h, 2, partner_id=None), record(h, 3)]  # NOT NULL violated
    with pytest.raises(StorageError):
        await db.audit.append(bad)
    assert await db.audit.for_subject(h, limit=10) == []


# --- migrations and liveness --------------------------------------------------------------
async def test_migrate_is_idempotent(db_kit: DatabaseKit) -> None:
    (fresh,) = await db_kit.open_fresh()
    assert await fresh.migrate() == db_kit.migration_names
    assert await fresh.migrate() == []
    assert await fresh.subjects.get("x") is None  # the schema works


async def test_concurrent_migrate_applies_each_migration_once(db_kit: DatabaseKit) -> None:
    for _ in range(8):  # a race needs a few tries to show (it did, on SQLite)
        handles = await db_kit.open_fresh(3)
        results = await asyncio.gather(*(h.migrate() for h in handles))
        applied = [name for result in results for name in result]
        assert sorted(applied) == db_kit.migration_names
        for h in handles:
            assert await h.migrate() == []
        sub = uid("citizen")
        created = await handles[0].subjects.enroll(sub, handle=handle(), now=NOW)
        assert await handles[2].subjects.get(sub) == created


async def test_ping(db: Database) -> None:
    await db.ping()
