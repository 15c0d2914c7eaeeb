"""Key sets in a running service: load or create at start, rotate and revoke through
compare-and-swap on the key-set store, and keep every process's copy current.

Two named key sets live in the store (:class:`~suishen.keys.keyset.KeySetStore`, the
database's, the same interface the ``suishen keys`` commands use): ``codes`` (signs
codes; with blinding and pairwise secrets) and ``tokens`` (signs partner access tokens;
no secrets but the signing keys). Each process holds an unsealed, in-memory view
(issuer, key ring, pairwise secret) and swaps it atomically when the stored version
changes, learnt three ways:

* a change-feed event (``keys``), published by whoever changed the set -- the admin
  endpoint, or the CLI when Redis is configured: within milliseconds everywhere;
* :meth:`KeyManager.poll`, started with the runtime, asks the store for its versions
  once a second (one small query) and reloads a set whose version moved -- so a
  ``suishen keys rotate`` against the service's database is picked up within a second
  even without a change feed;
* the runtime's periodic resync, as before.

When the database is down the current view stays in force: verification does not need
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.settings import Settings
from suishen.app.storage.base import Event, StateBackend
from suishen.errors import BackendUnavailable, KeyManagementError
from suishen.keys.algorithms import Alg
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing
from suishen.keys.keyset import KeySet, KeySetStore
from suishen.keys.signer import Signer

log = logging.getLogger("suishen.keys")

CODES = "codes"
TOKENS = "tokens"
ANCHOR = "anchor"  # the trust-anchor key set (app/services/trust.py)
VENUES = "venues"  # signs printed venue codes (app/services/venues.py)
# A retired venue key verifies until it is revoked: printed posters have no expiry. The
# key-set model needs a window, so a rotation gives the retired key 50 years.
VENUE_KEY_OVERLAP_SECONDS = 50 * 365 * 86_400
_CAS_ATTEMPTS = 5
POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class KeyView:
    """An unsealed snapshot of one key set."""

    keyset: KeySet
    keyring: KeyRing
    issuer: Issuer | None
    # The active key's signer (every key set; None when every key is revoked).
    signer: Signer | None = None


class KeyManager:
    """Owns the ``codes`` and ``tokens`` key sets of this process."""

    def __init__(
        self,
        store: KeySetStore,
        state: StateBackend,
        kek: KeyEncryptionKey,
        *,
        alg: Alg,
        overlap_seconds: dict[str, int],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
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
            keyset = await self._store.load(name)
            if keyset is None:
                created = create_keyset(name, self._kek, now=int(self._clock()), alg=self._alg)
                if await self._store.save(name, created, expected_version=None):
                    log.info("created key set", extra={"event": f"keyset-created:{name}"})
                    keyset = created
                else:
                    keyset = await self._store.load(name)
                    if keyset is None:  # pragma: no cover - saved by someone else
                        raise KeyManagementError(f"key set {name} vanished")
            keyset.check_kek(self._kek)
            self._install(name, keyset)

    def _install(self, name: str, keyset: KeySet) -> None:
        current = self._views.get(name)
        if current is not None and current.keyset.version >= keyset.version:
            return
        issuer = signer = None
        # every key revoked: verify still works, issuing and signing refuse
        with contextlib.suppress(KeyManagementError):
            signer = keyset.signer(self._kek)
        if name == CODES:
            with contextlib.suppress(KeyManagementError):
                issuer = keyset.issuer(self._kek)
        view = KeyView(keyset, keyset.keyring(self._kek), issuer, signer)
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
                keyset = await self._store.load(each)
            except BackendUnavailable:
                log.warning("key refresh skipped: database unavailable")
                return
            if keyset is not None:
                self._install(each, keyset)

    async def check_versions(self) -> list[str]:
        """Ask the store for its versions (cheap) and reload every set whose stored
        version is newer than this process's view; returns the names reloaded."""
        stored = await self._store.versions()
        moved = [
            name
            for name, view in self._views.items()
            if stored.get(name, view.keyset.version) > view.keyset.version
        ]
        for name in moved:
            await self.refresh(name)
        return moved

    async def poll(self, interval: float = POLL_SECONDS) -> None:
        """Run :meth:`check_versions` every ``interval`` seconds until cancelled (the
        runtime starts it). A store that cannot be reached is retried next time."""
        while True:
            await asyncio.sleep(interval)
            try:
                moved = await self.check_versions()
            except BackendUnavailable:
                continue
            except Exception:  # never let one bad read stop the poller; it is logged
                log.exception("key-set version poll failed")
                continue
            if moved:
                log.info("key sets reloaded", extra={"event": "keys-polled:" + ",".join(moved)})

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
            stored = await self._store.load(name)
            if stored is None:
                raise KeyManagementError(f"no key set {name}")
            updated = change(stored)
            if updated is stored:
                return stored
            if await self._store.save(name, updated, expected_version=stored.version):
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


def create_keyset(name: str, kek: KeyEncryptionKey, *, now: int, alg: Alg) -> KeySet:
    """A first key set for ``name``: the ``codes`` set with blinding and pairwise
    secrets, the ``tokens`` set (partner access tokens) with signing keys only."""
    return KeySet.create(kek, now=now, alg=alg, with_secrets=name == CODES)


def default_overlaps(settings: Settings) -> dict[str, int]:
    """How long a retired key keeps verifying after a rotation, per key set: the
    longest code lifetime plus clock skew, and the partner-token lifetime plus its
    5 s leeway (the service and ``suishen keys rotate`` use the same figures)."""
    return {
        # A retired code key keeps verifying until the last offline credential it signed
        # has ended (credentials are issued up to offline_days ahead).
        CODES: max(settings.code_ttl_seconds,
                   settings.offline_slots * settings.offline_slot_seconds)
        + settings.clock_skew_seconds,
        # Gates keep a retired anchor key until their bundles are re-signed.
        ANCHOR: settings.trust_bundle_lifetime_seconds + settings.clock_skew_seconds,
        # Partner tokens verify up to their lifetime bound, with a 5 s leeway after it.
        TOKENS: settings.partner_token_lifetime_bound + 5,
        # Printed venue codes outlive any rotation (docs/enterprise.md).
        VENUES: VENUE_KEY_OVERLAP_SECONDS,
    }
