"""SQLite storage for the embedded default (one file under ``SUISHEN_DATA_DIR``).

One aiosqlite connection (a worker thread) in WAL mode; every write is one transaction.
SQLite serialises writers, which is what an embedded single-process service needs; the
production path is PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.storage import migrations
from suishen.app.storage.base import (
    AUDIT_COLUMNS,
    AUDIT_MARKS_SQLITE,
    AuditEntry,
    AuditRecord,
    HandleTaken,
    Partner,
    PartnerExists,
    Subject,
)
from suishen.app.storage.sqlite_batch import SQLiteRepository
from suishen.app.storage.sqlite_devices import SQLiteDevices
from suishen.app.storage.sqlite_enterprises import SQLiteEnterprises
from suishen.app.storage.sqlite_transit import SQLiteTransit
from suishen.app.storage.sqlite_venues import SQLiteVenues
from suishen.errors import BackendUnavailable, StorageError
from suishen.keys.keyset import KeySet


class SQLiteDatabase:
    """:class:`suishen.app.storage.base.Database` on one SQLite file."""

    def __init__(self, conn: aiosqlite.Connection, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._conn = conn
        # One connection is shared by every coroutine: a write must never land inside
        # another coroutine's open transaction, so writes take this lock.
        self._write_lock = asyncio.Lock()
        self.subjects = _Subjects(conn, self._write_lock)
        self.partners = _Partners(conn, self._write_lock)
        self.keysets = _KeySets(conn, self._write_lock, clock)
        self.audit = _Audit(conn, self._write_lock)
        self.devices = SQLiteDevices(conn, self._write_lock)
        self.transit = SQLiteTransit(conn, self._write_lock)
        self.enterprises = SQLiteEnterprises(conn, self._write_lock)
        self.venues = SQLiteVenues(conn, self._write_lock)

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock = SYSTEM_CLOCK) -> SQLiteDatabase:
        """Open (creating the file and its folder if needed)."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite database: {exc}") from None
        return cls(conn, clock=clock)

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction each."""
        conn = self._conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        applied = []
        async with self._write_lock:
            for name, sql in migrations.load("sqlite"):
                if await self._apply(name, sql):
                    applied.append(name)
        return applied

    async def _apply(self, name: str, sql: str) -> bool:
        conn = self._conn
        # Check inside the write transaction: another process (or connection) may apply
        # the same migration between a check made outside it and our BEGIN.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute(
                "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
            ) as cur:
                if await cur.fetchone():
                    await conn.execute("COMMIT")
                    return False
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) "
                "VALUES (?, CAST(strftime('%s','now') AS INTEGER))",
                (name,),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        return True

    async def ping(self) -> None:
        """Run a trivial query."""
        try:
            async with self._conn.execute("SELECT 1") as cur:
                await cur.fetchone()
        except (sqlite3.Error, ValueError) as exc:
            raise BackendUnavailable(f"SQLite unavailable: {exc}") from None

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def _subject(row: Any) -> Subject:
    return Subject(
        sub=row[0],
        handle=bytes(row[1]),
        status=row[2],
        attributes=json.loads(row[3]),
        created_at=row[4],
        updated_at=row[5],
    )


_SUBJECT_COLUMNS = "sub, handle, status, attributes, created_at, updated_at"


def _integrity(exc: sqlite3.IntegrityError) -> StorageError:
    """Only a clash on the handle is :class:`HandleTaken` (a bad status is not)."""
    if "subjects.handle" in str(exc):
        return HandleTaken("subject handle already in use")
    return StorageError(f"subject refused by the database: {exc}")


class _Subjects:
    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock

    async def _one(self, where: str, arg: object) -> Subject | None:
        async with self._conn.execute(
            f"SELECT {_SUBJECT_COLUMNS} FROM subjects WHERE {where} = ?",  # noqa: S608 - fixed columns
            (arg,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _subject(row)

    async def get(self, sub: str) -> Subject | None:
        return await self._one("sub", sub)

    async def get_by_handle(self, handle: bytes) -> Subject | None:
        return await self._one("handle", handle)

    async def enroll(self, sub: str, *, handle: bytes, now: int) -> Subject:
        try:
            async with self._lock:
                await self._conn.execute(
                    "INSERT INTO subjects (sub, handle, status, attributes, created_at, "
                    "updated_at) VALUES (?, ?, 'active', '{}', ?, ?) ON CONFLICT (sub) DO NOTHING",
                    (sub, handle, now, now),
                )
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc) from None
        subject = await self.get(sub)
        if subject is None:  # pragma: no cover - row just written
            raise StorageError("subject vanished after enrolment")
        return subject

    async def upsert(
        self,
        sub: str,
        *,
        status: str,
        attributes: Mapping[str, str],
        handle: bytes,
        now: int,
    ) -> Subject:
        attrs = json.dumps(dict(attributes), sort_keys=True, ensure_ascii=False)
        try:
            async with self._lock:
                await self._conn.execute(
                    "INSERT INTO subjects (sub, handle, status, attributes, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sub) DO UPDATE SET "
                    "status = excluded.status, attributes = excluded.attributes, "
                    "updated_at = excluded.updated_at",
                    (sub, handle, status, attrs, now, now),
                )
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc) from None
        subject = await self.get(sub)
        if subject is None:  # pragma: no cover
            raise StorageError("subject vanished after upsert")
        return subject

    async def suspended_handles(self) -> list[bytes]:
        async with self._conn.execute(
            "SELECT handle FROM subjects WHERE status = 'suspended'"
        ) as cur:
            return [bytes(row[0]) for row in await cur.fetchall()]


class _Partners:
    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock

    async def create(self, partner: Partner) -> None:
        try:
            async with self._lock:
                await self._insert_partner(partner)
        except sqlite3.IntegrityError as exc:
            if "partners.client_id" in str(exc):
                raise PartnerExists("a partner with this client id exists") from None
            raise StorageError(f"partner refused by the database: {exc}") from None

    async def _insert_partner(self, partner: Partner) -> None:
        await self._conn.execute(
            "INSERT INTO partners (client_id, name, scenes, attributes, rate_limit_per_second, "
            "secret_hash, created_at, enterprise_attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                partner.client_id,
                partner.name,
                json.dumps(list(partner.scenes)),
                json.dumps(list(partner.attributes)),
                partner.rate_limit_per_second,
                partner.secret_hash,
                partner.created_at,
                json.dumps(list(partner.enterprise_attributes)),
            ),
        )

    async def get(self, client_id: str) -> Partner | None:
        async with self._conn.execute(
            "SELECT client_id, name, scenes, attributes, rate_limit_per_second, secret_hash, "
            "created_at, enterprise_attributes FROM partners WHERE client_id = ?",
            (client_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Partner(
            client_id=row[0],
            name=row[1],
            scenes=tuple(json.loads(row[2])),
            attributes=tuple(json.loads(row[3])),
            rate_limit_per_second=row[4],
            secret_hash=row[5],
            created_at=row[6],
            enterprise_attributes=tuple(json.loads(row[7])),
        )


class _KeySets:
    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock, clock: Clock) -> None:
        self._conn = conn
        self._lock = lock
        self._clock = clock

    async def load(self, name: str) -> KeySet | None:
        async with self._conn.execute("SELECT body FROM keysets WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return None if row is None else KeySet.from_dict(json.loads(row[0]))

    async def save(self, name: str, keyset: KeySet, *, expected_version: int | None) -> bool:
        body = json.dumps(keyset.to_dict())
        async with self._lock:
            return await self._save(name, keyset, body, expected_version)

    async def _save(
        self, name: str, keyset: KeySet, body: str, expected_version: int | None
    ) -> bool:
        now = int(self._clock())
        if expected_version is None:
            cur = await self._conn.execute(
                "INSERT INTO keysets (name, version, body, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, keyset.version, body, now),
            )
        else:
            cur = await self._conn.execute(
                "UPDATE keysets SET version = ?, body = ?, updated_at = ? "
                "WHERE name = ? AND version = ?",
                (keyset.version, body, now, name, expected_version),
            )
        return cur.rowcount == 1

    async def versions(self) -> dict[str, int]:
        """name -> version (another process, e.g. the CLI, may have written the file)."""
        async with self._conn.execute("SELECT name, version FROM keysets") as cur:
            rows = await cur.fetchall()
        return {str(name): int(version) for name, version in rows}




class _Audit(SQLiteRepository):
    async def append(self, records: Sequence[AuditRecord]) -> None:
        await self._insert_batch(
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({AUDIT_MARKS_SQLITE})",  # noqa: S608
            [r.as_row() for r in records], "audit batch")

    async def dead_letter(self, record: AuditRecord, *, error: str, now_ms: int) -> None:
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO audit_dead_letter (failed_at_ms, error, record) VALUES (?, ?, ?)",
                (now_ms, error.replace("\x00", "\\0")[:500], record.as_json()),
            )

    async def dead_letters(self) -> list[str]:
        async with self._lock, self._conn.execute(
            "SELECT record FROM audit_dead_letter ORDER BY id"
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[AuditEntry]:
        sql = f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE subject_handle = ?"  # noqa: S608
        args: list[object] = [handle]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        async with self._conn.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [
            AuditEntry(
                id=row[0],
                record=AuditRecord.from_row(row[1:]),
            )
            for row in rows
        ]
