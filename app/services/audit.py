"""The audit trail of verification decisions, written off the hot path by the one
queued writer (:mod:`suishen.app.services.queued`: batching, backoff while the database
is down, drain on SIGTERM, bisection and dead letters, the loss window).

Here: records go to ``audit`` in batches; one the database refuses for its *content*
(e.g. PostgreSQL refusing a NUL in text) is set aside in the ``audit_dead_letter``
table (``suishen_audit_dead_letter_total``), so one bad record never blocks the queue.
A full queue drops its oldest records (``suishen_audit_dropped_total``).
:meth:`AuditWriter.health` says ``stalled`` when the oldest queued record is older than
``stall_after`` seconds (``/readyz`` check ``audit``; gauge
``suishen_audit_oldest_age_seconds``).
"""

from __future__ import annotations

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.queued import QueuedWriter, Sink
from suishen.app.storage.base import AuditRecord, Database


class AuditWriter(QueuedWriter[AuditRecord]):
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
        async def set_aside(record: AuditRecord, error: str, now_ms: int) -> None:
            await db.audit.dead_letter(record, error=error, now_ms=now_ms)

        sink: Sink[AuditRecord] = Sink(
            store=lambda batch: db.audit.append(batch),  # noqa: PLW0108 - looked up per call
            set_aside=set_aside,
            describe=AuditRecord.as_json,
            made_at=lambda record: record.at_ms / 1000,
            written=metrics.audit_written,
            dropped=metrics.audit_dropped,
            dead_letter=metrics.audit_dead_letter,
            depth=metrics.audit_queue,
            oldest_age=metrics.audit_oldest_age,
        )
        super().__init__(sink, name="audit", batch_size=batch_size,
                         flush_interval=flush_interval, max_queue=max_queue,
                         stall_after=stall_after, clock=clock)
