"""Per-partner rate limits: the shared budget, leased in batches, with a per-process
fallback.

Leasing: on a shared state (Redis), a busy partner's requests are taken from the shared
budget in batches — a *lease* of ``per_second // LEASE_FRACTION`` requests (50 ms of
the partner's budget, at most :data:`LEASE_MAX`) — that this process then hands out
locally for up to :data:`LEASE_SECONDS`: one Redis round trip per lease instead of one
per request (the metro verify's hot path, issue 13). The shared budget still bounds
every process together: a lease is taken from it, whole or not at all, before any of
its requests is admitted. What a process leased and did not use lapses, so near the
limit a partner may be refused up to one lease per process early; when a whole lease
no longer fits, requests are taken one at a time, exactly as without leases. Below
``2 * LEASE_FRACTION`` requests per second a lease would be a single request: such
partners (and every partner on the in-process state, where a call costs no round
trip) are limited request by request.
"""

from __future__ import annotations

from suishen.app.observability import Metrics
from suishen.app.storage.base import StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.errors import BackendUnavailable

LEASE_FRACTION = 20
LEASE_MAX = 1_000
LEASE_SECONDS = 0.25


class RateLimiter:
    """Takes one request from a partner's shared budget (0.0, or seconds to wait).

    While the shared state is down, each process limits on its own (fail open to a
    per-process bucket): a verification is never refused for want of a counter.
    ``lease`` (default: when ``state`` is shared, not the in-process state) turns
    leasing on; see the module docstring.
    """

    def __init__(self, state: StateBackend, metrics: Metrics, *,
                 lease: bool | None = None) -> None:
        self._state = state
        self._metrics = metrics
        self._local = MemoryState()
        self._lease = not isinstance(state, MemoryState) if lease is None else lease
        self._leases: dict[str, list[float]] = {}  # client id -> [requests left, until]
        # The in-process state without leases answers without I/O (see take_now).
        self._in_process = state if isinstance(state, MemoryState) and not self._lease else None

    def take_now(self, client_id: str, *, per_second: int, now: float) -> float | None:
        """:meth:`take` when it needs no I/O — a lease this process holds, or the
        in-process state's bucket — else None (then await :meth:`take`). The verify
        path calls it first: an ``await`` of the whole chain costs more than the
        bucket's arithmetic (issue 13)."""
        held = self._leases.get(client_id)
        if held is not None and held[0] >= 1 and now < held[1]:
            held[0] -= 1
            return 0.0
        if self._in_process is not None:
            return self._in_process.take_tokens(client_id, per_second=per_second,
                                                now_ms=int(now * 1000))
        return None

    async def take(self, client_id: str, *, per_second: int, now: float) -> float:
        """One request of ``client_id`` at ``now`` (seconds since the epoch)."""
        answer = self.take_now(client_id, per_second=per_second, now=now)
        if answer is not None:
            return answer
        now_ms = int(now * 1000)
        size = min(LEASE_MAX, per_second // LEASE_FRACTION) if self._lease else 1
        try:
            if size > 1 and await self._state.rate_limit(
                client_id, per_second=per_second, now_ms=now_ms, count=size
            ) == 0.0:
                self._keep(client_id, size - 1, now)
                return 0.0
            return await self._state.rate_limit(client_id, per_second=per_second,
                                                now_ms=now_ms)
        except BackendUnavailable:
            self._metrics.backend_errors.labels("state", "rate_limit").inc()
            return await self._local.rate_limit(client_id, per_second=per_second, now_ms=now_ms)

    def _keep(self, client_id: str, left: int, now: float) -> None:
        held = self._leases.get(client_id)
        if held is not None and now < held[1]:
            held[0] += left  # two leases taken at once (concurrent requests): keep both
        else:
            self._leases[client_id] = [float(left), now + LEASE_SECONDS]
