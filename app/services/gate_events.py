"""Offline gate uploads (``POST /v1/gate-events``, issue 10, SPEC.md §6.1-6.2): a gate's
offline decisions, re-verified, into the citizens' histories and journeys.

Design (``docs/transit.md`` §Offline gate uploads):

* The service never takes the gate's word for identity: each accepted entry's code is
  verified again by the service's own pipeline (:meth:`VerifyService.judge_pure`) *at
  the time the gate decided* (``decided_at``), with the service's keys and its live
  revocation state. A code that does not verify is a per-entry error with its reason;
  the handle comes from the code itself (a personal code's blinded ``sub``, an offline
  code's blinded credential), never from the gate.
* Per-entry errors (the batch goes on): a malformed entry, a scene the partner is not
  registered for (``scene_not_allowed``: another partner's scene is the same case — a
  gate only uploads in its own partner's scenes), ``decided_at`` in the future beyond
  the clock skew (``not_yet_valid``), a code that does not verify. Batch errors (nothing
  is written): not a JSON object with an ``events`` array (422), more than
  :data:`MAX_EVENTS` entries (413), the database unavailable (503).
* Idempotent per (partner, gate, use): the *use* is named by what the code's
  signatures cover — kid and cti of a personal code, the credential (kid, slot, index)
  with ``iat`` and counter of an offline code — with scene and direction, never by the
  text (an ECDSA signature rewritten as ``n - s`` is a second valid text of one code:
  it is the same use). A re-sent entry is a ``duplicate`` and changes nothing; the same
  use from another gate is stored as a ``duplicate_use`` (the history shows it
  ``replayed``) and fared once.
* Journeys: every accepted tap is stored; on each upload the offline taps of each
  citizen touched are re-paired per network from all their stored taps
  (:func:`suishen.verifiers.transit.pair_offline`, deterministic), replacing that
  citizen's offline journeys on that network — so entries and exits uploaded in any
  order, by different gates, hours apart, pair the same way, and settlement and
  ``/v1/me/journeys`` (both read the journeys table) agree to the fen.
* Decisions the gate refused (``valid: false``) let nobody through and fare nothing:
  they are counted as ``ignored`` and not stored.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.transit import SLOT_TTL_SECONDS, TransitService
from suishen.app.services.verify import VerifyService
from suishen.app.storage.base import AuditRecord, Database, Partner
from suishen.app.storage.transit import (
    ACCEPTED,
    DUPLICATE,
    DUPLICATE_USE,
    GateTap,
    JourneyRecord,
)
from suishen.codecs.sc1 import MAX_CODE_CHARS
from suishen.verifiers.core import Decision
from suishen.verifiers.offline import replay_id
from suishen.verifiers.policy import DIRECTIONS, SCENES
from suishen.verifiers.reasons import Reason
from suishen.verifiers.transit import OfflineTap, pair_offline

MAX_EVENTS = 1000
YIELD_EVERY = 50  # entries verified between two yields to the event loop (verify p99)
MAX_CHECKPOINT = 64
MAX_EPOCH = 2**32 - 1


@dataclass(frozen=True, slots=True)
class EntryError:
    """Why one entry of a batch was not taken."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class UploadResult:
    """What one batch did (the answer of ``POST /v1/gate-events``)."""

    accepted: int = 0
    duplicates: int = 0
    duplicate_uses: int = 0
    ignored: int = 0
    errors: list[EntryError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The answer body."""
        return {
            "accepted": self.accepted, "duplicates": self.duplicates,
            "duplicate_uses": self.duplicate_uses, "ignored": self.ignored,
            "errors": [{"index": e.index, "reason": e.reason, "detail": e.detail}
                       for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    code: str
    scene: str
    direction: str | None
    checkpoint: str | None
    decided_at: int
    valid: bool


def parse_entry(raw: object) -> _Entry | str:
    """One uploaded decision (the gate's log line, ``sdk.gate``), or why it is malformed.
    Members other than these are the gate's own (``verified_at``, ``trust``...) and
    ignored."""
    if not isinstance(raw, dict):
        return "an entry must be an object"
    code, scene, direction = raw.get("code"), raw.get("scene"), raw.get("direction")
    checkpoint, at, valid = raw.get("checkpoint"), raw.get("decided_at"), raw.get("valid")
    if not isinstance(code, str) or not 1 <= len(code) <= MAX_CODE_CHARS:
        return f"code: a string of 1-{MAX_CODE_CHARS} characters"
    if not isinstance(scene, str) or scene not in SCENES:
        return f"scene: one of {sorted(SCENES)}"
    if direction is not None and direction not in DIRECTIONS:
        return f"direction: one of {list(DIRECTIONS)} or null"
    if checkpoint is not None and not (
        isinstance(checkpoint, str) and 1 <= len(checkpoint) <= MAX_CHECKPOINT
        and checkpoint.isascii() and checkpoint.isprintable()
    ):
        return f"checkpoint: 1-{MAX_CHECKPOINT} printable ASCII characters or null"
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= MAX_EPOCH:
        return "decided_at: seconds since the epoch (an integer)"
    if not isinstance(valid, bool):
        return "valid: the gate's decision (true or false)"
    return _Entry(code, scene, direction, checkpoint, at, valid)


def use_key(decision: Decision, scene: str, direction: str | None) -> bytes:
    """What names one use of a verified code: what its signatures cover (never its
    text), with the scene and the direction (``None``: the scene's default)."""
    if decision.offline_code is not None:
        covered = b"offline\x00" + replay_id(decision.offline_code)
    else:
        assert decision.claims is not None and decision.kid is not None
        covered = b"personal\x00" + bytes.fromhex(decision.kid) + decision.claims.cti
    way = SCENES[scene].direction_of(direction) or ""
    return hashlib.sha256(covered + b"\x00" + f"{scene}:{way}".encode()).digest()


class GateUploads:
    """Re-verifies and stores offline gates' decisions (see the module docstring)."""

    def __init__(self, db: Database, *, verifier: VerifyService, transit: TransitService,
                 metrics: Metrics, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._verifier = verifier
        self._transit = transit
        self._metrics = metrics
        self._clock = clock

    async def upload(self, partner: Partner, scopes: frozenset[str], events: Sequence[object],
                     *, request_id: str | None) -> UploadResult:
        """Judge and store one batch (at most :data:`MAX_EVENTS`, checked by the caller)."""
        now = int(self._clock())
        skew = self._verifier.skew
        result = UploadResult()
        taps: list[GateTap] = []
        audits: list[AuditRecord] = []
        for index, raw in enumerate(events):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                # 1,000 signature checks are ~0.5 s of CPU: let verifications through
                await asyncio.sleep(0)
            entry = parse_entry(raw)
            if isinstance(entry, str):
                result.errors.append(EntryError(index, Reason.MALFORMED.value, entry))
                continue
            if entry.scene not in partner.scenes or f"verify:{entry.scene}" not in scopes:
                result.errors.append(EntryError(index, Reason.SCENE_NOT_ALLOWED.value,
                                                f"this partner is not registered for scene "
                                                f"{entry.scene}"))
                continue
            if entry.decided_at > now + skew:
                result.errors.append(EntryError(index, Reason.NOT_YET_VALID.value,
                                                "decided_at is in the future"))
                continue
            if not entry.valid:
                result.ignored += 1
                continue
            policy = SCENES[entry.scene]
            decision = self._verifier.judge_pure(entry.code, policy, entry.checkpoint,
                                                 entry.direction, entry.decided_at)
            if not decision.valid or decision.subject_handle is None:
                reason = decision.reason if not decision.valid else Reason.UNKNOWN_KEY
                result.errors.append(EntryError(index, reason.value,
                                                "the code does not verify at decided_at"))
                continue
            way = policy.direction_of(entry.direction) or None
            taps.append(GateTap(partner.client_id, entry.checkpoint or "",
                                use_key(decision, entry.scene, entry.direction),
                                decision.subject_handle, entry.scene, way, entry.checkpoint,
                                entry.decided_at))
            audits.append(AuditRecord(
                at_ms=entry.decided_at * 1000, partner_id=partner.client_id,
                partner_name=partner.name, scene=entry.scene, checkpoint=entry.checkpoint,
                direction=way, reason=Reason.OK.value, subject_handle=decision.subject_handle,
                kid=decision.kid, request_id=request_id, offline=True,
            ))
        if taps:
            await self._store(result, taps, audits, now)
        for outcome, count in (("accepted", result.accepted), ("duplicate", result.duplicates),
                               ("duplicate_use", result.duplicate_uses),
                               ("ignored", result.ignored), ("error", len(result.errors))):
            if count:
                self._metrics.gate_events.labels(outcome).inc(count)
        return result

    async def _store(self, result: UploadResult, taps: list[GateTap],
                     audits: list[AuditRecord], now: int) -> None:
        """The verified taps, their history rows and journeys: one transaction."""

        def audit_of(index: int, outcome: str) -> AuditRecord:
            record = audits[index]
            if outcome == DUPLICATE_USE:  # the same code already passed another gate
                return msgspec.structs.replace(record, reason=Reason.REPLAYED.value)
            return record

        outcomes = await self._db.transit.store_gate_taps(
            taps, received_at=now, audit_of=audit_of, pairing=self._pairing)
        result.accepted += outcomes.count(ACCEPTED)
        result.duplicates += outcomes.count(DUPLICATE)
        result.duplicate_uses += outcomes.count(DUPLICATE_USE)

    def _pairing(self, handle: bytes, scene: str,
                 stored: list[GateTap]) -> list[JourneyRecord] | None:
        table = self._transit.table(scene)
        if table is None:
            return None
        journeys = pair_offline(
            table,
            (OfflineTap(t.decided_at, t.direction, t.checkpoint, t.use_key,
                        f"{t.partner_id}\x00{t.gate}") for t in stored),
            passback_seconds=self._transit.passback_seconds,
            forget_after=SLOT_TTL_SECONDS,
        )
        return [JourneyRecord(at * 1000, handle, journey, offline=True)
                for at, journey in journeys]

