"""Issue 8 item 1: one record the database refuses for its content must not stop the
audit trail (the writer bisects the batch, sets the bad record aside, writes the rest)."""

from __future__ import annotations

import asyncio
import json
import secrets

from suishen.app.observability import Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.storage.base import AuditRecord, Database
from tests.contract.conftest import PostgresKit, PostgresSession

NOW = 1_800_000_000
_TAG = [""]


def _handle(i: int) -> bytes:
    return bytes.fromhex(_TAG[0]) + bytes([i % 256]) * 6


def _new_tag() -> str:
    _TAG[0] = secrets.token_hex(2)
    return _TAG[0]


def _record(i: int, *, checkpoint: str = "gate-1", reason: str | None = "ok") -> AuditRecord:
    """Record ``i`` of this test (handles and request ids unique to the test: the
    PostgreSQL schema is shared by the session)."""
    return AuditRecord(
        at_ms=NOW * 1000 + i, partner_id="gate-1", partner_name="Metro", scene="metro",
        checkpoint=checkpoint, direction="in", reason=reason,  # type: ignore[arg-type]
        subject_handle=_handle(i), kid="k1", request_id=f"{_TAG[0]}-r{i}",
    )


def _writer(db: Database, metrics: Metrics, *, clock: float = NOW + 1.0) -> AuditWriter:
    return AuditWriter(db, metrics, batch_size=50, flush_interval=0.05, max_queue=1000,
                       stall_after=30.0, clock=lambda: clock)


def _value(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def _stored(db: Database, count: int) -> int:
    total = 0
    for i in range(count):
        total += len(await db.audit.for_subject(_handle(i), limit=100))
    return total


async def test_a_nul_in_checkpoint_on_postgres_does_not_stop_other_records(
    postgres_session: PostgresSession,
) -> None:
    tag = _new_tag()
    kit = PostgresKit(postgres_session)
    try:
        db = await kit.open()
        metrics = Metrics()
        writer = _writer(db, metrics)
        for i in range(40):
            writer.record(_record(i, checkpoint="gate\x001" if i == 17 else "gate-1"))
        await writer.flush()  # today: StorageError, and every later batch fails too
        assert writer.pending == 0
        assert await _stored(db, 40) == 39
        dead = [d for d in map(json.loads, await db.audit.dead_letters())
            if d["request_id"].startswith(tag)]
        assert [d["request_id"] for d in dead] == [f"{tag}-r17"]
        assert dead[0]["checkpoint"] == "gate\x001"
        assert _value(metrics, "suishen_audit_dead_letter_total") == 1
        assert _value(metrics, "suishen_audit_written_total") == 39
        # the queue keeps draining afterwards
        writer.record(_record(41))
        await writer.flush()
        assert writer.pending == 0 and await _stored(db, 42) == 40
    finally:
        await kit.aclose()


async def test_a_refused_record_is_set_aside_on_every_backend(db: Database) -> None:
    tag = _new_tag()
    metrics = Metrics()
    writer = _writer(db, metrics)
    for i in range(10):
        writer.record(_record(i, reason=None if i in (3, 8) else "ok"))  # NOT NULL column
    await writer.flush()
    assert writer.pending == 0
    assert await _stored(db, 10) == 8
    ids = sorted(json.loads(r)["request_id"] for r in await db.audit.dead_letters())
    assert [i for i in ids if i.startswith(tag)] == [f"{tag}-r3", f"{tag}-r8"]
    assert _value(metrics, "suishen_audit_dead_letter_total") == 2


async def test_a_queue_that_does_not_drain_is_reported_stalled(db: Database) -> None:
    _new_tag()
    metrics = Metrics()
    writer = _writer(db, metrics, clock=NOW + 100.0)
    assert writer.health() == "ok"
    writer.record(_record(1))  # decided 100 s ago, never flushed
    assert writer.health() == "stalled"
    assert _value(metrics, "suishen_audit_oldest_age_seconds") > 30
    await writer.flush()
    assert writer.health() == "ok"


async def test_concurrent_flushes_store_each_record_once(db: Database) -> None:
    """Regression (race seen under load): the background writer and an explicit flush()
    both wrote the queue's head — records stored twice, then an IndexError from an empty
    queue. One flush at a time now."""
    _new_tag()
    metrics = Metrics()
    writer = AuditWriter(db, metrics, batch_size=5, flush_interval=60.0, max_queue=1000,
                         stall_after=30.0, clock=lambda: NOW + 1.0)
    for i in range(60):
        writer.record(_record(i))
    await asyncio.gather(writer.flush(), writer.flush(), writer.flush())
    assert writer.pending == 0
    assert await _stored(db, 60) == 60
    assert _value(metrics, "suishen_audit_written_total") == 60


async def test_records_dropped_from_a_full_queue_during_a_write_lose_nothing_newer(
    db: Database,
) -> None:
    """While a batch is being written, a full queue drops its oldest records; the batch
    then leaves the queue by identity, never taking newer, unwritten records with it."""
    _new_tag()
    metrics = Metrics()
    writer = AuditWriter(db, metrics, batch_size=4, flush_interval=60.0, max_queue=4,
                         stall_after=30.0, clock=lambda: NOW + 1.0)
    for i in range(4):
        writer.record(_record(i))
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(0)  # the first batch (0-3) is on its way to the database
    for i in range(4, 7):  # the full queue drops 0, 1, 2 to make room
        writer.record(_record(i))
    await flushing
    assert writer.pending == 0
    assert await _stored(db, 7) == 7  # 0-3 (the batch in flight) and 4-6: all stored
