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
  delta is smaller than the full bundle; otherwise the full bundle. Besides the
  horizon's slots, a delta flips the slot that ended less than clock skew plus the
  offline code lifetime ago, when the gate held it at N (stop 23: before, a device
  revoked just before the hour stayed valid in that slot at a gate synced just after).
* Old rows are pruned off the request path by :class:`TrustPruner`, a background task
  of the Runtime, once a tick (credential rows of slots that ended a bundle lifetime
  ago, older versions and their flips); the storage operation is idempotent, so every
  process may run it. Metrics: ``suishen_trust_pruned_rows_total`` and
  ``suishen_trust_prune_duration_seconds``.
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
* **Shared cache** (when the state backend is shared — Redis — and passed as ``shared``):
  the signed full bundle of a version (key ``trust:bundle:<version>:<anchor version>``)
  and the signed deltas to it (``trust:delta:<version>:<since>:<anchor>``) are stored in
  the state backend as bytes with a TTL of :meth:`TrustService.shared_ttl_ms` (longer
  than a version is ever served: ticks bump it), written first-writer-wins
  (``SET NX``), so every process answers the same bytes for a version. The full bundle
  is built by one process only: the one that takes the short lock
  ``trust:build:<version>:<anchor>`` (``SET NX PX`` :data:`LOCK_MS`). **The choice for
  the others**: they serve the newest bundle they already hold if it is still fresh
  (``now < refresh_after``, same code keys and anchor — a gate taking it is not
  degraded, and it gets the newer version at its next sync), else they wait, polling
  every :data:`WAIT_STEP` s, for the builder's result; if the lock holder died, its
  lock expires and a waiter takes it over; after :data:`LOCK_MS` plus a margin with
  nothing to show, a 503 (``BackendUnavailable``: retry shortly). A process never
  serves a version lower than one it served before (monotonic per process; the
  version itself comes from the shared database, so it is monotonic across them). The
  embedded default (no shared state) keeps the in-process cache only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics, PeriodicTask
from suishen.app.services.keys import ANCHOR, CODES, VENUES, KeyManager, create_keyset
from suishen.app.storage.base import Database, StateBackend
from suishen.app.storage.devices import TrustHead
from suishen.codecs import bundle as codec
from suishen.codecs import cose
from suishen.errors import BackendUnavailable, IssuanceError, KeyManagementError, StorageError
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
LOCK_MS = 5_000  # the shared build lock (a cold city-scale build is ~1.2 s of a core)
WAIT_STEP = 0.05


class _BuildBusy(BackendUnavailable):
    """Another process holds the build lock and has not stored its result in time."""


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
        shared: StateBackend | None = None,
        lock_ms: int = LOCK_MS,
        keep_ended_seconds: int = 0,
    ) -> None:
        self._db = db
        # Bundles keep, and deltas flip, the slot that ended less than this ago
        # (keys.bundle.ended_grace: its codes can still be fresh at a gate).
        self._keep_ended = keep_ended_seconds
        self._shared = shared
        self._lock_ms = lock_ms
        self._served = 0  # the highest version this process has served
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
        held = kbundle.horizon_slots(changes.since_at, self._slot,
                                     keep_ended=self._keep_ended)
        surrogate = codec.Bundle(
            typ=codec.TYP_BUNDLE, version=since, issued_at=changes.since_at,
            refresh_after=changes.since_at, expires_at=changes.since_at,
            slot_seconds=self._slot, keys=(),
            lists={s: built.bundle.lists[s] for s in held if s in built.bundle.lists},
        )
        delta = kbundle.delta(built.bundle, since=surrogate, flips=changes.flips,
                              keep_ended=self._keep_ended, since_slots=held)
        if len(codec.encode(delta)) >= len(built.signed):
            return built.signed, built.bundle
        if self._shared is not None:
            key = f"trust:delta:{built.bundle.version}:{since}:{built.anchor}"
            try:
                return await self._shared_delta(self._shared, key, delta)
            except BackendUnavailable as exc:
                log.warning("shared trust cache unavailable, signing the delta locally: %s",
                            type(exc).__name__)
        return await asyncio.to_thread(self._sign, delta), delta

    async def _shared_delta(self, state: StateBackend, key: str,
                            delta: codec.Bundle) -> tuple[bytes, codec.Bundle]:
        """The delta's signed bytes from the shared cache; the first signer stores them."""
        stored = await state.cache_get(key)
        if stored is None:
            signed = await asyncio.to_thread(self._sign, delta)
            if await state.cache_add(key, signed, ttl_ms=self.shared_ttl_ms):
                return signed, delta
            stored = await state.cache_get(key)  # another process won: its bytes
            if stored is None:  # pragma: no cover - evicted in between
                return signed, delta
        return stored, _payload(stored)

    @property
    def shared_ttl_ms(self) -> int:
        """How long shared entries live: longer than a version is served (a tick bumps
        it after :data:`TICK_SECONDS` at most), so a version has one body."""
        return (2 * self._tick + 10) * 1000

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
        if seen is not None and venues != seen:
            # A venue key was rotated or revoked: a new version, so gates take it.
            head = await self._bump(head, "venue-keys", now=now)
        for _ in range(3):  # a version another process made may need a look again
            keyset = self._keys.view(CODES).keyset
            if keyset.version < head.keys:
                await self._keys.refresh(CODES)  # another process changed keys: catch up
                keyset = self._keys.view(CODES).keyset
            if keyset.version > head.keys:
                head = await self._bump(head, "keys", now=now, keys=keyset.version)
            elif head.at < now - self._tick:
                head = await self._bump(head, "tick", now=now)
            else:
                break
        return head

    async def _bump(self, head: TrustHead, kind: str, *, now: int,
                    keys: int | None = None) -> TrustHead:
        """Bump the version; with a shared state only one process bumps a given head
        (``SET NX`` on ``trust:bump:<version>``): the others wait for its new version
        instead of making one more (each version costs a build)."""
        state = self._shared
        try:
            alone = state is None or await state.cache_add(
                f"trust:bump:{head.version}", b"1", ttl_ms=self._lock_ms)
        except BackendUnavailable:
            alone = True  # Redis down: bump here (at worst one extra version)
        if alone:
            return await self._db.devices.bump(kind, now=now, keys=keys)
        deadline = time.monotonic() + self._lock_ms / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(WAIT_STEP)
            newer = await self._db.devices.trust_version()
            if newer.version > head.version:
                return newer
        return await self._db.devices.bump(kind, now=now, keys=keys)  # the bumper died

    def _venue_version(self) -> int | None:
        try:
            return self._keys.view(VENUES).keyset.version
        except KeyError:  # a service built without venue keys (tools, old tests)
            return None

    async def _current(self) -> _Built:
        now = int(self._clock())
        head = await self._head(now)
        anchor = self._keys.view(ANCHOR).keyset.version
        if self._shared is not None:
            try:
                built = await self._from_shared(self._shared, head, anchor, now)
            except _BuildBusy:
                raise
            except BackendUnavailable as exc:  # Redis down: build here (bytes differ)
                log.warning("shared trust cache unavailable, building locally: %s",
                            type(exc).__name__)
                built = await self._local(head, anchor, now)
        else:
            built = await self._local(head, anchor, now)
        if built.bundle.version < self._served:  # another process's build raced ours
            newest = self._built.get(self._served)
            if newest is not None:
                return newest
        self._served = max(self._served, built.bundle.version)
        return built

    async def _from_shared(self, state: StateBackend, head: TrustHead, anchor: int,
                           now: int) -> _Built:
        """The bundle of ``head`` from the shared cache, built here by the lock holder
        (see the module docstring for what the others do)."""
        mine = self._built.get(head.version)
        if mine is not None and mine.anchor == anchor:
            return mine  # one body per version: what is in Redis is what we hold
        key = f"trust:bundle:{head.version}:{anchor}"
        lock = f"trust:build:{head.version}:{anchor}"
        deadline = time.monotonic() + self._lock_ms / 1000 + 1.0
        fallback = self._newest()
        if fallback is not None and (fallback.anchor != anchor or fallback.keys != head.keys
                                     or now >= fallback.bundle.refresh_after):
            fallback = None
        if (fallback is not None and self._min_rebuild > 0
                and now - fallback.bundle.issued_at < self._min_rebuild):
            return fallback  # coalesce, as in the embedded case
        while True:
            stored = await state.cache_get(key)
            if stored is not None:
                return self._keep(self._adopt(stored, anchor, head.keys))
            if await state.cache_add(lock, b"1", ttl_ms=self._lock_ms):
                try:
                    built = await self._build(head, anchor, now)
                    if not await state.cache_add(key, built.signed, ttl_ms=self.shared_ttl_ms):
                        # Our lock expired and another process stored first: serve its
                        # bytes, so that every process answers the same.
                        stored = await state.cache_get(key)
                        if stored is not None:
                            built = self._adopt(stored, anchor, head.keys)
                    return self._keep(built)
                finally:
                    await state.cache_delete(lock)
            if fallback is not None:
                return fallback  # still fresh: the builder's result comes at the next sync
            if time.monotonic() > deadline:
                raise _BuildBusy("the trust bundle is being built by another process")
            await asyncio.sleep(WAIT_STEP)

    def _adopt(self, signed: bytes, anchor: int, keys: int) -> _Built:
        return _Built(time.monotonic(), _payload(signed), signed, anchor, keys)

    def _newest(self) -> _Built | None:
        return self._built[max(self._built)] if self._built else None

    def _keep(self, built: _Built) -> _Built:
        self._built[built.bundle.version] = built
        for old in sorted(self._built)[:-_KEEP_VERSIONS]:
            del self._built[old]
        return built

    async def _local(self, head: TrustHead, anchor: int, now: int) -> _Built:
        """The in-process cache (embedded default)."""
        cached = self._built.get(head.version)
        if (cached is not None and cached.anchor == anchor
                and time.monotonic() - cached.made < CACHE_SECONDS):
            return cached
        newest = self._newest()
        if (newest is not None and self._min_rebuild > 0 and newest.anchor == anchor
                and newest.keys == head.keys
                and time.monotonic() - newest.made < self._min_rebuild):
            # Coalesce: revocations arriving in a burst are served by one rebuild (a
            # delta from the newest build still carries every flip up to now).
            return newest
        return self._keep(await self._build(head, anchor, now))

    async def _build(self, head: TrustHead, anchor: int, now: int) -> _Built:
        """Build and sign the full bundle of ``head`` (in a worker thread)."""
        keyset = self._keys.view(CODES).keyset
        if keyset.version != head.keys:  # pragma: no cover - a change raced this build
            raise KeyManagementError("code keys changed during the build; retry")
        slots = kbundle.horizon_slots(now, self._slot, keep_ended=self._keep_ended)
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
                keep_ended=self._keep_ended,
            )
            return _Built(time.monotonic(), bundle, self._sign(bundle), anchor, head.keys)

        return await asyncio.to_thread(build)


class TrustPruner:
    """Prunes ended credential rows and old trust versions, in the background.

    :meth:`run_once` is the whole job for one ``now`` (tests call it with a fixed
    clock); :meth:`start` runs it every ``interval`` seconds until :meth:`close`. Rows
    go once their slot started more than a bundle lifetime plus a slot before ``now``:
    a gate holding a bundle with them has an expired bundle anyway. Failures are
    logged and counted in ``suishen_backend_errors_total``, and the next round retries.
    """

    def __init__(self, db: Database, metrics: Metrics, *, slot_seconds: int,
                 lifetime_seconds: int, interval: float = TICK_SECONDS,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._metrics = metrics
        self._horizon = lifetime_seconds + slot_seconds
        self._clock = clock
        self._periodic = PeriodicTask("trust-prune", self._round, interval)

    def cutoff(self, now: int) -> int:
        """Rows of slots that started before this are pruned at ``now``."""
        return now - self._horizon

    async def run_once(self, now: int) -> int:
        """Prune what ended before :meth:`cutoff` ``(now)``; returns the rows removed
        (0 when run again: idempotent)."""
        start = time.perf_counter()
        try:
            gone = await self._db.devices.prune(before=self.cutoff(now))
        except StorageError as exc:
            self._metrics.backend_errors.labels("database", "trust_prune").inc()
            log.warning("trust prune skipped: %s", type(exc).__name__)
            return 0
        self._metrics.trust_pruned.inc(gone)
        self._metrics.trust_prune_duration.observe(time.perf_counter() - start)
        return gone

    def start(self) -> None:
        """Run :meth:`run_once` now and every ``interval`` seconds until :meth:`close`."""
        self._periodic.start()

    async def close(self) -> None:
        """Stop pruning."""
        await self._periodic.close()

    async def _round(self) -> None:
        await self.run_once(int(self._clock()))


def _payload(signed: bytes) -> codec.Bundle:
    """The bundle inside signed bytes this service made (read back from the shared
    cache: signature already known good)."""
    return codec.decode(cose.decode_sign1(signed).payload)
