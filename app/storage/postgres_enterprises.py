"""PostgreSQL implementation of
:class:`~suishen.app.storage.enterprises.EnterpriseRepository`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from suishen.app.storage.enterprises import (
    Agency,
    AttributeValue,
    Enterprise,
    enterprise_from_rows,
)
from suishen.errors import StorageError

if TYPE_CHECKING:
    from suishen.app.storage.postgres import PostgresDatabase

_COLUMNS = ("enterprise_id, name, uscc, status, attributes::text AS attributes, created_at, "
            "updated_at")
_AGENCY_COLUMNS = "enterprise_id, handle, agent_sub, agent_handle"


class PostgresEnterprises:
    """Enterprises and agencies on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

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

        async def op(conn: Any) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO enterprises (enterprise_id, name, uscc, status, "
                        "attributes, created_at, updated_at) "
                        "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6) "
                        "ON CONFLICT (enterprise_id) DO UPDATE SET name = EXCLUDED.name, "
                        "uscc = EXCLUDED.uscc, status = EXCLUDED.status, "
                        "attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at",
                        enterprise_id, name, uscc, status, attrs, now,
                    )
                    await conn.execute(
                        "DELETE FROM agencies WHERE enterprise_id = $1 "
                        "AND NOT (agent_sub = ANY($2::text[]))",
                        enterprise_id, [a.agent_sub for a in agents],
                    )
                    await conn.executemany(
                        "INSERT INTO agencies (handle, enterprise_id, agent_sub, agent_handle, "
                        "created_at) VALUES ($1, $2, $3, $4, $5) "
                        "ON CONFLICT (enterprise_id, agent_sub) DO NOTHING",
                        [(a.handle, enterprise_id, a.agent_sub, a.agent_handle, now)
                         for a in agents],
                    )
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise StorageError(
                    f"enterprise refused by the database: {type(exc).__name__}") from None

        await self._db.run(op)
        stored = await self.get(enterprise_id)
        assert stored is not None
        return stored

    async def get(self, enterprise_id: str) -> Enterprise | None:
        async def op(conn: Any) -> tuple[Any, list[Any]]:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM enterprises WHERE enterprise_id = $1",  # noqa: S608
                enterprise_id)
            agencies = await conn.fetch(
                f"SELECT {_AGENCY_COLUMNS} FROM agencies WHERE enterprise_id = $1 "  # noqa: S608
                "ORDER BY agent_sub", enterprise_id)
            return row, agencies

        row, agencies = await self._db.run(op, retry=True)
        if row is None:
            return None
        return enterprise_from_rows(tuple(row), [tuple(a) for a in agencies])

    async def all(self) -> list[Enterprise]:
        async def op(conn: Any) -> tuple[list[Any], list[Any]]:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM enterprises ORDER BY enterprise_id")  # noqa: S608
            agencies = await conn.fetch(
                f"SELECT {_AGENCY_COLUMNS} FROM agencies "  # noqa: S608
                "ORDER BY enterprise_id, agent_sub")
            return rows, agencies

        rows, agencies = await self._db.run(op, retry=True)
        by_id: dict[str, list[Any]] = {}
        for a in agencies:
            by_id.setdefault(a[0], []).append(tuple(a))
        return [enterprise_from_rows(tuple(r), by_id.get(r[0], [])) for r in rows]
