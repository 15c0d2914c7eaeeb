"""SQLite implementation of :class:`~suishen.app.storage.transit.TransitRepository`
(shares the database's one connection and write lock)."""

from __future__ import annotations

from collections.abc import Sequence

from suishen.app.storage.sqlite_batch import SQLiteRepository
from suishen.app.storage.transit import JOURNEY_COLUMNS, JourneyEntry, JourneyRecord

_MARKS = ", ".join("?" * len(JOURNEY_COLUMNS.split(",")))


class SQLiteTransit(SQLiteRepository):
    """Fare tables and journey records on SQLite."""

    async def put_fare_table(self, network: str, body: str, *, now: int) -> None:
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO fare_tables (network, body, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(network) DO UPDATE SET body = excluded.body, "
                "updated_at = excluded.updated_at",
                (network, body, now),
            )

    async def fare_tables(self) -> dict[str, str]:
        rows = await self._rows("SELECT network, body FROM fare_tables ORDER BY network")
        return {r[0]: r[1] for r in rows}

    async def append_journeys(self, records: Sequence[JourneyRecord]) -> None:
        await self._insert_batch(
            f"INSERT INTO journeys ({JOURNEY_COLUMNS}) VALUES ({_MARKS})",  # noqa: S608
            [r.as_row() for r in records], "journeys")

    async def journeys_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[JourneyEntry]:
        rows = await self._subject_page(
            f"SELECT id, {JOURNEY_COLUMNS} FROM journeys", handle,  # noqa: S608
            limit=limit, before_id=before_id)
        return [JourneyEntry(int(r[0]), JourneyRecord.from_row(r[1:])) for r in rows]

    async def journeys_between(self, start_ms: int, end_ms: int) -> list[JourneyRecord]:
        rows = await self._rows(
            f"SELECT {JOURNEY_COLUMNS} FROM journeys WHERE at_ms >= ? AND at_ms < ? "  # noqa: S608
            "ORDER BY id",
            (start_ms, end_ms),
        )
        return [JourneyRecord.from_row(r) for r in rows]
