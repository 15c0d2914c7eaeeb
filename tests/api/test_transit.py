"""Transit journeys online (SPEC.md §6.2, issue 10): fare tables over HTTP, journeys on
the verify path (entry/exit, passback edges, exits without entry, bus taps), the
citizen's journeys and the operators' settlement, on the embedded default with a clock
the test moves."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from suishen.app.main import create_app
from suishen.timefmt import rfc3339
from tests.api.conftest import Api, make_settings

METRO = {
    "operator": "metro-co",
    "zones": {"L1-S01": 1, "L1-S02": 1, "L2-S12": 2, "L3-S30": 3},
    "fares": {"0": 300, "1": 400, "2": 500},
    "max_fare": 900,
    "exit_without_entry": "refuse",
}
BUS = {"operator": "busferry-co", "flat_fare": 200, "max_fare": 200}
FERRY = {"operator": "busferry-co", "zones": {"F-A": 0, "F-B": 1}, "fares": {"0": 600, "1": 800},
         "max_fare": 1200, "exit_without_entry": "charge_max"}


@dataclass
class Clocked(Api):
    now: list[float]

    def tick(self, seconds: float) -> None:
        self.now[0] += seconds

    async def fresh_code(self, sub: str) -> str:
        subject = await self.runtime.subjects.enroll(sub)
        issuer = self.runtime.keys.view().issuer
        return str(issuer.issue_personal(subject.handle, now=int(self.now[0]), ttl=60).text)

    async def tap(self, partner: dict[str, Any], sub: str, scene: str,
                  checkpoint: str, direction: str | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"checkpoint": checkpoint}
        if direction is not None:
            extra["direction"] = direction
        await self.refresh(partner)
        r = await self.verify(partner, await self.fresh_code(sub), scene, **extra)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def refresh(self, partner: dict[str, Any]) -> None:
        """A new partner token (the test's clock outruns their 5-minute lifetime)."""
        t = await self.client.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": partner["client_id"],
                  "client_secret": partner["client_secret"]},
        )
        assert t.status_code == 200, t.text
        partner["headers"] = {"Authorization": f"Bearer {t.json()['access_token']}"}

    async def fares(self, network: str, table: object) -> httpx.Response:
        return await self.client.put(f"/v1/admin/fares/{network}", json=table,
                                     headers=self.admin)


@pytest.fixture
async def capi(tmp_path: Path) -> AsyncIterator[Clocked]:
    from suishen.app.runtime import build_runtime

    now = [float(int(time.time()))]
    settings = make_settings(tmp_path)
    runtime = await build_runtime(settings, clock=lambda: now[0])
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Clocked(client, app, settings, now)


# --- fare tables ----------------------------------------------------------------------
async def test_fare_table_round_trip_and_404(capi: Clocked) -> None:
    r = await capi.client.get("/v1/admin/fares/metro", headers=capi.admin)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await capi.fares("metro", METRO)
    assert r.status_code == 200, r.text
    got = await capi.client.get("/v1/admin/fares/metro", headers=capi.admin)
    assert got.status_code == 200
    assert got.json() == {"network": "metro", **METRO}
    assert (await capi.fares("bus", BUS)).status_code == 200
    assert (await capi.client.get("/v1/admin/fares/bus", headers=capi.admin)).json() == {
        "network": "bus", **BUS}
    assert (await capi.client.get("/v1/admin/fares/tram", headers=capi.admin)).status_code == 404


async def test_fare_tables_need_the_operator_token(capi: Clocked) -> None:
    r = await capi.client.put("/v1/admin/fares/metro", json=METRO)
    assert r.status_code == 401
    citizen = await capi.citizen("not-an-operator")
    r = await capi.client.put("/v1/admin/fares/metro", json=METRO, headers=citizen)
    assert r.status_code in (401, 403)
    assert (await capi.client.get("/v1/admin/fares/metro", headers=capi.admin)).status_code == 404


@pytest.mark.parametrize(
    ("network", "body", "problem"),
    [
        ("metro", {**METRO, "max_fare": 900.0}, "max_fare"),
        ("metro", {**METRO, "fares": {"0": 3.5}}, "fares.0"),
        ("metro", {**METRO, "fares": {"0": True}}, "fares.0"),
        ("metro", {**METRO, "max_fare": 10**30}, "max_fare"),
        ("metro", {**METRO, "max_fare": -1}, "max_fare"),
        ("metro", {**METRO, "zones": {"L1-S01": 1.0}}, "zones.L1-S01"),
        ("metro", {**METRO, "zones": {"bad station!": 1}}, "zones"),
        ("metro", {**METRO, "fares": {"1": 400}}, "fares"),
        ("metro", {**METRO, "exit_without_entry": "free"}, "exit_without_entry"),
        ("metro", {**METRO, "flat_fare": 200}, "flat_fare"),
        ("metro", [1, 2, 3], "body"),
        ("bus", {**BUS, "flat_fare": 300}, "flat_fare"),
        ("bus", {"operator": "busferry-co", "max_fare": 200}, "flat_fare"),
        ("tram", METRO, "network"),
    ],
)
async def test_hostile_fare_tables_are_422_with_problems(
    capi: Clocked, network: str, body: object, problem: str
) -> None:
    r = await capi.fares(network, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problems = r.json()["problems"]
    assert any(p.startswith(problem) for p in problems), problems
    if network != "tram":
        assert (await capi.client.get(f"/v1/admin/fares/{network}",
                                      headers=capi.admin)).status_code == 404


async def test_every_problem_is_listed_at_once(capi: Clocked) -> None:
    r = await capi.fares("metro", {"operator": "", "zones": {}, "fares": {"x": 1},
                                   "max_fare": 1.5})
    assert r.status_code == 422
    fields = {p.split(":")[0].split(" ")[0] for p in r.json()["problems"]}
    assert {"operator", "zones", "fares", "max_fare"} <= fields


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b'{"operator": "metro-co"', b"", b"NaN",
     b'{"max_fare": 1' + b"0" * 5000 + b"}",
     b'{"operator": "a", "operator": "b"}'],
)
async def test_bodies_that_are_not_json_tables_are_422(capi: Clocked, raw: bytes) -> None:
    r = await capi.client.put("/v1/admin/fares/metro", content=raw,
                              headers={**capi.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


# --- journeys on the verify path --------------------------------------------------------
async def test_entry_then_exit_carries_the_journey_and_fare(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    entered = int(capi.now[0])
    entry = await capi.tap(gate, "rider", "metro", "L1-S01-G3", "in")
    assert entry["valid"] is True and "journey" not in entry
    capi.tick(1200)
    exit_ = await capi.tap(gate, "rider", "metro", "L3-S30-G1", "out")
    assert exit_["valid"] is True
    assert exit_["journey"] == {"status": "complete", "fare": 500,
                                "entered_at": rfc3339(entered),
                                "entry_checkpoint": "L1-S01-G3"}
    # the journey is closed: the next exit has no entry
    again = await capi.tap(gate, "rider", "metro", "L3-S30-G2", "out")
    assert again == {**again, "valid": False, "reason": "no_entry"}


async def test_unknown_station_is_charged_the_maximum(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    await capi.tap(gate, "far", "metro", "L9-S99-G1", "in")
    capi.tick(60)
    out = await capi.tap(gate, "far", "metro", "L1-S02-G1", "out")
    assert out["journey"]["fare"] == 900


async def test_passback_window_edges(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    window = capi.runtime.transit.passback_seconds
    assert window == 1800
    first = await capi.tap(gate, "pb", "metro", "L1-S01-G1", "in")
    assert first["valid"] is True
    capi.tick(window - 1)  # one second inside the window
    inside = await capi.tap(gate, "pb", "metro", "L1-S01-G2", "in")
    assert inside["valid"] is False and inside["reason"] == "passback"
    capi.tick(1)  # exactly the window: the old entry closes incomplete, the new one opens
    edge = await capi.tap(gate, "pb", "metro", "L1-S02-G1", "in")
    assert edge["valid"] is True
    capi.tick(10)
    out = await capi.tap(gate, "pb", "metro", "L2-S12-G1", "out")
    assert out["journey"]["entry_checkpoint"] == "L1-S02-G1"
    assert out["journey"]["fare"] == 400
    await capi.runtime.transit.writer.flush()
    items = (await capi.client.get("/v1/me/journeys",
                                   headers=await capi.citizen("pb"))).json()["items"]
    assert [(i["status"], i["fare"]) for i in items] == [("complete", 400),
                                                         ("incomplete", 900)]
    # the refused passback is in the citizen's verification history too
    await capi.runtime.audit.flush()
    history = (await capi.client.get("/v1/me/verifications",
                                     headers=await capi.citizen("pb"))).json()["items"]
    assert "passback" in [h["result"] for h in history]


async def test_a_passback_burns_the_code(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    await capi.tap(gate, "burn", "metro", "L1-S01-G1", "in")
    code = await capi.fresh_code("burn")
    await capi.refresh(gate)
    r = await capi.verify(gate, code, "metro", checkpoint="L1-S01-G2", direction="in")
    assert r.json()["reason"] == "passback"
    # the refusal consumed the code's entry: the same code again is a replay
    r = await capi.verify(gate, code, "metro", checkpoint="L1-S01-G2", direction="in")
    assert r.json()["reason"] == "replayed"


async def test_exit_without_entry_refused_or_charged(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    await capi.fares("ferry", FERRY)
    metro = await capi.partner(["metro"])
    ferry = await capi.partner(["ferry"])
    refused = await capi.tap(metro, "noentry", "metro", "L1-S01-G1", "out")
    assert refused["valid"] is False and refused["reason"] == "no_entry"
    assert "journey" not in refused and "subject" not in refused
    charged = await capi.tap(ferry, "noentry", "ferry", "F-B-G1", "out")
    assert charged["valid"] is True
    assert charged["journey"] == {"status": "exit_without_entry", "fare": 1200}


async def test_bus_tap_is_a_single_tap_at_the_flat_fare(capi: Clocked) -> None:
    await capi.fares("bus", BUS)
    bus = await capi.partner(["bus"])
    one = await capi.tap(bus, "busrider", "bus", "B42-V7")
    two = await capi.tap(bus, "busrider", "bus", "B42-V7")  # a second ride: a new tap
    for answer in (one, two):
        assert answer["valid"] is True
        assert answer["journey"]["status"] == "single_tap"
        assert answer["journey"]["fare"] == 200


async def test_without_a_fare_table_nothing_changes(capi: Clocked) -> None:
    gate = await capi.partner(["metro"])
    out = await capi.tap(gate, "plain", "metro", "L1-S01-G1", "out")
    assert out["valid"] is True and "journey" not in out
    again = await capi.tap(gate, "plain", "metro", "L1-S01-G1", "in")
    twice = await capi.tap(gate, "plain", "metro", "L1-S01-G1", "in")
    assert again["valid"] is True and twice["valid"] is True


async def test_a_suspended_citizen_opens_no_journey(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    code = await capi.fresh_code("susp")
    await capi.refresh(gate)
    await capi.client.put("/v1/admin/subjects/susp", headers=capi.admin,
                          json={"status": "suspended", "attributes": {}})
    r = await capi.verify(gate, code, "metro", checkpoint="L1-S01-G1", direction="in")
    assert r.json()["reason"] == "revoked"
    await capi.client.put("/v1/admin/subjects/susp", headers=capi.admin,
                          json={"status": "active", "attributes": {}})
    out = await capi.tap(gate, "susp", "metro", "L1-S01-G1", "out")
    assert out["reason"] == "no_entry"


async def test_a_tap_refused_after_its_move_leaves_the_slot_as_it_was(capi: Clocked) -> None:
    """The single-use script moves the slot before the citizen's status is read; a code
    then refused (here: a well-signed code of a citizen the service does not know) has
    the move undone -- no entry is left open."""
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    await capi.refresh(gate)
    stranger = os.urandom(10)
    issuer = capi.runtime.keys.view().issuer
    code = str(issuer.issue_personal(stranger, now=int(capi.now[0]), ttl=60).text)
    r = await capi.verify(gate, code, "metro", checkpoint="L1-S01-G1", direction="in")
    assert r.json()["reason"] == "revoked"
    slot = capi.runtime.transit.slot(stranger, "metro")
    assert await capi.runtime.state.swap_slot(slot, expected=b"-", value=None,
                                              ttl_seconds=60) == (False, None)


# --- the citizen's journeys and settlement ---------------------------------------------
async def test_my_journeys_are_newest_first_and_paginated(capi: Clocked) -> None:
    await capi.fares("metro", METRO)
    gate = await capi.partner(["metro"])
    for i in range(5):
        await capi.tap(gate, "pager", "metro", "L1-S01-G1", "in")
        capi.tick(100)
        await capi.tap(gate, "pager", "metro", f"L{1 + i % 3}-S0{1 + i % 2}-G1", "out")
        capi.tick(100)
    await capi.runtime.transit.writer.flush()
    me = await capi.citizen("pager")
    first = (await capi.client.get("/v1/me/journeys?limit=2", headers=me)).json()
    assert len(first["items"]) == 2 and first["next_before"] is not None
    rest = (await capi.client.get(f"/v1/me/journeys?limit=10&before={first['next_before']}",
                                  headers=me)).json()
    items = first["items"] + rest["items"]
    assert len(items) == 5 and rest["next_before"] is None
    exits = [i["exited_at"] for i in items]
    assert exits == sorted(exits, reverse=True)
    top = items[0]
    assert top["entry_station"] == "L1-S01" and top["entry_checkpoint"] == "L1-S01-G1"
    assert top["offline"] is False and top["network"] == "metro"
    assert top["operator"] == "metro-co"
    assert (await capi.client.get("/v1/me/journeys", headers=await capi.citizen("nobody"))
            ).json() == {"items": [], "next_before": None}
    assert (await capi.client.get("/v1/me/journeys")).status_code == 401


async def test_settlement_reconciles_to_the_fen(capi: Clocked) -> None:
    for network, table in (("metro", METRO), ("bus", BUS), ("ferry", FERRY)):
        assert (await capi.fares(network, table)).status_code == 200
    metro, bus, ferry = (await capi.partner(["metro"]), await capi.partner(["bus"]),
                         await capi.partner(["ferry"]))
    charged = 0
    for i in range(3):
        sub = f"settle-{i}"
        await capi.tap(metro, sub, "metro", "L1-S01-G1", "in")
        capi.tick(30)
        charged += (await capi.tap(metro, sub, "metro", "L2-S12-G2", "out"))["journey"]["fare"]
        charged += (await capi.tap(bus, sub, "bus", "B1-V1"))["journey"]["fare"]
        charged += (await capi.tap(ferry, sub, "ferry", "F-A-G1", "out"))["journey"]["fare"]
    assert charged == 3 * (400 + 200 + 1200)
    await capi.runtime.transit.writer.flush()
    day = rfc3339(capi.now[0])[:10]
    r = await capi.client.get(f"/v1/admin/settlement?date={day}", headers=capi.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fares"] == charged and body["journeys"] == 9
    ops = {o["operator"]: o for o in body["operators"]}
    assert ops["metro-co"]["fares"] == 1200 and ops["metro-co"]["journeys"] == 3
    assert ops["busferry-co"]["fares"] == 3 * 200 + 3 * 1200
    assert ops["busferry-co"]["by_network"] == {"bus": 600, "ferry": 3600}
    assert sum(o["fares"] for o in body["operators"]) == charged
    r = await capi.client.get(f"/v1/admin/settlement?date={day}&format=csv", headers=capi.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["operator"]: int(row["fares_fen"]) for row in rows} == {
        "busferry-co": 4200, "metro-co": 1200}
    assert sum(int(row["journeys"]) for row in rows) == 9
    # the citizens' journeys add up to the same fen
    mine = 0
    for i in range(3):
        page = (await capi.client.get("/v1/me/journeys",
                                      headers=await capi.citizen(f"settle-{i}"))).json()
        mine += sum(item["fare"] for item in page["items"])
    assert mine == charged
    empty = (await capi.client.get("/v1/admin/settlement?date=2001-01-01",
                                   headers=capi.admin)).json()
    assert empty["operators"] == [] and empty["fares"] == 0


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "yesterday", "2026-1-1", ""])
async def test_settlement_bad_date_is_422(capi: Clocked, bad: str) -> None:
    r = await capi.client.get(f"/v1/admin/settlement?date={bad}", headers=capi.admin)
    assert r.status_code == 422
    r = await capi.client.get("/v1/admin/settlement?date=2026-01-01&format=xml",
                              headers=capi.admin)
    assert r.status_code == 422
    assert (await capi.client.get("/v1/admin/settlement?date=2026-01-01")).status_code == 401


async def test_journey_records_survive_a_database_outage(capi: Clocked) -> None:
    """Records queue while the database refuses writes and are written when it returns."""
    from suishen.errors import BackendUnavailable

    await capi.fares("bus", BUS)
    bus = await capi.partner(["bus"])
    repo = capi.runtime.db.transit
    real = repo.append_journeys
    calls = []

    async def down(records: Any) -> None:
        calls.append(len(records))
        raise BackendUnavailable("database down (test fault)")

    repo.append_journeys = down  # a fault that cannot be caused for real on SQLite
    try:
        await capi.tap(bus, "outage", "bus", "B1-V1")
        with pytest.raises(BackendUnavailable):
            await capi.runtime.transit.writer.flush()
        assert capi.runtime.transit.writer.pending == 1
    finally:
        repo.append_journeys = real
    await capi.runtime.transit.writer.flush()
    assert capi.runtime.transit.writer.pending == 0 and calls
    items = (await capi.client.get("/v1/me/journeys",
                                   headers=await capi.citizen("outage"))).json()["items"]
    assert [i["status"] for i in items] == ["single_tap"]


async def test_the_fare_table_body_is_published_in_openapi(capi: Clocked) -> None:
    doc = (await capi.client.get("/openapi.json")).json()
    put = doc["paths"]["/v1/admin/fares/{network}"]["put"]
    [network] = put["parameters"]
    assert network["schema"]["enum"] == ["metro", "ferry", "bus"]
    shapes = put["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [s["title"] for s in shapes] == ["EntryExitFareTable", "FlatFareTable"]
    entry_exit, flat = shapes
    assert entry_exit["additionalProperties"] is False and flat["additionalProperties"] is False
    assert entry_exit["properties"]["fares"]["required"] == ["0"]
    assert entry_exit["properties"]["max_fare"]["type"] == "integer"  # fen, never a float
    assert set(flat["required"]) == {"operator", "flat_fare", "max_fare"}
    assert "422" in put["responses"]
