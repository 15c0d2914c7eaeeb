"""Transit journeys online (SPEC.md §6.2, issue 10): fare tables, the citizen's open
entry on the verify path, durable journey records, settlement. The rules are the pure
core's (:mod:`suishen.verifiers.transit`: ``parse_fare_table``, ``tap``, ``settle_groups``);
this module keeps state and records around them. Design: ``docs/transit.md``.

State
-----
A citizen's open entry on one network lives in a *journey slot* of the fast state
(Redis in production, the in-process state with its SQLite file on the embedded
default). The slot is named by ``HMAC-SHA256(secret, network || handle)`` (a secret
derived from the KEK), never by the handle itself: Redis never sees who travels. Its
value is the JSON ``[entered_at, entry_checkpoint]``; it expires after
:data:`SLOT_TTL_SECONDS` (an entry older than that is forgotten, not charged).

A tap reads *and moves* the slot in the same Redis script as the code's single-use
check (:meth:`StateBackend.first_use_and_move`, one round trip): the move
(:meth:`TransitService.move`, a :class:`~suishen.app.storage.transit.SlotMove`) is what
``tap()`` will decide, fixed before the slot is read — an entry opens one unless the
open one is a passback, an exit closes it, a flat fare leaves it — and the script
applies it atomically, so two taps of one citizen at once are ordered by Redis. Then
``tap()`` decides on the value found, and :meth:`TransitService.step` compares its
decision with what the move left: they agree for every value this module writes
(``tests/test_slot_move.py``); for any other value (a slot written by hand) the
decision is written with a compare-and-set (:meth:`StateBackend.swap_slot`) and, when
another process changed the slot in between, decided again on what it found. A tap the
service then refuses after all (the citizen suspended before the event arrived) has
its move undone the same way (:meth:`TransitService.undo`).
"""

from __future__ import annotations

import json
import logging
from datetime import date

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.queued import QueuedWriter, Sink
from suishen.app.storage.base import Database, Event, StateBackend
from suishen.app.storage.transit import (
    KEEP_SLOT,
    JourneyEntry,
    JourneyRecord,
    MoveKind,
    SlotMove,
)
from suishen.errors import BackendUnavailable
from suishen.keys.blinding import KeyedHmac
from suishen.timefmt import day_ms
from suishen.verifiers.transit import (
    NETWORKS,
    FareTable,
    FareTableError,
    JourneyGroup,
    OpenEntry,
    OperatorTotals,
    Step,
    parse_fare_table,
    settle_groups,
    tap,
)

log = logging.getLogger("suishen.transit")

SLOT_TTL_SECONDS = 2 * 86_400
MAX_SWAP_ATTEMPTS = 16


def encode_entry(entry: OpenEntry | None) -> bytes | None:
    """The slot value of an open entry (None: no open entry)."""
    if entry is None:
        return None
    return _COMPACT.encode([entry.at, entry.checkpoint]).encode()


# json.dumps(separators=...) builds a new encoder on every call (about 1 us of a tap's
# two encodings); one encoder with the same options gives the same bytes.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def decode_entry(value: bytes | None) -> OpenEntry | None:
    """Inverse of :func:`encode_entry`; an unreadable value counts as no entry."""
    if value is None:
        return None
    try:
        at, checkpoint = json.loads(value)
    except (ValueError, TypeError):
        log.warning("unreadable journey slot ignored")
        return None
    if not isinstance(at, int) or not (checkpoint is None or isinstance(checkpoint, str)):
        return None
    return OpenEntry(checkpoint, at)


def slot_move(table: FareTable, *, direction: str | None, checkpoint: str | None, now: int,
              passback_seconds: int) -> SlotMove:
    """What :func:`~suishen.verifiers.transit.tap` will do to the slot (see the module
    docstring), as the prediction :meth:`StateBackend.first_use_and_move` applies: a
    flat fare keeps it, an exit clears it, an entry opens one unless it is a passback."""
    if table.flat:
        return KEEP_SLOT
    if direction == "out":
        return SlotMove(MoveKind.CLEAR)
    return SlotMove(MoveKind.ENTER, encode_entry(OpenEntry(checkpoint, now)) or b"", now,
                    passback_seconds, SLOT_TTL_SECONDS)


class JourneyWriter(QueuedWriter[JourneyRecord]):
    """Journey records into the database, off the hot path, by the one queued writer
    (:mod:`suishen.app.services.queued`, as audit records): batches, retried with
    backoff while the database is down, drained on a graceful stop; a record refused
    for its content is set aside in ``journey_dead_letter``
    (``suishen_journeys_dead_letter_total``), a full queue drops its oldest
    (``suishen_journeys_dropped_total``)."""

    def __init__(self, db: Database, metrics: Metrics, *, batch_size: int,
                 flush_interval: float, max_queue: int, clock: Clock = SYSTEM_CLOCK) -> None:
        async def set_aside(record: JourneyRecord, error: str, now_ms: int) -> None:
            await db.transit.dead_letter_journey(record, error=error, now_ms=now_ms)

        sink: Sink[JourneyRecord] = Sink(
            store=lambda batch: db.transit.append_journeys(batch),  # noqa: PLW0108 - per call
            set_aside=set_aside,
            describe=JourneyRecord.as_json,
            made_at=lambda record: record.at_ms / 1000,
            written=metrics.journeys_written,
            dropped=metrics.journeys_dropped,
            dead_letter=metrics.journeys_dead_letter,
        )
        super().__init__(sink, name="journeys", batch_size=batch_size,
                         flush_interval=flush_interval, max_queue=max_queue, clock=clock)


class TransitService:
    """Fare tables (cached in every process, kept current by the change feed) and the
    journey step of a transit verification."""

    def __init__(self, db: Database, state: StateBackend, *, secret: bytes,
                 writer: JourneyWriter, metrics: Metrics, passback_seconds: int,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._state = state
        self._slot_mac = KeyedHmac(secret)  # keyed once
        self.writer = writer
        self._metrics = metrics
        self.passback_seconds = passback_seconds
        self._clock = clock
        self._tables: dict[str, FareTable] = {}

    # --- fare tables ------------------------------------------------------------------
    def table(self, network: str) -> FareTable | None:
        """The cached fare table of ``network`` (a scene name), or None."""
        return self._tables.get(network)

    async def load(self) -> None:
        """(Re-)read every fare table from the database (start-up, resync)."""
        tables: dict[str, FareTable] = {}
        for network, body in (await self._db.transit.fare_tables()).items():
            try:
                tables[network] = parse_fare_table(network, json.loads(body))
            except (FareTableError, ValueError) as exc:
                log.error("stored fare table of %s ignored: %s", network[:16], exc)
        self._tables = tables

    async def put(self, network: str, body: object) -> FareTable:
        """Validate (``FareTableError`` lists the problems), store, and tell every
        process (a ``fares`` event; the periodic resync is the safety net)."""
        table = parse_fare_table(network, body)
        await self._db.transit.put_fare_table(
            network, json.dumps(table.as_json(), sort_keys=True), now=int(self._clock())
        )
        self._tables[network] = table
        await self._state.publish(Event("fares", {"network": network}))
        return table

    async def get(self, network: str) -> FareTable | None:
        """The stored fare table of ``network`` (read from the database)."""
        body = (await self._db.transit.fare_tables()).get(network)
        return None if body is None else parse_fare_table(network, json.loads(body))

    async def apply(self, event: Event) -> None:
        """A ``fares`` event: re-read the tables."""
        try:
            await self.load()
        except BackendUnavailable:
            log.warning("fare tables not reloaded: database unavailable")

    # --- journeys ---------------------------------------------------------------------
    def slot(self, handle: bytes, network: str) -> bytes:
        """The journey slot of a citizen on a network: a keyed hash, never the handle."""
        return self._slot_mac.mac(network.encode() + b"\x00" + handle)[:20]

    def move(self, table: FareTable, *, direction: str | None, checkpoint: str | None,
             now: int) -> SlotMove:
        """:func:`slot_move` with this service's passback window."""
        return slot_move(table, direction=direction, checkpoint=checkpoint, now=now,
                         passback_seconds=self.passback_seconds)

    async def step(self, table: FareTable, handle: bytes, found: bytes | None, *,
                   direction: str | None, checkpoint: str | None, now: int,
                   after: bytes | None = None, moved: bool = False) -> Step:
        """Apply one tap of a valid code to the citizen's open entry (``found``: the slot
        as read with the single-use check; ``moved``: that check also applied
        :meth:`move`, leaving ``after``), store the new entry, queue the closed journeys.
        A refused tap (``step.reason``) leaves the slot as it was found."""
        slot = self.slot(handle, table.network)
        held = after if moved else found  # what the slot holds, as far as we know
        for _ in range(MAX_SWAP_ATTEMPTS):
            step = tap(table, decode_entry(found), direction=direction, checkpoint=checkpoint,
                       now=now, passback_seconds=self.passback_seconds)
            new = found if step.reason is not None else encode_entry(step.open_entry)
            if new != held:
                done, current = await self._state.swap_slot(
                    slot, expected=held, value=new, ttl_seconds=SLOT_TTL_SECONDS)
                if not done:
                    self._metrics.journey_conflicts.inc()
                    found = held = current
                    continue
            if step.reason is None:
                for journey in step.closed:
                    self.writer.record(JourneyRecord(now * 1000, handle, journey))
            return step
        raise BackendUnavailable("journey state kept changing; tap not decided")

    async def undo(self, table: FareTable, handle: bytes, *, found: bytes | None,
                   after: bytes | None) -> None:
        """Put back the slot a move changed for a tap that was refused after all (one
        compare-and-set: if another tap has moved it since, that one stands)."""
        if after == found:
            return
        try:
            await self._state.swap_slot(self.slot(handle, table.network), expected=after,
                                        value=found, ttl_seconds=SLOT_TTL_SECONDS)
        except BackendUnavailable:
            log.warning("journey slot of a refused tap not restored: state unavailable")

    async def history(self, handle: bytes, *, limit: int,
                      before: int | None) -> tuple[list[JourneyEntry], int | None]:
        """A citizen's journeys, newest first, and the cursor of the next page."""
        entries = await self._db.transit.journeys_for_subject(handle, limit=limit,
                                                              before_id=before)
        return entries, (entries[-1].id if len(entries) == limit else None)

    async def settlement(self, day: date) -> tuple[list[JourneyGroup], dict[str, OperatorTotals]]:
        """The journeys closed on ``day`` (UTC), added up by the database, and the
        totals per operator."""
        groups = await self._db.transit.journey_groups(*day_ms(day))
        return groups, settle_groups(groups)


def is_transit(scene: str) -> bool:
    """True for a scene that is a transit network (metro, ferry, bus)."""
    return scene in NETWORKS
