"""SQLite implementation of
:class:`~suishen.app.storage.enterprises.EnterpriseRepository` (shares the database's
one connection and write lock)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from suishen.app.storage.enterprises import (
    Agency,
    AttributeValue,
    Enterprise,
    enterprise_from_rows,
)
from suishen.app.storage.sqlite_batch import SQLiteRepository
from suishen.errors import StorageError

_COLUMNS = "enterprise_id, name, uscc, status, attributes, created_at, updated_at"


class SQLiteEnterprises(SQLiteRepository):
    """Enterprises and agencies on SQLite."""

    async def put(
        self,
        enterprise_id: str,
        *,
        name: str,
        uscc: str,
        status: str,
        attributes: Mapping[str, AttributeValue],
        agents: Sequence[Agency],
        now: int,
    ) -> Enterprise:
        attrs = json.dumps(dict(attributes), sort_keys=True, ensure_ascii=False)
        conn = self._conn
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute(
                    f"INSERT INTO enterprises ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
                    "ON CONFLICT(enterprise_id) DO UPDATE SET name = excluded.name, "
                    "uscc = excluded.uscc, status = excluded.status, "
                    "attributes = excluded.attributes, updated_at = excluded.updated_at",
                    (enterprise_id, name, uscc, status, attrs, now, now),
                )
                keep = [a.agent_sub for a in agents]
                marks = ", ".join("?" * len(keep))
                if keep:
                    await conn.execute(
                        f"DELETE FROM agencies WHERE enterprise_id = ? "  # noqa: S608
                        f"AND agent_sub NOT IN ({marks})", (enterprise_id, *keep))
                else:
                    await conn.execute("DELETE FROM agencies WHERE enterprise_id = ?",
                                       (enterprise_id,))
                await conn.executemany(
                    "INSERT INTO agencies (handle, enterprise_id, agent_sub, agent_handle, "
                    "created_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(enterprise_id, agent_sub) DO NOTHING",
                    [(a.handle, enterprise_id, a.agent_sub, a.agent_handle, now)
                     for a in agents],
                )
                await conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                await conn.execute("ROLLBACK")
                raise StorageError(f"enterprise refused by the database: {exc}") from None
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        stored = await self.get(enterprise_id)
        assert stored is not None
        return stored

    async def get(self, enterprise_id: str) -> Enterprise | None:
        rows = await self._rows(
            f"SELECT {_COLUMNS} FROM enterprises WHERE enterprise_id = ?",  # noqa: S608
            (enterprise_id,))
        if not rows:
            return None
        agencies = await self._rows(
            "SELECT enterprise_id, handle, agent_sub, agent_handle FROM agencies "
            "WHERE enterprise_id = ? ORDER BY agent_sub", (enterprise_id,))
        return enterprise_from_rows(rows[0], agencies)

    async def all(self) -> list[Enterprise]:
        rows = await self._rows(f"SELECT {_COLUMNS} FROM enterprises ORDER BY enterprise_id")  # noqa: S608
        agencies = await self._rows(
            "SELECT enterprise_id, handle, agent_sub, agent_handle FROM agencies "
            "ORDER BY enterprise_id, agent_sub")
        by_id: dict[str, list[Any]] = {}
        for row in agencies:
            by_id.setdefault(row[0], []).append(row)
        return [enterprise_from_rows(r, by_id.get(r[0], [])) for r in rows]

