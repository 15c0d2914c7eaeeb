"""PostgreSQL implementation of :class:`~suishen.app.storage.transit.TransitRepository`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from suishen.app.storage.transit import JOURNEY_COLUMNS, JourneyEntry, JourneyRecord

if TYPE_CHECKING:
    from suishen.app.storage.postgres import PostgresDatabase

_MARKS = ", ".join(f"${i + 1}" for i in range(len(JOURNEY_COLUMNS.split(","))))


class PostgresTransit:
    """Fare tables and journey records on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put_fare_table(self, network: str, body: str, *, now: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO fare_tables (network, body, updated_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (network) DO UPDATE SET body = excluded.body, "
                "updated_at = excluded.updated_at",
                network, body, now,
            )

        await self._db.run(op)

    async def fare_tables(self) -> dict[str, str]:
        rows = await self._db.run(
            lambda c: c.fetch("SELECT network, body FROM fare_tables ORDER BY network"),
            retry=True,
        )
        return {r[0]: r[1] for r in rows}

    async def append_journeys(self, records: Sequence[JourneyRecord]) -> None:
        if not records:
            return
        rows = [r.as_row() for r in records]

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO journeys ({JOURNEY_COLUMNS}) VALUES ({_MARKS})",  # noqa: S608
                    rows,
                )

        await self._db.run(op)

    async def journeys_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[JourneyEntry]:
        if before_id is None:
            sql = (f"SELECT id, {JOURNEY_COLUMNS} FROM journeys "  # noqa: S608
                   "WHERE subject_handle = $1 ORDER BY id DESC LIMIT $2")
            args: tuple[object, ...] = (handle, limit)
        else:
            sql = (f"SELECT id, {JOURNEY_COLUMNS} FROM journeys "  # noqa: S608
                   "WHERE subject_handle = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            args = (handle, before_id, limit)
        rows = await self._db.run(lambda c: c.fetch(sql, *args), retry=True)
        return [JourneyEntry(int(r[0]), JourneyRecord.from_row(tuple(r)[1:])) for r in rows]

    async def journeys_between(self, start_ms: int, end_ms: int) -> list[JourneyRecord]:
        sql = (f"SELECT {JOURNEY_COLUMNS} FROM journeys "  # noqa: S608
               "WHERE at_ms >= $1 AND at_ms < $2 ORDER BY id")
        rows = await self._db.run(lambda c: c.fetch(sql, start_ms, end_ms), retry=True)
        return [JourneyRecord.from_row(tuple(r)) for r in rows]
