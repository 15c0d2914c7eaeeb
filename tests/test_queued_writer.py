"""The queued writer's turns (suishen.app.services.queued, issue 13): a turn starts once
EAGER_RECORDS records wait (or the flush interval is up), stores what was queued when it
began in transactions of at most ``batch_size``, and leaves what arrives meanwhile for
the next turn. The sink here records each transaction it is given; the database
contract of a batch (all or nothing, bisection) is tested against every backend in
tests/contract/test_audit_dead_letter.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter

from suishen.app.services.queued import EAGER_RECORDS, QueuedWriter, Sink
from suishen.errors import BackendUnavailable


class _Recorder:
    """A sink's ``store`` that keeps every batch; ``during`` runs inside the first one."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.during: Callable[[], None] | None = None

    async def store(self, batch: Sequence[int]) -> None:
        await asyncio.sleep(0)  # a real store yields to the loop while it writes
        self.batches.append(list(batch))
        if self.during is not None:
            during, self.during = self.during, None
            during()

    @property
    def stored(self) -> list[int]:
        return [r for b in self.batches for r in b]


def _writer(recorder: _Recorder, *, batch_size: int, interval: float = 3600.0
            ) -> QueuedWriter[int]:
    registry = CollectorRegistry()

    async def set_aside(record: int, error: str, now_ms: int) -> None:
        raise AssertionError("nothing is refused here")

    sink: Sink[int] = Sink(
        store=recorder.store, set_aside=set_aside, describe=str, made_at=lambda r: 0.0,
        written=Counter("w", "w", registry=registry),
        dropped=Counter("d", "d", registry=registry),
        dead_letter=Counter("x", "x", registry=registry),
    )
    return QueuedWriter(sink, name="test", batch_size=batch_size, flush_interval=interval,
                        max_queue=100_000)


def _more(writer: QueuedWriter[int], first: int, n: int) -> Callable[[], None]:
    """Records ``first`` .. ``first + n - 1``, to queue while a batch is being written."""
    def more() -> None:
        for i in range(n):
            writer.record(first + i)
    return more


async def _until(condition: Callable[[], bool]) -> None:
    """Let the writer run until ``condition`` holds (bounded: fails rather than hangs)."""
    for _ in range(2_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the writer did not get there")


async def test_a_turn_starts_once_eager_records_wait() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=500)  # the interval (an hour) never fires here
    writer.start()
    try:
        for i in range(EAGER_RECORDS - 1):
            writer.record(i)
        for _ in range(50):
            await asyncio.sleep(0)
        assert recorder.batches == []  # one short of the threshold: still queued
        writer.record(EAGER_RECORDS - 1)
        await _until(lambda: writer.pending == 0)
        assert recorder.batches == [list(range(EAGER_RECORDS))]  # one transaction
    finally:
        await writer.close()


async def test_a_turn_stores_what_was_queued_in_transactions_of_at_most_batch_size() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=500)
    for i in range(1_200):
        writer.record(i)
    # Records that arrive while the turn writes wait for the next turn.
    recorder.during = _more(writer, 10_000, 10)
    writer.start()
    try:
        await _until(lambda: len(recorder.stored) >= 1_200)
        assert [len(b) for b in recorder.batches] == [500, 500, 200]
        assert recorder.stored == list(range(1_200))
        assert writer.pending == 10  # below the threshold, the interval not up: queued
        for i in range(10, EAGER_RECORDS):
            writer.record(10_000 + i)
        await _until(lambda: writer.pending == 0)
        assert recorder.batches[3:] == [[10_000 + i for i in range(EAGER_RECORDS)]]
    finally:
        await writer.close()


async def test_the_threshold_is_batch_size_when_that_is_smaller() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=5)
    writer.start()
    try:
        for i in range(5):
            writer.record(i)
        await _until(lambda: writer.pending == 0)
        assert recorder.batches == [[0, 1, 2, 3, 4]]
    finally:
        await writer.close()


async def test_the_interval_starts_a_turn_for_a_few_records() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=500, interval=0.01)
    writer.start()
    try:
        writer.record(1)
        writer.record(2)
        await _until(lambda: writer.pending == 0)
        assert recorder.batches == [[1, 2]]
    finally:
        await writer.close()


async def test_flush_empties_the_queue_including_what_arrives_meanwhile() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=4)
    for i in range(6):
        writer.record(i)
    recorder.during = _more(writer, 100, 3)
    await writer.flush()
    assert writer.pending == 0
    assert recorder.stored == [0, 1, 2, 3, 4, 5, 100, 101, 102]
    assert max(len(b) for b in recorder.batches) <= 4


async def test_close_drains_what_is_left() -> None:
    recorder = _Recorder()
    writer = _writer(recorder, batch_size=500)
    writer.start()
    for i in range(7):  # below the threshold, the interval an hour away
        writer.record(i)
    await writer.close()
    assert recorder.stored == list(range(7))


async def test_a_failed_turn_waits_its_backoff_whatever_queues_up() -> None:
    """While the database is down, records keep arriving (each one past the threshold
    would wake the writer): the retries still wait the backoff (0.25 s, then doubling),
    they do not follow the traffic."""
    attempts: list[int] = []

    class _Down(_Recorder):
        async def store(self, batch: Sequence[int]) -> None:
            attempts.append(len(batch))
            raise BackendUnavailable("database down")

    writer = _writer(_Down(), batch_size=500, interval=0.01)
    writer.start()
    try:
        for i in range(300):  # about 0.3 s of traffic, every record over the threshold
            writer.record(i)
            await asyncio.sleep(0.001)
        assert 1 <= len(attempts) <= 3  # t = 0, 0.25 s (then 0.75 s): not one per record
        assert writer.pending == 300  # nothing lost while it waits
    finally:
        await writer.close(timeout=0.01)  # the database stays down: records lost, logged
