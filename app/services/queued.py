"""Records written to the database off the hot path: one queued writer for every kind
(audit records, journey records, ...).

``record()`` appends to an in-memory queue and returns at once; a background task
stores batches with the sink's ``store`` (one transaction a batch). The task takes its
turn once :data:`EAGER_RECORDS` records wait, or ``flush_interval`` after the last turn,
and stores what was queued when the turn began, in transactions of up to
``batch_size``: so a transaction holds about 64 records at moderate load and grows
with the load up to ``batch_size`` (group commit). Why both bounds (issue 13,
2026-12-07): on the embedded default the SQLite writer thread shares the service's
core, and a 400-record transaction (what 200 ms of 2,000 verifies/s used to gather)
held requests up for 5-16 ms (library p99 at half load 3.9-7.6 ms; 1.6-1.7 ms with
transactions of 64); and at saturation each of a transaction's calls into that thread
waits for an event-loop turn of several milliseconds, so fixed transactions of 64
fell behind (30,000 records queued after 12 s at 3,700 verifies/s; with turns, at
most 223 after 12 s at 4,200/s). Records that
arrive during a turn wait for the next one, so a turn never trails off into a string
of one-record transactions.

While the database is down (:class:`BackendUnavailable`), batches stay in memory and are retried
with backoff (0.25 s doubling up to 5 s), however many records arrive meanwhile (before
2026-12-07 each record past the threshold woke the writer: 238 retries in 0.3 s of
traffic, tests/test_queued_writer.py). On a graceful stop (SIGTERM → lifespan shutdown)
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

# Queued records that start the writer's turn before the flush interval is up (see the
# module docstring); below ``batch_size`` when that is smaller.
EAGER_RECORDS = 64


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
        self._eager = min(batch_size, EAGER_RECORDS)
        self._interval = flush_interval
        self._queue: deque[T] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
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
        if len(self._queue) >= self._eager:
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
        """Store everything queued, and what arrives meanwhile, until the queue is empty
        (raises if the database is down)."""
        async with self._flush_lock:
            while self._queue:
                await self._write_head(len(self._queue))

    async def _turn(self) -> None:
        """The background writer's turn: the records queued when it begins, in
        transactions of up to ``batch_size`` (see the module docstring)."""
        async with self._flush_lock:
            due = len(self._queue)
            while due > 0 and self._queue:
                due -= await self._write_head(due)

    async def _write_head(self, most: int) -> int:
        """Write one batch from the queue's head (at most ``most`` and ``batch_size``
        records); returns its size."""
        n = min(self._batch_size, most, len(self._queue))
        await self._write([self._queue[i] for i in range(n)])
        if self._sink.depth is not None:
            self._sink.depth.set(len(self._queue))
        return n

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
        retry: float | None = None  # after a failed turn: the backoff, in seconds
        while not self._closing:
            # After a failure only the backoff (or a stop) ends the wait: records keep
            # arriving past the threshold while the database is down, and a wake-up
            # for each would retry at the rate of the traffic.
            event = self._wakeup if retry is None else self._stopping
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=retry or self._interval)
            self._wakeup.clear()
            try:
                await self._turn()
                if len(self._queue) < self._eager:
                    # Woken during the turn by records the turn then wrote: the next
                    # turn waits for the threshold or the interval again.
                    self._wakeup.clear()
                retry = None
            except (BackendUnavailable, StorageError) as exc:
                retry = min(5.0, max((retry or self._interval) * 2, 0.25))
                self._log.warning("%s write deferred: %s", self._name, type(exc).__name__)
            except Exception:  # noqa: BLE001 - keep the writer alive whatever happens; logged
                self._log.exception("%s writer error", self._name)
                retry = min(5.0, max((retry or self._interval) * 2, 0.25))

    async def close(self, *, timeout: float = 10.0) -> None:
        """Stop the writer and drain the queue (up to ``timeout`` seconds)."""
        self._closing = True
        self._wakeup.set()
        self._stopping.set()
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
