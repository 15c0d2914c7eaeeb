"""Transit journeys (SPEC.md §6.2), pure: fare tables, entry/exit pairing, passback,
fares, settlement. Time is a parameter; state comes in and goes out as values, so the
service (online, shared state in Redis or in process) and the upload pairing (offline
gates) run the same rules.

Networks
--------
``metro`` and ``ferry`` are entry/exit networks, ``bus`` is single-tap. A fare table
names the operator who collects the network's fares. Entry/exit tables map stations to
zones and a number of zones crossed (``abs(zone_out - zone_in)``) to a fare; a bus table
has one ``flat_fare``. Money is integer fen: a float anywhere in a table is refused.

Stations
--------
A checkpoint id names its station as everything before its last ``-``:
``L2-S12-G3`` is gate 3 of station ``L2-S12`` (:func:`station_of`). A checkpoint without
a ``-`` is its own station.

Journey rules (per citizen and network)
---------------------------------------
* ``in`` with no open journey opens one.
* ``in`` while a journey entered less than ``passback_seconds`` ago is open:
  ``passback`` (refused; the open journey stays).
* ``in`` while an older journey is open: that journey closes ``incomplete`` at the
  maximum fare, and the new entry goes through.
* ``out`` with an open journey closes it ``complete`` at the fare for the zones
  crossed; an unknown station (in or out) is charged the maximum fare; a fare is never
  above ``max_fare``.
* ``out`` with no open journey: ``no_entry`` where the table says ``refuse``, else a
  journey ``exit_without_entry`` at the maximum fare.
* a bus tap is a ``single_tap`` journey at the flat fare.

Settlement rule
---------------
Every journey belongs to exactly one network, so each fen it costs is accounted to the
operator of that network's fare table at the time of the journey — a metro journey is
the metro company's, a bus or ferry tap the bus-and-ferry company's. Nothing is split,
so the totals per operator add up to the sum of all fares (:func:`settle`). The
service settles from :class:`JourneyGroup` s that the database adds up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from suishen.errors import VerificationError
from suishen.verifiers.reasons import Reason

NETWORKS = {"metro": "entry_exit", "ferry": "entry_exit", "bus": "flat"}
EXIT_POLICIES = ("refuse", "charge_max")
MAX_FEN = 100_000_00  # 100,000 yuan: far above any fare, a bound against typos
MAX_STATIONS = 10_000
MAX_ZONE = 1_000
DEFAULT_PASSBACK_SECONDS = 1_800
_STATION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-")


class FareTableError(VerificationError):
    """A fare table that is not valid; ``problems`` lists every field that is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class JourneyStatus(StrEnum):
    """How a journey ended (SPEC.md §6.2)."""

    OPEN = "open"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    EXIT_WITHOUT_ENTRY = "exit_without_entry"
    SINGLE_TAP = "single_tap"


@dataclass(frozen=True, slots=True)
class FareTable:
    """A network's fares, validated (see :func:`parse_fare_table`)."""

    network: str
    operator: str
    max_fare: int
    zones: Mapping[str, int] = field(default_factory=dict)
    fares: Mapping[int, int] = field(default_factory=dict)
    exit_without_entry: str = "refuse"
    flat_fare: int | None = None

    @property
    def flat(self) -> bool:
        """True for a single-tap network (bus)."""
        return self.flat_fare is not None

    def fare(self, entry_station: str | None, exit_station: str | None) -> int:
        """The fare between two stations (the maximum fare for an unknown one)."""
        if self.flat_fare is not None:
            return self.flat_fare
        zone_in = None if entry_station is None else self.zones.get(entry_station)
        zone_out = None if exit_station is None else self.zones.get(exit_station)
        if zone_in is None or zone_out is None:
            return self.max_fare
        crossed = abs(zone_out - zone_in)
        fare = self.fares.get(crossed)
        if fare is None:  # more zones than the table lists: the dearest listed, capped
            fare = max(self.fares.values(), default=self.max_fare)
        return min(fare, self.max_fare)

    def as_json(self) -> dict[str, Any]:
        """The table as ``PUT /v1/admin/fares/{network}`` takes it (and GET gives it)."""
        out: dict[str, Any] = {"operator": self.operator, "max_fare": self.max_fare}
        if self.flat_fare is not None:
            out["flat_fare"] = self.flat_fare
        else:
            out["zones"] = dict(sorted(self.zones.items()))
            out["fares"] = {str(k): v for k, v in sorted(self.fares.items())}
            out["exit_without_entry"] = self.exit_without_entry
        return out


def parse_fare_table(network: str, body: object) -> FareTable:
    """Validate a fare table; :class:`FareTableError` lists every problem at once."""
    problems: list[str] = []
    kind = NETWORKS.get(network) if isinstance(network, str) else None
    if kind is None:
        raise FareTableError([f"network: must be one of {sorted(NETWORKS)}"])
    if not isinstance(body, dict):
        raise FareTableError(["body: must be an object"])
    allowed = {"operator", "max_fare"} | (
        {"flat_fare"} if kind == "flat" else {"zones", "fares", "exit_without_entry"}
    )
    for extra in sorted(set(body) - allowed, key=str):
        problems.append(f"{extra}: not a member of a {network} fare table")
    operator = body.get("operator")
    if not (isinstance(operator, str) and 1 <= len(operator) <= 64 and _is_ident(operator)):
        problems.append("operator: 1-64 characters of A-Z a-z 0-9 . _ : / -")
    max_fare = _fen(body.get("max_fare"), "max_fare", problems)
    if kind == "flat":
        flat = _fen(body.get("flat_fare"), "flat_fare", problems)
        if flat is not None and max_fare is not None and flat > max_fare:
            problems.append("flat_fare: above max_fare")
        if problems:
            raise FareTableError(problems)
        assert isinstance(operator, str) and max_fare is not None and flat is not None
        return FareTable(network, operator, max_fare, flat_fare=flat)
    zones = _zones(body.get("zones"), problems)
    fares = _fares(body.get("fares"), max_fare, problems)
    policy = body.get("exit_without_entry", "refuse")
    if policy not in EXIT_POLICIES:
        problems.append(f"exit_without_entry: one of {list(EXIT_POLICIES)}")
    if problems:
        raise FareTableError(problems)
    assert isinstance(operator, str) and max_fare is not None
    return FareTable(network, operator, max_fare, zones, fares, str(policy))


def _fen(value: object, name: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{name}: an integer number of fen (never a float)")
        return None
    if not 0 <= value <= MAX_FEN:
        problems.append(f"{name}: between 0 and {MAX_FEN} fen")
        return None
    return value


def _zones(value: object, problems: list[str]) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        problems.append("zones: a non-empty object station -> zone number")
        return {}
    if len(value) > MAX_STATIONS:
        problems.append(f"zones: at most {MAX_STATIONS} stations")
        return {}
    zones: dict[str, int] = {}
    for station, zone in value.items():
        if not (isinstance(station, str) and 1 <= len(station) <= 64 and _is_ident(station)):
            problems.append(f"zones: station {str(station)[:64]!r} is not a station id")
        elif isinstance(zone, bool) or not isinstance(zone, int) or not 0 <= zone <= MAX_ZONE:
            problems.append(f"zones.{station}: a zone number 0-{MAX_ZONE}")
        else:
            zones[station] = zone
    return zones


def _fares(value: object, max_fare: int | None, problems: list[str]) -> dict[int, int]:
    if not isinstance(value, dict) or not value:
        problems.append('fares: a non-empty object zones crossed ("0", "1", ...) -> fen')
        return {}
    fares: dict[int, int] = {}
    for crossed, fen in value.items():
        if not (isinstance(crossed, str) and crossed.isdigit() and crossed.isascii()
                and len(crossed) <= 4 and (crossed == "0" or not crossed.startswith("0"))):
            problems.append(f"fares: key {str(crossed)[:16]!r} is not a number of zones")
            continue
        amount = _fen(fen, f"fares.{crossed}", problems)
        if amount is None:
            continue
        if max_fare is not None and amount > max_fare:
            problems.append(f"fares.{crossed}: above max_fare")
        fares[int(crossed)] = amount
    if fares and 0 not in fares:
        problems.append('fares: "0" (a journey within one zone) is required')
    return fares


def _is_ident(text: str) -> bool:
    return all(c in _STATION_CHARS for c in text)


def station_of(checkpoint: str | None) -> str | None:
    """The station of a checkpoint: everything before its last ``-``."""
    if not checkpoint:
        return None
    head, sep, _ = checkpoint.rpartition("-")
    return head if sep and head else checkpoint


# --- journeys -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpenEntry:
    """A citizen's open journey on one network: where and when they entered."""

    checkpoint: str | None
    at: int


@dataclass(frozen=True, slots=True)
class Journey:
    """A closed journey (or a single tap), as it is recorded and shown."""

    network: str
    operator: str
    status: JourneyStatus
    fare: int
    entry_checkpoint: str | None = None
    entered_at: int | None = None
    exit_checkpoint: str | None = None
    exited_at: int | None = None

    @property
    def entry_station(self) -> str | None:
        """The station entered."""
        return station_of(self.entry_checkpoint)

    @property
    def exit_station(self) -> str | None:
        """The station left."""
        return station_of(self.exit_checkpoint)


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one tap: a refusal reason or None, the citizen's open entry after
    it, and the journeys it closed (an incomplete one, the completed one, a tap)."""

    reason: Reason | None
    open_entry: OpenEntry | None
    closed: tuple[Journey, ...] = ()

    @property
    def journey(self) -> Journey | None:
        """The journey this tap completed (what an exit's answer shows), if any."""
        for journey in self.closed:
            if journey.status is not JourneyStatus.INCOMPLETE:
                return journey
        return None


def tap(
    table: FareTable,
    open_entry: OpenEntry | None,
    *,
    direction: str | None,
    checkpoint: str | None,
    now: int,
    passback_seconds: int = DEFAULT_PASSBACK_SECONDS,
) -> Step:
    """Apply one accepted tap of a valid code to the citizen's state on this network."""
    if table.flat:
        single = Journey(table.network, table.operator, JourneyStatus.SINGLE_TAP,
                         table.fare(None, None), checkpoint, now)
        return Step(None, open_entry, (single,))
    if direction == "out":
        return _exit(table, open_entry, checkpoint, now)
    # A transit scene counts a missing direction as "in" (verifiers.policy).
    closed: tuple[Journey, ...] = ()
    if open_entry is not None:
        # A tap whose clock reading is older than the entry it found (two requests in
        # flight at once, two processes' clocks) counts as simultaneous with it.
        if max(0, now - open_entry.at) < passback_seconds:
            return Step(Reason.PASSBACK, open_entry)
        closed = (Journey(table.network, table.operator, JourneyStatus.INCOMPLETE,
                          table.max_fare, open_entry.checkpoint, open_entry.at),)
    return Step(None, OpenEntry(checkpoint, now), closed)


def _exit(table: FareTable, open_entry: OpenEntry | None, checkpoint: str | None,
          now: int) -> Step:
    if open_entry is None:
        if table.exit_without_entry == "refuse":
            return Step(Reason.NO_ENTRY, None)
        journey = Journey(table.network, table.operator, JourneyStatus.EXIT_WITHOUT_ENTRY,
                          table.max_fare, exit_checkpoint=checkpoint, exited_at=now)
        return Step(None, None, (journey,))
    fare = table.fare(station_of(open_entry.checkpoint), station_of(checkpoint))
    journey = Journey(table.network, table.operator, JourneyStatus.COMPLETE, fare,
                      open_entry.checkpoint, open_entry.at, checkpoint, now)
    return Step(None, None, (journey,))


# --- offline taps (gate uploads) ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class OfflineTap:
    """A tap an offline gate accepted, as uploaded: when, which way, where, and ``use``
    — what names the code's use (the same code at two gates shares it). ``gate`` only
    orders two uses of one code deterministically."""

    at: int
    direction: str | None
    checkpoint: str | None
    use: bytes
    gate: str = ""


def pair_offline(
    table: FareTable,
    taps: Iterable[OfflineTap],
    *,
    passback_seconds: int = DEFAULT_PASSBACK_SECONDS,
    forget_after: int | None = None,
) -> list[tuple[int, Journey]]:
    """Journeys from a citizen's offline taps on one network, in any upload order.

    Deterministic: of the taps sharing a ``use`` (one code accepted at two gates) the
    earliest counts (ties: the smaller gate, checkpoint) and the others are duplicate
    uses, fared nothing; the taps are then applied with :func:`tap` in time order (an
    entry before an exit of the same second). An open entry older than ``forget_after``
    seconds is forgotten, as the online slot expires. A tap that :func:`tap` refuses
    (a passback, an exit without entry under ``refuse``) closes nothing. Returns
    ``(closed_at, journey)`` in time order; the entry still open at the end is not a
    journey yet.
    """
    first: dict[bytes, OfflineTap] = {}
    for t in taps:
        held = first.get(t.use)
        if held is None or (t.at, t.gate, t.checkpoint or "") < (
            held.at, held.gate, held.checkpoint or ""
        ):
            first[t.use] = t
    ordered = sorted(first.values(),
                     key=lambda t: (t.at, t.direction == "out", t.checkpoint or "", t.use))
    open_entry: OpenEntry | None = None
    closed: list[tuple[int, Journey]] = []
    for t in ordered:
        if open_entry is not None and forget_after is not None and (
            t.at - open_entry.at >= forget_after
        ):
            open_entry = None
        step = tap(table, open_entry, direction=t.direction, checkpoint=t.checkpoint,
                   now=t.at, passback_seconds=passback_seconds)
        if step.reason is None:
            open_entry = step.open_entry
            closed.extend((t.at, journey) for journey in step.closed)
    return closed


# --- settlement -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OperatorTotals:
    """One operator's day: journeys by status and the fen they collected."""

    operator: str
    journeys: int
    fares: int
    by_status: Mapping[str, int]
    by_network: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class JourneyGroup:
    """The journeys of one day that share operator, network and status: how many, and
    their fen. A day's settlement is a handful of these, however many journeys it had,
    so a database can add them up (``GROUP BY``) instead of handing over every row."""

    operator: str
    network: str
    status: str
    journeys: int
    fares: int


def group_journeys(journeys: Iterable[Journey]) -> list[JourneyGroup]:
    """The :class:`JourneyGroup` s of ``journeys``, sorted (what a store's grouped query
    answers for the same journeys)."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for journey in journeys:
        key = (journey.operator, journey.network, journey.status.value)
        held = counts.setdefault(key, [0, 0])
        held[0] += 1
        held[1] += journey.fare
    return [JourneyGroup(*key, n, fen) for key, (n, fen) in sorted(counts.items())]


def settle_groups(groups: Iterable[JourneyGroup]) -> dict[str, OperatorTotals]:
    """Totals per operator (see the settlement rule in the module docstring) from the
    day's groups; journeys still ``open`` are not settled."""
    counts: dict[str, int] = {}
    fares: dict[str, int] = {}
    statuses: dict[str, dict[str, int]] = {}
    networks: dict[str, dict[str, int]] = {}
    for group in groups:
        if group.status == JourneyStatus.OPEN.value or group.journeys == 0:
            continue
        op = group.operator
        counts[op] = counts.get(op, 0) + group.journeys
        fares[op] = fares.get(op, 0) + group.fares
        by_status = statuses.setdefault(op, {})
        by_status[group.status] = by_status.get(group.status, 0) + group.journeys
        by_network = networks.setdefault(op, {})
        by_network[group.network] = by_network.get(group.network, 0) + group.fares
    return {
        op: OperatorTotals(op, counts[op], fares[op], statuses[op], networks[op])
        for op in sorted(counts)
    }


def settle(journeys: Iterable[Journey]) -> dict[str, OperatorTotals]:
    """Totals per operator of ``journeys`` (:func:`settle_groups` of their groups)."""
    return settle_groups(group_journeys(journeys))
