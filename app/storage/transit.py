"""Fare tables and journey records: the types and the repository interface (SPEC.md
§6.2, issue 10). Implementations: :mod:`.sqlite_transit`, :mod:`.postgres_transit`; the
contract suite in ``tests/contract/test_transit.py`` runs against both.

* A **fare table** is stored per network as the JSON text that
  :func:`suishen.verifiers.transit.parse_fare_table` accepted (re-validated on every
  read, so a table edited behind the service's back cannot slip past the rules).
* A **journey record** is one closed journey or bus tap
  (:class:`suishen.verifiers.transit.Journey`) with the citizen's handle, when it was
  closed (``at_ms``: the day it is settled on, UTC) and whether it came from an
  offline gate. Records are append-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from suishen.verifiers.transit import Journey, JourneyStatus

# The journeys table's columns, in JourneyRecord.as_row order, for both SQL backends.
JOURNEY_COLUMNS = (
    "at_ms, subject_handle, network, operator, status, fare, entry_checkpoint, "
    "entered_at, exit_checkpoint, exited_at, offline"
)


@dataclass(frozen=True, slots=True)
class JourneyRecord:
    """A closed journey as stored: who, when it was closed, and where it came from."""

    at_ms: int
    subject_handle: bytes
    journey: Journey
    offline: bool = False

    def as_row(self) -> tuple[Any, ...]:
        """The values in :data:`JOURNEY_COLUMNS` order."""
        j = self.journey
        return (self.at_ms, self.subject_handle, j.network, j.operator, j.status.value,
                j.fare, j.entry_checkpoint, j.entered_at, j.exit_checkpoint, j.exited_at,
                self.offline)

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> JourneyRecord:
        """Inverse of :meth:`as_row` (drivers may give the handle as a memoryview)."""
        (at_ms, handle, network, operator, status, fare, entry_cp, entered_at, exit_cp,
         exited_at, offline) = values
        journey = Journey(network, operator, JourneyStatus(status), int(fare), entry_cp,
                          entered_at, exit_cp, exited_at)
        return cls(int(at_ms), bytes(handle), journey, bool(offline))


@dataclass(frozen=True, slots=True)
class JourneyEntry:
    """A stored journey record with its id (ids grow with time: the page cursor)."""

    id: int
    record: JourneyRecord


class TransitRepository(Protocol):
    """Fare tables and journey records."""

    async def put_fare_table(self, network: str, body: str, *, now: int) -> None:
        """Store (create or replace) the fare table of ``network`` (validated JSON)."""

    async def fare_tables(self) -> dict[str, str]:
        """Every stored fare table: network -> JSON text."""

    async def append_journeys(self, records: Sequence[JourneyRecord]) -> None:
        """Store a batch of journey records (all or nothing)."""

    async def journeys_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[JourneyEntry]:
        """A citizen's journeys, newest first, with ids below ``before_id`` if given."""

    async def journeys_between(self, start_ms: int, end_ms: int) -> list[JourneyRecord]:
        """Every journey closed in ``[start_ms, end_ms)`` (settlement of one day)."""
