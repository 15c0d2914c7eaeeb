"""In-process fast state for the embedded default (one API process).

Single use is the core's :class:`~suishen.verifiers.memory.InMemoryReplay`; rate
limits are token buckets; the change feed calls this process's handler directly; the
subject cache is a bounded dict with expiry.

Single use survives a restart when the state is given a ``single_use_path`` (the
embedded default does: ``single-use.sqlite3`` in the data directory, issue 8 item 3):
consumed keys are then kept in SQLite (WAL), written before the answer, with their
expiry, and pruned as they expire. A process crash (SIGKILL) loses nothing committed
(WAL survives it); only a power loss may lose the last writes (``synchronous=NORMAL``).
Journey slots (a citizen's open transit entry, issue 10) are kept the same way, in a
second table of that file, so that a restart neither forgets an entry nor lets an exit
be fared twice. Rate limits and the cache are deliberately not kept: losing them on a restart is
harmless.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.storage.base import Event, EventHandler
from suishen.app.storage.transit import SlotMove
from suishen.verifiers.memory import InMemoryReplay

log = logging.getLogger(__name__)


class SQLiteSingleUse:
    """Consumed single-use keys in a small SQLite file (one row per key, with expiry).

    Synchronous on purpose: one indexed upsert in WAL mode takes microseconds (see
    the README's Operations figures), less than handing it to a thread would cost.
    Safe for several processes sharing the file (SQLite serialises writers).
    """

    PRUNE_EVERY = 1000

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = sqlite3.connect(str(path), timeout=5.0, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS first_use ("
            "key BLOB PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS journey_slots ("
            "key BLOB PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        self._ops = 0

    def read_slot(self, key: bytes, *, now: int) -> bytes | None:
        """The slot's value unless expired."""
        row = self._conn.execute(
            "SELECT value FROM journey_slots WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def write_slot(self, key: bytes, value: bytes | None, *, expires_at: int) -> None:
        """Store (or with None, delete) a slot."""
        if value is None:
            self._conn.execute("DELETE FROM journey_slots WHERE key = ?", (key,))
        else:
            self._conn.execute(
                "INSERT INTO journey_slots (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (key, value, expires_at),
            )

    def first_use(self, key: bytes, *, expires_at: int, now: int) -> bool:
        """True when ``key`` was not consumed (or its entry expired); marks it used."""
        cur = self._conn.execute(
            "INSERT INTO first_use (key, expires_at) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE first_use.expires_at <= ?",
            (key, expires_at, now),
        )
        self._ops += 1
        if self._ops % self.PRUNE_EVERY == 0:
            self.prune(now)
        return cur.rowcount == 1

    def prune(self, now: int) -> int:
        """Forget expired keys (and journey slots); how many keys."""
        self._conn.execute("DELETE FROM journey_slots WHERE expires_at <= ?", (now,))
        return self._conn.execute("DELETE FROM first_use WHERE expires_at <= ?", (now,)).rowcount

    def close(self) -> None:
        self._conn.close()


class MemoryState:
    """:class:`suishen.app.storage.base.StateBackend` for one process."""

    def __init__(
        self,
        *,
        cache_entries: int = 100_000,
        single_use_path: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._durable = None if single_use_path is None else SQLiteSingleUse(single_use_path)
        self._replay = InMemoryReplay()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._slots: dict[bytes, tuple[bytes, int]] = {}  # without a durable file
        self._handler: EventHandler | None = None
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_entries = cache_entries

    async def first_use(self, key: bytes, *, ttl_seconds: int) -> bool:
        now = int(self._clock())
        if self._durable is not None:
            return self._durable.first_use(key, expires_at=now + ttl_seconds, now=now)
        return self._replay.first_use(key, expires_at=now + ttl_seconds, now=now)

    async def first_use_and_move(
        self, key: bytes, *, ttl_seconds: int, slot: bytes, move: SlotMove
    ) -> tuple[bool, bytes | None, bytes | None]:
        # One event loop and no await in between: atomic for this process.
        if not await self.first_use(key, ttl_seconds=ttl_seconds):
            return False, None, None
        now = int(self._clock())
        found = self._read_slot(slot, now)
        after = move.predict(found)
        if after != found:
            self._write_slot(slot, after, expires_at=now + max(1, move.ttl_seconds))
        return True, found, after

    async def swap_slot(
        self, slot: bytes, *, expected: bytes | None, value: bytes | None, ttl_seconds: int
    ) -> tuple[bool, bytes | None]:
        now = int(self._clock())
        current = self._read_slot(slot, now)
        if current != expected:
            return False, current
        self._write_slot(slot, value, expires_at=now + max(1, ttl_seconds))
        return True, None

    def _write_slot(self, slot: bytes, value: bytes | None, *, expires_at: int) -> None:
        if self._durable is not None:
            self._durable.write_slot(slot, value, expires_at=expires_at)
        elif value is None:
            self._slots.pop(slot, None)
        else:
            self._slots[slot] = (value, expires_at)

    def _read_slot(self, slot: bytes, now: int) -> bytes | None:
        if self._durable is not None:
            return self._durable.read_slot(slot, now=now)
        hit = self._slots.get(slot)
        if hit is None or hit[1] <= now:
            return None
        return hit[0]

    async def rate_limit(self, partner_id: str, *, per_second: int, now_ms: int,
                         count: int = 1) -> float:
        return self.take_tokens(partner_id, per_second=per_second, now_ms=now_ms, count=count)

    def take_tokens(self, partner_id: str, *, per_second: int, now_ms: int,
                    count: int = 1) -> float:
        """:meth:`rate_limit` without the coroutine (it does no I/O here)."""
        # Token bucket: capacity = one second's worth, refilled continuously.
        # Elapsed time is taken in integer milliseconds: seconds since the epoch as floats
        # lose the digits a 100 ms refill needs.
        tokens, last_ms = self._buckets.get(partner_id, (float(per_second), float(now_ms)))
        elapsed_ms = max(0.0, now_ms - last_ms)
        tokens = min(float(per_second), tokens + elapsed_ms * per_second / 1000)
        # Refills are float sums: allow a hair of rounding, or the request that arrives
        # exactly when a token is due would be refused.
        if tokens >= count - 1e-9:
            self._buckets[partner_id] = (max(0.0, tokens - count), float(now_ms))
            return 0.0
        self._buckets[partner_id] = (tokens, float(now_ms))
        return (count - tokens) / per_second

    def subscribe(self, handler: EventHandler) -> None:
        self._handler = handler

    async def publish(self, event: Event) -> None:
        if self._handler is None:
            return
        try:
            await self._handler(event)
        except Exception:
            # As with a shared feed, a handler's failure is the subscriber's problem, not
            # the publisher's (who has already written the database).
            log.exception("change feed handler failed on a %r event", event.kind)

    async def cache_get(self, key: str) -> bytes | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            self._cache.pop(key, None)
            return None
        return value

    async def cache_set(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        self._cache[key] = (time.monotonic() + ttl_seconds, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    async def cache_delete(self, key: str) -> None:
        self._cache.pop(key, None)

    async def cache_add(self, key: str, value: bytes, *, ttl_ms: int) -> bool:
        if await self.cache_get(key) is not None:  # no await inside: atomic in this loop
            return False
        self._cache[key] = (time.monotonic() + ttl_ms / 1000, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return True

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def ping(self) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        self._cache.clear()
        if self._durable is not None:
            self._durable.close()
