"""Devices, offline credentials and the trust-bundle version log: the types and the
repository interface (SPEC.md §6.1, issue 9). Implementations:
:mod:`.sqlite_devices`, :mod:`.postgres_devices`; the contract suite in
``tests/contract/test_devices.py`` runs against both.

Model:

* A **device** belongs to one citizen (the identity provider's ``sub``), has a random
  id, a name, and a status ``active`` or ``revoked``.
* A **credential row** says which device holds the credential of ``(slot_start,
  status_index)``: the pair is unique (it names the credential's bit in the slot's status
  list and its blinding nonce), a device holds at most one credential per slot, and a
  device key (its 33-byte compressed point) is registered once. The credential itself
  is not stored: nothing needs it after it was handed out.
* ``revoked`` on a credential row is the bit a trust bundle publishes: set when its
  device is revoked or its citizen suspended, cleared when the citizen is reactivated.
* The **trust version** is a counter bumped on every change of what a bundle says
  (``revoke``: with the flipped pairs in the log; ``reset``: bits were cleared, so no
  delta may span it; ``keys``: the code-signing keys changed; ``tick``: time passed, so
  that gates see a newer bundle). Versions commit in order, so a reader that sees
  version N has seen every change up to N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

DEVICE_STATUSES = ("active", "revoked")
TRUST_KINDS = ("init", "revoke", "reset", "keys", "tick")


@dataclass(frozen=True, slots=True)
class Device:
    """A citizen's registered device. ``valid_until`` is the end of its last
    credential's slot (None before any), filled in by reads."""

    device_id: str
    sub: str
    name: str
    created_at: int
    status: str = "active"
    revoked_at: int | None = None
    valid_until: int | None = None

    @property
    def revoked(self) -> bool:
        """True once the device is revoked."""
        return self.status == "revoked"


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """Which device holds the credential of one slot, and with which key."""

    device_id: str
    slot_start: int
    slot_end: int
    status_index: int
    kid: str
    device_key: bytes


@dataclass(frozen=True, slots=True)
class TrustHead:
    """The latest trust version, when it was made, and the code-signing key-set
    version its bundles carry."""

    version: int
    at: int
    keys: int


@dataclass(frozen=True, slots=True)
class TrustChanges:
    """What changed after version ``since`` up to ``version``: ``since_at`` is when
    ``since`` was made; ``flips`` the pairs revoked meanwhile (slot -> indices);
    ``reset`` is True when a bit was cleared meanwhile (no delta can say that)."""

    since: int
    since_at: int
    version: int
    flips: dict[int, list[int]] = field(default_factory=dict)
    reset: bool = False


class DeviceRepository(Protocol):
    """Devices, credential rows and the trust version log."""

    async def create(self, device: Device) -> None:
        """Store a new device (ids are random and unique)."""

    async def get(self, device_id: str) -> Device | None:
        """The device with this id (with ``valid_until``), or None."""

    async def for_subject(self, sub: str) -> list[Device]:
        """The citizen's devices, oldest first (with ``valid_until``)."""

    async def known_keys(self, keys: Sequence[bytes]) -> set[bytes]:
        """Which of these device keys are already registered (by anyone)."""

    async def add_credentials(self, rows: Sequence[CredentialRow]) -> list[CredentialRow]:
        """Insert the rows that clash with nothing (``(slot, index)`` taken, the device
        already has the slot, the key is registered) and return those inserted; the
        caller retries the others with new indices."""

    async def revoke(self, device_id: str, *, now: int) -> tuple[Device, list[tuple[int, int]]]:
        """Revoke a device: its unexpired credentials (``slot_end > now``) are flipped
        at a new trust version. Returns the device and the flipped ``(slot, index)``
        pairs (none when it was already revoked). :class:`KeyError` for an unknown id."""

    async def subject_status(self, sub: str, *, suspended: bool, now: int) -> int | None:
        """A citizen was suspended (flip the unexpired credentials of their active
        devices) or reactivated (clear them: a ``reset`` version). Returns the new
        trust version, or None when nothing changed."""

    async def revoked(self, slots: Sequence[int]) -> dict[int, list[int]]:
        """The revoked indices of each of these slots (slots without any are absent)."""

    async def revoked_device_credentials(self, *, after: int) -> list[tuple[int, int]]:
        """``(slot, index)`` of the credentials of revoked devices whose slot ends after
        ``after`` (loaded by every process at start-up for online verification)."""

    async def trust_version(self) -> TrustHead:
        """The latest trust version."""

    async def bump(self, kind: str, *, now: int, keys: int | None = None) -> TrustHead:
        """A new trust version of ``kind`` (``keys`` or ``tick``) with no flips,
        carrying key-set version ``keys`` (None: the previous version's)."""

    async def changes_since(self, version: int) -> TrustChanges | None:
        """The changes after ``version``; None when ``version`` is not a version this
        store made (unknown, or newer than the latest)."""
