"""What the SQLite repositories share: the one connection and write lock, reads, a
citizen's page of rows, and a batch insert that is all or nothing."""

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

    async def _subject_page(self, select: str, handle: bytes, *, limit: int,
                            before_id: int | None) -> list[Any]:
        """A citizen's rows, newest first: ``select`` is ``SELECT id, ... FROM table``
        of a table with ``id`` and ``subject_handle``; ids below ``before_id`` if given."""
        sql = select + " WHERE subject_handle = ?"
        args: list[object] = [handle]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return await self._rows(sql, args)

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
