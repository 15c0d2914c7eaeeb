"""Rate-limit leases (app/services/ratelimit.py): a busy partner's requests are taken
from the shared budget in batches, and the budget still bounds every process together.
The shared state here is the in-process one standing in for Redis (both pass the same
contract suite, ``tests/contract/test_state.py``, including ``count``); the spy counts
how often the shared state is asked."""

from __future__ import annotations

from typing import Any

from suishen.app.observability import Metrics
from suishen.app.services.ratelimit import LEASE_SECONDS, RateLimiter
from suishen.app.storage.memory import MemoryState

NOW = 1_800_000_000.0


class Spy(MemoryState):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def take_tokens(self, partner_id: str, *, per_second: int, now_ms: int,
                    count: int = 1) -> float:
        # Under rate_limit too: the limiter's no-await path for the in-process state
        # (RateLimiter.take_now) calls this directly.
        self.calls.append(count)
        return super().take_tokens(partner_id, per_second=per_second, now_ms=now_ms,
                                   count=count)


def limiter(state: Any) -> RateLimiter:
    return RateLimiter(state, Metrics(), lease=True)


async def test_a_busy_partner_costs_one_shared_call_per_lease() -> None:
    shared = Spy()
    one = limiter(shared)
    waits = [await one.take("metro", per_second=1_000, now=NOW) for _ in range(120)]
    assert waits == [0.0] * 120
    assert shared.calls == [50, 50, 50]  # 1/20 of a second's budget per lease


async def test_processes_together_never_pass_more_than_the_budget() -> None:
    shared = Spy()
    a, b = limiter(shared), limiter(shared)
    passed = 0
    for i in range(3_000):
        passed += await (a if i % 3 else b).take("metro", per_second=1_000, now=NOW) == 0.0
    # The burst is one second's budget; each process may strand less than one lease.
    assert 1_000 - 2 * 50 < passed <= 1_000
    assert await a.take("metro", per_second=1_000, now=NOW) > 0


async def test_near_the_limit_requests_are_taken_one_at_a_time() -> None:
    shared = Spy()
    await shared.rate_limit("metro", per_second=100, now_ms=int(NOW * 1000), count=97)
    one = limiter(shared)
    waits = [await one.take("metro", per_second=100, now=NOW) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0  # the last 3, singly
    assert shared.calls[1:] == [5, 1, 5, 1, 5, 1, 5, 1]


async def test_an_unused_lease_lapses() -> None:
    shared = Spy()
    one = limiter(shared)
    assert await one.take("metro", per_second=1_000, now=NOW) == 0.0
    assert await one.take("metro", per_second=1_000, now=NOW + LEASE_SECONDS) == 0.0
    assert shared.calls == [50, 50]


async def test_slow_partners_and_the_in_process_state_are_limited_request_by_request() -> None:
    shared = Spy()
    one = limiter(shared)
    for _ in range(5):
        await one.take("library", per_second=39, now=NOW)
    assert shared.calls == [1] * 5
    embedded = Spy()
    default = RateLimiter(embedded, Metrics())  # in-process state: no leases
    for _ in range(5):
        await default.take("metro", per_second=1_000, now=NOW)
    assert embedded.calls == [1] * 5


async def test_take_now_answers_as_take_or_defers_to_it() -> None:
    """The no-await path (the verify route's) gives the answers ``take`` gives, and
    defers (None) exactly when the shared state must be asked."""
    times = [NOW + i * 0.003 for i in range(400)]  # ~333 requests/s against 100/s
    sync_side, async_side = RateLimiter(MemoryState(), Metrics()), RateLimiter(
        MemoryState(), Metrics())
    now_answers = [sync_side.take_now("p", per_second=100, now=t) for t in times]
    assert None not in now_answers  # in-process state: always answered without I/O
    assert now_answers == [await async_side.take("p", per_second=100, now=t) for t in times]
    assert 0 < sum(w == 0.0 for w in now_answers) < len(times)  # some passed, some waited
    leased = limiter(Spy())
    assert leased.take_now("metro", per_second=1_000, now=NOW) is None  # no lease yet
    assert await leased.take("metro", per_second=1_000, now=NOW) == 0.0
    assert leased.take_now("metro", per_second=1_000, now=NOW) == 0.0  # from the lease
