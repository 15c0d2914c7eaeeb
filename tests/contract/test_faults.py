"""Faults on real servers: private Redis and PostgreSQL instances are stopped and
started under a live client (see :mod:`tests.contract.servers`).

What must hold (SPEC §8): a backend that is down makes calls fail *fast* with
:class:`BackendUnavailable` (no hang, no driver exception), and the same client object
works again by itself once the server is back.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from suishen.app.storage import migrations
from suishen.app.storage.base import Event
from suishen.app.storage.postgres import PostgresDatabase
from suishen.app.storage.redis_state import RedisState
from suishen.errors import BackendUnavailable
from tests.contract.servers import PrivatePostgres, PrivateRedis, SilentServer, free_port
from tests.contract.test_state import Collector, subject_event

NOW = 1_800_000_000
REDIS_FAIL_FAST_S = 1.0


def ms(took: dict[str, float] | float) -> str:
    if isinstance(took, dict):
        return ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in took.items())
    return f"{took * 1000:.1f} ms"


async def timed_failure(call: Callable[[], Awaitable[Any]]) -> float:
    """Seconds until ``call()`` raised BackendUnavailable (it must)."""
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await call()
    return time.monotonic() - start


async def recovery_time(call: Callable[[], Awaitable[Any]], *, limit: float = 10.0) -> float:
    """Seconds until ``call()`` succeeds (retrying), failing after ``limit``."""
    start = time.monotonic()
    while True:
        try:
            await call()
        except BackendUnavailable:
            assert time.monotonic() - start < limit, "backend did not recover"
            await asyncio.sleep(0.02)
        else:
            return time.monotonic() - start


# --- Redis -----------------------------------------------------------------------------------
async def test_redis_down_fails_fast_and_recovers_by_itself(
    private_redis: PrivateRedis, fault_figures: dict[str, str]
) -> None:
    state = RedisState(private_redis.url, prefix="fault")
    peer = RedisState(private_redis.url, prefix="fault")
    got = Collector()
    state.subscribe(got)
    try:
        await state.start()
        await state.ping()
        assert await state.first_use(b"k1", ttl_seconds=60)

        await asyncio.to_thread(private_redis.stop)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "first_use": lambda: state.first_use(os.urandom(8), ttl_seconds=60),
            "rate_limit": lambda: state.rate_limit("p", per_second=5, now_ms=NOW * 1000),
            "publish": lambda: state.publish(Event("keys", {"name": "codes"})),
            "cache_get": lambda: state.cache_get("x"),
            "cache_set": lambda: state.cache_set("x", b"v", ttl_seconds=5),
            "ping": state.ping,
        }
        took = {name: await timed_failure(call) for name, call in calls.items()}
        fault_figures["Redis down -> BackendUnavailable"] = ms(took)
        assert max(took.values()) < REDIS_FAIL_FAST_S, took
        await asyncio.sleep(0.3)  # the listener keeps retrying in the background
        assert state.listening

        await asyncio.to_thread(private_redis.start)
        back = await recovery_time(state.ping)
        fault_figures["Redis back -> same RedisState answers"] = ms(back)
        assert await state.first_use(b"k1", ttl_seconds=60)  # an empty Redis: new again
        # The listener noticed that the feed was lost and asked for a full reload ...
        resync = await got.wait(lambda: got.resyncs() >= 2, timeout=3)  # 1st: at start
        fault_figures["Redis back (empty) -> listener delivers resync"] = ms(back + resync)
        # ... and delivers new events again.
        event = subject_event("after-restart")
        await peer.publish(event)
        await got.wait(lambda: event.data in got.data(), timeout=2)
    finally:
        await state.close()
        await peer.close()


async def test_redis_listener_started_while_redis_is_down(private_redis: PrivateRedis) -> None:
    await asyncio.to_thread(private_redis.stop)
    state = RedisState(private_redis.url, prefix="late")
    got = Collector()
    state.subscribe(got)
    try:
        start = time.monotonic()
        await state.start()  # must not fail (the service starts without Redis) nor hang
        assert time.monotonic() - start < REDIS_FAIL_FAST_S
        with pytest.raises(BackendUnavailable):
            await state.publish(subject_event(1))
        await asyncio.to_thread(private_redis.start)
        await got.wait(lambda: got.resyncs() >= 1, timeout=3)
        event = subject_event(2)
        await recovery_time(lambda: state.publish(event))
        await got.wait(lambda: event.data in got.data(), timeout=2)
    finally:
        await state.close()


async def test_redis_that_never_answers_fails_fast(
    silent_server: SilentServer, fault_figures: dict[str, str]
) -> None:
    state = RedisState(f"redis://127.0.0.1:{silent_server.port}/0", prefix="silent")
    try:
        took = {
            "ping": await timed_failure(state.ping),
            "first_use": await timed_failure(lambda: state.first_use(b"k", ttl_seconds=5)),
        }
        fault_figures["Redis hung (accepts, never answers) -> BackendUnavailable"] = ms(took)
        assert max(took.values()) < REDIS_FAIL_FAST_S
    finally:
        await state.close()


async def test_redis_nothing_listening_fails_fast() -> None:
    state = RedisState(f"redis://127.0.0.1:{free_port()}/0", prefix="nobody")
    try:
        assert await timed_failure(state.ping) < REDIS_FAIL_FAST_S
    finally:
        await state.close()


# --- PostgreSQL ------------------------------------------------------------------------------
async def test_postgres_down_fails_within_the_timeout_and_recovers(
    private_postgres: PrivatePostgres, fault_figures: dict[str, str]
) -> None:
    timeout = 2.0
    db = await PostgresDatabase.open(private_postgres.dsn, command_timeout=timeout)
    try:
        await db.migrate()
        subject = await db.subjects.enroll("fault-sub", handle=os.urandom(10), now=NOW)
        assert db.pool_stats()["size"] >= 1

        await asyncio.to_thread(private_postgres.stop)
        took = {
            "get": await timed_failure(lambda: db.subjects.get("fault-sub")),
            "enroll": await timed_failure(
                lambda: db.subjects.enroll("x", handle=os.urandom(10), now=NOW)
            ),
            "ping": await timed_failure(db.ping),
        }
        fault_figures["PostgreSQL down -> BackendUnavailable"] = ms(took)
        assert max(took.values()) < timeout + 0.5, took

        await asyncio.to_thread(private_postgres.start)
        back = await recovery_time(db.ping)
        fault_figures["PostgreSQL back -> same PostgresDatabase answers"] = ms(back)
        assert await db.subjects.get("fault-sub") == subject  # the same object, data kept
    finally:
        await db.close()


async def test_postgres_open_fails_fast_when_nothing_listens() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await PostgresDatabase.open(dsn, command_timeout=2.0)
    assert time.monotonic() - start < 2.5


async def test_postgres_open_does_not_hang_on_a_silent_server(
    silent_server: SilentServer, fault_figures: dict[str, str]
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{silent_server.port}/postgres"
    took = await timed_failure(lambda: PostgresDatabase.open(dsn, command_timeout=0.5))
    fault_figures["PostgreSQL hung, open(command_timeout=0.5) -> BackendUnavailable"] = ms(took)
    assert took < 2.0


async def test_postgres_lazy_open_while_down_then_recovers(
    private_postgres: PrivatePostgres,
) -> None:
    await asyncio.to_thread(private_postgres.stop)
    db = await PostgresDatabase.open(
        private_postgres.dsn, command_timeout=2.0, schema="lazy_test", lazy=True
    )
    try:
        assert db.pool_stats()["size"] == 0
        assert await timed_failure(db.ping) < 2.5
        assert await timed_failure(lambda: db.subjects.get("x")) < 2.5
        await asyncio.to_thread(private_postgres.start)
        await recovery_time(db.ping)
        every = [name for name, _ in migrations.load("postgres")]
        assert await db.migrate() in (every, [])
        assert await db.subjects.get("x") is None
    finally:
        await db.close()
