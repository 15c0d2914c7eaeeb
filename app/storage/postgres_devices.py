"""PostgreSQL implementation of :class:`~suishen.app.storage.devices.DeviceRepository`.

Trust versions are allocated under a transaction-scoped advisory lock (per schema) as
``max(version) + 1``: a sequence would hand out numbers in call order but commit them
in any order, and a gate that fetched version N must never miss a flip of N - 1 that
committed after it. Revocations are rare; serialising them costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from suishen.app.storage.devices import CredentialRow, Device, TrustChanges, TrustHead
from suishen.errors import StorageError

if TYPE_CHECKING:
    from suishen.app.storage.postgres import PostgresDatabase

_DEVICE = (
    "SELECT d.device_id, d.sub, d.name, d.created_at, d.status, d.revoked_at, "
    "(SELECT max(c.slot_end) FROM credentials c WHERE c.device_id = d.device_id) AS valid_until "
    "FROM devices d"
)
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('suishen.trust:' || coalesce(current_schema(), '')))"


def _device(row: Any) -> Device:
    return Device(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


async def _new_version(conn: Any, kind: str, now: int, keys: int | None = None) -> int:
    await conn.execute(_LOCK)
    row = await conn.fetchrow("SELECT version, keys FROM trust_versions ORDER BY version DESC "
                              "LIMIT 1")
    version = 1 if row is None else int(row[0]) + 1
    if keys is None:
        keys = 0 if row is None else int(row[1])
    await conn.execute(
        "INSERT INTO trust_versions (version, at, kind, keys) VALUES ($1, $2, $3, $4)",
        version, now, kind, keys,
    )
    return version


async def _flip(conn: Any, where: str, args: tuple[object, ...], now: int) -> list[tuple[int, int]]:
    await conn.execute(_LOCK)  # before the update: flips and their version commit together
    rows = await conn.fetch(
        f"UPDATE credentials SET revoked = true WHERE {where} "  # noqa: S608 - fixed clauses
        "RETURNING slot_start, status_index",
        *args,
    )
    pairs = [(int(r[0]), int(r[1])) for r in rows]
    if pairs:
        version = await _new_version(conn, "revoke", now)
        await conn.executemany(
            "INSERT INTO trust_flips (version, slot_start, status_index) VALUES ($1, $2, $3)",
            [(version, s, i) for s, i in pairs],
        )
    return pairs


class PostgresDevices:
    """Devices, credential rows and the trust version log on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def create(self, device: Device) -> None:
        async def op(conn: Any) -> None:
            try:
                await conn.execute(
                    "INSERT INTO devices (device_id, sub, name, created_at, status, revoked_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    device.device_id, device.sub, device.name, device.created_at,
                    device.status, device.revoked_at,
                )
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise StorageError(f"device refused by the database: {exc}") from None

        await self._db.run(op)

    async def get(self, device_id: str) -> Device | None:
        row = await self._db.run(
            lambda c: c.fetchrow(f"{_DEVICE} WHERE d.device_id = $1", device_id), retry=True
        )
        return None if row is None else _device(row)

    async def for_subject(self, sub: str) -> list[Device]:
        rows = await self._db.run(
            lambda c: c.fetch(f"{_DEVICE} WHERE d.sub = $1 ORDER BY d.created_at, d.device_id",
                              sub),
            retry=True,
        )
        return [_device(r) for r in rows]

    async def known_keys(self, keys: Sequence[bytes]) -> set[bytes]:
        rows = await self._db.run(
            lambda c: c.fetch("SELECT device_key FROM credentials WHERE device_key = ANY($1)",
                              list(keys)),
            retry=True,
        )
        return {bytes(r[0]) for r in rows}

    async def add_credentials(self, rows: Sequence[CredentialRow]) -> list[CredentialRow]:
        async def op(conn: Any) -> list[CredentialRow]:
            inserted = []
            async with conn.transaction():
                for row in rows:
                    status = await conn.execute(
                        "INSERT INTO credentials (device_id, slot_start, slot_end, status_index, "
                        "kid, device_key) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        row.device_id, row.slot_start, row.slot_end, row.status_index, row.kid,
                        row.device_key,
                    )
                    if str(status).endswith(" 1"):
                        inserted.append(row)
            return inserted

        result: list[CredentialRow] = await self._db.run(op)
        return result

    async def revoke(self, device_id: str, *, now: int) -> tuple[Device, list[tuple[int, int]]]:
        async def op(conn: Any) -> list[tuple[int, int]]:
            async with conn.transaction():
                status = await conn.fetchval(
                    "SELECT status FROM devices WHERE device_id = $1 FOR UPDATE", device_id
                )
                if status is None:
                    raise KeyError(device_id)
                if status == "revoked":
                    return []
                await conn.execute(
                    "UPDATE devices SET status = 'revoked', revoked_at = $1 WHERE device_id = $2",
                    now, device_id,
                )
                return await _flip(
                    conn, "device_id = $1 AND NOT revoked AND slot_end > $2", (device_id, now), now
                )

        pairs: list[tuple[int, int]] = await self._db.run(op)
        device = await self.get(device_id)
        if device is None:  # pragma: no cover - devices are never deleted
            raise StorageError("device vanished after revocation")
        return device, pairs

    async def subject_status(self, sub: str, *, suspended: bool, now: int) -> int | None:
        active = "device_id IN (SELECT device_id FROM devices WHERE sub = $1 AND status = 'active')"

        async def op(conn: Any) -> int | None:
            async with conn.transaction():
                if suspended:
                    pairs = await _flip(conn, f"{active} AND NOT revoked AND slot_end > $2",
                                        (sub, now), now)
                    if not pairs:
                        return None
                    return int(await conn.fetchval("SELECT max(version) FROM trust_versions"))
                await conn.execute(_LOCK)
                status = await conn.execute(
                    f"UPDATE credentials SET revoked = false WHERE {active} AND revoked",  # noqa: S608
                    sub,
                )
                if str(status).endswith(" 0"):
                    return None
                return await _new_version(conn, "reset", now)

        result: int | None = await self._db.run(op)
        return result

    async def revoked(self, slots: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        if not slots:
            return out
        rows = await self._db.run(
            lambda c: c.fetch(
                "SELECT slot_start, status_index FROM credentials "
                "WHERE revoked AND slot_start = ANY($1::bigint[])",
                list(slots),
            ),
            retry=True,
        )
        for slot, index in rows:
            out.setdefault(int(slot), []).append(int(index))
        return out

    async def revoked_device_credentials(self, *, after: int) -> list[tuple[int, int]]:
        rows = await self._db.run(
            lambda c: c.fetch(
                "SELECT c.slot_start, c.status_index FROM credentials c "
                "JOIN devices d ON d.device_id = c.device_id "
                "WHERE c.revoked AND d.status = 'revoked' AND c.slot_end > $1",
                after,
            ),
            retry=True,
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def trust_version(self) -> TrustHead:
        row = await self._db.run(
            lambda c: c.fetchrow(
                "SELECT version, at, keys FROM trust_versions ORDER BY version DESC LIMIT 1"
            ),
            retry=True,
        )
        return TrustHead(0, 0, 0) if row is None else TrustHead(*(int(v) for v in row))

    async def bump(self, kind: str, *, now: int, keys: int | None = None) -> TrustHead:
        async def op(conn: Any) -> TrustHead:
            async with conn.transaction():
                version = await _new_version(conn, kind, now, keys)
                row = await conn.fetchrow(
                    "SELECT version, at, keys FROM trust_versions WHERE version = $1", version
                )
            return TrustHead(*(int(v) for v in row))

        head: TrustHead = await self._db.run(op)
        return head

    async def changes_since(self, version: int) -> TrustChanges | None:
        async def op(conn: Any) -> TrustChanges | None:
            # One snapshot for the three reads (repeatable read).
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                since_at = await conn.fetchval(
                    "SELECT at FROM trust_versions WHERE version = $1", version
                )
                if since_at is None:
                    return None
                latest = int(await conn.fetchval("SELECT max(version) FROM trust_versions"))
                reset = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM trust_versions WHERE version > $1 "
                    "AND kind = 'reset')",
                    version,
                )
                rows = await conn.fetch(
                    "SELECT slot_start, status_index FROM trust_flips "
                    "WHERE version > $1 AND version <= $2",
                    version, latest,
                )
            flips: dict[int, list[int]] = {}
            for slot, index in rows:
                flips.setdefault(int(slot), []).append(int(index))
            return TrustChanges(version, int(since_at), latest, flips, bool(reset))

        result: TrustChanges | None = await self._db.run(op, retry=True)
        return result
