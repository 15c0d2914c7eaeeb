"""A city for load tests, set up through the service's own HTTP API.

* **partners**: one per venue kind (metro operator, hospital, pharmacy, library), each
  registered with ``POST /v1/admin/partners`` (operator token from
  ``SUISHEN_ADMIN_TOKEN``) with the attributes its agreement allows and a rate limit high
  enough not to interfere; access tokens from ``POST /v1/oauth/token``, refreshed before
  they expire;
* **citizens**: ``SUISHEN_LOADTEST_CITIZENS`` subjects (default 200) upserted with
  ``PUT /v1/admin/subjects/{sub}`` with every known attribute, and a bearer token each:
  from the development identity provider (``POST /v1/dev/citizen-token``, refreshed
  before expiry), or — against a production posture, where that endpoint does not exist —
  from the file named by ``SUISHEN_LOADTEST_CITIZEN_TOKENS`` (lines ``<sub> <token>``).

* **fares**: the metro fare table of :func:`loadtests.common.offline.metro_table`
  (``PUT /v1/admin/fares/metro``), so that rides are real journeys with fares — unless
  ``SUISHEN_LOADTEST_FARES=keep`` (a target whose own table must stay; fares are then
  not checked);
* **riders**: a metro rider or an offline gate needs a citizen nobody else rides with
  (journeys are per citizen): :meth:`City.rider` hands out pool citizens one each, and
  registers more when the pool is used up (development identity provider only; with a
  token file, give at least as many tokens as riders and gates).

Setup traffic goes through its own ``requests`` session, so it never shows in the load
statistics. Each load process (a Locust worker) sets up its own partners once, lazily,
on first use (:func:`get_city`); names carry a run id so that runs never collide.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from loadtests.common.offline import Device, metro_table, parsed_metro_table
from suishen.verifiers.policy import ATTRIBUTES, SCENES
from suishen.verifiers.transit import FareTable

# What each venue kind may see (SPEC §4: the intersection with the citizen's attributes):
# the scenes the user classes of locustfile.py exercise, by the names of the one scene
# table (suishen.verifiers.policy.SCENES) — a renamed or removed scene fails at import.
SCENE_ATTRIBUTES: dict[str, list[str]] = {
    "metro": ["transit_account"],
    "hospital": ["name", "medical_insurance_id"],
    "pharmacy": ["medical_insurance_id"],
    "library": ["reader_id"],
}

REFRESH_MARGIN = 30.0  # seconds before expiry at which a token is renewed
TIMEOUT = 10.0


class SetupError(RuntimeError):
    """The target service refused the load-test setup."""


_unknown = {s for s in SCENE_ATTRIBUTES if s not in SCENES} | {
    a for attrs in SCENE_ATTRIBUTES.values() for a in attrs if a not in ATTRIBUTES}
if _unknown:
    raise SetupError(f"load-test scenes or attributes the service does not know: {_unknown}")


@dataclass(frozen=True)
class Config:
    """Load-test settings, from the environment."""

    host: str
    admin_token: str
    citizens: int = 200
    rate_limit: int = 100_000
    citizen_tokens_file: str | None = None
    install_fares: bool = True
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))

    @classmethod
    def from_env(cls, host: str) -> Config:
        admin = os.environ.get("SUISHEN_ADMIN_TOKEN", "")
        if not admin:
            raise SetupError("set SUISHEN_ADMIN_TOKEN to the target service's operator token")
        return cls(
            host=host.rstrip("/"),
            admin_token=admin,
            citizens=int(os.environ.get("SUISHEN_LOADTEST_CITIZENS", "200")),
            rate_limit=int(os.environ.get("SUISHEN_LOADTEST_RATE_LIMIT", "100000")),
            citizen_tokens_file=os.environ.get("SUISHEN_LOADTEST_CITIZEN_TOKENS") or None,
            install_fares=os.environ.get("SUISHEN_LOADTEST_FARES", "install") != "keep",
        )


def _ok(response: requests.Response, expected: int, what: str) -> dict[str, Any]:
    if response.status_code != expected:
        raise SetupError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


class _Token:
    """A bearer token renewed by ``fetch`` shortly before it expires."""

    def __init__(self, fetch: Any) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()  # gevent-aware once Locust has patched threading
        self._value = ""
        self._expires = 0.0

    def header(self) -> dict[str, str]:
        if time.monotonic() >= self._expires - REFRESH_MARGIN:
            with self._lock:
                if time.monotonic() >= self._expires - REFRESH_MARGIN:
                    value, lifetime = self._fetch()
                    self._value, self._expires = value, time.monotonic() + lifetime
        return {"Authorization": f"Bearer {self._value}"}


@dataclass
class Partner:
    """A registered partner of one scene, with a self-renewing access token."""

    scene: str
    name: str
    client_id: str
    token: _Token

    def auth(self) -> dict[str, str]:
        return self.token.header()


@dataclass
class Citizen:
    """A citizen of the pool, with a self-renewing bearer token."""

    sub: str
    token: _Token

    def auth(self) -> dict[str, str]:
        return self.token.header()


VENUES = 20  # shops whose printed codes ShopVisitor users scan


class City:
    """Partners, citizens and shops registered on one target service."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.session = requests.Session()
        self.partners: dict[str, Partner] = {}
        self.citizens: list[Citizen] = []
        self.fares: FareTable | None = None  # the metro table rides are checked against
        self.venues: list[tuple[str, str]] = []  # (venue id, printed code) of the shops
        self._free: list[Citizen] = []
        self._lock = threading.Lock()

    # --- setup --------------------------------------------------------------------
    def setup(self) -> City:
        cfg = self.config
        admin = {"Authorization": f"Bearer {cfg.admin_token}"}
        for scene, attributes in SCENE_ATTRIBUTES.items():
            name = f"loadtest {scene} {cfg.run_id}"
            registered = _ok(self.session.post(
                f"{cfg.host}/v1/admin/partners", headers=admin, timeout=TIMEOUT,
                json={"name": name, "scenes": [scene], "attributes": attributes,
                      "rate_limit_per_second": cfg.rate_limit},
            ), 201, f"register the {scene} partner")
            client_id, secret = registered["client_id"], registered["client_secret"]
            self.partners[scene] = Partner(scene, name, client_id,
                                           _Token(self._partner_fetcher(client_id, secret)))
        for sub, preset in self._subjects():
            self.citizens.append(self._add_citizen(sub, preset))
        self._free = list(reversed(self.citizens))
        if cfg.install_fares:
            operator = f"loadtest-metro-{cfg.run_id}"
            _ok(self.session.put(f"{cfg.host}/v1/admin/fares/metro", headers=admin,
                                 timeout=TIMEOUT, json=metro_table(operator)),
                200, "install the metro fare table")
            self.fares = parsed_metro_table(operator)
        for i in range(VENUES):
            venue = _ok(self.session.post(
                f"{cfg.host}/v1/admin/venues", headers=admin, timeout=TIMEOUT,
                json={"name": f"loadtest shop {i} {cfg.run_id}", "kind": "shop",
                      "address": f"{i} Nanjing Road", "info": {}}),
                201, "register a shop")
            self.venues.append((venue["venue_id"], venue["code"]))
        for partner in self.partners.values():
            partner.auth()
        return self

    def _add_citizen(self, sub: str, preset: str | None) -> Citizen:
        cfg = self.config
        n = len(self.citizens)
        _ok(self.session.put(
            f"{cfg.host}/v1/admin/subjects/{sub}",
            headers={"Authorization": f"Bearer {cfg.admin_token}"}, timeout=TIMEOUT,
            json={"status": "active", "attributes": {
                "name": f"Load Citizen {n}", "reader_id": f"R-{n:06d}",
                "transit_account": f"T-{n:08d}", "medical_insurance_id": f"M-{n:010d}",
            }},
        ), 200, f"upsert subject {sub}")
        token = _Token(self._citizen_fetcher(sub, preset))
        token.header()  # fetch now: setup, not load
        return Citizen(sub, token)

    def _subjects(self) -> list[tuple[str, str | None]]:
        cfg = self.config
        if cfg.citizen_tokens_file:
            pairs: list[tuple[str, str | None]] = []
            for line in Path(cfg.citizen_tokens_file).read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    sub, token = line.split(None, 1)
                    pairs.append((sub, token.strip()))
            if not pairs:
                raise SetupError(f"no '<sub> <token>' lines in {cfg.citizen_tokens_file}")
            return pairs
        return [(f"loadtest-{cfg.run_id}-{i:05d}", None) for i in range(cfg.citizens)]

    def _partner_fetcher(self, client_id: str, secret: str) -> Any:
        def fetch() -> tuple[str, float]:
            issued = _ok(self.session.post(
                f"{self.config.host}/v1/oauth/token", timeout=TIMEOUT,
                data={"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": secret},
            ), 200, "partner token")
            return str(issued["access_token"]), float(issued["expires_in"])
        return fetch

    def _citizen_fetcher(self, sub: str, preset: str | None) -> Any:
        if preset is not None:
            return lambda: (preset, float("inf"))

        def fetch() -> tuple[str, float]:
            issued = _ok(self.session.post(
                f"{self.config.host}/v1/dev/citizen-token", json={"sub": sub},
                timeout=TIMEOUT,
            ), 200, "development citizen token (production posture? use "
                    "SUISHEN_LOADTEST_CITIZEN_TOKENS)")
            return str(issued["access_token"]), float(issued["expires_in"])
        return fetch

    # --- use ----------------------------------------------------------------------
    def citizen(self) -> Citizen:
        return random.choice(self.citizens)

    def partner(self, scene: str) -> Partner:
        return self.partners[scene]

    def rider(self) -> Citizen:
        """A citizen no other rider or gate of this process uses (see the docstring)."""
        with self._lock:
            if self._free:
                return self._free.pop()
            if self.config.citizen_tokens_file:
                return random.choice(self.citizens)  # shared: give more tokens
            sub = f"loadtest-{self.config.run_id}-r{secrets.token_hex(4)}"
            citizen = self._add_citizen(sub, None)
            self.citizens.append(citizen)
            return citizen

    def device(self, citizen: Citizen, *, slots: int = 3) -> Device:
        """Register a phone for ``citizen`` (its offline credentials: ``slots`` hours)."""
        keys = Device.new_keys(slots)
        answer = _ok(self.session.post(
            f"{self.config.host}/v1/devices", headers=citizen.auth(), timeout=TIMEOUT,
            json={"name": "loadtest phone", "keys": [k.public().jwk_members() for k in keys]},
        ), 201, "register a device")
        return Device.from_registration(keys, answer)


_city: City | None = None
_city_lock = threading.Lock()


def get_city(host: str) -> City:
    """This process's city, set up on first call (thread- and greenlet-safe)."""
    global _city  # noqa: PLW0603 - one city per load process
    if _city is None:
        with _city_lock:
            if _city is None:
                _city = City(Config.from_env(host)).setup()
    return _city
