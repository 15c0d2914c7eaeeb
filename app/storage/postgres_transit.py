"""PostgreSQL implementation of :class:`~suishen.app.storage.transit.TransitRepository`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from suishen.app.storage.base import AUDIT_COLUMNS, AUDIT_MARKS_POSTGRES
from suishen.app.storage.transit import (
    ACCEPTED,
    DUPLICATE,
    DUPLICATE_USE,
    GATE_COLUMNS,
    JOURNEY_COLUMNS,
    JOURNEY_GROUPS_SQL,
    AuditOf,
    GateTap,
    JourneyEntry,
    JourneyRecord,
    Pairing,
    journey_groups_of,
)
from suishen.verifiers.transit import JourneyGroup

if TYPE_CHECKING:
    from suishen.app.storage.postgres import PostgresDatabase

_MARKS = ", ".join(f"${i + 1}" for i in range(len(JOURNEY_COLUMNS.split(","))))
_GATE_MARKS = ", ".join(f"${i + 1}" for i in range(len(GATE_COLUMNS.split(",")) + 1))
# One advisory lock serialises gate uploads across processes: each re-pairs a citizen's
# taps from what is stored, so two uploads for one citizen must not interleave.
_UPLOAD_LOCK = 0x5355_4753_4741_5445  # "SUGSGATE"


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

    async def dead_letter_journey(self, record: JourneyRecord, *, error: str,
                                  now_ms: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO journey_dead_letter (failed_at_ms, error, record) "
                "VALUES ($1, $2, $3)",
                now_ms, error.replace("\x00", "\\0")[:500], record.as_json(),
            )

        await self._db.run(op)

    async def journey_dead_letters(self) -> list[str]:
        rows = await self._db.run(
            lambda c: c.fetch("SELECT record FROM journey_dead_letter ORDER BY id"), retry=True)
        return [r[0] for r in rows]

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

    async def journey_groups(self, start_ms: int, end_ms: int) -> list[JourneyGroup]:
        rows = await self._db.run(lambda c: c.fetch(JOURNEY_GROUPS_SQL, start_ms, end_ms),
                                  retry=True)
        return journey_groups_of(rows)

    async def store_gate_taps(self, taps: Sequence[GateTap], *, received_at: int,
                              audit_of: AuditOf, pairing: Pairing) -> list[str]:
        async def op(conn: Any) -> list[str]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _UPLOAD_LOCK)
                outcomes: list[str] = []
                audits: list[tuple[Any, ...]] = []
                touched: set[tuple[bytes, str]] = set()
                for index, t in enumerate(taps):
                    stored = await conn.fetchval(
                        f"INSERT INTO gate_events ({GATE_COLUMNS}, received_at) "  # noqa: S608
                        f"VALUES ({_GATE_MARKS}) ON CONFLICT DO NOTHING RETURNING id",
                        *t.as_row(), received_at,
                    )
                    if stored is None:
                        outcomes.append(DUPLICATE)
                        continue
                    other = await conn.fetchval(
                        "SELECT 1 FROM gate_events WHERE use_key = $1 "
                        "AND NOT (partner_id = $2 AND gate = $3) LIMIT 1",
                        t.use_key, t.partner_id, t.gate,
                    )
                    outcome = DUPLICATE_USE if other else ACCEPTED
                    outcomes.append(outcome)
                    audits.append(audit_of(index, outcome).as_row())
                    touched.add((t.subject_handle, t.scene))
                if audits:
                    await conn.executemany(
                        f"INSERT INTO audit ({AUDIT_COLUMNS}) "  # noqa: S608
                        f"VALUES ({AUDIT_MARKS_POSTGRES})",
                        audits,
                    )
                for handle, scene in sorted(touched):
                    rows = await conn.fetch(
                        f"SELECT {GATE_COLUMNS} FROM gate_events "  # noqa: S608
                        "WHERE subject_handle = $1 AND scene = $2 ORDER BY id",
                        handle, scene,
                    )
                    journeys = pairing(handle, scene, [GateTap.from_row(tuple(r)) for r in rows])
                    if journeys is None:
                        continue
                    await conn.execute(
                        "DELETE FROM journeys WHERE subject_handle = $1 AND network = $2 "
                        "AND offline",
                        handle, scene,
                    )
                    if journeys:
                        await conn.executemany(
                            f"INSERT INTO journeys ({JOURNEY_COLUMNS}) "  # noqa: S608
                            f"VALUES ({_MARKS})",
                            [j.as_row() for j in journeys],
                        )
                return outcomes

        return await self._db.run(op, timeout=30.0)  # a batch is many round trips
