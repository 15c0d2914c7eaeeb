"""The audit trail of verification decisions, written off the hot path.

``record()`` appends to an in-memory queue and returns at once; a background task
stores batches (up to ``batch_size`` records, or whatever arrived within
``flush_interval``) in one transaction. While the database is down, batches stay in
memory and are retried with backoff. On a graceful stop (SIGTERM → lifespan shutdown)
:meth:`AuditWriter.close` drains the queue before the process exits.

Loss window: records not yet stored when a process is killed hard (SIGKILL, power
loss) are lost — at most ``flush_interval`` worth of decisions while the database is
healthy. If the database stays down until the queue holds ``max_queue`` records, the
oldest records are dropped (``suishen_audit_dropped_total``, logged): verification
keeps its availability rather than block gates on the audit trail.

A batch the database refuses for its *content* (a :class:`StorageError` that is not
:class:`BackendUnavailable`, e.g. PostgreSQL refusing a NUL in text) is bisected: the
good halves are written, each record refused alone is set aside in the
``audit_dead_letter`` table (``suishen_audit_dead_letter_total``), so one bad record
never blocks the queue. :meth:`AuditWriter.health` says ``stalled`` when the oldest
queued record is older than ``stall_after`` seconds (``/readyz`` check ``audit``;
gauge ``suishen_audit_oldest_age_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.storage.base import AuditRecord, Database
from suishen.errors import BackendUnavailable, StorageError

log = logging.getLogger("suishen.audit")


class AuditWriter:
    """Batches audit records into the database."""

    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        stall_after: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = flush_interval
        self._queue: deque[AuditRecord] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        # One writer at a time: the background task and an explicit flush() (tests,
        # shutdown) would otherwise both write the queue's head, storing it twice.
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stall_after = stall_after
        self._clock = clock

    def record(self, record: AuditRecord) -> None:
        """Queue a record (never blocks, never raises)."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._metrics.audit_dropped.inc()
            log.error("audit queue full: oldest record dropped")
        self._queue.append(record)
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Records not stored yet."""
        return len(self._queue)

    def oldest_age(self) -> float:
        """Seconds since the oldest queued record was decided (0 when empty)."""
        if not self._queue:
            return 0.0
        return max(0.0, self._clock() - self._queue[0].at_ms / 1000)

    def health(self) -> str:
        """``ok``, or ``stalled`` when the queue has not drained for ``stall_after``."""
        age = self.oldest_age()
        self._metrics.audit_oldest_age.set(age)
        return "stalled" if age > self._stall_after else "ok"

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def flush(self) -> None:
        """Store everything queued now (raises if the database is down)."""
        async with self._flush_lock:
            while self._queue:
                await self._write_batch()

    async def _write_batch(self) -> None:
        batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
        await self._write(batch)
        self._metrics.audit_queue.set(len(self._queue))

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        """Write ``batch`` (the queue's head); bisect on a content refusal. Records leave
        the queue only once stored or set aside; BackendUnavailable propagates."""
        try:
            await self._db.audit.append(batch)
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
        self._metrics.audit_written.inc(len(batch))

    def _leave(self, batch: Sequence[AuditRecord]) -> None:
        """Take ``batch`` off the head of the queue. By identity, not by count: while it
        was being written, record() may have dropped the oldest records of a full queue,
        and counting would then remove newer records that were never stored."""
        for record in batch:
            if self._queue and self._queue[0] is record:
                self._queue.popleft()

    async def _set_aside(self, record: AuditRecord, error: str) -> None:
        try:
            await self._db.audit.dead_letter(
                record, error=error, now_ms=int(self._clock() * 1000)
            )
        except BackendUnavailable:
            raise
        except StorageError:  # the dead-letter table refused it too: the log keeps it
            log.error("audit record refused and not storable: %s", record.as_json(),
                      extra={"event": "audit-dead-letter-lost"})
        self._metrics.audit_dead_letter.inc()
        log.error("audit record set aside (dead letter): %s", error,
                  extra={"event": "audit-dead-letter"})

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
                log.warning("audit write deferred: %s", type(exc).__name__)
            except Exception:  # keep the writer alive whatever happens; it is logged
                log.exception("audit writer error")
                backoff = min(5.0, max(backoff * 2, 0.25))

    async def close(self, *, timeout: float = 10.0) -> None:
        """Stop the writer and drain the queue (up to ``timeout`` seconds)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue and asyncio.get_running_loop().time() < deadline:
            try:
                await self.flush()
            except (BackendUnavailable, StorageError):
                await asyncio.sleep(0.2)
        if self._queue:
            log.error("audit records lost at shutdown", extra={"event": "audit-lost",
                                                               "status": len(self._queue)})
