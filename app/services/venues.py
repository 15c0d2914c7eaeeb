"""Venue and shop codes, posters and check-ins (SPEC.md §6.3, issue 11 part B).

Design (docs/enterprise.md "Venue codes and QR 5-M"):

* **Keys.** Venue codes are signed by the ``venues`` key set
  (:data:`~suishen.app.services.keys.VENUES`), long-lived and separate from the
  code-signing keys: rotating those never touches a printed poster. A retired venue key
  verifies until revoked.
* **Registration** (:meth:`VenueService.register`) allocates a random 5-byte venue id
  (retried on the rare collision: the store's primary key decides), signs the code once
  and stores it with the venue; the poster is always that stored code.
* **Revocation** (:meth:`VenueService.revoke`) is final: the row's ``revoked_at``, the
  in-memory revoked set of this process, a ``venue`` change-feed event for every other
  process (within a second; the periodic resync re-reads the set), and a trust-version
  bump so that gates learn it from their next bundle (which carries the venue keys and
  the revoked ids).
* **Judging** is the pure core's (:func:`suishen.verifiers.venue.check_venue`); this
  service is the :class:`~suishen.verifiers.venue.VenueTrust` of the process (keys and
  revoked set from memory).
* **Check-ins** (:meth:`VenueService.checkin`): the code is judged, the venue's public
  information answered (:func:`venue_public_info`; venues are cached in memory, so a
  known venue checks in while the database is down), and the record queued for the
  database off the hot path (the shared :class:`~suishen.app.services.queued.QueuedWriter`,
  kept through an outage). Rate-limited per citizen (:data:`CHECKIN_RATE_PER_SECOND`,
  the shared limiter keyed by a keyed hash of the handle, never the handle).
* **Visits** for the venue's owner (:meth:`VenueService.visits`): counts per hour of one
  day, computed from the check-in rows; nothing in the answer names a citizen.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.keys import VENUES, KeyManager
from suishen.app.services.queued import QueuedWriter, Sink
from suishen.app.services.ratelimit import RateLimiter
from suishen.app.storage.base import Database, Event, StateBackend
from suishen.app.storage.venues import CheckinEntry, CheckinRecord, Venue
from suishen.codecs import sc1
from suishen.codecs import venue as codec
from suishen.errors import (
    BackendUnavailable,
    CodecError,
    CodeRefused,
    IssuanceError,
    RateLimited,
    StorageError,
    UnsupportedVersion,
)
from suishen.keys.keyring import VerificationKey
from suishen.keys.venue import make_code
from suishen.timefmt import day_ms
from suishen.verifiers.reasons import Reason
from suishen.verifiers.venue import VenueCheck, check_venue

log = logging.getLogger("suishen.venues")

VENUE_KINDS = ("shop", "venue")
CHECKIN_RATE_PER_SECOND = 2
_ID_ATTEMPTS = 8
_CACHE_MAX = 50_000
HOUR_MS = 3_600_000


def venue_public_info(venue: Venue) -> dict[str, Any]:
    """What anyone who scans the venue's code may see (the check-in answer's ``venue``
    and the hook of ``POST /v1/resolve``): id, name, address, kind and ``info``. The
    owning enterprise and the revocation time are not in it."""
    return {"venue_id": venue.venue_id, "name": venue.name, "address": venue.address,
            "kind": venue.kind, "info": dict(venue.info)}


class CheckinWriter(QueuedWriter[CheckinRecord]):
    """Check-ins into the database off the hot path (the shared queued writer)."""

    def __init__(self, db: Database, metrics: Metrics, *, batch_size: int,
                 flush_interval: float, max_queue: int, clock: Clock = SYSTEM_CLOCK) -> None:
        async def set_aside(record: CheckinRecord, error: str, now_ms: int) -> None:
            # No dead-letter table: a check-in is a time, an opaque handle and a venue id
            # the service validated, which no database rule refuses. Should one be
            # refused anyway it is logged (without the citizen) and counted.
            log.error("check-in refused by the database (%s): %s", error[:200],
                      _describe(record))

        sink: Sink[CheckinRecord] = Sink(
            # Looked up per batch (not bound once): the repository stays replaceable.
            store=lambda batch: db.venues.append_checkins(batch),  # noqa: PLW0108
            set_aside=set_aside,
            describe=_describe,
            made_at=lambda record: record.at_ms / 1000,
            written=metrics.checkins_written,
            dropped=metrics.checkins_dropped,
            dead_letter=metrics.checkins_dead_letter,
        )
        super().__init__(sink, name="checkins", batch_size=batch_size,
                         flush_interval=flush_interval, max_queue=max_queue, clock=clock)


def _describe(record: CheckinRecord) -> str:
    """A check-in for the log: venue and time, never the citizen's handle."""
    return f"venue {record.venue_id} at {record.at_ms} ms"


class VenueService:
    """Venues, their codes and revocation, check-ins; the process's venue trust."""

    def __init__(self, db: Database, state: StateBackend, *, keys: KeyManager,
                 writer: CheckinWriter, limiter: RateLimiter, secret: bytes,
                 metrics: Metrics, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._state = state
        self._keys = keys
        self.writer = writer
        self._limiter = limiter
        self._secret = secret
        self._metrics = metrics
        self._clock = clock
        self._revoked: frozenset[bytes] = frozenset()
        self._cache: OrderedDict[str, Venue] = OrderedDict()

    # --- VenueTrust (hot path: memory only) -------------------------------------------
    def venue_keys(self) -> Sequence[VerificationKey]:
        """The venue public keys of this process's view."""
        return list(self._keys.view(VENUES).keyring)

    def venue_revoked(self, venue_id: bytes) -> bool:
        """True for a revoked venue."""
        return venue_id in self._revoked

    def revoked_ids(self) -> list[bytes]:
        """Every revoked venue id (for the trust bundle), sorted."""
        return sorted(self._revoked)

    # --- lifecycle --------------------------------------------------------------------
    async def load_revoked(self) -> None:
        """(Re-)read the revoked set from the database (start-up, resync)."""
        ids = await self._db.venues.revoked_venues()
        self._revoked = frozenset(bytes.fromhex(i) for i in ids)
        for venue_id in ids:
            self._cache.pop(venue_id, None)

    async def apply(self, event: Event) -> None:
        """A ``venue`` event: another process revoked a venue."""
        venue_id = event.data.get("venue_id")
        try:
            raw = codec.venue_id_from_text(venue_id)
        except CodecError:
            log.warning("venue event without a valid venue id ignored")
            return
        self._revoked = self._revoked | {raw}
        self._cache.pop(str(venue_id), None)

    # --- operators --------------------------------------------------------------------
    async def register(self, *, name: str, address: str, kind: str,
                       enterprise_id: str | None, info: Mapping[str, str]) -> Venue:
        """Register a venue: a new id, its signed code, stored."""
        signer = self._keys.view(VENUES).signer
        if signer is None:
            raise IssuanceError("no active venue key; an operator must rotate the venues key set")
        now = int(self._clock())
        for _ in range(_ID_ATTEMPTS):
            raw = os.urandom(codec.VENUE_ID_BYTES)
            venue = Venue(raw.hex(), name, address, kind, enterprise_id, dict(info),
                          make_code(signer, raw), now)
            if await self._db.venues.insert_venue(venue):
                self._remember(venue)
                return venue
        raise StorageError("could not allocate a venue id")  # pragma: no cover - 2^40 ids

    async def public_info(self, venue_id: str) -> dict[str, Any] | None:
        """A venue's public information by id (``POST /v1/resolve``), None if unknown."""
        venue = await self.get(venue_id)
        return None if venue is None else venue_public_info(venue)

    async def get(self, venue_id: str) -> Venue | None:
        """The venue (memory first, then the database)."""
        cached = self._cache.get(venue_id)
        if cached is not None and not self.venue_revoked(bytes.fromhex(venue_id)):
            self._cache.move_to_end(venue_id)
            return cached
        venue = await self._db.venues.get_venue(venue_id)
        if venue is not None:
            self._remember(venue)
        return venue

    async def revoke(self, venue_id: str) -> Venue | None:
        """Revoke a venue everywhere (final); None for an unknown id."""
        now = int(self._clock())
        venue = await self._db.venues.revoke_venue(venue_id, now=now)
        if venue is None:
            return None
        self._revoked = self._revoked | {bytes.fromhex(venue_id)}
        self._cache.pop(venue_id, None)
        await self._db.devices.bump("venue", now=now)  # gates: a newer bundle
        try:
            await self._state.publish(Event("venue", {"venue_id": venue_id}))
        except BackendUnavailable:
            log.warning("venue revocation not announced: state backend unavailable")
        return venue

    def _remember(self, venue: Venue) -> None:
        if venue.revoked:
            return
        self._cache[venue.venue_id] = venue
        self._cache.move_to_end(venue.venue_id)
        if len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)

    # --- judging ----------------------------------------------------------------------
    def check(self, text: object) -> VenueCheck | Reason:
        """Judge a code text as a venue code: the check, or the reason it is not one
        (``malformed``, ``unsupported_version``, ``scene_not_allowed`` for a citizen's
        code)."""
        try:
            parsed = sc1.parse_code(text)  # type: ignore[arg-type]  # non-str: CodecError
        except UnsupportedVersion:
            return Reason.UNSUPPORTED_VERSION
        except CodecError:
            return Reason.MALFORMED
        if not isinstance(parsed, codec.VenueCode):
            return Reason.SCENE_NOT_ALLOWED  # a citizen's code is not a venue's
        return check_venue(parsed, self)

    # --- check-ins --------------------------------------------------------------------
    async def checkin(self, handle: bytes, code: str) -> tuple[Venue, float]:
        """A citizen scanned ``code``: the venue and when; :class:`CodeRefused` (with the
        reason) for anything but a live venue's genuine code."""
        now = self._clock()
        bucket = "checkin:" + hmac.new(self._secret, handle, hashlib.sha256).hexdigest()[:32]
        wait = await self._limiter.take(bucket, per_second=CHECKIN_RATE_PER_SECOND, now=now)
        if wait > 0:
            self._metrics.rate_limited.inc()
            raise RateLimited("too many check-ins", retry_after=math.ceil(wait))
        checked = self.check(code)
        if isinstance(checked, Reason):
            raise CodeRefused(_REFUSALS.get(checked, "not a venue code"), reason=checked.value)
        if not checked.valid:
            raise CodeRefused(_REFUSALS.get(checked.reason, "venue code refused"),
                              reason=checked.reason.value)
        venue = await self.get(checked.venue_id.hex())
        if venue is None or venue.revoked:  # signed, but not (or no longer) registered
            raise CodeRefused(_REFUSALS[Reason.REVOKED], reason=Reason.REVOKED.value)
        self.writer.record(CheckinRecord(int(now * 1000), handle, venue.venue_id))
        self._metrics.checkins.inc()
        return venue, now

    async def history(self, handle: bytes, *, limit: int,
                      before: int | None) -> tuple[list[tuple[CheckinEntry, Venue | None]],
                                                   int | None]:
        """A citizen's check-ins, newest first, each with its venue, and the cursor of
        the next page."""
        entries = await self._db.venues.checkins_for_subject(handle, limit=limit,
                                                              before_id=before)
        out = [(e, await self.get(e.record.venue_id)) for e in entries]
        return out, (entries[-1].id if len(entries) == limit else None)

    async def visits(self, venue_id: str, day: date) -> list[tuple[int, int]]:
        """``(hour start in ms, visits)`` for every hour of ``day`` (UTC) with visits."""
        counts = await self._db.venues.visits_per_hour(venue_id, *day_ms(day))
        return sorted(counts.items())


_REFUSALS = {
    Reason.MALFORMED: "not a code",
    Reason.UNSUPPORTED_VERSION: "not a code of this service",
    Reason.SCENE_NOT_ALLOWED: "a citizen's code, not a venue code",
    Reason.UNKNOWN_KEY: "venue codes cannot be checked right now",
    Reason.BAD_SIGNATURE: "not a genuine venue code",
    Reason.REVOKED: "this venue's code has been revoked",
}
