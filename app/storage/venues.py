"""Venues and check-ins: the types and the repository interface (SPEC.md §6.3, issue 11
part B). Implementations: :mod:`.sqlite_venues`, :mod:`.postgres_venues`; the contract
suite in ``tests/contract/test_venues.py`` runs against both.

* A **venue** row is what ``POST /v1/admin/venues`` registered, with the code text that
  was signed for it (the poster is always that code: a rotation of the venue keys never
  changes a printed code) and ``revoked_at`` once revoked (final).
* A **check-in** is one scan of a venue code by a citizen: the citizen's handle, the
  venue id and when (``at_ms``). Append-only. The owner's counts per hour are computed
  from these rows and never name anyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Venue:
    """A registered venue or shop (``info``: its public information, text to text)."""

    venue_id: str
    name: str
    address: str
    kind: str
    enterprise_id: str | None
    info: Mapping[str, str]
    code: str
    created_at: int
    revoked_at: int | None = None

    @property
    def revoked(self) -> bool:
        """True once revoked."""
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class CheckinRecord:
    """One check-in as queued and stored."""

    at_ms: int
    subject_handle: bytes
    venue_id: str


@dataclass(frozen=True, slots=True)
class CheckinEntry:
    """A stored check-in with its id (ids grow with time: the page cursor)."""

    id: int
    record: CheckinRecord


class VenueRepository(Protocol):
    """Venues and check-ins."""

    async def insert_venue(self, venue: Venue) -> bool:
        """Store a new venue; False (nothing written) when its id is taken."""

    async def get_venue(self, venue_id: str) -> Venue | None:
        """The venue, or None."""

    async def revoke_venue(self, venue_id: str, *, now: int) -> Venue | None:
        """Set ``revoked_at`` (kept when already set); the venue after, or None."""

    async def revoked_venues(self) -> list[str]:
        """The ids of every revoked venue."""

    async def append_checkins(self, records: Sequence[CheckinRecord]) -> None:
        """Store a batch of check-ins (all or nothing)."""

    async def checkins_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[CheckinEntry]:
        """A citizen's check-ins, newest first, with ids below ``before_id`` if given."""

    async def visits_per_hour(self, venue_id: str, start_ms: int,
                              end_ms: int) -> dict[int, int]:
        """Check-ins at a venue in ``[start_ms, end_ms)``: hour start (ms) -> count."""
