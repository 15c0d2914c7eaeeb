"""Transit journeys, pure (verifiers/transit.py) with a fixed ``now``: fare tables,
every journey status and boundary (passback window edges, max fare, zones), and
settlement totals that reconcile to the fen (issue 10 items 1, 2, 4, 6 — pure part)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.verifiers.reasons import Reason
from suishen.verifiers.transit import (
    FareTable,
    FareTableError,
    Journey,
    JourneyStatus,
    OfflineTap,
    OpenEntry,
    group_journeys,
    pair_offline,
    parse_fare_table,
    settle,
    settle_groups,
    station_of,
    tap,
)

T0 = 1_800_000_000
PASSBACK = 1_800

METRO: dict[str, Any] = {
    "operator": "metro-co",
    "zones": {"L2-S12": 1, "L2-S13": 1, "L9-S40": 3},
    "fares": {"0": 300, "1": 400, "2": 500},
    "max_fare": 900,
    "exit_without_entry": "refuse",
}
BUS: dict[str, Any] = {"operator": "bus-ferry-co", "flat_fare": 200, "max_fare": 200}


def metro(**change: Any) -> FareTable:
    return parse_fare_table("metro", {**METRO, **change})


def test_station_of_a_checkpoint_is_everything_before_its_last_dash() -> None:
    assert station_of("L2-S12-G3") == "L2-S12"
    assert station_of("PIER-7") == "PIER"
    assert station_of("DESK") == "DESK"
    assert station_of("-G1") == "-G1"
    assert station_of(None) is None


def test_fare_table_round_trip() -> None:
    table = metro()
    assert table.as_json() == {**METRO, "zones": dict(sorted(METRO["zones"].items()))}
    assert parse_fare_table("bus", BUS).as_json() == BUS
    assert parse_fare_table("ferry", {**METRO, "operator": "bus-ferry-co"}).network == "ferry"


@pytest.mark.parametrize(
    ("entry", "exit_", "fen"),
    [
        ("L2-S12", "L2-S13", 300),  # same zone
        ("L2-S12", "L9-S40", 500),  # two zones
        ("L9-S40", "L2-S12", 500),  # either direction
        ("L2-S12", "UNKNOWN", 900),  # unknown station: maximum fare
        (None, "L2-S12", 900),
    ],
)
def test_fares_by_zones_crossed(entry: str | None, exit_: str, fen: int) -> None:
    assert metro().fare(entry, exit_) == fen


def test_more_zones_than_listed_and_the_cap() -> None:
    table = metro(zones={"A": 0, "B": 9}, fares={"0": 300, "1": 400}, max_fare=450)
    assert table.fare("A", "B") == 400  # the dearest listed
    capped = metro(zones={"A": 0, "B": 1}, fares={"0": 300, "1": 400}, max_fare=400)
    assert capped.fare("A", "B") == 400


@pytest.mark.parametrize(
    ("network", "body", "fragment"),
    [
        ("tram", METRO, "network"),
        ("metro", [], "object"),
        ("metro", {**METRO, "max_fare": 9.5}, "max_fare"),
        ("metro", {**METRO, "max_fare": True}, "max_fare"),
        ("metro", {**METRO, "max_fare": -1}, "max_fare"),
        ("metro", {**METRO, "fares": {"0": 300.0}}, "fares.0"),
        ("metro", {**METRO, "fares": {"one": 300}}, "fares"),
        ("metro", {**METRO, "fares": {"01": 300, "0": 1}}, "fares"),
        ("metro", {**METRO, "fares": {"1": 300}}, '"0"'),
        ("metro", {**METRO, "fares": {"0": 1000}}, "above max_fare"),
        ("metro", {**METRO, "zones": {}}, "zones"),
        ("metro", {**METRO, "zones": {"L2 S12": 1}}, "station"),
        ("metro", {**METRO, "zones": {"L2-S12": -1}}, "zone number"),
        ("metro", {**METRO, "zones": {"L2-S12": "1"}}, "zone number"),
        ("metro", {**METRO, "exit_without_entry": "free"}, "exit_without_entry"),
        ("metro", {**METRO, "operator": ""}, "operator"),
        ("metro", {**METRO, "operator": "metro\u0000co"}, "operator"),
        ("metro", {**METRO, "flat_fare": 200}, "flat_fare"),
        ("bus", {**BUS, "zones": {}}, "zones"),
        ("bus", {"operator": "b", "max_fare": 100, "flat_fare": 200}, "above max_fare"),
        ("bus", {"operator": "b", "max_fare": 100}, "flat_fare"),
    ],
)
def test_bad_fare_tables_name_the_field(network: str, body: Any, fragment: str) -> None:
    with pytest.raises(FareTableError) as info:
        parse_fare_table(network, body)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(FareTableError) as info:
        parse_fare_table("metro", {"operator": "", "max_fare": 1.5, "zones": [], "fares": 3})
    assert len(info.value.problems) >= 4


# --- journeys ---------------------------------------------------------------------------
def test_entry_then_exit_is_a_complete_journey_with_its_fare() -> None:
    table = metro()
    entered = tap(table, None, direction="in", checkpoint="L2-S12-G3", now=T0)
    assert entered.reason is None and entered.open_entry == OpenEntry("L2-S12-G3", T0)
    assert entered.closed == () and entered.journey is None
    left = tap(table, entered.open_entry, direction="out", checkpoint="L9-S40-G1", now=T0 + 900)
    assert left.reason is None and left.open_entry is None
    journey = left.journey
    assert journey is not None
    assert (journey.status, journey.fare, journey.operator) == (JourneyStatus.COMPLETE, 500,
                                                                "metro-co")
    assert (journey.entry_station, journey.exit_station) == ("L2-S12", "L9-S40")
    assert (journey.entered_at, journey.exited_at) == (T0, T0 + 900)


@pytest.mark.parametrize(
    ("after", "reason"),
    [(0, Reason.PASSBACK), (PASSBACK - 1, Reason.PASSBACK), (PASSBACK, None)],
)
def test_passback_window_edges(after: int, reason: Reason | None) -> None:
    table = metro()
    first = OpenEntry("L2-S12-G1", T0)
    again = tap(table, first, direction="in", checkpoint="L2-S12-G2", now=T0 + after,
                passback_seconds=PASSBACK)
    assert again.reason is reason
    if reason is Reason.PASSBACK:
        assert again.open_entry == first and again.closed == ()
    else:  # the old journey closes incomplete at the maximum fare; the new one opens
        (old,) = again.closed
        assert (old.status, old.fare, old.entered_at) == (JourneyStatus.INCOMPLETE, 900, T0)
        assert again.open_entry == OpenEntry("L2-S12-G2", T0 + after)
        assert again.journey is None  # an entry completes nothing


def test_missing_direction_counts_as_entry() -> None:
    step = tap(metro(), None, direction=None, checkpoint="L2-S12-G1", now=T0)
    assert step.open_entry == OpenEntry("L2-S12-G1", T0)


def test_exit_without_entry_refused_or_charged() -> None:
    refused = tap(metro(), None, direction="out", checkpoint="L2-S12-G1", now=T0)
    assert (refused.reason, refused.closed) == (Reason.NO_ENTRY, ())
    charged = tap(metro(exit_without_entry="charge_max"), None, direction="out",
                  checkpoint="L2-S12-G1", now=T0)
    assert charged.reason is None
    journey = charged.journey
    assert journey is not None
    assert (journey.status, journey.fare, journey.entered_at) == (
        JourneyStatus.EXIT_WITHOUT_ENTRY, 900, None)


def test_a_bus_tap_is_a_single_journey_at_the_flat_fare() -> None:
    bus = parse_fare_table("bus", BUS)
    step = tap(bus, None, direction=None, checkpoint="BUS-71-D1", now=T0)
    journey = step.journey
    assert journey is not None
    assert (step.reason, journey.status, journey.fare, journey.operator) == (
        None, JourneyStatus.SINGLE_TAP, 200, "bus-ferry-co")
    # taps do not open anything, so a second tap is another journey (single use of the
    # code is the replay memory's business, not the journey's)
    assert step.open_entry is None


# --- settlement -------------------------------------------------------------------------
def test_settlement_accounts_every_fen_to_exactly_one_operator() -> None:
    table, bus = metro(), parse_fare_table("bus", BUS)
    journeys = []
    state = None
    for i in range(5):  # five rides L2-S12 -> L9-S40
        step = tap(table, state, direction="in", checkpoint="L2-S12-G1", now=T0 + i * 4000)
        step = tap(table, step.open_entry, direction="out", checkpoint="L9-S40-G2",
                   now=T0 + i * 4000 + 600)
        journeys += step.closed
        state = step.open_entry
    journeys += tap(bus, None, direction=None, checkpoint="BUS-1-D", now=T0).closed * 3
    totals = settle(journeys)
    assert set(totals) == {"bus-ferry-co", "metro-co"}
    assert (totals["metro-co"].journeys, totals["metro-co"].fares) == (5, 2500)
    assert (totals["bus-ferry-co"].journeys, totals["bus-ferry-co"].fares) == (3, 600)
    assert totals["metro-co"].by_status == {"complete": 5}
    assert sum(t.fares for t in totals.values()) == sum(j.fare for j in journeys)


@given(st.lists(st.tuples(st.sampled_from(["in", "out"]),
                          st.sampled_from(["L2-S12-G1", "L2-S13-G1", "L9-S40-G1", "X-1"]),
                          st.integers(0, 4000)), max_size=40))
def test_any_sequence_of_taps_reconciles(taps: list[tuple[str, str, int]]) -> None:
    """Property: whatever the order of taps, fares are within bounds, never negative,
    and the settlement totals equal the sum of the journeys' fares."""
    table = metro(exit_without_entry="charge_max")
    state, now, journeys = None, T0, []
    for direction, checkpoint, gap in taps:
        now += gap
        step = tap(table, state, direction=direction, checkpoint=checkpoint, now=now)
        state = step.open_entry
        journeys += step.closed
        for journey in step.closed:
            assert 0 <= journey.fare <= table.max_fare
    assert sum(t.fares for t in settle(journeys).values()) == sum(j.fare for j in journeys)


@given(st.lists(st.tuples(st.sampled_from(["metro-co", "bus-ferry-co"]),
                          st.sampled_from(["metro", "ferry", "bus"]),
                          st.sampled_from(list(JourneyStatus)), st.integers(0, 900)),
                max_size=30), st.integers(0, 30))
def test_settling_groups_is_settling_the_journeys(
        rows: list[tuple[str, str, JourneyStatus, int]], cut: int) -> None:
    """The database adds journeys up into groups (GROUP BY operator, network, status);
    settling the groups gives the totals of settling the journeys, also when the groups
    come in parts (partitions, pages) with the same key in several parts."""
    journeys = [Journey(network, op, status, fare, "A-1", T0) for op, network, status, fare
                in rows]
    groups = group_journeys(journeys)
    assert len({(g.operator, g.network, g.status) for g in groups}) == len(groups)
    assert sum(g.journeys for g in groups) == len(journeys)
    parts = group_journeys(journeys[:cut]) + group_journeys(journeys[cut:])
    expected = settle(journeys)
    assert settle_groups(reversed(parts)) == expected == settle_groups(groups)
    settled = [j for j in journeys if j.status is not JourneyStatus.OPEN]
    assert sum(t.journeys for t in expected.values()) == len(settled)
    assert sum(t.fares for t in expected.values()) == sum(j.fare for j in settled)
    for op, totals in expected.items():
        mine = [j for j in settled if j.operator == op]
        assert totals.by_network == {n: sum(j.fare for j in mine if j.network == n)
                                     for n in {j.network for j in mine}}
        assert sum(totals.by_status.values()) == len(mine)


# --- offline pairing (gate uploads) ----------------------------------------------------
def _rides() -> list[OfflineTap]:
    return [
        OfflineTap(T0, "in", "L2-S12-G1", b"u1", "gate-a"),
        OfflineTap(T0 + 900, "out", "L9-S40-G2", b"u2", "gate-b"),  # 2 zones: 500
        OfflineTap(T0 + 3600, "in", "L2-S13-G1", b"u3", "gate-c"),
        OfflineTap(T0 + 3700, "in", "L2-S13-G2", b"u4", "gate-c"),  # passback: ignored
        OfflineTap(T0 + 4000, "out", "L2-S12-G9", b"u5", "gate-a"),  # 0 zones: 300
        OfflineTap(T0 + 9000, "out", "L2-S12-G9", b"u6", "gate-a"),  # no entry: refused
        OfflineTap(T0 + 9500, "in", "L2-S12-G1", b"u7", "gate-a"),
        OfflineTap(T0 + 99_000, "in", "L2-S12-G1", b"u8", "gate-a"),  # closes u7 incomplete
    ]


def _summary(closed: list[tuple[int, Any]]) -> list[tuple[int, str, int]]:
    return [(at, j.status.value, j.fare) for at, j in closed]


def test_offline_taps_pair_by_time_in_any_upload_order() -> None:
    expected = [(T0 + 900, "complete", 500), (T0 + 4000, "complete", 300),
                (T0 + 99_000, "incomplete", 900)]
    taps = _rides()
    assert _summary(pair_offline(metro(), taps, passback_seconds=PASSBACK)) == expected
    assert _summary(pair_offline(metro(), reversed(taps), passback_seconds=PASSBACK)) == expected
    shuffled = taps[3::2] + taps[::2] + taps[1::2]
    assert _summary(pair_offline(metro(), shuffled, passback_seconds=PASSBACK)) == expected


def test_one_code_at_two_gates_is_fared_once_and_the_earliest_counts() -> None:
    entry = OfflineTap(T0, "in", "L2-S12-G1", b"same", "gate-a")
    twin = OfflineTap(T0 + 5, "in", "L9-S40-G1", b"same", "gate-z")  # the same use
    exit_ = OfflineTap(T0 + 600, "out", "L2-S13-G1", b"exit", "gate-b")
    for order in ([entry, twin, exit_], [exit_, twin, entry], [twin, exit_, entry]):
        [(at, journey)] = pair_offline(metro(), order, passback_seconds=PASSBACK)
        assert (at, journey.entry_checkpoint, journey.fare) == (T0 + 600, "L2-S12-G1", 300)
    bus = parse_fare_table("bus", BUS)
    taps = [OfflineTap(T0, None, "B1-G1", b"b", "g1"), OfflineTap(T0, None, "B1-G2", b"b", "g2")]
    assert _summary(pair_offline(bus, taps)) == [(T0, "single_tap", 200)]


def test_an_open_offline_entry_is_forgotten_like_the_online_slot() -> None:
    taps = [OfflineTap(T0, "in", "L2-S12-G1", b"a"), OfflineTap(T0 + 100, "out", "L2-S13-G1", b"b")]
    assert _summary(pair_offline(metro(), taps, forget_after=100)) == []  # refuse: no entry
    assert _summary(pair_offline(metro(), taps, forget_after=101)) == [(T0 + 100, "complete", 300)]
    charge = metro(exit_without_entry="charge_max")
    assert _summary(pair_offline(charge, taps, forget_after=100)) == [
        (T0 + 100, "exit_without_entry", 900)]


def test_a_tap_with_an_older_clock_than_the_entry_it_finds_is_simultaneous() -> None:
    entry = OpenEntry("L2-S12-G1", T0 + 5)
    early = tap(metro(), entry, direction="in", checkpoint="L2-S13-G1", now=T0,
                passback_seconds=PASSBACK)
    assert early.reason is Reason.PASSBACK
    no_window = tap(metro(), entry, direction="in", checkpoint="L2-S13-G1", now=T0,
                    passback_seconds=0)
    assert no_window.reason is None and no_window.open_entry == OpenEntry("L2-S13-G1", T0)
    assert [j.status for j in no_window.closed] == [JourneyStatus.INCOMPLETE]
