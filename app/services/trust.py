"""Trust bundles for offline gates (SPEC.md §6.1): the trust-anchor key set, the signed
bundle, and signed deltas.

* The **trust anchor** is a key set of its own (``anchor``), next to ``codes`` and
  ``tokens`` in the same store, sealed with the same key-encryption key, created on
  first start and rotatable like the others (``KeyManager.rotate("anchor")``). Its
  public keys are ``GET /v1/trust-anchor``; gates are provisioned with them.
* A **bundle** (:mod:`suishen.keys.bundle`) carries the code-signing keys (active,
  retired within their window, revoked) and one status list per slot of the next
  24 hours (:func:`~suishen.keys.bundle.horizon_slots`), built from the revoked bits of
  the credential rows (device revoked or citizen suspended).
* Its **version** is the storage's trust version (:mod:`suishen.app.storage.devices`):
  bumped by every revocation, suspension and reactivation; by a key change (each
  version records the code key-set version its bundles carry, so every process agrees
  on what version N contains); and by the passing of time (``tick``, at most every
  :data:`TICK_SECONDS`), because a gate takes a bundle only when its version is newer —
  without ticks it would never see a fresher ``issued_at`` and would go degraded.
* ``?since=N`` answers a delta (:func:`~suishen.keys.bundle.delta`) when N is a version
  this store made, no reactivation happened since (a delta can only set bits), and the
  delta is smaller than the full bundle; otherwise the full bundle.
* Old rows are pruned once a tick (credential rows of slots that ended a bundle
  lifetime ago, older versions and their flips), in a background task: the request
  that made the tick does not wait for it, and prunes never overlap.
* ``SUISHEN_TRUST_BUNDLE_MIN_REBUILD_SECONDS`` (default 0: off) coalesces rebuilds:
  while the newest build is younger than that, a newer version caused by revocations or
  ticks is served by it (its deltas still carry every flip up to now); a key change
  always rebuilds. At city scale a build takes about a second of one core, and without
  coalescing every revocation costs one build per process.
* **Venue codes** (issue 11): the bundle carries the ``venues`` key set's keys
  (``venue_keys``) and every revoked venue id (``revoked_venues``, read from the
  database at build time). A venue revocation bumps the trust version; so does a change
  of the venue key set (noticed here, like a code-key change).
* Built bundles are cached per version for :data:`CACHE_SECONDS` and built in a worker
  thread (at city scale, compressing 25 status lists of 42.5 M bits takes a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.services.keys import ANCHOR, CODES, VENUES, KeyManager, create_keyset
from suishen.app.storage.base import Database
from suishen.app.storage.devices import TrustHead
from suishen.codecs import bundle as codec
from suishen.errors import IssuanceError, KeyManagementError, StorageError
from suishen.keys import bundle as kbundle
from suishen.keys.algorithms import Alg
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyState
from suishen.keys.keyset import KeySet

log = logging.getLogger("suishen.trust")

# ANCHOR ("anchor") is defined with the other key-set names in app/services/keys.py.
CACHE_SECONDS = 5.0
TICK_SECONDS = 60
_KEEP_VERSIONS = 4


@dataclass(frozen=True, slots=True)
class _Built:
    made: float
    bundle: codec.Bundle
    signed: bytes
    anchor: int  # the anchor key-set version that signed it
    keys: int  # the code key-set version it carries


async def ensure_anchor(db: Database, keys: KeyManager, kek: KeyEncryptionKey, *,
                        alg: Alg, now: int, name: str = ANCHOR) -> None:
    """Create the trust-anchor key set if missing (the first process to store it wins)
    and load it into ``keys`` (as the ``anchor`` view). ``name`` = ``venues`` does the
    same for the venue key set (:mod:`suishen.app.services.venues`): both are long-lived
    signing-only sets next to ``codes``."""
    if await db.keysets.load(name) is None:
        created = create_keyset(name, kek, now=now, alg=alg)  # no blinding secrets
        if await db.keysets.save(name, created, expected_version=None):
            log.info("created key set", extra={"event": f"keyset-created:{name}"})
    await keys.refresh(name)
    keys.view(name).keyset.check_kek(kek)


def bundle_keys(keyset: KeySet, now: int) -> list[codec.BundleKey]:
    """The code-signing keys a gate needs: active, retired within their window, and
    revoked (so that gates answer ``revoked``); pending and expired keys are left out."""
    out = []
    for record in keyset.keys:
        if record.state is KeyState.PENDING or record.expired_at(now):
            continue
        out.append(codec.BundleKey(
            kid=bytes.fromhex(record.kid), alg=record.alg.cose, pub=record.public,
            nbf=record.not_before if record.not_before is not None else record.created_at,
            exp=record.not_after, state=record.state.value,
        ))
    return out[-codec.MAX_KEYS:]


class TrustService:
    """Builds, signs and caches trust bundles and deltas."""

    def __init__(
        self,
        db: Database,
        keys: KeyManager,
        *,
        slot_seconds: int,
        list_size: int,
        refresh_seconds: int,
        lifetime_seconds: int,
        min_rebuild_seconds: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = db
        self._keys = keys
        self._min_rebuild = min_rebuild_seconds
        self._slot = slot_seconds
        self._list_size = list_size
        self._refresh = refresh_seconds
        self._lifetime = lifetime_seconds
        self._tick = max(1, min(TICK_SECONDS, refresh_seconds // 2))
        self._clock = clock
        self._built: dict[int, _Built] = {}
        self._lock = asyncio.Lock()
        self._venue_keys_seen: int | None = None  # the venues key-set version last built
        self._pruning: asyncio.Task[None] | None = None  # at most one prune at a time

    def anchor_jwks(self) -> dict[str, object]:
        """The trust anchor's public keys as a JWK Set (format of ``GET /v1/keys``)."""
        return self._keys.view(ANCHOR).keyset.jwks(now=int(self._clock()))

    async def signed(self, since: int | None = None) -> tuple[bytes, codec.Bundle]:
        """The signed bundle for now, or a signed delta from version ``since``."""
        async with self._lock:
            built = await self._current()
        if since is None or since >= built.bundle.version:
            return built.signed, built.bundle
        changes = await self._db.devices.changes_since(since)
        if changes is None or changes.reset or changes.version < built.bundle.version:
            return built.signed, built.bundle
        held = kbundle.horizon_slots(changes.since_at, self._slot)
        surrogate = codec.Bundle(
            typ=codec.TYP_BUNDLE, version=since, issued_at=changes.since_at,
            refresh_after=changes.since_at, expires_at=changes.since_at,
            slot_seconds=self._slot, keys=(),
            lists={s: built.bundle.lists[s] for s in held if s in built.bundle.lists},
        )
        delta = kbundle.delta(built.bundle, since=surrogate, flips=changes.flips)
        if len(codec.encode(delta)) >= len(built.signed):
            return built.signed, built.bundle
        return await asyncio.to_thread(self._sign, delta), delta

    def _sign(self, bundle: codec.Bundle) -> bytes:
        signer = self._keys.view(ANCHOR).signer
        if signer is None:
            raise IssuanceError("no active trust-anchor key; an operator must rotate it")
        return kbundle.sign_with(signer, bundle)

    async def _head(self, now: int) -> TrustHead:
        """The version to serve: bumped for a key change or when it is older than a tick."""
        head = await self._db.devices.trust_version()
        venues, seen = self._venue_version(), self._venue_keys_seen
        self._venue_keys_seen = venues
        keyset = self._keys.view(CODES).keyset
        if keyset.version < head.keys:
            await self._keys.refresh(CODES)  # another process changed keys: catch up
            keyset = self._keys.view(CODES).keyset
        if keyset.version > head.keys:
            return await self._db.devices.bump("keys", now=now, keys=keyset.version)
        if seen is not None and venues != seen:
            # A venue key was rotated or revoked: a new version, so gates take it.
            head = await self._db.devices.bump("venue-keys", now=now)
        if head.at < now - self._tick:
            head = await self._db.devices.bump("tick", now=now)
            self._start_prune(now)
        return head

    def _start_prune(self, now: int) -> None:
        """Prune in the background: the request that made the tick does not wait for it
        (at city scale the credential rows of a slot are millions), and a prune still
        running when the next tick comes is not doubled."""
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune(now), name="trust-prune")

    async def wait_pruned(self) -> None:
        """Wait for a prune in progress, if any (graceful stop, tests)."""
        if self._pruning is not None and not self._pruning.done():
            with contextlib.suppress(Exception):
                await self._pruning

    async def close(self) -> None:
        """Graceful stop: a prune in progress finishes."""
        await self.wait_pruned()

    def _venue_version(self) -> int | None:
        try:
            return self._keys.view(VENUES).keyset.version
        except KeyError:  # a service built without venue keys (tools, old tests)
            return None

    async def _prune(self, now: int) -> None:
        """Once a tick: forget credential rows of slots that ended a bundle lifetime ago
        and versions older than that (a gate holding one has an expired bundle and gets
        the full bundle). Failure is logged, never the caller's problem."""
        started = time.monotonic()
        try:
            pruned = await self._db.devices.prune(before=now - self._lifetime - self._slot)
        except StorageError as exc:
            log.warning("trust prune skipped: %s", type(exc).__name__)
            return
        log.info("trust prune: %d rows in %.1f ms", pruned,
                 (time.monotonic() - started) * 1000)

    async def _current(self) -> _Built:
        now = int(self._clock())
        head = await self._head(now)
        cached = self._built.get(head.version)
        anchor = self._keys.view(ANCHOR).keyset.version
        if (cached is not None and cached.anchor == anchor
                and time.monotonic() - cached.made < CACHE_SECONDS):
            return cached
        keyset = self._keys.view(CODES).keyset
        newest = self._built[max(self._built)] if self._built else None
        if (newest is not None and self._min_rebuild > 0 and newest.anchor == anchor
                and newest.keys == head.keys
                and time.monotonic() - newest.made < self._min_rebuild):
            # Coalesce: revocations arriving in a burst are served by one rebuild (a
            # delta from the newest build still carries every flip up to now).
            return newest
        if keyset.version != head.keys:  # pragma: no cover - a change raced this build
            raise KeyManagementError("code keys changed during the build; retry")
        slots = kbundle.horizon_slots(now, self._slot)
        revoked = await self._db.devices.revoked(slots)
        # From the database (not this process's memory): a revocation is stored before
        # the version it bumps, so version N always carries every venue revoked before it.
        revoked_venues = [bytes.fromhex(v) for v in await self._db.venues.revoked_venues()]
        venue_keys = (bundle_keys(self._keys.view(VENUES).keyset, now)
                      if self._venue_version() is not None else [])
        sizes = {}
        for slot in slots:
            top = max(revoked.get(slot, (0,)), default=0) + 1
            sizes[slot] = max(self._list_size, -(-top // 8) * 8)

        def build() -> _Built:
            bundle = kbundle.build(
                version=head.version, now=now, keys=bundle_keys(keyset, now),
                slot_seconds=self._slot, list_sizes=sizes, revoked=revoked,
                refresh=self._refresh, lifetime=self._lifetime,
                venue_keys=venue_keys, revoked_venues=revoked_venues,
            )
            return _Built(time.monotonic(), bundle, self._sign(bundle), anchor, head.keys)

        built = await asyncio.to_thread(build)
        self._built[head.version] = built
        for old in sorted(self._built)[:-_KEEP_VERSIONS]:
            del self._built[old]
        return built
