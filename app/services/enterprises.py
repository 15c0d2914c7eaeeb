"""Enterprises in a running service (SPEC.md §6.3, issue 11): operator writes, and the
in-memory maps that issuance and the verify hot path read (no database read on either).

Design (``docs/enterprise.md``): each (enterprise, agent) pair has an **agency**, a
random 10-byte handle allocated when the agent is added and deleted when the agent is
removed. An enterprise code is the personal layout with ``kind = 2`` and ``sub`` = the
agency handle blinded per code (``suishen.keys.blinding``): 116 bytes, QR 7-M, and two
codes of one enterprise share no identifying bytes. Verifying maps the agency back to
the enterprise and the agent here.

Every process keeps ``agency handle -> (enterprise, agency)`` and ``enterprise_id ->
enterprise`` in memory, loaded at start-up, amended by ``enterprise`` events on the
change feed (a suspension or a removed agent reaches every process within a second)
and re-read on every resync (the safety net behind the feed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.services.subjects import SubjectService
from suishen.app.storage.base import Database, Event, StateBackend
from suishen.app.storage.enterprises import Agency, AttributeValue, Enterprise
from suishen.codecs.sc1 import HANDLE_BYTES
from suishen.errors import BackendUnavailable, StorageError

log = logging.getLogger("suishen.enterprises")
_ALLOCATE_ATTEMPTS = 5
EVENT_KIND = "enterprise"


@dataclass(frozen=True, slots=True)
class AgencyView:
    """An agency as the verify path sees it: the enterprise (as last loaded) and the
    agent."""

    enterprise: Enterprise
    agency: Agency


class EnterpriseService:
    """Operator writes and the in-memory directory of enterprises and agencies."""

    def __init__(self, db: Database, state: StateBackend, *, subjects: SubjectService,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._state = state
        self._subjects = subjects
        self._clock = clock
        self._by_id: dict[str, Enterprise] = {}
        self._by_agency: dict[bytes, AgencyView] = {}

    # --- the in-memory directory --------------------------------------------------------
    def agency(self, handle: bytes) -> AgencyView | None:
        """The enterprise and agent behind an agency handle (from memory), or None when
        no such agency exists (any more)."""
        return self._by_agency.get(handle)

    def agency_of(self, enterprise_id: str, sub: str) -> AgencyView | None:
        """The agency of citizen ``sub`` in enterprise ``enterprise_id`` (from memory),
        or None when the enterprise is unknown or ``sub`` is not one of its agents."""
        enterprise = self._by_id.get(enterprise_id)
        if enterprise is None:
            return None
        for agency in enterprise.agencies:
            if agency.agent_sub == sub:
                return AgencyView(enterprise, agency)
        return None

    def _install(self, enterprise_id: str, enterprise: Enterprise | None) -> None:
        """Replace what memory holds of one enterprise (no await: atomic for the loop)."""
        old = self._by_id.pop(enterprise_id, None)
        if old is not None:
            for agency in old.agencies:
                self._by_agency.pop(agency.handle, None)
        if enterprise is not None:
            self._by_id[enterprise_id] = enterprise
            for agency in enterprise.agencies:
                self._by_agency[agency.handle] = AgencyView(enterprise, agency)

    async def load(self) -> None:
        """(Re-)read every enterprise and agency (start-up, resync)."""
        enterprises = await self._db.enterprises.all()
        by_id = {e.enterprise_id: e for e in enterprises}
        by_agency = {a.handle: AgencyView(e, a) for e in enterprises for a in e.agencies}
        self._by_id, self._by_agency = by_id, by_agency

    async def apply(self, event: Event) -> None:
        """An ``enterprise`` event: re-read that enterprise."""
        enterprise_id = event.data.get("enterprise_id")
        if not isinstance(enterprise_id, str):
            log.warning("ignored malformed enterprise event")
            return
        try:
            self._install(enterprise_id, await self._db.enterprises.get(enterprise_id))
        except BackendUnavailable:
            log.warning("enterprise not reloaded: database unavailable")

    # --- operator writes ----------------------------------------------------------------
    async def get(self, enterprise_id: str) -> Enterprise | None:
        """The enterprise as stored (read from the database)."""
        return await self._db.enterprises.get(enterprise_id)

    async def put(
        self,
        enterprise_id: str,
        *,
        name: str,
        uscc: str,
        status: str,
        attributes: Mapping[str, AttributeValue],
        agents: Sequence[str],
    ) -> Enterprise:
        """Create or replace an enterprise (the values are validated by the caller);
        agents are enrolled as citizens on first sight. Every process applies the change
        within a second (an ``enterprise`` event; the periodic resync is the safety
        net)."""
        members = []
        for sub in agents:
            subject = await self._subjects.enroll(sub)
            members.append((sub, subject.handle))
        stored: Enterprise | None = None
        for attempt in range(_ALLOCATE_ATTEMPTS):
            fresh = [Agency(os.urandom(HANDLE_BYTES), sub, handle) for sub, handle in members]
            try:
                stored = await self._db.enterprises.put(
                    enterprise_id, name=name, uscc=uscc, status=status,
                    attributes=attributes, agents=fresh, now=int(self._clock()))
                break
            except BackendUnavailable:
                raise
            except StorageError:  # an agency handle clash (2^-80 per pair): new handles
                if attempt + 1 == _ALLOCATE_ATTEMPTS:
                    raise
        assert stored is not None
        self._install(enterprise_id, stored)  # this process at once, whatever the feed does
        try:
            await self._state.publish(Event(EVENT_KIND, {"enterprise_id": enterprise_id}))
        except BackendUnavailable:
            log.warning("enterprise change not announced: state backend unavailable")
        return stored
