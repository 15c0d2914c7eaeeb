"""Records written to the database off the hot path: one queued writer for every kind
(audit records, journey records, ...).

``record()`` appends to an in-memory queue and returns at once; a background task
stores batches (up to ``batch_size`` records, or whatever arrived within
``flush_interval``) with the sink's ``store`` (one transaction a batch). While the
database is down (:class:`BackendUnavailable`), batches stay in memory and are retried
with backoff (up to 5 s). On a graceful stop (SIGTERM → lifespan shutdown)
:meth:`QueuedWriter.close` drains the queue before the process exits.

Loss window: records not yet stored when a process is killed hard (SIGKILL, power
loss) are lost — at most ``flush_interval`` worth while the database is healthy. If the
database stays down until the queue holds ``max_queue`` records, the oldest are dropped
(the sink's ``dropped`` counter, logged): the hot path keeps its availability rather
than block on its records.

A batch the database refuses for its *content* (a :class:`StorageError` that is not
:class:`BackendUnavailable`, e.g. PostgreSQL refusing a NUL in text, a CHECK
constraint) is bisected: the good halves are written, each record refused alone is set
aside with the sink's ``set_aside`` (a dead-letter table: ``dead_letter`` counter), so
one bad record never blocks the queue; if the dead-letter table refuses it too, the
record is logged (``describe``) and counted. :meth:`QueuedWriter.health` says
``stalled`` when the oldest queued record is older than ``stall_after`` seconds.

Two races this keeps fixed (tests/contract/test_audit_dead_letter.py):

* one flush at a time (a lock): the background task and an explicit :meth:`flush`
  (tests, shutdown) would otherwise both write the queue's head, storing it twice;
* a written batch leaves the queue *by identity*: while it was being written,
  ``record()`` may have dropped the oldest records of a full queue, and counting would
  then remove newer records that were never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.errors import BackendUnavailable, StorageError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sink(Generic[T]):
    """Where a :class:`QueuedWriter`'s records go, and what it counts.

    ``store`` writes a batch all or nothing; ``set_aside(record, error, now_ms)`` keeps
    a record the database refused for its content; ``describe`` is the record as text
    for the log (no secrets); ``made_at`` is when a record was made, in seconds.
    ``written``, ``dropped``, ``dead_letter`` are counters; ``depth`` and ``oldest_age``
    optional gauges (prometheus-client objects, or anything with ``inc``/``set``).
    """

    store: Callable[[Sequence[T]], Awaitable[None]]
    set_aside: Callable[[T, str, int], Awaitable[None]]
    describe: Callable[[T], str]
    made_at: Callable[[T], float]
    written: Any
    dropped: Any
    dead_letter: Any
    depth: Any = None
    oldest_age: Any = None


class QueuedWriter(Generic[T]):
    """Batches records of one kind into the database (see the module docstring)."""

    def __init__(
        self,
        sink: Sink[T],
        *,
        name: str,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        stall_after: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._sink = sink
        self._name = name
        self._log = logging.getLogger(f"suishen.{name}")
        self._batch_size = batch_size
        self._interval = flush_interval
        self._queue: deque[T] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stall_after = stall_after
        self._clock = clock

    def record(self, record: T) -> None:
        """Queue a record (never blocks, never raises)."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._sink.dropped.inc()
            self._log.error("%s queue full: oldest record dropped", self._name)
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Records not stored yet."""
        return len(self._queue)

    def oldest_age(self) -> float:
        """Seconds since the oldest queued record was made (0 when empty)."""
        if not self._queue:
            return 0.0
        return max(0.0, self._clock() - self._sink.made_at(self._queue[0]))

    def health(self) -> str:
        """``ok``, or ``stalled`` when the queue has not drained for ``stall_after``."""
        age = self.oldest_age()
        if self._sink.oldest_age is not None:
            self._sink.oldest_age.set(age)
        return "stalled" if age > self._stall_after else "ok"

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-writer")

    async def flush(self) -> None:
        """Store everything queued now (raises if the database is down)."""
        async with self._flush_lock:
            while self._queue:
                batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
                await self._write(batch)
                if self._sink.depth is not None:
                    self._sink.depth.set(len(self._queue))

    async def _write(self, batch: Sequence[T]) -> None:
        """Write ``batch`` (the queue's head); bisect on a content refusal. Records leave
        the queue only once stored or set aside; BackendUnavailable propagates."""
        try:
            await self._sink.store(batch)
        except BackendUnavailable:
            raise
        except StorageError as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            await self._set_aside(batch[0], str(exc))
            self._leave(batch)
            return
        self._leave(batch)
        self._sink.written.inc(len(batch))

    def _leave(self, batch: Sequence[T]) -> None:
        """Take ``batch`` off the head of the queue, by identity (see the module
        docstring)."""
        for record in batch:
            if self._queue and self._queue[0] is record:
                self._queue.popleft()

    async def _set_aside(self, record: T, error: str) -> None:
        try:
            await self._sink.set_aside(record, error, int(self._clock() * 1000))
        except BackendUnavailable:
            raise
        except StorageError:  # the dead-letter table refused it too: the log keeps it
            self._log.error("%s record refused and not storable: %s", self._name,
                            self._sink.describe(record),
                            extra={"event": f"{self._name}-dead-letter-lost"})
        self._sink.dead_letter.inc()
        self._log.error("%s record set aside (dead letter): %s", self._name, error,
                        extra={"event": f"{self._name}-dead-letter"})

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
                self._log.warning("%s write deferred: %s", self._name, type(exc).__name__)
            except Exception:  # noqa: BLE001 - keep the writer alive whatever happens; logged
                self._log.exception("%s writer error", self._name)
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
            self._log.error("%s records lost at shutdown", self._name,
                            extra={"event": f"{self._name}-lost", "status": len(self._queue)})
