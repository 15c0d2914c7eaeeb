"""The storage contract suite: the same tests against every backend.

``db_kit`` runs each database test on SQLite and on a real PostgreSQL; ``state_kit``
runs each state test on the in-process state and on a real Redis. A test sees only the
interfaces of :mod:`suishen.app.storage.base` plus a small *kit* that hides how a
backend is opened (a kit's "another process" of the in-process state is the same object,
which is exactly what one process means).

Servers: ``SUISHEN_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
and ``SUISHEN_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). An unreachable
server FAILS the tests that need it, with a message saying how to start it — never a
silent skip (CI sets ``SUISHEN_TEST_REQUIRE_BACKENDS=1`` and expects every backend).

Isolation: one random PostgreSQL schema and one random Redis key prefix per session;
both are removed at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from suishen.app.storage import migrations
from suishen.app.storage.base import Database, StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.app.storage.postgres import PostgresDatabase
from suishen.app.storage.redis_state import RedisState
from suishen.app.storage.sqlite import SQLiteDatabase
from tests.contract.servers import (  # noqa: F401 - fixtures re-exported for this folder
    private_postgres,
    private_postgres_server,
    private_redis,
    private_redis_server,
    silent_server,
)

_T = TypeVar("_T")

DATABASE_URL = os.environ.get(
    "SUISHEN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SUISHEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("SUISHEN_TEST_REQUIRE_BACKENDS") == "1"
SESSION_TAG = secrets.token_hex(4)


def run_in_thread(make: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine on a private event loop in another thread (session set-up and
    tear-down happen outside the tests' loops)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _where(url: str) -> str:
    parts = urlsplit(url)  # never print a password
    return f"{parts.hostname or 'localhost'}:{parts.port or ''}".rstrip(":")


def _server_down(what: str, url: str, error: BaseException, how: str) -> None:
    mode = (
        "SUISHEN_TEST_REQUIRE_BACKENDS=1 (CI) requires it"
        if REQUIRED
        else "The contract suite never skips a backend"
    )
    variable = "SUISHEN_TEST_DATABASE_URL" if what == "PostgreSQL" else "SUISHEN_TEST_REDIS_URL"
    pytest.fail(
        f"{what} is NOT reachable at {_where(url)} ({type(error).__name__}: {error}).\n"
        f"{mode}. Start it:\n    {how}\n"
        f"or point {variable} at a running server (.ci/run starts both).",
        pytrace=False,
    )


# --- measured fault figures, printed at the end of the run --------------------------------
FIGURES: dict[str, str] = {}


@pytest.fixture
def fault_figures() -> dict[str, str]:
    """Tests put what they measured here (name -> text); it is printed in the summary."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("storage fault figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


# --- PostgreSQL session: a random schema, dropped at the end ------------------------------
@dataclass
class PostgresSession:
    dsn: str
    schema: str
    _fresh: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh_schema(self) -> str:
        return f"{self.schema}_f{next(self._fresh)}"


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[PostgresSession]:
    """Check the shared PostgreSQL once; create nothing but a name (schemas are created
    by ``PostgresDatabase.open``); drop every schema of this session at the end."""

    async def check() -> None:
        conn = await asyncpg.connect(DATABASE_URL, timeout=3)
        await conn.close()

    error: BaseException | None = None
    try:
        run_in_thread(check)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        error = exc
    if error is not None:
        _server_down(
            "PostgreSQL", DATABASE_URL, error, 'pg_ctlcluster "$(ls /etc/postgresql)" main start'
        )
    session = PostgresSession(DATABASE_URL, f"suishen_ct_{SESSION_TAG}")
    yield session

    async def drop() -> None:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
        try:
            names = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", session.schema + "%"
            )
            for row in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
        finally:
            await conn.close()

    run_in_thread(drop)


# --- Redis session: a random key prefix, deleted at the end -------------------------------
@dataclass
class RedisSession:
    url: str
    prefix: str
    _n: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def test_prefix(self) -> str:
        return f"{self.prefix}:{next(self._n)}"


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisSession]:
    """Check the shared Redis once; delete every key of this session at the end."""
    parts = urlsplit(REDIS_URL)
    error: BaseException | None = None
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2
        ) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            if not (reply.startswith((b"+PONG", b"-NOAUTH"))):
                raise ConnectionError(f"unexpected reply {reply[:20]!r}")
    except OSError as exc:
        error = exc
    if error is not None:
        _server_down(
            "Redis",
            REDIS_URL,
            error,
            'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" '
            "--appendonly no",
        )
    session = RedisSession(REDIS_URL, f"suishen-ct-{SESSION_TAG}")
    yield session

    async def drop() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"*{session.prefix}*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()

    run_in_thread(drop)


# --- database kits ---------------------------------------------------------------------------
class DatabaseKit:
    """Opens databases of one backend; closes whatever it opened."""

    name: str

    def __init__(self) -> None:
        self._opened: list[Database] = []

    @property
    def migration_names(self) -> list[str]:
        return [name for name, _ in migrations.load(self.name)]

    async def open(self) -> Database:
        """The session's shared store, migrated."""
        raise NotImplementedError

    async def open_fresh(self, count: int = 1) -> list[Database]:
        """``count`` handles (think: processes) on one new, empty, unmigrated store."""
        raise NotImplementedError

    def _keep(self, db: Database) -> Database:
        self._opened.append(db)
        return db

    async def aclose(self) -> None:
        for db in reversed(self._opened):
            with contextlib.suppress(Exception):
                await db.close()


class SQLiteKit(DatabaseKit):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = folder
        self._n = itertools.count(1)

    async def open(self) -> Database:
        db = self._keep(await SQLiteDatabase.open(self._folder / "shared.db"))
        await db.migrate()
        return db

    async def open_fresh(self, count: int = 1) -> list[Database]:
        path = self._folder / f"fresh{next(self._n)}.db"
        return [self._keep(await SQLiteDatabase.open(path)) for _ in range(count)]


class PostgresKit(DatabaseKit):
    name = "postgres"

    def __init__(self, session: PostgresSession) -> None:
        super().__init__()
        self._session = session

    async def open(self) -> Database:
        db = self._keep(
            await PostgresDatabase.open(
                self._session.dsn, schema=self._session.schema, max_size=10,
                command_timeout=10,
            )
        )
        await db.migrate()
        return db

    async def open_fresh(self, count: int = 1) -> list[Database]:
        schema = self._session.fresh_schema()
        return [
            self._keep(
                await PostgresDatabase.open(self._session.dsn, schema=schema, max_size=3)
            )
            for _ in range(count)
        ]


@pytest.fixture(params=["sqlite", "postgres"])
async def db_kit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseKit]:
    """A kit for each database backend in turn."""
    kit: DatabaseKit
    if request.param == "sqlite":
        kit = SQLiteKit(tmp_path)
    else:
        kit = PostgresKit(request.getfixturevalue("postgres_session"))
    yield kit
    await kit.aclose()


@pytest.fixture
async def db(db_kit: DatabaseKit) -> Database:
    """The shared, migrated store of the backend under test."""
    return await db_kit.open()


# --- state kits ------------------------------------------------------------------------------
class StateKit:
    """Opens state backends; ``new()`` is "another API process" on the same backend."""

    name: str
    shared_across_processes: bool

    def __init__(self) -> None:
        self._opened: list[StateBackend] = []

    async def new(self, **options: Any) -> StateBackend:
        raise NotImplementedError

    async def pause(self, state: StateBackend) -> None:
        """Disconnect ``state`` from the change feed (it misses what is published)."""

    async def resume(self, state: StateBackend) -> None:
        """Reconnect it: it must catch up."""

    async def aclose(self) -> None:
        for state in reversed(self._opened):
            with contextlib.suppress(Exception):
                await state.close()


class MemoryKit(StateKit):
    name = "memory"
    shared_across_processes = False

    def __init__(self) -> None:
        super().__init__()
        self._state: MemoryState | None = None

    async def new(self, **options: Any) -> StateBackend:
        if self._state is None:
            self._state = MemoryState()
            self._opened.append(self._state)
        return self._state


class RedisKit(StateKit):
    name = "redis"
    shared_across_processes = True

    def __init__(self, session: RedisSession) -> None:
        super().__init__()
        self.url = session.url
        self.prefix = session.test_prefix()  # one feed and key space per test

    async def new(self, **options: Any) -> StateBackend:
        state = RedisState(self.url, prefix=self.prefix, **options)
        self._opened.append(state)
        return state

    async def pause(self, state: StateBackend) -> None:
        assert isinstance(state, RedisState)
        await state.stop()

    async def resume(self, state: StateBackend) -> None:
        assert isinstance(state, RedisState)
        await state.start()


@pytest.fixture(params=["memory", "redis"])
async def state_kit(request: pytest.FixtureRequest) -> AsyncIterator[StateKit]:
    """A kit for each state backend in turn."""
    kit: StateKit
    if request.param == "memory":
        kit = MemoryKit()
    else:
        kit = RedisKit(request.getfixturevalue("redis_session"))
    yield kit
    await kit.aclose()


@pytest.fixture
async def state(state_kit: StateKit) -> StateBackend:
    """One state backend (not started)."""
    return await state_kit.new()
