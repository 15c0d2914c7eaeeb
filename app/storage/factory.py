"""Backend factories: which :class:`Database` and :class:`StateBackend` the settings
describe (SQLite / PostgreSQL; in-process state / Redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.settings import Settings
from suishen.app.storage.base import Database, StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.errors import ConfigError

if TYPE_CHECKING:
    from suishen.app.observability import Metrics


async def open_database(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> Database:
    """SQLite under the data directory, or PostgreSQL when ``SUISHEN_DATABASE_URL`` is a
    ``postgresql://`` URL (``sqlite:///path`` selects another SQLite file)."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if url.startswith(("postgresql://", "postgres://")):
        from suishen.app.storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(
            url,
            min_size=settings.database_pool_min,
            max_size=settings.database_pool_max,
            command_timeout=settings.database_timeout_seconds,
            lazy=True,
            clock=clock,
        )
    from suishen.app.storage.sqlite import SQLiteDatabase

    if url.startswith("sqlite:///"):
        return await SQLiteDatabase.open(url.removeprefix("sqlite:///"), clock=clock)
    if url:
        raise ConfigError("SUISHEN_DATABASE_URL must start with postgresql:// or sqlite:///")
    return await SQLiteDatabase.open(settings.sqlite_path, clock=clock)


def open_state(
    settings: Settings, *, clock: Clock = SYSTEM_CLOCK, metrics: Metrics | None = None
) -> StateBackend:
    """Redis when ``SUISHEN_REDIS_URL`` is set, else in-process state. With Redis,
    ``metrics`` (when given) shows which client serves the hot path
    (``suishen_redis_hot_path_client``)."""
    if settings.redis_url is not None:
        from suishen.app.storage.redis_state import RedisState

        state = RedisState.from_url(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            timeout=settings.redis_timeout_seconds,
        )
        if metrics is not None:
            for client in ("fast", "redis-py"):
                metrics.redis_hot_path_client.labels(client).set(
                    1 if state.hot_path_client == client else 0)
        return state
    # The embedded default: single use kept in the data directory, so that a restart
    # never lets a consumed code pass (issue 8 item 3).
    return MemoryState(single_use_path=settings.data_dir / "single-use.sqlite3", clock=clock)
