"""Citizens in a running service: enrolment, status and attributes, and the in-memory
views the verify hot path reads.

* The **suspended set** (handles of suspended citizens) lives in every process's memory
  (:class:`~suishen.verifiers.memory.InMemoryRevocations`), loaded at start-up and
  amended by ``subject`` events: a suspension reaches every process within a second.
* **Attributes** for the verify path come from a local LRU, then the shared cache, then
  the database; a change drops the cached copies everywhere through the same event.
* **Handles for issuance**: a citizen's handle never changes once enrolled, so every
  process keeps ``sub -> handle`` in a bounded LRU and issues a known citizen's code with
  no database round trip — the status comes from the suspended set above. Only
  enrolment (a citizen's first code) reads and writes the database (SPEC §7, §8: a
  known citizen keeps getting codes while PostgreSQL is down).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.storage.base import (
    AuditEntry,
    Database,
    Event,
    HandleTaken,
    StateBackend,
    Subject,
)
from suishen.codecs.sc1 import HANDLE_BYTES
from suishen.errors import BackendUnavailable, StorageError, SubjectSuspended
from suishen.verifiers.memory import InMemoryRevocations

log = logging.getLogger("suishen.subjects")
_ENROL_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class CachedSubject:
    """What the verify path needs to know about a citizen."""

    status: str
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of verifications of one citizen's codes, newest first; ``next_before`` is
    the cursor of the next page (``None`` on the last one)."""

    entries: list[AuditEntry]
    next_before: int | None


class SubjectService:
    """Enrolment, operator updates and the cached views of citizens."""

    def __init__(
        self,
        db: Database,
        state: StateBackend,
        *,
        cache_seconds: int,
        local_entries: int = 200_000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = db
        self._state = state
        self._ttl = cache_seconds
        self._clock = clock
        self._local: OrderedDict[bytes, tuple[float, CachedSubject]] = OrderedDict()
        self._local_max = local_entries
        self._handles: OrderedDict[str, bytes] = OrderedDict()
        self.revocations = InMemoryRevocations()
        # Called after an operator's write, before it is announced (devices flip or
        # clear their credentials' bits for trust bundles).
        self.on_change: list[Callable[[Subject], Awaitable[None]]] = []

    async def load_suspended(self) -> None:
        """(Re)load the suspended set from the database."""
        self.revocations.replace(await self._db.subjects.suspended_handles())

    async def enroll(self, sub: str) -> Subject:
        """The citizen ``sub``, enrolled on first sight with a fresh random handle."""
        existing = await self._db.subjects.get(sub)
        if existing is not None:
            return existing
        for _ in range(_ENROL_ATTEMPTS):
            try:
                return await self._db.subjects.enroll(
                    sub, handle=os.urandom(HANDLE_BYTES), now=int(self._clock())
                )
            except HandleTaken:
                continue
        raise StorageError("could not allocate a subject handle")

    async def handle_for_code(self, sub: str) -> bytes:
        """The handle to issue ``sub``'s code for: from memory for a known citizen (no
        database round trip), else enrolled (the database). Raises
        :class:`~suishen.errors.SubjectSuspended` for a suspended citizen."""
        handle = self._handles.get(sub)
        if handle is not None:
            self._handles.move_to_end(sub)
            if self.revocations.subject_revoked(handle):
                raise SubjectSuspended("this citizen's code is suspended")
            return handle
        subject = await self.enroll(sub)
        self._handles[sub] = subject.handle
        if len(self._handles) > self._local_max:
            self._handles.popitem(last=False)
        # the code is likely verified by this process: warm its cache of the citizen
        self.remember(subject)
        if subject.suspended or self.revocations.subject_revoked(subject.handle):
            raise SubjectSuspended("this citizen's code is suspended")
        return subject.handle

    async def get(self, sub: str) -> Subject | None:
        """The citizen ``sub`` as stored."""
        return await self._db.subjects.get(sub)

    async def history(self, sub: str, *, limit: int, before: int | None) -> HistoryPage:
        """Every verification of the citizen's codes, newest first (the right to know
        who read their code); an unknown citizen has an empty history."""
        subject = await self._db.subjects.get(sub)
        if subject is None:
            return HistoryPage([], None)
        entries = await self._db.audit.for_subject(subject.handle, limit=limit,
                                                   before_id=before)
        return HistoryPage(entries, entries[-1].id if len(entries) == limit else None)

    async def upsert(self, sub: str, *, status: str, attributes: Mapping[str, str]) -> Subject:
        """Create or update a citizen, then make every process apply the change."""
        subject = None
        for _ in range(_ENROL_ATTEMPTS):
            try:
                subject = await self._db.subjects.upsert(
                    sub,
                    status=status,
                    attributes=attributes,
                    handle=os.urandom(HANDLE_BYTES),
                    now=int(self._clock()),
                )
                break
            except HandleTaken:
                continue
        if subject is None:
            raise StorageError("could not allocate a subject handle")
        for callback in self.on_change:
            await callback(subject)
        event = Event("subject", {"handle": subject.handle.hex(), "status": subject.status})
        await self.apply(event)  # this process at once, whatever the feed does
        try:
            await self._state.publish(event)
        except BackendUnavailable:
            log.warning("subject change not announced: state backend unavailable")
        return subject

    async def apply(self, event: Event) -> None:
        """Apply a ``subject`` event: suspended set and cached copies."""
        try:
            handle = bytes.fromhex(event.data["handle"])
        except (KeyError, TypeError, ValueError):
            log.warning("ignored malformed subject event")
            return
        if event.data.get("status") == "suspended":
            self.revocations.add(handle)
        else:
            self.revocations.discard(handle)
        self._local.pop(handle, None)
        # If the shared cache is down, its entries expire after subject_cache_seconds.
        with contextlib.suppress(BackendUnavailable):
            await self._state.cache_delete(_cache_key(handle))

    def cached(self, handle: bytes) -> CachedSubject | None:
        """The citizen's status and attributes when this process holds them fresh."""
        hit = self._local.get(handle)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def lookup(self, handle: bytes) -> CachedSubject | None:
        """Status and attributes for the verify path: memory, shared cache, database.

        Raises :class:`BackendUnavailable` only when no level could answer.
        """
        hit = self.cached(handle)
        if hit is not None:
            return hit
        now = time.monotonic()
        key = _cache_key(handle)
        cached: CachedSubject | None = None
        try:
            raw = await self._state.cache_get(key)
        except BackendUnavailable:
            raw = None
        if raw is not None:
            data = json.loads(raw)
            cached = CachedSubject(data["s"], data["a"])
        else:
            subject = await self._db.subjects.get_by_handle(handle)
            if subject is None:
                return None
            cached = CachedSubject(subject.status, dict(subject.attributes))
            blob = json.dumps({"s": cached.status, "a": cached.attributes}).encode()
            with contextlib.suppress(BackendUnavailable):
                await self._state.cache_set(key, blob, ttl_seconds=self._ttl)
        self._remember(handle, cached, now)
        return cached

    def remember(self, subject: Subject) -> None:
        """Warm the local cache (issuance does this: the code is likely verified here)."""
        self._remember(
            subject.handle,
            CachedSubject(subject.status, dict(subject.attributes)),
            time.monotonic(),
        )

    def _remember(self, handle: bytes, cached: CachedSubject, now: float) -> None:
        local = self._local
        local[handle] = (now + self._ttl, cached)
        local.move_to_end(handle)
        if len(local) > self._local_max:
            local.popitem(last=False)


def _cache_key(handle: bytes) -> str:
    return "subj:" + handle.hex()
