"""SQLite implementation of :class:`~suishen.app.storage.devices.DeviceRepository`
(shares the database's one connection and write lock; every write is one
``BEGIN IMMEDIATE`` transaction, so versions are allocated in commit order)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from suishen.app.storage.devices import CredentialRow, Device, TrustChanges, TrustHead
from suishen.app.storage.sqlite_batch import SQLiteRepository
from suishen.errors import StorageError

_DEVICE = (
    "SELECT d.device_id, d.sub, d.name, d.created_at, d.status, d.revoked_at, "
    "(SELECT MAX(c.slot_end) FROM credentials c WHERE c.device_id = d.device_id) "
    "FROM devices d"
)


def _device(row: Any) -> Device:
    return Device(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


class SQLiteDevices(SQLiteRepository):
    """Devices, credential rows and the trust version log on SQLite."""

    async def _write(self, work: Any) -> Any:
        """Run ``work()`` in one immediate transaction under the write lock."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = await work()
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")
            return result

    async def _new_version(self, kind: str, now: int, keys: int | None = None) -> int:
        if keys is None:
            keys = (await self._latest()).keys
        cur = await self._conn.execute(
            "INSERT INTO trust_versions (at, kind, keys) VALUES (?, ?, ?)", (now, kind, keys)
        )
        if cur.lastrowid is None:  # pragma: no cover - an INSERT always has one
            raise StorageError("no trust version allocated")
        return int(cur.lastrowid)

    # --- devices ------------------------------------------------------------------
    async def create(self, device: Device) -> None:
        try:
            async with self._lock:
                await self._conn.execute(
                    "INSERT INTO devices (device_id, sub, name, created_at, status, revoked_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (device.device_id, device.sub, device.name, device.created_at,
                     device.status, device.revoked_at),
                )
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"device refused by the database: {exc}") from None

    async def get(self, device_id: str) -> Device | None:
        rows = await self._rows(f"{_DEVICE} WHERE d.device_id = ?", (device_id,))
        return _device(rows[0]) if rows else None

    async def for_subject(self, sub: str) -> list[Device]:
        rows = await self._rows(f"{_DEVICE} WHERE d.sub = ? ORDER BY d.created_at, d.device_id",
                                (sub,))
        return [_device(r) for r in rows]

    async def known_keys(self, keys: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = await self._rows(
                f"SELECT device_key FROM credentials WHERE device_key IN ({marks})",  # noqa: S608
                chunk,
            )
            found.update(bytes(r[0]) for r in rows)
        return found

    async def add_credentials(self, rows: Sequence[CredentialRow]) -> list[CredentialRow]:
        async def work() -> list[CredentialRow]:
            inserted = []
            for row in rows:
                cur = await self._conn.execute(
                    "INSERT OR IGNORE INTO credentials (device_id, slot_start, slot_end, "
                    "status_index, kid, device_key) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.device_id, row.slot_start, row.slot_end, row.status_index, row.kid,
                     row.device_key),
                )
                if cur.rowcount == 1:
                    inserted.append(row)
            return inserted

        try:
            result: list[CredentialRow] = await self._write(work)
        except sqlite3.IntegrityError as exc:  # an unknown device (foreign key)
            raise StorageError(f"credentials refused by the database: {exc}") from None
        return result

    async def revoke(self, device_id: str, *, now: int) -> tuple[Device, list[tuple[int, int]]]:
        async def work() -> list[tuple[int, int]]:
            rows = await self._rows("SELECT status FROM devices WHERE device_id = ?",
                                    (device_id,))
            if not rows:
                raise KeyError(device_id)
            if rows[0][0] == "revoked":
                return []
            await self._conn.execute(
                "UPDATE devices SET status = 'revoked', revoked_at = ? WHERE device_id = ?",
                (now, device_id),
            )
            return await self._flip(
                "device_id = ? AND revoked = 0 AND slot_end > ?", (device_id, now), now
            )

        pairs: list[tuple[int, int]] = await self._write(work)
        device = await self.get(device_id)
        if device is None:  # pragma: no cover - devices are never deleted
            raise StorageError("device vanished after revocation")
        return device, pairs

    async def _flip(self, where: str, args: tuple[object, ...], now: int) -> list[tuple[int, int]]:
        """Set the revoked bit of the matching rows at a new version (inside a write)."""
        pairs = [
            (int(r[0]), int(r[1]))
            for r in await self._rows(
                f"SELECT slot_start, status_index FROM credentials WHERE {where}", args  # noqa: S608
            )
        ]
        if not pairs:
            return []
        await self._conn.execute(f"UPDATE credentials SET revoked = 1 WHERE {where}", args)  # noqa: S608
        version = await self._new_version("revoke", now)
        await self._conn.executemany(
            "INSERT INTO trust_flips (version, slot_start, status_index) VALUES (?, ?, ?)",
            [(version, s, i) for s, i in pairs],
        )
        return pairs

    async def subject_status(self, sub: str, *, suspended: bool, now: int) -> int | None:
        active = "device_id IN (SELECT device_id FROM devices WHERE sub = ? AND status = 'active')"

        async def work() -> int | None:
            if suspended:
                pairs = await self._flip(f"{active} AND revoked = 0 AND slot_end > ?",
                                         (sub, now), now)
                return (await self._latest()).version if pairs else None
            cur = await self._conn.execute(
                f"UPDATE credentials SET revoked = 0 WHERE {active} AND revoked = 1",  # noqa: S608
                (sub,),
            )
            if cur.rowcount <= 0:
                return None
            return await self._new_version("reset", now)

        result: int | None = await self._write(work)
        return result

    # --- bundle queries -------------------------------------------------------------
    async def revoked(self, slots: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        if not slots:
            return out
        marks = ", ".join("?" * len(slots))
        for slot, index in await self._rows(
            f"SELECT slot_start, status_index FROM credentials "  # noqa: S608
            f"WHERE revoked = 1 AND slot_start IN ({marks})",
            list(slots),
        ):
            out.setdefault(int(slot), []).append(int(index))
        return out

    async def revoked_device_credentials(self, *, after: int) -> list[tuple[int, int]]:
        rows = await self._rows(
            "SELECT c.slot_start, c.status_index FROM credentials c "
            "JOIN devices d ON d.device_id = c.device_id "
            "WHERE c.revoked = 1 AND d.status = 'revoked' AND c.slot_end > ?",
            (after,),
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def _latest(self) -> TrustHead:
        rows = await self._rows(
            "SELECT version, at, keys FROM trust_versions ORDER BY version DESC LIMIT 1"
        )
        return TrustHead(*(int(v) for v in rows[0])) if rows else TrustHead(0, 0, 0)

    async def trust_version(self) -> TrustHead:
        return await self._latest()

    async def bump(self, kind: str, *, now: int, keys: int | None = None) -> TrustHead:
        async def work() -> TrustHead:
            await self._new_version(kind, now, keys)
            return await self._latest()

        head: TrustHead = await self._write(work)
        return head

    async def prune(self, *, before: int) -> int:
        async def work() -> int:
            latest = (await self._latest()).version
            gone = 0
            for sql, args in (
                ("DELETE FROM credentials WHERE slot_start < ?", (before,)),
                ("DELETE FROM trust_flips WHERE version IN (SELECT version FROM "
                 "trust_versions WHERE at < ? AND version < ?)", (before, latest)),
                ("DELETE FROM trust_versions WHERE at < ? AND version < ?", (before, latest)),
            ):
                cur = await self._conn.execute(sql, args)
                gone += max(cur.rowcount, 0)
            return gone

        count: int = await self._write(work)
        return count

    async def changes_since(self, version: int) -> TrustChanges | None:
        rows = await self._rows("SELECT at FROM trust_versions WHERE version = ?", (version,))
        if not rows:
            return None
        since_at = int(rows[0][0])
        latest = (await self._latest()).version
        resets = await self._rows(
            "SELECT 1 FROM trust_versions WHERE version > ? AND kind = 'reset' LIMIT 1",
            (version,),
        )
        flips: dict[int, list[int]] = {}
        for slot, index in await self._rows(
            "SELECT slot_start, status_index FROM trust_flips WHERE version > ? AND version <= ?",
            (version, latest),
        ):
            flips.setdefault(int(slot), []).append(int(index))
        return TrustChanges(version, since_at, latest, flips, bool(resets))
