"""SPEC §7 "city peak" for Locust: metro rush, hospitals, libraries, app refreshes,
check-ins at shops.

User classes and weights (share of simulated people; see README.md for the reasoning):

==================  ======  ==========================================================
class               weight  what one user does
==================  ======  ==========================================================
MetroRider          50      rides real journeys (its own citizen): a fresh code from
                            ``POST /v1/codes``, ``POST /v1/verify`` scene ``metro``
                            direction ``in`` at a station, a ride of 2-8 s, then ``out``
                            at another station — the answer's journey must be
                            ``complete`` at the table's fare; 1 entry in 50 the same code
                            again at another gate (``replayed``), 1 in 30 a second entry
                            at once (``passback``), 1 trip in 30 an exit without entry
                            (``no_entry``)
OfflineGate         1 user  an offline gate coming back online: every 8-12 s a batch of
                            4 journeys its rider made with offline codes (their own
                            device) to ``POST /v1/gate-events``; every 4th batch is sent
                            twice (the second time: all duplicates)
HospitalPatient     10      fresh code, registration at a hospital desk (``hospital``);
                            half of them then show the same code at a pharmacy
                            (re-scannable)
LibraryReader       5       fresh code, library entrance, then the same code again at
                            the self-checkout (re-scannable); the answer must never carry
                            a medical-insurance number
AppRefresh          35      the city app in the foreground: ``POST /v1/codes`` every 30 s
                            (the code's ``refresh_after`` is half of its 60 s life)
ShopVisitor         5       scans a shop's printed venue code with the app every 5-15 s
                            (``POST /v1/checkins``, its own citizen: check-ins are
                            rate-limited per citizen); the answer must name that shop
==================  ======  ==========================================================

A verification counts as a failure unless it is HTTP 200 with the expected ``reason``
(``ok``; ``replayed``, ``passback``, ``no_entry`` for the deliberate ones) and, on a
metro exit, the expected journey and fare.

Setup (partners, citizens, tokens) goes through the admin API of the target host with
``SUISHEN_ADMIN_TOKEN``; see :mod:`loadtests.common.city`. Run::

    SUISHEN_ADMIN_TOKEN=... .venv/bin/locust -f loadtests/locustfile.py \\
        --headless -u 200 -r 20 -t 5m --host http://127.0.0.1:8000

Users are ``FastHttpUser`` (geventhttpclient): the stock ``HttpUser`` (requests) costs
several times more CPU per request and would measure the load generator. When the run
ends, the budget (``loadtests/budget.toml``, or the file ``SUISHEN_LOADTEST_BUDGET``
names: p99 per endpoint, error rate) is checked and a missed budget makes Locust exit 1.
Add ``--html report.html --csv report`` for the HTML and CSV reports.

Importing this module starts nothing: setup happens when the first user starts.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import between, constant_pacing, events, task
from locust.contrib.fasthttp import FastHttpUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtests.common import budget as budget_check
from loadtests.common.city import SCENE_ATTRIBUTES, Citizen, City, Partner, get_city
from loadtests.common.offline import METRO_LINES, METRO_STATIONS
from suishen.verifiers.transit import station_of

REPLAY_PROBABILITY = 0.02
PASSBACK_PROBABILITY = 1 / 30
NO_ENTRY_PROBABILITY = 1 / 30
RIDE_SECONDS = (2.0, 8.0)  # short on purpose: a load test must see its exits
GATE_JOURNEYS = 4  # per upload
GATE_RESEND_EVERY = 4


def metro_gate() -> str:
    """A random turnstile: ``L<line>-S<station>-G<gate>``."""
    return (f"L{random.randint(1, METRO_LINES)}-S{random.randint(1, METRO_STATIONS)}"
            f"-G{random.randint(1, 12)}")


class CityUser(FastHttpUser):
    """Shared helpers; not a user class itself."""

    abstract = True
    city: City

    def on_start(self) -> None:
        self.city = get_city(self.host or "")

    def fresh_code(self, citizen: Citizen) -> str | None:
        """The citizen's phone fetches its current code."""
        with self.client.post("/v1/codes", headers=citizen.auth(), name="POST /v1/codes",
                              catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return None
            code = response.json().get("code")
            if not isinstance(code, str) or not code.startswith("SC1:"):
                response.failure("no SC1 code in the answer")
                return None
            response.success()
            return code

    def verify(self, partner: Partner, code: str, checkpoint: str, *,
               direction: str | None = None, expect: str = "ok",
               label: str | None = None,
               check: Callable[[dict[str, Any]], str | None] | None = None,
               ) -> dict[str, Any] | None:
        """A gate or desk verifies ``code``; anything but ``expect`` is a failure, and so
        is an answer ``check`` finds fault with (it returns the complaint)."""
        body: dict[str, Any] = {"code": code, "scene": partner.scene, "checkpoint": checkpoint}
        if direction is not None:
            body["direction"] = direction
        name = f"POST /v1/verify [{label or partner.scene}]"
        with self.client.post("/v1/verify", json=body, headers=partner.auth(), name=name,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return None
            answer: dict[str, Any] = response.json()
            if answer.get("reason") != expect:
                response.failure(f"expected {expect}, got {answer.get('reason')}")
                return None
            allowed = set(SCENE_ATTRIBUTES[partner.scene])
            leaked = set(answer.get("attributes") or {}) - allowed
            if leaked:
                response.failure(f"{partner.scene} saw attributes {sorted(leaked)}")
                return None
            complaint = check(answer) if check is not None else None
            if complaint is not None:
                response.failure(complaint)
                return None
            response.success()
            return answer


class MetroRider(CityUser):
    """Rush hour: real journeys, each tap with a fresh single-use code."""

    weight = 50
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        super().on_start()
        self.citizen = self.city.rider()  # journeys are per citizen: one rider each
        self.entered: str | None = None  # the entry gate of the open journey
        self.ride_until = 0.0

    @task
    def gate(self) -> None:
        metro = self.city.partner("metro")
        if self.entered is None:
            if random.random() < NO_ENTRY_PROBABILITY and self.city.fares is not None:
                # a rider who slipped in without tapping: the exit is refused
                code = self.fresh_code(self.citizen)
                if code is not None:
                    self.verify(metro, code, metro_gate(), direction="out", expect="no_entry",
                                label="metro out no entry")
                return
            self.enter(metro)
        else:
            wait = self.ride_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the ride (gevent-patched: other users run meanwhile)
            self.leave(metro)

    def enter(self, metro: Partner) -> None:
        code = self.fresh_code(self.citizen)
        if code is None:
            return
        gate = metro_gate()
        if self.verify(metro, code, gate, direction="in", label="metro in") is None:
            return
        self.entered = gate
        self.ride_until = time.monotonic() + random.uniform(*RIDE_SECONDS)
        station = station_of(gate)
        if random.random() < REPLAY_PROBABILITY:
            # The same code shown again (a screenshot passed on): must be refused.
            self.verify(metro, code, f"{station}-G99", direction="in",
                        expect="replayed", label="metro in replay")
        if random.random() < PASSBACK_PROBABILITY and self.city.fares is not None:
            # A second entry at once with a fresh code (passing the card back): refused.
            again = self.fresh_code(self.citizen)
            if again is not None:
                self.verify(metro, again, f"{station}-G98", direction="in",
                            expect="passback", label="metro passback")

    def leave(self, metro: Partner) -> None:
        code = self.fresh_code(self.citizen)
        if code is None:
            return
        entered = self.entered
        gate = metro_gate()
        while station_of(gate) == station_of(entered):
            gate = metro_gate()  # leave at another station

        def journey(answer: dict[str, Any]) -> str | None:
            table = self.city.fares
            if table is None:
                return None
            got = answer.get("journey") or {}
            fare = table.fare(station_of(entered), station_of(gate))
            if (got.get("status"), got.get("fare"), got.get("entry_checkpoint")) != (
                "complete", fare, entered
            ):
                return f"expected a complete journey from {entered} at {fare} fen, got {got}"
            return None

        if self.verify(metro, code, gate, direction="out", label="metro out",
                       check=journey) is not None:
            self.entered = None


class OfflineGate(CityUser):
    """An offline gate's rider makes journeys with offline codes; the gate uploads its
    decisions in batches (``POST /v1/gate-events``), now and then twice."""

    fixed_count = 1
    wait_time = between(8.0, 12.0)

    def on_start(self) -> None:
        super().on_start()
        self.citizen = self.city.rider()
        self.device = self.city.device(self.citizen)
        self.cursor = 0  # one tap a second, never two at the same time
        self.batches = 0

    @task
    def upload(self) -> None:
        now = int(time.time())
        self.cursor = max(self.cursor, now - 30)
        events_: list[dict[str, Any]] = []
        for _ in range(GATE_JOURNEYS):
            for direction in ("in", "out"):
                at = self.cursor
                self.cursor += 1
                if not self.device.covers(at):
                    return  # beyond the device's credentials (a long run): stop uploading
                events_.append({"code": self.device.code(at), "scene": "metro",
                                "direction": direction, "checkpoint": metro_gate(),
                                "decided_at": at, "valid": True, "reason": "ok"})
        self.send(events_, expect_new=True)
        self.batches += 1
        if self.batches % GATE_RESEND_EVERY == 0:
            self.send(events_, expect_new=False)  # a retried upload: nothing changes

    def send(self, batch: list[dict[str, Any]], *, expect_new: bool) -> None:
        partner = self.city.partner("metro")
        name = "POST /v1/gate-events" + ("" if expect_new else " [resend]")
        with self.client.post("/v1/gate-events", json={"events": batch},
                              headers=partner.auth(), name=name,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            counts = (answer.get("accepted"), answer.get("duplicates"), answer.get("errors"))
            want: tuple[int, int, list[Any]] = (len(batch), 0, []) if expect_new else (
                0, len(batch), [])
            if counts != want:
                response.failure(f"expected (accepted, duplicates, errors) {want}, got {counts}")
                return
            response.success()


class HospitalPatient(CityUser):
    """Registration desks, then (half of the time) a pharmacy with the same code."""

    weight = 10
    wait_time = between(2.0, 5.0)

    @task
    def visit(self) -> None:
        citizen = self.city.citizen()
        code = self.fresh_code(citizen)
        if code is None:
            return
        hospital = random.randint(1, 400)
        if self.verify(self.city.partner("hospital"), code,
                       f"H{hospital:03d}-REG-{random.randint(1, 8)}") is None:
            return
        if random.random() < 0.5:
            self.verify(self.city.partner("pharmacy"), code,
                        f"P{random.randint(1, 1442):04d}-C1")


class LibraryReader(CityUser):
    """Library entrance, then the same code again at the self-checkout."""

    weight = 5
    wait_time = between(2.0, 5.0)

    @task
    def visit(self) -> None:
        citizen = self.city.citizen()
        code = self.fresh_code(citizen)
        if code is None:
            return
        library = self.city.partner("library")
        branch = random.randint(1, 40)
        if self.verify(library, code, f"LIB-{branch:02d}-ENTRANCE") is not None:
            self.verify(library, code, f"LIB-{branch:02d}-SELFCHECK", label="library rescan")


class AppRefresh(CityUser):
    """The city app in the foreground refreshes the code every 30 s."""

    weight = 35
    wait_time = constant_pacing(30)

    def on_start(self) -> None:
        super().on_start()
        self.citizen = self.city.citizen()

    @task
    def refresh(self) -> None:
        self.fresh_code(self.citizen)


class ShopVisitor(CityUser):
    """A citizen scans a shop's printed code with the app (a check-in)."""

    weight = 5
    wait_time = between(5.0, 15.0)

    def on_start(self) -> None:
        super().on_start()
        self.citizen = self.city.rider()  # check-ins are rate-limited per citizen

    @task
    def check_in(self) -> None:
        venue_id, code = random.choice(self.city.venues)
        with self.client.post("/v1/checkins", json={"code": code}, headers=self.citizen.auth(),
                              name="POST /v1/checkins", catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            if response.json().get("venue", {}).get("venue_id") != venue_id:
                response.failure("the check-in names another venue")
                return
            response.success()


log = logging.getLogger("suishen.loadtest")


@events.quitting.add_listener
def check_budget(environment: Any, **_: Any) -> None:
    """Fail the run (exit 1) when it missed its budget (loadtests/common/budget.py)."""
    stats = environment.stats
    figures = {
        entry.name: budget_check.Figures(entry.num_requests, entry.num_failures,
                                         float(entry.get_response_time_percentile(0.99) or 0))
        for entry in stats.entries.values()
    }
    problems = budget_check.check(figures, budget_check.load())
    for problem in problems:
        log.error("budget missed: %s", problem)
    if problems:
        environment.process_exit_code = 1
    else:
        log.info("budget met (%d endpoints)", len(figures))
