"""Repository and state interfaces: what the service needs from storage, nothing more.

Durable data (a :class:`Database`): subjects (citizens), partners, key sets, audit
records, devices and offline credentials (:mod:`.devices`), fare tables and journeys
(:mod:`.transit`), enterprises and agencies (:mod:`.enterprises`). Implementations:
:mod:`.sqlite` (embedded default), :mod:`.postgres`.

Fast shared state (a :class:`StateBackend`): single-use memory, per-partner rate limits,
the change feed that carries status and key changes to every process, and a shared
subject cache. Implementations: :mod:`.memory` (one process), :mod:`.redis_state`.

Rules every implementation follows (the contract suite in ``tests/contract`` checks
them against every backend):

* Methods are ``async`` and raise :class:`suishen.errors.BackendUnavailable` when the
  backend cannot be reached (connection refused, timeout) — never a driver exception.
* Writes are atomic: a failed call changes nothing.
* Times are integer seconds since the epoch unless named ``*_ms``.
* Subject handles are 10 random bytes (:data:`suishen.codecs.sc1.HANDLE_BYTES`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from suishen.app.storage.devices import DeviceRepository
from suishen.app.storage.enterprises import EnterpriseRepository
from suishen.app.storage.transit import SlotMove, TransitRepository
from suishen.app.storage.venues import VenueRepository
from suishen.errors import StorageError
from suishen.keys.keyset import KeySetStore

SUBJECT_STATUSES = ("active", "suspended")


@dataclass(frozen=True, slots=True)
class Subject:
    """A citizen: the identity provider's ``sub``, the random handle codes carry, a
    status and attributes (``name``, ``medical_insurance_id``, ``reader_id``,
    ``transit_account``)."""

    sub: str
    handle: bytes
    status: str
    attributes: Mapping[str, str]
    created_at: int
    updated_at: int

    @property
    def suspended(self) -> bool:
        """True when the citizen's codes must be refused."""
        return self.status == "suspended"


@dataclass(frozen=True, slots=True)
class Partner:
    """A registered partner (gate operator, hospital, library, venue, government
    window). ``enterprise_attributes``: what it may see of an enterprise (§6.3)."""

    client_id: str
    name: str
    scenes: tuple[str, ...]
    attributes: tuple[str, ...]
    rate_limit_per_second: int | None
    secret_hash: str
    created_at: int
    enterprise_attributes: tuple[str, ...] = ()


class AuditRecord(msgspec.Struct, frozen=True):
    """One verification decision. ``subject_handle`` is None when the code could not be
    attributed to a citizen (malformed, unknown key, bad signature).

    An immutable msgspec Struct rather than a frozen dataclass: one is made for every
    request on the verify path, and a Struct is built in C (0.07 against 1.2 us with
    11 fields, timeit; with VerifyOutcome, 39 k instructions less per verify request in
    ``benchmarks/verify_inproc_bench.py --instructions``). Copies with a change:
    :func:`msgspec.structs.replace`."""

    at_ms: int
    partner_id: str
    partner_name: str
    scene: str
    checkpoint: str | None
    direction: str | None
    reason: str
    subject_handle: bytes | None
    kid: str | None
    request_id: str | None = None
    offline: bool = False  # decided by an offline gate, uploaded later (POST /v1/gate-events)

    def as_row(self) -> tuple[Any, ...]:
        """The values in :data:`AUDIT_COLUMNS` order (what backends insert)."""
        return (
            self.at_ms, self.partner_id, self.partner_name, self.scene, self.checkpoint,
            self.direction, self.reason, self.subject_handle, self.kid, self.request_id,
            self.offline,
        )

    def as_json(self) -> str:
        """The record as ASCII-only JSON (NUL and lone surrogates escaped): storable
        anywhere, for the dead-letter table."""
        import json

        values = dict(zip(AUDIT_COLUMNS.replace(" ", "").split(","), self.as_row(), strict=True))
        handle = values["subject_handle"]
        values["subject_handle"] = None if handle is None else bytes(handle).hex()
        return json.dumps(values, ensure_ascii=True, sort_keys=True)

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> AuditRecord:
        """Inverse of :meth:`as_row` (drivers may return the handle as a memoryview)."""
        (at_ms, partner_id, partner_name, scene, checkpoint, direction, reason, handle, kid, rid,
         offline) = values
        return cls(
            at_ms, partner_id, partner_name, scene, checkpoint, direction, reason,
            None if handle is None else bytes(handle), kid, rid, bool(offline),
        )


# The audit table's columns, in AuditRecord.as_row order, for both SQL backends.
AUDIT_COLUMNS = (
    "at_ms, partner_id, partner_name, scene, checkpoint, direction, reason, subject_handle, "
    "kid, request_id, offline"
)
AUDIT_MARKS_SQLITE = ", ".join("?" * len(AUDIT_COLUMNS.split(",")))
AUDIT_MARKS_POSTGRES = ", ".join(f"${i + 1}" for i in range(len(AUDIT_COLUMNS.split(","))))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored audit record with its id (ids grow with time; used as the page cursor)."""

    id: int
    record: AuditRecord


class SubjectRepository(Protocol):
    """Citizens."""

    async def get(self, sub: str) -> Subject | None:
        """The subject with this identity-provider ``sub``."""

    async def get_by_handle(self, handle: bytes) -> Subject | None:
        """The subject with this handle."""

    async def enroll(self, sub: str, *, handle: bytes, now: int) -> Subject:
        """Return the subject ``sub``, creating it (active, no attributes, with
        ``handle``) when absent. Concurrent calls for one ``sub`` return one subject.
        Raises :class:`HandleTaken` if ``handle`` belongs to another subject."""

    async def upsert(
        self,
        sub: str,
        *,
        status: str,
        attributes: Mapping[str, str],
        handle: bytes,
        now: int,
    ) -> Subject:
        """Create or replace status and attributes; ``handle`` is used only when the
        subject is created (an existing subject keeps its handle)."""

    async def suspended_handles(self) -> list[bytes]:
        """Handles of every suspended subject (loaded at start-up into memory)."""


class PartnerRepository(Protocol):
    """Partners."""

    async def create(self, partner: Partner) -> None:
        """Store a new partner (client ids are unique)."""

    async def get(self, client_id: str) -> Partner | None:
        """The partner with this client id."""


# The one key-set store interface (compare-and-swap, versions) is defined by the core,
# so that the key directory of the CLI implements it too; the databases' repositories
# are implementations of it.
KeySetRepository = KeySetStore


class AuditRepository(Protocol):
    """Audit records of verification decisions."""

    async def append(self, records: Sequence[AuditRecord]) -> None:
        """Store a batch (all or nothing)."""

    async def dead_letter(self, record: AuditRecord, *, error: str, now_ms: int) -> None:
        """Set aside a record the database refused for its content (stored escaped)."""

    async def dead_letters(self) -> list[str]:
        """The set-aside records (JSON text), oldest first (operators, tests)."""

    async def for_subject(
        self, handle: bytes, *, limit: int, before_id: int | None = None
    ) -> list[AuditEntry]:
        """A citizen's records, newest first, with ids below ``before_id`` if given."""


class Database(Protocol):
    """The durable backend: one object holding the repositories."""

    # Read-only members (properties), so that an implementation may hold its own
    # repository classes: a plain annotated attribute would be invariant for mypy.
    @property
    def subjects(self) -> SubjectRepository:
        """Citizens."""

    @property
    def partners(self) -> PartnerRepository:
        """Partners."""

    @property
    def keysets(self) -> KeySetRepository:
        """Key sets."""

    @property
    def audit(self) -> AuditRepository:
        """Audit records."""

    @property
    def devices(self) -> DeviceRepository:
        """Devices, offline credentials and the trust version log."""

    @property
    def transit(self) -> TransitRepository:
        """Fare tables and journey records (:mod:`.transit`)."""

    @property
    def enterprises(self) -> EnterpriseRepository:
        """Enterprises and their agencies (:mod:`.enterprises`)."""

    @property
    def venues(self) -> VenueRepository:
        """Venues and check-ins (:mod:`.venues`)."""

    async def migrate(self) -> list[str]:
        """Apply pending schema migrations (idempotent, safe to run concurrently);
        return the names of the ones applied now."""

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the backend answers."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class Event:
    """A change every process must apply: ``kind`` is ``subject`` (data: ``handle``
    hex, ``status``), ``keys`` (data: ``name``, ``version``) or ``partner`` (data:
    ``client_id``). A backend that may have lost events (a gap in a shared feed, a
    restarted server) delivers ``resync`` (no data): reload everything from the
    database."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


EventHandler = Callable[[Event], Awaitable[None]]


class StateBackend(Protocol):
    """Fast state shared by every API process."""

    async def first_use(self, key: bytes, *, ttl_seconds: int) -> bool:
        """Atomically mark a single-use key; True only for the first call while it is
        remembered (``ttl_seconds`` from now)."""

    async def first_use_and_move(
        self, key: bytes, *, ttl_seconds: int, slot: bytes, move: SlotMove
    ) -> tuple[bool, bytes | None, bytes | None]:
        """:meth:`first_use` of ``key`` and, in the same atomic step for a first use, the
        journey slot ``slot`` moved by ``move`` (:meth:`SlotMove.predict`): returns
        ``(first, found, after)``, the slot's value before and after (``(False, None,
        None)`` when the key was used already). One round trip for a transit tap."""

    async def swap_slot(
        self, slot: bytes, *, expected: bytes | None, value: bytes | None, ttl_seconds: int
    ) -> tuple[bool, bytes | None]:
        """Compare and set: store ``value`` in ``slot`` (None: empty it) for
        ``ttl_seconds`` only if it still holds ``expected``. Returns ``(True, None)``
        when done, else ``(False, current value)`` so that the caller can decide again."""

    async def rate_limit(self, partner_id: str, *, per_second: int, now_ms: int,
                         count: int = 1) -> float:
        """Take ``count`` requests at once from the partner's budget of ``per_second``
        requests per second, shared by all processes: all of them (0.0) or none (the
        seconds to wait until they would all fit)."""

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every process's handler (this one's included)."""

    def subscribe(self, handler: EventHandler) -> None:
        """Set the handler for events (one per process, set before :meth:`start`)."""

    async def cache_get(self, key: str) -> bytes | None:
        """A cached value (subject attributes), or None."""

    async def cache_set(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        """Cache a value."""

    async def cache_delete(self, key: str) -> None:
        """Drop a cached value."""

    async def cache_add(self, key: str, value: bytes, *, ttl_ms: int) -> bool:
        """Store ``value`` for ``ttl_ms`` milliseconds only if ``key`` holds nothing
        (Redis ``SET NX PX``): True when stored. Short locks and first-writer-wins
        entries (the shared trust-bundle cache)."""

    async def start(self) -> None:
        """Start background work (the change-feed listener)."""

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the backend answers."""

    async def close(self) -> None:
        """Stop background work and release connections."""


class HandleTaken(StorageError):
    """The random handle chosen for a new subject is already used (retry with another)."""


class PartnerExists(StorageError):
    """A partner with this client id is already registered."""
