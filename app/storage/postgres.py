"""PostgreSQL storage for production (``SUISHEN_DATABASE_URL``), through an asyncpg pool.

What MUST hold (the contract suite in ``tests/contract`` checks it against a real
server):

* Every call is bounded in time (``command_timeout`` covers acquiring a connection,
  connecting and the statement) and raises
  :class:`~suishen.errors.BackendUnavailable` when PostgreSQL cannot be reached, is
  starting up or shutting down, refuses more connections or is a read-only standby —
  never an asyncpg or socket exception. Other server errors become
  :class:`~suishen.errors.StorageError`.
* The pool is created on first use when :meth:`PostgresDatabase.open` is called with
  ``lazy=True``: the service starts while PostgreSQL is down, answers 503 for what
  needs it, and recovers by itself when PostgreSQL returns. A pool that exists
  reconnects by itself too (asyncpg replaces closed connections on acquire).
* :meth:`PostgresDatabase.migrate` is versioned (``schema_migrations``), idempotent and
  safe when several processes start at once: all pending migrations apply in one
  transaction that first takes a transaction-scoped advisory lock.
* ``schema`` (optional) isolates an installation or a test session: it is created if
  missing and put on every pool connection's ``search_path``.

The DSN may hold a password: it is never logged and never appears in ``repr`` or error
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.storage import migrations
from suishen.app.storage.base import (
    AUDIT_COLUMNS,
    AUDIT_MARKS_POSTGRES,
    AuditEntry,
    AuditRecord,
    HandleTaken,
    Partner,
    PartnerExists,
    Subject,
)
from suishen.app.storage.postgres_devices import PostgresDevices
from suishen.app.storage.postgres_enterprises import PostgresEnterprises
from suishen.app.storage.postgres_transit import PostgresTransit
from suishen.errors import BackendUnavailable, ConfigError, StorageError, describe
from suishen.keys.keyset import KeySet

__all__ = ["PostgresDatabase"]

_T = TypeVar("_T")

# Errors that mean "the server cannot be used right now", not "this request is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError is an OSError too
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08 (incl. connection lost mid-query)
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # fail-over: we reached a standby
)

# Lost connections worth one immediate retry for reads: after a server restart the
# first statement on a pooled connection can fail before asyncpg notices the close.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionResetError,
    BrokenPipeError,
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _closed_interface(exc: BaseException) -> bool:
    # asyncpg raises a bare InterfaceError for "connection is closed" / "pool is closing".
    return isinstance(exc, asyncpg.InterfaceError) and "clos" in str(exc)


class PostgresDatabase:
    """:class:`suishen.app.storage.base.Database` on PostgreSQL (asyncpg pool)."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 5.0,
        connect_timeout: float | None = None,
        schema: str | None = None,
        retry_interval: float = 0.5,
        migrate_timeout: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError("PostgreSQL schema must be a lower-case SQL identifier")
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigError("PostgreSQL pool needs 0 <= min_size <= max_size, max_size >= 1")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout if connect_timeout is not None else command_timeout
        self._schema = schema
        self._retry_interval = retry_interval
        self._migrate_timeout = migrate_timeout
        self._pool: Any = None  # asyncpg.Pool once created
        self._pool_lock = asyncio.Lock()
        self._failed_at: float | None = None
        self._last_error = ""
        self._closed = False
        self.clock = clock  # the injected clock (app/clock.py): timestamps rows it writes
        self.subjects = _Subjects(self)
        self.partners = _Partners(self)
        self.keysets = _KeySets(self)
        self.audit = _Audit(self)
        self.devices = PostgresDevices(self)
        self.transit = PostgresTransit(self)
        self.enterprises = PostgresEnterprises(self)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 5.0,
        connect_timeout: float | None = None,
        schema: str | None = None,
        lazy: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> PostgresDatabase:
        """Connect a pool to ``dsn``.

        Without ``lazy`` the pool is created now and :class:`BackendUnavailable` is raised
        within ``connect_timeout`` (default: ``command_timeout``) if PostgreSQL cannot be
        reached. With ``lazy=True`` this never fails for an unreachable server: every call
        tries to create the pool (at most once per ``retry_interval``) and raises
        :class:`BackendUnavailable` until PostgreSQL answers.
        """
        db = cls(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            schema=schema,
            clock=clock,
        )
        if not lazy:
            await db._get_pool()
        return db

    def __repr__(self) -> str:  # never show the DSN: it may carry a password
        return (
            f"PostgresDatabase(schema={self._schema!r}, max_size={self._max_size}, "
            f"connected={self._pool is not None})"
        )

    # --- pool -----------------------------------------------------------------------
    async def _get_pool(self) -> Any:
        pool = self._pool
        if pool is not None:
            return pool
        if self._closed:
            raise BackendUnavailable("PostgreSQL database object is closed")
        async with self._pool_lock:
            if self._pool is not None:
                return self._pool
            if (
                self._failed_at is not None
                and time.monotonic() - self._failed_at < self._retry_interval
            ):
                # Callers that queued behind a failed attempt fail fast instead of each
                # waiting out another connect timeout.
                raise BackendUnavailable(f"PostgreSQL unavailable: {self._last_error}")
            try:
                pool = await asyncio.wait_for(
                    self._create_pool(), timeout=self._connect_timeout + 1.0
                )
            except _UNAVAILABLE as exc:
                self._failed_at = time.monotonic()
                self._last_error = describe(exc)
                raise BackendUnavailable(f"PostgreSQL unavailable: {self._last_error}") from None
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._failed_at = time.monotonic()
                self._last_error = describe(exc)
                raise StorageError(
                    f"PostgreSQL refused the connection: {self._last_error}"
                ) from None
            self._pool = pool
            self._failed_at = None
            return pool

    async def _create_pool(self) -> Any:
        settings = {"application_name": "suishen"}
        if self._schema is not None:
            settings["search_path"] = f'"{self._schema}"'
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            command_timeout=self._command_timeout,
            timeout=self._connect_timeout,
            max_inactive_connection_lifetime=300.0,
            server_settings=settings,
        )
        try:
            if self._schema is not None:
                async with pool.acquire() as conn:
                    await self._create_schema(conn)
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def _create_schema(self, conn: Any) -> None:
        # Another process may create it at the same moment: that is success too.
        with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')

    async def run(
        self,
        op: Callable[[Any], Awaitable[_T]],
        *,
        retry: bool = False,
        timeout: float | None = None,
    ) -> _T:
        """Run ``op(connection)`` on a pooled connection within ``timeout`` (default:
        ``command_timeout``), mapping driver errors to storage errors. ``retry``: one
        immediate second attempt when the connection was lost (only for reads)."""
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(timeout or self._command_timeout):
                    pool = await self._get_pool()
                    async with pool.acquire() as conn:
                        return await op(conn)
            except StorageError:
                raise
            except _UNAVAILABLE as exc:
                if attempt + 1 < attempts and isinstance(exc, _CONNECTION_LOST):
                    continue
                raise BackendUnavailable(f"PostgreSQL unavailable: {describe(exc)}") from None
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if _closed_interface(exc):
                    if attempt + 1 < attempts:
                        continue
                    raise BackendUnavailable(
                        f"PostgreSQL unavailable: {describe(exc)}"
                    ) from None
                raise StorageError(f"PostgreSQL error: {describe(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def pool_stats(self) -> dict[str, int]:
        """Connections for metrics: ``size`` (open), ``idle``, ``max``, ``min``."""
        pool = self._pool
        if pool is None:
            return {"size": 0, "idle": 0, "max": self._max_size, "min": self._min_size}
        return {
            "size": pool.get_size(),
            "idle": pool.get_idle_size(),
            "max": pool.get_max_size(),
            "min": pool.get_min_size(),
        }

    # --- Database ---------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction under an advisory lock.

        Concurrent callers (several API processes starting together) queue on the lock;
        the first applies everything, the others then find nothing pending.
        """

        async def op(conn: Any) -> list[str]:
            applied: list[str] = []
            async with conn.transaction():
                # Lock per schema, so isolated schemas in one database do not serialise.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('suishen.migrate:' || "
                    "coalesce(current_schema(), '')))",
                    timeout=self._migrate_timeout,
                )
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
                for name, sql in migrations.load("postgres"):
                    if name in done:
                        continue
                    await conn.execute(sql, timeout=self._migrate_timeout)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                    applied.append(name)
            return applied

        return await self.run(op, timeout=self._migrate_timeout)

    async def ping(self) -> None:
        """``SELECT 1``; :class:`BackendUnavailable` unless it answers in time."""

        async def op(conn: Any) -> None:
            await conn.fetchval("SELECT 1")

        await self.run(op, retry=True)

    async def close(self) -> None:
        """Close the pool (gracefully within ``command_timeout``, then by force)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._command_timeout)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - close must not fail
            pool.terminate()


# --- repositories ------------------------------------------------------------------------
_SUBJECT_COLUMNS = "sub, handle, status, attributes::text AS attributes, created_at, updated_at"


def _subject(row: Any) -> Subject:
    return Subject(
        sub=row["sub"],
        handle=bytes(row["handle"]),
        status=row["status"],
        attributes=json.loads(row["attributes"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class _Subjects:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def get(self, sub: str) -> Subject | None:
        row = await self._db.run(
            lambda c: c.fetchrow(f"SELECT {_SUBJECT_COLUMNS} FROM subjects WHERE sub = $1", sub),  # noqa: S608 - fixed columns
            retry=True,
        )
        return None if row is None else _subject(row)

    async def get_by_handle(self, handle: bytes) -> Subject | None:
        row = await self._db.run(
            lambda c: c.fetchrow(
                f"SELECT {_SUBJECT_COLUMNS} FROM subjects WHERE handle = $1",  # noqa: S608
                handle,
            ),
            retry=True,
        )
        return None if row is None else _subject(row)

    async def enroll(self, sub: str, *, handle: bytes, now: int) -> Subject:
        async def op(conn: Any) -> Any:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO subjects (sub, handle, status, attributes, created_at, "
                    "updated_at) VALUES ($1, $2, 'active', '{}'::jsonb, $3, $3) "
                    "ON CONFLICT (sub) DO NOTHING RETURNING sub, handle, status, "
                    "attributes::text AS attributes, created_at, updated_at",
                    sub,
                    handle,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise HandleTaken("subject handle already in use") from None
            if row is None:
                # Someone else enrolled ``sub`` first; this statement (read committed)
                # sees their committed row.
                row = await conn.fetchrow(
                    f"SELECT {_SUBJECT_COLUMNS} FROM subjects WHERE sub = $1",  # noqa: S608
                    sub,
                )
            return row

        row = await self._db.run(op)
        if row is None:  # pragma: no cover - subjects are never deleted
            raise StorageError("subject vanished after enrolment")
        return _subject(row)

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

        async def op(conn: Any) -> Any:
            try:
                return await conn.fetchrow(
                    "INSERT INTO subjects (sub, handle, status, attributes, created_at, "
                    "updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $5) "
                    "ON CONFLICT (sub) DO UPDATE SET status = EXCLUDED.status, "
                    "attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at "
                    "RETURNING sub, handle, status, attributes::text AS attributes, "
                    "created_at, updated_at",
                    sub,
                    handle,
                    status,
                    attrs,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise HandleTaken("subject handle already in use") from None

        return _subject(await self._db.run(op))

    async def suspended_handles(self) -> list[bytes]:
        rows = await self._db.run(
            lambda c: c.fetch("SELECT handle FROM subjects WHERE status = 'suspended'"),
            retry=True,
        )
        return [bytes(r["handle"]) for r in rows]


class _Partners:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def create(self, partner: Partner) -> None:
        async def op(conn: Any) -> None:
            try:
                await conn.execute(
                    "INSERT INTO partners (client_id, name, scenes, attributes, "
                    "rate_limit_per_second, secret_hash, created_at, enterprise_attributes) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    partner.client_id,
                    partner.name,
                    list(partner.scenes),
                    list(partner.attributes),
                    partner.rate_limit_per_second,
                    partner.secret_hash,
                    partner.created_at,
                    list(partner.enterprise_attributes),
                )
            except asyncpg.UniqueViolationError:
                raise PartnerExists("a partner with this client id exists") from None

        await self._db.run(op)

    async def get(self, client_id: str) -> Partner | None:
        row = await self._db.run(
            lambda c: c.fetchrow(
                "SELECT client_id, name, scenes, attributes, rate_limit_per_second, "
                "secret_hash, created_at, enterprise_attributes FROM partners "
                "WHERE client_id = $1",
                client_id,
            ),
            retry=True,
        )
        if row is None:
            return None
        return Partner(
            client_id=row["client_id"],
            name=row["name"],
            scenes=tuple(row["scenes"]),
            attributes=tuple(row["attributes"]),
            rate_limit_per_second=row["rate_limit_per_second"],
            secret_hash=row["secret_hash"],
            created_at=row["created_at"],
            enterprise_attributes=tuple(row["enterprise_attributes"]),
        )


class _KeySets:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def load(self, name: str) -> KeySet | None:
        body = await self._db.run(
            lambda c: c.fetchval("SELECT body::text FROM keysets WHERE name = $1", name),
            retry=True,
        )
        return None if body is None else KeySet.from_dict(json.loads(body))

    async def save(self, name: str, keyset: KeySet, *, expected_version: int | None) -> bool:
        body = json.dumps(keyset.to_dict())
        now = int(self._db.clock())
        if expected_version is None:
            status = await self._db.run(
                lambda c: c.execute(
                    "INSERT INTO keysets (name, version, body, updated_at) "
                    "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (name) DO NOTHING",
                    name,
                    keyset.version,
                    body,
                    now,
                )
            )
        else:
            status = await self._db.run(
                lambda c: c.execute(
                    "UPDATE keysets SET version = $1, body = $2::jsonb, updated_at = $3 "
                    "WHERE name = $4 AND version = $5",
                    keyset.version,
                    body,
                    now,
                    name,
                    expected_version,
                )
            )
        # Command tags: "INSERT 0 1" / "UPDATE 1" when the row was written.
        return str(status).rsplit(" ", 1)[-1] == "1"

    async def versions(self) -> dict[str, int]:
        """name -> version: one index-only read, cheap enough to poll every second."""
        rows = await self._db.run(
            lambda c: c.fetch("SELECT name, version FROM keysets"), retry=True
        )
        return {row["name"]: int(row["version"]) for row in rows}


class _Audit:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def append(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        rows = [r.as_row() for r in records]

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO audit ({AUDIT_COLUMNS}) "  # noqa: S608 - fixed columns
                    f"VALUES ({AUDIT_MARKS_POSTGRES})",
                    rows,
                )

        await self._db.run(op)

    async def dead_letter(self, record: AuditRecord, *, error: str, now_ms: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO audit_dead_letter (failed_at_ms, error, record) VALUES ($1, $2, $3)",
                now_ms, error.replace("\x00", "\\0")[:500], record.as_json(),
            )

        await self._db.run(op)

    async def dead_letters(self) -> list[str]:
        async def op(conn: Any) -> list[str]:
            rows = await conn.fetch("SELECT record FROM audit_dead_letter ORDER BY id")
            return [r["record"] for r in rows]

        return await self._db.run(op)

    async def for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[AuditEntry]:
        if before_id is None:
            sql = (
                f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE subject_handle = $1 "  # noqa: S608
                "ORDER BY id DESC LIMIT $2"
            )
            args: tuple[object, ...] = (handle, limit)
        else:
            sql = (
                f"SELECT id, {AUDIT_COLUMNS} FROM audit "  # noqa: S608
                "WHERE subject_handle = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            )
            args = (handle, before_id, limit)
        rows = await self._db.run(lambda c: c.fetch(sql, *args), retry=True)
        return [
            AuditEntry(
                id=row["id"],
                record=AuditRecord.from_row(tuple(row)[1:]),
            )
            for row in rows
        ]
