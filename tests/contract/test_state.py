"""State-backend contract: every test runs unchanged on the in-process state and on Redis.

"Another process" is ``state_kit.new()``: a second Redis client on the same key space,
or — for the in-process state, where one process is all there is — the same object.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from suishen.app.storage.base import Event, StateBackend
from tests.contract.conftest import StateKit

NOW_MS = 1_800_000_000_000
DELIVERY_S = 1.0  # SPEC §4: every process applies a change within one second


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class Collector:
    """A change-feed handler that records what it gets."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.events: list[Event] = []
        self._fail_on = fail_on

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self._fail_on is not None and event.data.get("n") == self._fail_on:
            raise RuntimeError("handler bug")

    def data(self, kind: str = "subject") -> list[dict[str, object]]:
        return [e.data for e in self.events if e.kind == kind]

    def resyncs(self) -> int:
        return sum(1 for e in self.events if e.kind == "resync")

    async def wait(self, done: Callable[[], bool], timeout: float = DELIVERY_S) -> float:
        """Seconds until ``done()``; fails after ``timeout``."""
        start = time.monotonic()
        while not done():
            assert time.monotonic() - start < timeout, f"not in {timeout} s: {self.events}"
            await asyncio.sleep(0.005)
        return time.monotonic() - start


def subject_event(n: int | str) -> Event:
    return Event("subject", {"handle": os.urandom(10).hex(), "status": "suspended", "n": n})


# --- single use ----------------------------------------------------------------------------
async def test_first_use_exactly_once_under_concurrency(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    key = os.urandom(16)
    results = await asyncio.gather(
        *((a if i % 2 else b).first_use(key, ttl_seconds=60) for i in range(200))
    )
    assert results.count(True) == 1
    assert await a.first_use(key, ttl_seconds=60) is False
    assert await b.first_use(os.urandom(16), ttl_seconds=60) is True  # other keys unaffected


async def test_first_use_forgets_after_the_ttl(state: StateBackend) -> None:
    key = os.urandom(16)
    assert await state.first_use(key, ttl_seconds=1) is True
    start = time.monotonic()
    assert await state.first_use(key, ttl_seconds=1) is False
    await asyncio.sleep(0.5)
    assert await state.first_use(key, ttl_seconds=1) is False  # not forgotten early
    # Forgotten within a few seconds (the in-process memory counts whole seconds and
    # may keep a key up to one second longer: never shorter, which is the safe side).
    while not await state.first_use(key, ttl_seconds=1):
        assert time.monotonic() - start < 3.5, "single-use key never expired"
        await asyncio.sleep(0.1)
    assert time.monotonic() - start >= 0.9


# --- rate limits ----------------------------------------------------------------------------
async def test_rate_limit_allows_a_second_worth_then_asks_to_wait(state: StateBackend) -> None:
    partner = uid("gate")
    waits = [await state.rate_limit(partner, per_second=10, now_ms=NOW_MS) for _ in range(10)]
    assert waits == [0.0] * 10
    wait = await state.rate_limit(partner, per_second=10, now_ms=NOW_MS)
    assert 0.09 <= wait <= 0.11
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS + 50) > 0
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS + 100) == 0.0
    # A second later the whole budget is back, and other partners never shared it.
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS + 1200) == 0.0
    assert await state.rate_limit(uid("other"), per_second=10, now_ms=NOW_MS) == 0.0


async def test_rate_limit_takes_a_count_whole_or_not_at_all(state: StateBackend) -> None:
    partner = uid("lease")
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS, count=6) == 0.0
    # 4 left: 5 do not fit (and none is taken), 4 do, then nothing.
    wait = await state.rate_limit(partner, per_second=10, now_ms=NOW_MS, count=5)
    assert 0.09 <= wait <= 0.11
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS, count=4) == 0.0
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS) > 0
    # 300 ms later, 3 are back.
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS + 300, count=3) == 0.0
    assert await state.rate_limit(partner, per_second=10, now_ms=NOW_MS + 300) > 0


async def test_rate_limit_is_shared_by_processes(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    partner = uid("hospital")
    for i in range(6):
        assert await (a if i % 2 else b).rate_limit(partner, per_second=6, now_ms=NOW_MS) == 0
    assert await a.rate_limit(partner, per_second=6, now_ms=NOW_MS) > 0
    assert await b.rate_limit(partner, per_second=6, now_ms=NOW_MS + 10) > 0


async def test_rate_limit_is_atomic(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    partner = uid("venue")
    waits = await asyncio.gather(
        *((a if i % 2 else b).rate_limit(partner, per_second=20, now_ms=NOW_MS)
          for i in range(60))
    )
    assert sum(1 for w in waits if w == 0.0) == 20
    assert all(w > 0 for w in waits if w != 0.0)


# --- change feed -----------------------------------------------------------------------------
async def test_published_event_reaches_every_process_within_a_second(
    state_kit: StateKit,
) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    got_a, got_b = Collector(), Collector()
    a.subscribe(got_a)
    b.subscribe(got_b)
    await a.start()
    await b.start()
    event = subject_event(1)
    await a.publish(event)
    took = await got_b.wait(lambda: event.data in got_b.data())
    assert took < DELIVERY_S
    # The publisher's own handler too. (In-process state: a and b are one process, whose
    # one handler is the last subscribed.)
    own = got_a if a is not b else got_b
    await own.wait(lambda: event.data in own.data())
    keys = Event("keys", {"name": "codes", "version": 7})
    await b.publish(keys)
    await own.wait(lambda: keys.data in own.data("keys"))
    assert own.events[-1] == keys


async def test_events_arrive_in_order(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    got = Collector()
    b.subscribe(got)
    await b.start()
    await a.start()
    sent = [subject_event(i) for i in range(25)]
    for event in sent:
        await a.publish(event)
    await got.wait(lambda: len(got.data()) == len(sent))
    assert got.data() == [e.data for e in sent]


async def test_listener_catches_up_after_a_disconnection(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    got = Collector()
    b.subscribe(got)
    await b.start()
    await a.start()
    first = subject_event("before")
    await a.publish(first)
    await got.wait(lambda: first.data in got.data())
    resyncs = got.resyncs()

    await state_kit.pause(b)
    missed = [subject_event(i) for i in range(5)]
    for event in missed:
        await a.publish(event)
    await state_kit.resume(b)

    await got.wait(lambda: all(e.data in got.data() for e in missed))
    assert got.data()[-5:] == [e.data for e in missed]  # in order, nothing dropped
    assert got.resyncs() == resyncs  # nothing was lost, so no full reload was needed


async def test_listener_that_missed_too_much_gets_everything_or_a_resync(
    state_kit: StateKit,
) -> None:
    # The publisher keeps a tiny feed: while the listener is away it is trimmed past the
    # listener's position. The listener must not silently skip: it either still gets
    # every event or is told to reload everything ("resync").
    a, b = await state_kit.new(feed_maxlen=10), await state_kit.new()
    got = Collector()
    b.subscribe(got)
    await b.start()
    await a.start()
    await state_kit.pause(b)
    resyncs = got.resyncs()
    sent = [subject_event(i) for i in range(300)]
    for event in sent:
        await a.publish(event)
    await state_kit.resume(b)
    await got.wait(
        lambda: got.resyncs() > resyncs or all(e.data in got.data() for e in sent)
    )
    after = subject_event("after")
    await a.publish(after)  # and the feed keeps working afterwards
    await got.wait(lambda: after.data in got.data())


async def test_a_failing_handler_does_not_break_the_feed(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    got = Collector(fail_on="boom")
    b.subscribe(got)
    await b.start()
    await a.start()
    await a.publish(subject_event("boom"))  # the publisher does not see the handler's bug
    later = subject_event("later")
    await a.publish(later)
    await got.wait(lambda: later.data in got.data())


# --- cache ----------------------------------------------------------------------------------
async def test_cache_set_get_delete(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    key = uid("subject")
    assert await a.cache_get(key) is None
    await a.cache_set(key, b"\x00{\"name\": \"\xe5\xbc\xa0\"}", ttl_seconds=60)
    assert await b.cache_get(key) == b"\x00{\"name\": \"\xe5\xbc\xa0\"}"
    await b.cache_set(key, b"v2", ttl_seconds=60)
    assert await a.cache_get(key) == b"v2"
    await a.cache_delete(key)
    assert await b.cache_get(key) is None
    await a.cache_delete(key)  # deleting a missing key is fine


async def test_cache_entries_expire(state: StateBackend) -> None:
    key = uid("subject")
    await state.cache_set(key, b"v", ttl_seconds=1)
    assert await state.cache_get(key) == b"v"
    start = time.monotonic()
    while await state.cache_get(key) is not None:
        assert time.monotonic() - start < 2.5, "cache entry never expired"
        await asyncio.sleep(0.05)


async def test_cache_add_is_first_writer_wins_across_processes(state_kit: StateKit) -> None:
    a, b = await state_kit.new(), await state_kit.new()
    key = uid("lock")
    results = await asyncio.gather(*(s.cache_add(key, bytes([n]), ttl_ms=60_000)
                                     for n, s in enumerate([a, b, a, b])))
    assert sorted(results) == [False, False, False, True]
    winner = bytes([results.index(True)])
    assert await a.cache_get(key) == await b.cache_get(key) == winner
    await b.cache_delete(key)
    assert await a.cache_add(key, b"again", ttl_ms=60_000)


async def test_cache_add_entries_expire_after_their_milliseconds(state: StateBackend) -> None:
    key = uid("lock")
    assert await state.cache_add(key, b"1", ttl_ms=200)
    assert not await state.cache_add(key, b"2", ttl_ms=200)
    start = time.monotonic()
    while not await state.cache_add(key, b"3", ttl_ms=200):
        assert time.monotonic() - start < 1.5, "a cache_add entry never expired"
        await asyncio.sleep(0.02)
    assert time.monotonic() - start >= 0.1
    assert await state.cache_get(key) == b"3"


async def test_ping(state: StateBackend) -> None:
    await state.ping()


# --- issue 8 item 3: durable single use for the embedded default ----------------------------
async def test_single_use_survives_reopening_the_embedded_state(tmp_path: Path) -> None:
    from suishen.app.storage.memory import MemoryState

    now = [1_800_000_000.0]
    path = tmp_path / "single-use.sqlite3"
    first = MemoryState(single_use_path=path, clock=lambda: now[0])
    assert await first.first_use(b"kid|cti-1", ttl_seconds=60) is True
    assert await first.first_use(b"kid|cti-1", ttl_seconds=60) is False
    await first.close()
    second = MemoryState(single_use_path=path, clock=lambda: now[0])
    assert await second.first_use(b"kid|cti-1", ttl_seconds=60) is False
    assert await second.first_use(b"kid|cti-2", ttl_seconds=60) is True
    now[0] += 61  # expired entries are forgotten (and pruned)
    assert await second.first_use(b"kid|cti-1", ttl_seconds=60) is True
    assert second._durable is not None and second._durable.prune(int(now[0]) + 61) == 2
    await second.close()
