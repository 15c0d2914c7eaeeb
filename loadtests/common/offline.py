"""Offline codes and fare tables for the load test (no Locust import).

* :class:`Device` — a citizen's phone: P-256 keys registered with ``POST /v1/devices``
  (setup traffic), one service-signed credential per hourly slot; it makes offline codes
  locally (``suishen.keys.offline.make_code``), as the wallet does.
* :func:`metro_table` — the fare table the load test installs for ``metro``: stations
  ``L<line>-S<station>`` for the lines and stations the riders use, zone by station
  number (1-10: zone 0, 11-20: zone 1, 21-30: zone 2), so a ride crosses 0-2 zones.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.verifiers.transit import FareTable, parse_fare_table

METRO_LINES = 20
METRO_STATIONS = 30


def metro_table(operator: str) -> dict[str, Any]:
    """The load test's metro fare table (``PUT /v1/admin/fares/metro`` body)."""
    zones = {f"L{line}-S{station}": (station - 1) // 10
             for line in range(1, METRO_LINES + 1) for station in range(1, METRO_STATIONS + 1)}
    return {"operator": operator, "zones": zones, "fares": {"0": 300, "1": 400, "2": 500},
            "max_fare": 900, "exit_without_entry": "refuse"}


def parsed_metro_table(operator: str) -> FareTable:
    """The same table as the service validates it: what a fare must be."""
    return parse_fare_table("metro", metro_table(operator))


@dataclass
class Device:
    """A registered phone: its keys and the credential each one was given."""

    slots: list[tuple[PrivateKey, bytes, int, int]] = field(default_factory=list)
    counter: int = 0

    @classmethod
    def from_registration(cls, keys: list[PrivateKey], answer: dict[str, Any]) -> Device:
        """Match the answer's credentials (``POST /v1/devices``) to their keys."""
        device = cls()
        by_x = {key.public().raw[1:33]: key for key in keys}
        for entry in answer.get("credentials", []):
            text = entry["credential"]
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            for x, key in by_x.items():
                claims = koff.parse_code(koff.make_code(key, raw, iat=1)).credential.claims
                if claims.device_key.x == x:
                    device.slots.append((key, raw, claims.nbf, claims.exp))
                    break
        return device

    @staticmethod
    def new_keys(count: int) -> list[PrivateKey]:
        """Fresh P-256 device keys."""
        return [PrivateKey.generate(Alg.ES256) for _ in range(count)]

    def covers(self, at: int) -> bool:
        """True when a credential's slot covers ``at``."""
        return any(nbf <= at < exp for _, _, nbf, exp in self.slots)

    def code(self, at: int) -> str:
        """An offline code made at ``at`` (each one distinct: a counter)."""
        self.counter = (self.counter + 1) % 256
        for key, raw, nbf, exp in self.slots:
            if nbf <= at < exp:
                return koff.make_code(key, raw, iat=at, counter=self.counter)
        raise LookupError(f"no credential of this device covers {at}")
