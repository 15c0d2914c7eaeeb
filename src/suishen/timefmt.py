"""RFC 3339 UTC timestamps <-> integer NumericDates (seconds since the epoch)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """``2026-11-22T14:00:00Z`` (whole seconds, UTC); milliseconds when ``ts`` has them."""
    dt = datetime.fromtimestamp(ts, UTC)
    if isinstance(ts, float) and dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp with an explicit offset; ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("not an RFC 3339 timestamp")
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError("RFC 3339 timestamps need a UTC offset (for example Z)")
    return int(dt.timestamp())
