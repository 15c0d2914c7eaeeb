"""RFC 3339 UTC timestamps <-> integer NumericDates (seconds since the epoch)."""

from __future__ import annotations

import time
from datetime import date, datetime
from functools import lru_cache


@lru_cache(maxsize=4096)
def _second(sec: int) -> str:
    # Verify answers format the current second twice per request: memoised, it costs a
    # dict lookup instead of a strftime.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def rfc3339(ts: float) -> str:
    """``2026-11-22T14:00:00Z`` (UTC); with milliseconds when ``ts`` has a fraction."""
    sec = int(ts // 1)
    prefix = _second(sec)
    if isinstance(ts, float) and ts != sec:
        return f"{prefix}.{int((ts - sec) * 1000):03d}Z"
    return prefix + "Z"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp with an explicit offset; ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("not an RFC 3339 timestamp")
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError("RFC 3339 timestamps need a UTC offset (for example Z)")
    return int(dt.timestamp())


DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)


def day_ms(day: date) -> tuple[int, int]:
    """The UTC day ``day`` as ``[start, end)`` in milliseconds since the epoch. Integer
    arithmetic: ``datetime`` would overflow on 9999-12-31 (a 500 for a valid date)."""
    start = (day - _EPOCH).days * DAY_MS
    return start, start + DAY_MS
