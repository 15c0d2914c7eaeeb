"""Per-partner rate limits: the shared budget, with a per-process fallback."""

from __future__ import annotations

from suishen.app.observability import Metrics
from suishen.app.storage.base import StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.errors import BackendUnavailable


class RateLimiter:
    """Takes one request from a partner's shared budget (0.0, or seconds to wait).

    While the shared state is down, each process limits on its own (fail open to a
    per-process bucket): a verification is never refused for want of a counter.
    """

    def __init__(self, state: StateBackend, metrics: Metrics) -> None:
        self._state = state
        self._metrics = metrics
        self._local = MemoryState()

    async def take(self, client_id: str, *, per_second: int, now: float) -> float:
        """One request of ``client_id`` at ``now`` (seconds since the epoch)."""
        now_ms = int(now * 1000)
        try:
            return await self._state.rate_limit(client_id, per_second=per_second, now_ms=now_ms)
        except BackendUnavailable:
            self._metrics.backend_errors.labels("state", "rate_limit").inc()
            return await self._local.rate_limit(client_id, per_second=per_second, now_ms=now_ms)
