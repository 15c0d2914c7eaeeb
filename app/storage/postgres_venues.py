"""PostgreSQL implementation of :class:`~suishen.app.storage.venues.VenueRepository`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from suishen.app.storage.sqlite_venues import HOUR_MS, VENUE_COLUMNS, venue_of, venue_row
from suishen.app.storage.venues import CheckinEntry, CheckinRecord, Venue

if TYPE_CHECKING:
    from suishen.app.storage.postgres import PostgresDatabase

_SELECT = f"SELECT {VENUE_COLUMNS} FROM venues WHERE venue_id = $1"  # noqa: S608


class PostgresVenues:
    """Venues and check-ins on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def insert_venue(self, venue: Venue) -> bool:
        sql = (f"INSERT INTO venues ({VENUE_COLUMNS}) "  # noqa: S608
               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (venue_id) DO NOTHING")
        status = await self._db.run(lambda c: c.execute(sql, *venue_row(venue)))
        return str(status).endswith(" 1")

    async def get_venue(self, venue_id: str) -> Venue | None:
        row = await self._db.run(lambda c: c.fetchrow(_SELECT, venue_id), retry=True)
        return None if row is None else venue_of(tuple(row))

    async def revoke_venue(self, venue_id: str, *, now: int) -> Venue | None:
        async def op(conn: Any) -> Any:
            await conn.execute(
                "UPDATE venues SET revoked_at = $1 WHERE venue_id = $2 AND revoked_at IS NULL",
                now, venue_id)
            return await conn.fetchrow(_SELECT, venue_id)

        row = await self._db.run(op)
        return None if row is None else venue_of(tuple(row))

    async def revoked_venues(self) -> list[str]:
        rows = await self._db.run(
            lambda c: c.fetch("SELECT venue_id FROM venues WHERE revoked_at IS NOT NULL"),
            retry=True)
        return [r[0] for r in rows]

    async def append_checkins(self, records: Sequence[CheckinRecord]) -> None:
        if not records:
            return
        rows = [(r.at_ms, r.subject_handle, r.venue_id) for r in records]

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO checkins (at_ms, subject_handle, venue_id) VALUES ($1, $2, $3)",
                    rows)

        await self._db.run(op)

    async def checkins_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[CheckinEntry]:
        if before_id is None:
            sql = ("SELECT id, at_ms, subject_handle, venue_id FROM checkins "
                   "WHERE subject_handle = $1 ORDER BY id DESC LIMIT $2")
            args: tuple[object, ...] = (handle, limit)
        else:
            sql = ("SELECT id, at_ms, subject_handle, venue_id FROM checkins "
                   "WHERE subject_handle = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            args = (handle, before_id, limit)
        rows = await self._db.run(lambda c: c.fetch(sql, *args), retry=True)
        return [CheckinEntry(int(r[0]), CheckinRecord(int(r[1]), bytes(r[2]), r[3]))
                for r in rows]

    async def visits_per_hour(self, venue_id: str, start_ms: int,
                              end_ms: int) -> dict[int, int]:
        sql = ("SELECT (at_ms / $1) * $1, COUNT(*) FROM checkins "
               "WHERE venue_id = $2 AND at_ms >= $3 AND at_ms < $4 GROUP BY 1 ORDER BY 1")
        rows = await self._db.run(lambda c: c.fetch(sql, HOUR_MS, venue_id, start_ms, end_ms),
                                  retry=True)
        return {int(r[0]): int(r[1]) for r in rows}
