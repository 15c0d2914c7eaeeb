"""The trust pruner (app/services/trust.py ``TrustPruner``): off the request path, with a
fixed clock, on SQLite and PostgreSQL; idempotent; measured."""

from __future__ import annotations

import asyncio

from suishen.app.observability import Metrics
from suishen.app.services.trust import TrustPruner
from tests.contract.conftest import DatabaseKit
from tests.contract.test_devices import NOW, SLOT, new_device, row

LIFETIME = 86_400


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_prune_round_removes_what_ended_and_is_idempotent(db_kit: DatabaseKit) -> None:
    [db] = await db_kit.open_fresh()
    await db.migrate()
    metrics = Metrics()
    pruner = TrustPruner(db, metrics, slot_seconds=SLOT, lifetime_seconds=LIFETIME,
                         clock=lambda: NOW)
    cutoff = pruner.cutoff(NOW)
    assert cutoff == NOW - LIFETIME - SLOT
    device = await new_device(db)
    ended, edge, live = cutoff - SLOT, cutoff, NOW
    await db.devices.add_credentials([row(device.device_id, s, n)
                                      for n, s in enumerate((ended, edge, live), start=1)])
    await db.devices.bump("tick", now=ended)
    _, pairs = await db.devices.revoke(device.device_id, now=ended)
    assert len(pairs) == 3
    latest = await db.devices.bump("tick", now=NOW)
    gone = await pruner.run_once(NOW)
    # the ended slot's credential row; the two old versions and the revoke's 3 flips
    assert gone >= 1 + 3
    assert await db.devices.revoked([ended, edge, live]) == {edge: [2], live: [3]}
    assert (await db.devices.trust_version()).version == latest.version
    assert await pruner.run_once(NOW) == 0  # idempotent
    assert sample(metrics, "suishen_trust_pruned_rows_total") == gone
    assert sample(metrics, "suishen_trust_prune_duration_seconds_count") == 2
    # a slot later, the edge slot has ended too
    assert await pruner.run_once(NOW + SLOT + 1) == 1
    assert await db.devices.revoked([edge, live]) == {live: [3]}


async def test_the_background_task_prunes_without_any_request(db_kit: DatabaseKit) -> None:
    [db] = await db_kit.open_fresh()
    await db.migrate()
    metrics = Metrics()
    pruner = TrustPruner(db, metrics, slot_seconds=SLOT, lifetime_seconds=LIFETIME,
                         interval=0.05, clock=lambda: NOW)
    device = await new_device(db)
    old = pruner.cutoff(NOW) - SLOT
    await db.devices.add_credentials([row(device.device_id, old, 7)])
    await db.devices.revoke(device.device_id, now=old)
    pruner.start()
    try:
        for _ in range(100):
            if sample(metrics, "suishen_trust_prune_duration_seconds_count") >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await pruner.close()
    assert sample(metrics, "suishen_trust_prune_duration_seconds_count") >= 2
    assert await db.devices.revoked([old]) == {}
    assert sample(metrics, "suishen_trust_pruned_rows_total") >= 1
