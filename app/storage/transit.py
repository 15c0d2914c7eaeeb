"""Fare tables and journey records: the types and the repository interface (SPEC.md
§6.2, issue 10). Implementations: :mod:`.sqlite_transit`, :mod:`.postgres_transit`; the
contract suite in ``tests/contract/test_transit.py`` runs against both.

* A **fare table** is stored per network as the JSON text that
  :func:`suishen.verifiers.transit.parse_fare_table` accepted (re-validated on every
  read, so a table edited behind the service's back cannot slip past the rules).
* A **journey record** is one closed journey or bus tap
  (:class:`suishen.verifiers.transit.Journey`) with the citizen's handle, when it was
  closed (``at_ms``: the day it is settled on, UTC) and whether it came from an
  offline gate. Records are append-only, except a citizen's *offline* journeys on one
  network, which each gate upload replaces (re-paired from every offline tap).
* A **gate tap** (:class:`GateTap`) is one tap an offline gate accepted and the
  service re-verified (``POST /v1/gate-events``), unique per (partner, gate, use).
  :meth:`TransitRepository.store_gate_taps` stores a batch of them, their history rows
  and the re-paired journeys in ONE transaction: a refused upload writes nothing.
* A **slot move** (:class:`SlotMove`) is what a transit tap will do to the citizen's
  journey slot, fixed before the slot is read, so that the fast state applies it in the
  same atomic step as the code's single use
  (:meth:`suishen.app.storage.base.StateBackend.first_use_and_move`: one Redis round
  trip per tap instead of two). It is a *prediction*: the journey rules stay in
  :func:`suishen.verifiers.transit.tap`, which the caller runs on the value found and
  compares with what the move left; a disagreement (possible only for a slot value
  that :func:`suishen.app.services.transit.encode_entry` did not write) is repaired with
  a compare-and-set. ``tests/test_slot_move.py`` proves prediction and rules agree on
  every well-formed value; ``tests/contract/test_transit.py`` that the Redis script and
  :meth:`SlotMove.predict` agree on every value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from suishen.verifiers.transit import Journey, JourneyGroup, JourneyStatus

if TYPE_CHECKING:
    from suishen.app.storage.base import AuditRecord

class MoveKind(Enum):
    """How a tap moves the journey slot (the Redis script receives the value)."""

    KEEP = "keep"  # a flat fare: the slot is not touched
    CLEAR = "clear"  # an exit: the open entry (if any) is closed
    ENTER = "enter"  # an entry: opens one, unless the open one is a passback


# The ``at`` of a slot value ``[at, checkpoint]`` (what encode_entry writes). The Redis
# script matches the same prefix with the Lua pattern '^%[(%-?%d+),'.
_SLOT_AT = re.compile(rb"\[(-?[0-9]+),")


@dataclass(frozen=True, slots=True)
class SlotMove:
    """A tap's change to a journey slot, decided before the slot is read (see the module
    docstring). ``ENTER`` stores ``value`` for ``ttl_seconds`` unless the slot holds an
    entry made less than ``passback_seconds`` before ``now`` (a passback: unchanged)."""

    kind: MoveKind
    value: bytes = b""
    now: int = 0
    passback_seconds: int = 0
    ttl_seconds: int = 1

    def predict(self, found: bytes | None) -> bytes | None:
        """The slot's value after this move, given its value ``found`` before (the
        reference for every state backend's implementation)."""
        if self.kind is MoveKind.KEEP:
            return found
        if self.kind is MoveKind.CLEAR:
            return None
        if found is not None:
            at = _SLOT_AT.match(found)
            if at is not None and max(0, self.now - int(at.group(1))) < self.passback_seconds:
                return found
        return self.value


KEEP_SLOT = SlotMove(MoveKind.KEEP)

# One day's settlement, added up where the rows are (journeys_at index on at_ms), the
# same text on both backends (SQLite's marks are ``?``). No ORDER BY: PostgreSQL would
# sort text by the database's collation, not as Python does; journey_groups_of sorts.
JOURNEY_GROUPS_SQL = (
    "SELECT operator, network, status, count(*), sum(fare) FROM journeys "
    "WHERE at_ms >= $1 AND at_ms < $2 GROUP BY operator, network, status"
)


def journey_groups_of(rows: Iterable[Sequence[Any]]) -> list[JourneyGroup]:
    """:data:`JOURNEY_GROUPS_SQL`'s rows as groups, in :func:`group_journeys`' order."""
    groups = [JourneyGroup(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]))
              for r in rows]
    return sorted(groups, key=lambda g: (g.operator, g.network, g.status))


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

    def as_json(self) -> str:
        """The record as ASCII-only JSON (NUL and lone surrogates escaped, the handle in
        hex): storable anywhere, for the dead-letter table."""
        import json

        values = dict(zip(JOURNEY_COLUMNS.replace(" ", "").split(","), self.as_row(),
                          strict=True))
        values["subject_handle"] = bytes(self.subject_handle).hex()
        return json.dumps(values, ensure_ascii=True, sort_keys=True)

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


# The gate_events table's columns, in GateTap order.
GATE_COLUMNS = (
    "partner_id, gate, use_key, subject_handle, scene, direction, checkpoint, decided_at"
)

# What store_gate_taps says of each tap: stored; already stored (a re-sent entry:
# nothing changes); stored, but the same use was already stored from another gate.
ACCEPTED, DUPLICATE, DUPLICATE_USE = "accepted", "duplicate", "duplicate_use"


@dataclass(frozen=True, slots=True)
class GateTap:
    """One tap an offline gate accepted, re-verified by the service. ``use_key`` names
    the code's use (what its signatures cover, with scene and direction); ``gate`` is
    the gate's checkpoint ('' when none)."""

    partner_id: str
    gate: str
    use_key: bytes
    subject_handle: bytes
    scene: str
    direction: str | None
    checkpoint: str | None
    decided_at: int

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> GateTap:
        """A row in :data:`GATE_COLUMNS` order (drivers may give bytes as memoryview)."""
        partner, gate, use, handle, scene, direction, checkpoint, at = values
        return cls(partner, gate, bytes(use), bytes(handle), scene, direction, checkpoint,
                   int(at))

    def as_row(self) -> tuple[Any, ...]:
        """The values in :data:`GATE_COLUMNS` order."""
        return (self.partner_id, self.gate, self.use_key, self.subject_handle, self.scene,
                self.direction, self.checkpoint, self.decided_at)


# (index in the batch, outcome) -> the history row of a stored tap.
AuditOf = Callable[[int, str], "AuditRecord"]
# (handle, scene, every stored tap of that citizen in that scene) -> the citizen's
# offline journeys on that network, or None when the scene has no journeys.
Pairing = Callable[[bytes, str, list[GateTap]], "list[JourneyRecord] | None"]


class TransitRepository(Protocol):
    """Fare tables and journey records."""

    async def put_fare_table(self, network: str, body: str, *, now: int) -> None:
        """Store (create or replace) the fare table of ``network`` (validated JSON)."""

    async def fare_tables(self) -> dict[str, str]:
        """Every stored fare table: network -> JSON text."""

    async def append_journeys(self, records: Sequence[JourneyRecord]) -> None:
        """Store a batch of journey records (all or nothing)."""

    async def dead_letter_journey(self, record: JourneyRecord, *, error: str,
                                  now_ms: int) -> None:
        """Set aside a record the database refused for its content."""

    async def journey_dead_letters(self) -> list[str]:
        """The records set aside (JSON text), oldest first."""

    async def journeys_for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[JourneyEntry]:
        """A citizen's journeys, newest first, with ids below ``before_id`` if given."""

    async def journey_groups(self, start_ms: int, end_ms: int) -> list[JourneyGroup]:
        """The journeys closed in ``[start_ms, end_ms)`` added up by operator, network
        and status (settlement of one day), sorted: the database does the sums (a day
        of a city's metro is millions of rows; settlement must not hold them)."""

    async def store_gate_taps(self, taps: Sequence[GateTap], *, received_at: int,
                              audit_of: AuditOf, pairing: Pairing) -> list[str]:
        """In one transaction (uploads serialised): store each new tap (outcome
        :data:`ACCEPTED`, or :data:`DUPLICATE_USE` when another gate stored the same
        use; :data:`DUPLICATE` when this gate already did, storing nothing) with its
        history row ``audit_of(index, outcome)``; then, for every (citizen, scene) that
        got a new tap, replace the citizen's offline journeys on that network with
        ``pairing(...)`` over all of their stored taps. The outcomes, in order."""
