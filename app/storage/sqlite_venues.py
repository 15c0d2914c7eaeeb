"""SQLite implementation of :class:`~suishen.app.storage.venues.VenueRepository`
(shares the database's one connection and write lock)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from suishen.app.storage.sqlite_batch import SQLiteRepository
from suishen.app.storage.venues import CheckinEntry, CheckinRecord, Venue

VENUE_COLUMNS = ("venue_id, name, address, kind, enterprise_id, info, code, created_at, "
                 "revoked_at")
HOUR_MS = 3_600_000


def venue_row(venue: Venue) -> tuple[Any, ...]:
    """The values in :data:`VENUE_COLUMNS` order (both SQL backends)."""
    return (venue.venue_id, venue.name, venue.address, venue.kind, venue.enterprise_id,
            json.dumps(dict(venue.info), ensure_ascii=False, sort_keys=True), venue.code,
            venue.created_at, venue.revoked_at)


def venue_of(row: Sequence[Any]) -> Venue:
    """Inverse of :func:`venue_row`."""
    venue_id, name, address, kind, enterprise_id, info, code, created_at, revoked_at = row
    return Venue(str(venue_id), name, address, kind, enterprise_id, json.loads(info), code,
                 int(created_at), None if revoked_at is None else int(revoked_at))


class SQLiteVenues(SQLiteRepository):
    """Venues and check-ins on SQLite."""

    async def insert_venue(self, venue: Venue) -> bool:
        sql = (f"INSERT INTO venues ({VENUE_COLUMNS}) "  # noqa: S608
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(venue_id) DO NOTHING")
        async with self._lock, self._conn.execute(sql, venue_row(venue)) as cur:
            return cur.rowcount == 1

    async def get_venue(self, venue_id: str) -> Venue | None:
        rows = await self._rows(
            f"SELECT {VENUE_COLUMNS} FROM venues WHERE venue_id = ?", (venue_id,))  # noqa: S608
        return venue_of(rows[0]) if rows else None

    async def revoke_venue(self, venue_id: str, *, now: int) -> Venue | None:
        async with self._lock:
            await self._conn.execute(
                "UPDATE venues SET revoked_at = ? WHERE venue_id = ? AND revoked_at IS NULL",
                (now, venue_id))
        return await self.get_venue(venue_id)

    async def revoked_venues(self) -> list[str]:
        rows = await self._rows("SELECT venue_id FROM venues WHERE revoked_at IS NOT NULL")
        return [r[0] for r in rows]

    async def append_checkins(self, records: Sequence[CheckinRecord]) -> None:
        await self._insert_batch(
            "INSERT INTO checkins (at_ms, subject_handle, venue_id) VALUES (?, ?, ?)",
            [(r.at_ms, r.subject_handle, r.venue_id) for r in records], "check-ins")

    async def checkins_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[CheckinEntry]:
        rows = await self._subject_page(
            "SELECT id, at_ms, subject_handle, venue_id FROM checkins", handle, limit=limit,
            before_id=before_id)
        return [CheckinEntry(int(r[0]), CheckinRecord(int(r[1]), bytes(r[2]), r[3]))
                for r in rows]

    async def visits_per_hour(self, venue_id: str, start_ms: int,
                              end_ms: int) -> dict[int, int]:
        rows = await self._rows(
            "SELECT (at_ms / ?) * ?, COUNT(*) FROM checkins "
            "WHERE venue_id = ? AND at_ms >= ? AND at_ms < ? GROUP BY 1 ORDER BY 1",
            (HOUR_MS, HOUR_MS, venue_id, start_ms, end_ms))
        return {int(r[0]): int(r[1]) for r in rows}
