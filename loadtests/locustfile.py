"""SPEC §7 "city peak" for Locust: metro rush, hospitals, libraries, app refreshes.

User classes and weights (share of simulated people; see README.md for the reasoning):

==================  ======  ==========================================================
class               weight  what one user does
==================  ======  ==========================================================
MetroRider          50      alternately enters and leaves the metro: a fresh code from
                            ``POST /v1/codes``, then ``POST /v1/verify`` scene ``metro``
                            direction ``in`` at an entry gate, later ``out`` at an exit
                            gate (single use); 1 trip in 50 the same entry code is shown
                            again at another gate and must come back ``replayed``
HospitalPatient     10      fresh code, registration at a hospital desk (``hospital``);
                            half of them then show the same code at a pharmacy
                            (re-scannable)
LibraryReader       5       fresh code, library entrance, then the same code again at
                            the self-checkout (re-scannable); the answer must never carry
                            a medical-insurance number
AppRefresh          35      the city app in the foreground: ``POST /v1/codes`` every 30 s
                            (the code's ``refresh_after`` is half of its 60 s life)
==================  ======  ==========================================================

A verification counts as a failure unless it is HTTP 200 with the expected ``reason``
(``ok``, or ``replayed`` for the deliberate second presentation).

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
from pathlib import Path
from typing import Any

from locust import between, constant_pacing, events, task
from locust.contrib.fasthttp import FastHttpUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtests.common import budget as budget_check
from loadtests.common.city import SCENE_ATTRIBUTES, Citizen, City, Partner, get_city

METRO_LINES = 20
REPLAY_PROBABILITY = 0.02


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
               label: str | None = None) -> dict[str, Any] | None:
        """A gate or desk verifies ``code``; anything but ``expect`` is a failure."""
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
            response.success()
            return answer


class MetroRider(CityUser):
    """Rush hour: entries and exits, each with a fresh single-use code."""

    weight = 50
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        super().on_start()
        self.citizen = self.city.citizen()
        self.inside = False

    @task
    def gate(self) -> None:
        metro = self.city.partner("metro")
        code = self.fresh_code(self.citizen)
        if code is None:
            return
        line, station = random.randint(1, METRO_LINES), random.randint(1, 30)
        gate = f"L{line}-S{station}-G{random.randint(1, 12)}"
        if not self.inside:
            if self.verify(metro, code, gate, direction="in", label="metro in") is None:
                return
            self.inside = True
            if random.random() < REPLAY_PROBABILITY:
                # The same code shown again (a screenshot passed on): must be refused.
                self.verify(metro, code, f"L{line}-S{station}-G99", direction="in",
                            expect="replayed", label="metro in replay")
        elif self.verify(metro, code, gate, direction="out", label="metro out") is not None:
            self.inside = False
            self.citizen = self.city.citizen()  # the next rider through this turnstile


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
