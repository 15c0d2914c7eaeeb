"""In-process fast state for the embedded default (one API process).

Single use is the core's :class:`~suishen.verifiers.memory.InMemoryReplay`; rate
limits are token buckets; the change feed calls this process's handler directly; the
subject cache is a bounded dict with expiry. None of it survives a restart, which is
fine for one process: replay entries live no longer than a code does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from suishen.app.storage.base import Event, EventHandler
from suishen.verifiers.memory import InMemoryReplay

log = logging.getLogger(__name__)


class MemoryState:
    """:class:`suishen.app.storage.base.StateBackend` for one process."""

    def __init__(self, *, cache_entries: int = 100_000) -> None:
        self._replay = InMemoryReplay()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._handler: EventHandler | None = None
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_entries = cache_entries

    async def first_use(self, key: bytes, *, ttl_seconds: int) -> bool:
        now = int(time.time())
        return self._replay.first_use(key, expires_at=now + ttl_seconds, now=now)

    async def rate_limit(self, partner_id: str, *, per_second: int, now_ms: int) -> float:
        # Token bucket: capacity = one second's worth, refilled continuously.
        # Elapsed time is taken in integer milliseconds: seconds since the epoch as floats
        # lose the digits a 100 ms refill needs.
        tokens, last_ms = self._buckets.get(partner_id, (float(per_second), float(now_ms)))
        elapsed_ms = max(0.0, now_ms - last_ms)
        tokens = min(float(per_second), tokens + elapsed_ms * per_second / 1000)
        # Refills are float sums: allow a hair of rounding, or the request that arrives
        # exactly when a token is due would be refused.
        if tokens >= 1.0 - 1e-9:
            self._buckets[partner_id] = (max(0.0, tokens - 1.0), float(now_ms))
            return 0.0
        self._buckets[partner_id] = (tokens, float(now_ms))
        return (1.0 - tokens) / per_second

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

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def ping(self) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        self._cache.clear()
