"""A queued writer: records into the database off the hot path (the loop that journey
records and check-ins share; the audit writer, :mod:`suishen.app.services.audit`, has
the same shape plus a dead-letter table and a health check).

``record()`` appends to an in-memory queue and returns at once; a background task
stores batches (up to ``batch_size`` records, or whatever arrived within
``flush_interval``) through ``write``. While the database is down batches stay queued
and are retried with backoff (up to 5 s); a graceful stop drains the queue. A batch the
database refuses for its content (a :class:`StorageError` that is not
:class:`BackendUnavailable`) is bisected and the record refused alone is dropped and
counted. A full queue (``max_queue``) drops its oldest record, counted and logged:
availability of the request path comes first. Loss window: what is queued when a
process is killed hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from prometheus_client import Counter

from suishen.errors import BackendUnavailable, StorageError

T = TypeVar("T")
log = logging.getLogger("suishen.queued")


class QueuedWriter(Generic[T]):
    """Batches records of one kind into the database (see the module docstring)."""

    def __init__(self, name: str, write: Callable[[Sequence[T]], Awaitable[None]], *,
                 written: Counter, dropped: Counter, batch_size: int,
                 flush_interval: float, max_queue: int) -> None:
        self._name = name
        self._store = write
        self._written = written
        self._dropped = dropped
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_queue = max_queue
        self._queue: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def record(self, record: T) -> None:
        """Queue a record (never blocks, never raises)."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._dropped.inc()
            log.error("%s queue full: oldest record dropped", self._name)
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Records not stored yet."""
        return len(self._queue)

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-writer")

    async def flush(self) -> None:
        """Store everything queued now (raises if the database is down)."""
        async with self._flush_lock:
            while self._queue:
                batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
                await self._write(batch)

    async def _write(self, batch: Sequence[T]) -> None:
        try:
            await self._store(batch)
        except BackendUnavailable:
            raise
        except StorageError as exc:  # refused for its content: bisect, drop the bad one
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            log.error("%s record refused by the database: %s", self._name, exc)
            self._dropped.inc()
        else:
            self._written.inc(len(batch))
        for record in batch:  # by identity: record() may have dropped the oldest
            if self._queue and self._queue[0] is record:
                self._queue.popleft()

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=backoff)
            self._wakeup.clear()
            try:
                await self.flush()
                backoff = self._interval
            except (BackendUnavailable, StorageError) as exc:
                backoff = min(5.0, max(backoff * 2, 0.25))
                log.warning("%s write deferred: %s", self._name, type(exc).__name__)
            except Exception:  # keep the writer alive whatever happens; it is logged
                log.exception("%s writer error", self._name)
                backoff = min(5.0, max(backoff * 2, 0.25))

    async def close(self, *, timeout: float = 10.0) -> None:
        """Stop the writer and drain the queue (up to ``timeout`` seconds)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue and loop.time() < deadline:
            try:
                await self.flush()
            except (BackendUnavailable, StorageError):
                await asyncio.sleep(0.2)
        if self._queue:
            log.error("%s records lost at shutdown: %d", self._name, len(self._queue))
