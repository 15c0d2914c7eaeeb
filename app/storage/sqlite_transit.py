"""SQLite implementation of :class:`~suishen.app.storage.transit.TransitRepository`
(shares the database's one connection and write lock)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from suishen.app.storage.base import AUDIT_COLUMNS, AUDIT_MARKS_SQLITE
from suishen.app.storage.sqlite_batch import SQLiteRepository
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
from suishen.errors import StorageError
from suishen.verifiers.transit import JourneyGroup

_MARKS = ", ".join("?" * len(JOURNEY_COLUMNS.split(",")))
_GATE_MARKS = ", ".join("?" * (len(GATE_COLUMNS.split(",")) + 1))


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

    async def dead_letter_journey(self, record: JourneyRecord, *, error: str,
                                  now_ms: int) -> None:
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO journey_dead_letter (failed_at_ms, error, record) VALUES (?, ?, ?)",
                (now_ms, error.replace("\x00", "\\0")[:500], record.as_json()),
            )

    async def journey_dead_letters(self) -> list[str]:
        rows = await self._rows("SELECT record FROM journey_dead_letter ORDER BY id")
        return [r[0] for r in rows]

    async def journeys_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[JourneyEntry]:
        rows = await self._subject_page(
            f"SELECT id, {JOURNEY_COLUMNS} FROM journeys", handle,  # noqa: S608
            limit=limit, before_id=before_id)
        return [JourneyEntry(int(r[0]), JourneyRecord.from_row(r[1:])) for r in rows]

    async def journey_groups(self, start_ms: int, end_ms: int) -> list[JourneyGroup]:
        rows = await self._rows(JOURNEY_GROUPS_SQL.replace("$1", "?").replace("$2", "?"),
                                (start_ms, end_ms))
        return journey_groups_of(rows)

    async def store_gate_taps(self, taps: Sequence[GateTap], *, received_at: int,
                              audit_of: AuditOf, pairing: Pairing) -> list[str]:
        conn = self._conn
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes: list[str] = []
                audits: list[tuple[Any, ...]] = []
                touched: set[tuple[bytes, str]] = set()
                for index, t in enumerate(taps):
                    async with conn.execute(
                        f"INSERT INTO gate_events ({GATE_COLUMNS}, received_at) "  # noqa: S608
                        f"VALUES ({_GATE_MARKS}) ON CONFLICT DO NOTHING",
                        (*t.as_row(), received_at),
                    ) as cur:
                        stored = cur.rowcount
                    if stored == 0:
                        outcomes.append(DUPLICATE)
                        continue
                    other = await self._rows(
                        "SELECT 1 FROM gate_events WHERE use_key = ? "
                        "AND NOT (partner_id = ? AND gate = ?) LIMIT 1",
                        (t.use_key, t.partner_id, t.gate),
                    )
                    outcome = DUPLICATE_USE if other else ACCEPTED
                    outcomes.append(outcome)
                    audits.append(audit_of(index, outcome).as_row())
                    touched.add((t.subject_handle, t.scene))
                await conn.executemany(
                    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({AUDIT_MARKS_SQLITE})",  # noqa: S608
                    audits,
                )
                for handle, scene in sorted(touched):
                    rows = await self._rows(
                        f"SELECT {GATE_COLUMNS} FROM gate_events "  # noqa: S608
                        "WHERE subject_handle = ? AND scene = ? ORDER BY id",
                        (handle, scene),
                    )
                    journeys = pairing(handle, scene, [GateTap.from_row(r) for r in rows])
                    if journeys is None:
                        continue
                    await conn.execute(
                        "DELETE FROM journeys WHERE subject_handle = ? AND network = ? "
                        "AND offline = 1",
                        (handle, scene),
                    )
                    await conn.executemany(
                        f"INSERT INTO journeys ({JOURNEY_COLUMNS}) VALUES ({_MARKS})",  # noqa: S608
                        [j.as_row() for j in journeys],
                    )
                await conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                await conn.execute("ROLLBACK")
                raise StorageError(f"gate upload refused by the database: {exc}") from None
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        return outcomes
