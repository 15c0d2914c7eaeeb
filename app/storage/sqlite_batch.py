"""What the SQLite repositories share: the one connection and write lock, reads, and a
batch insert that is all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from suishen.errors import StorageError


class SQLiteRepository:
    """A repository on the database's one connection (writes take ``lock``)."""

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock

    async def _rows(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        async with self._conn.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def _insert_batch(self, sql: str, rows: Sequence[Sequence[Any]], what: str) -> None:
        """``executemany(sql, rows)`` in one transaction; an integrity error is a
        :class:`StorageError` naming ``what`` (the queued writers bisect on it)."""
        if not rows:
            return
        async with self._lock:
            await self._conn.execute("BEGIN")
            try:
                await self._conn.executemany(sql, rows)
                await self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                await self._conn.execute("ROLLBACK")
                raise StorageError(f"{what} refused by the database: {exc}") from None
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
