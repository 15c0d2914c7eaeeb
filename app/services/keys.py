"""Key sets in a running service: load or create at start, rotate and revoke through
compare-and-swap on the database, and keep every process's copy current.

Two named key sets live in the database: ``codes`` (signs codes) and ``tokens`` (signs
partner access tokens). Each process holds an unsealed, in-memory view (issuer, key
ring, pairwise secret) and swaps it atomically when the stored version changes — on a
change-feed event (within a second everywhere) and on a periodic check as a safety
net. When the database is down the current view stays in force: verification does not
need the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from suishen.app.storage.base import Database, Event, StateBackend
from suishen.errors import BackendUnavailable, KeyManagementError
from suishen.keys.algorithms import Alg
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing
from suishen.keys.keyset import KeySet

log = logging.getLogger("suishen.keys")

CODES = "codes"
TOKENS = "tokens"
_CAS_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class KeyView:
    """An unsealed snapshot of one key set."""

    keyset: KeySet
    keyring: KeyRing
    issuer: Issuer | None


class KeyManager:
    """Owns the ``codes`` and ``tokens`` key sets of this process."""

    def __init__(
        self,
        db: Database,
        state: StateBackend,
        kek: KeyEncryptionKey,
        *,
        alg: Alg,
        overlap_seconds: dict[str, int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._state = state
        self._kek = kek
        self._alg = alg
        self._overlap = overlap_seconds
        self._clock = clock
        self._views: dict[str, KeyView] = {}
        self.pairwise_secret = b""
        self.on_change: list[Callable[[str, KeyView], None]] = []

    def view(self, name: str = CODES) -> KeyView:
        """The current snapshot of a key set."""
        return self._views[name]

    @property
    def kek(self) -> KeyEncryptionKey:
        """The key-encryption key (for components that unseal their own secrets)."""
        return self._kek

    async def load_or_create(self) -> None:
        """Load both key sets, creating any that is missing (safe under concurrency:
        the first process to store a set wins and the others load it)."""
        for name in (CODES, TOKENS):
            keyset = await self._db.keysets.load(name)
            if keyset is None:
                created = KeySet.create(self._kek, now=int(self._clock()), alg=self._alg)
                if await self._db.keysets.save(name, created, expected_version=None):
                    log.info("created key set", extra={"event": f"keyset-created:{name}"})
                    keyset = created
                else:
                    keyset = await self._db.keysets.load(name)
                    if keyset is None:  # pragma: no cover - saved by someone else
                        raise KeyManagementError(f"key set {name} vanished")
            keyset.check_kek(self._kek)
            self._install(name, keyset)

    def _install(self, name: str, keyset: KeySet) -> None:
        current = self._views.get(name)
        if current is not None and current.keyset.version >= keyset.version:
            return
        try:
            issuer = keyset.issuer(self._kek)
        except KeyManagementError:
            issuer = None  # every key revoked: verify still works, issuing refuses
        view = KeyView(keyset, keyset.keyring(self._kek), issuer)
        self._views[name] = view
        if name == CODES:
            self.pairwise_secret = keyset.pairwise_secret(self._kek)
        for callback in self.on_change:
            callback(name, view)

    async def refresh(self, name: str | None = None) -> None:
        """Reload from the database if a newer version is stored; keep the current
        view when the database cannot be reached."""
        for each in (name,) if name else (CODES, TOKENS):
            try:
                keyset = await self._db.keysets.load(each)
            except BackendUnavailable:
                log.warning("key refresh skipped: database unavailable")
                return
            if keyset is not None:
                self._install(each, keyset)

    async def rotate(self, name: str = CODES, *, alg: Alg | None = None) -> KeySet:
        """Rotate: a new active key; the old one verifies for the overlap."""
        return await self._change(
            name,
            lambda ks: ks.rotate(
                self._kek, now=int(self._clock()), overlap_seconds=self._overlap[name], alg=alg
            ),
        )

    async def revoke(self, kid: str, name: str = CODES) -> KeySet:
        """Revoke a key everywhere (unknown kid: :class:`KeyManagementError`)."""
        return await self._change(name, lambda ks: ks.revoke(kid, now=int(self._clock())))

    async def _change(self, name: str, change: Callable[[KeySet], KeySet]) -> KeySet:
        for _ in range(_CAS_ATTEMPTS):
            stored = await self._db.keysets.load(name)
            if stored is None:
                raise KeyManagementError(f"no key set {name}")
            updated = change(stored)
            if updated is stored:
                return stored
            if await self._db.keysets.save(name, updated, expected_version=stored.version):
                self._install(name, updated)
                await self._announce(name, updated.version)
                return updated
        raise BackendUnavailable("key set changed concurrently too often; retry")

    async def _announce(self, name: str, version: int) -> None:
        try:
            await self._state.publish(Event("keys", {"name": name, "version": version}))
        except BackendUnavailable:
            # Other processes still pick the change up on their periodic refresh.
            log.warning("key change not announced: state backend unavailable")
