"""``POST /v1/verify`` behind the route: the pure pipeline, then single use, subject
status and attributes, pairwise subject, audit and metrics.

Hot-path budget (SPEC §7): for a valid code of a known partner this does no database
query — keys, the suspended set, the partner and (usually) the citizen's attributes are
in memory; single use is one Redis ``SET NX`` in production. The audit record is queued,
not written.

Redis down (single use cannot be checked across processes): the
``SUISHEN_SINGLE_USE_WHEN_REDIS_DOWN`` choice holds — ``closed`` (default) answers 503 so
that the gate falls back to its offline check and nobody passes twice; ``local`` uses
this process's memory (a code could pass once per process during the outage).
Re-scannable scenes do not need Redis at all (fail open is safe there).
"""

from __future__ import annotations

import logging
from typing import Any

from suishen.app.observability import Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.services.keys import KeyManager
from suishen.app.services.subjects import SubjectService
from suishen.app.storage.base import AuditRecord, Partner, StateBackend
from suishen.errors import BackendUnavailable
from suishen.keys.blinding import pairwise_subject
from suishen.timefmt import rfc3339
from suishen.verifiers.core import verify
from suishen.verifiers.memory import InMemoryReplay
from suishen.verifiers.policy import ScenePolicy
from suishen.verifiers.reasons import Reason

log = logging.getLogger("suishen.verify")


class SingleUseUnavailable(BackendUnavailable):
    """Single use cannot be checked and the scene fails closed."""


class VerifyService:
    """Judges codes for partners."""

    def __init__(
        self,
        *,
        keys: KeyManager,
        subjects: SubjectService,
        state: StateBackend,
        audit: AuditWriter,
        metrics: Metrics,
        skew: int,
        fallback_local: bool,
    ) -> None:
        self._keys = keys
        self._subjects = subjects
        self._state = state
        self._audit = audit
        self._metrics = metrics
        self._skew = skew
        self._local_replay = InMemoryReplay() if fallback_local else None
        self._counted: dict[tuple[str, str], Any] = {}  # labelled counters, looked up once

    async def verify(
        self,
        *,
        partner: Partner,
        policy: ScenePolicy,
        code: object,
        checkpoint: str | None,
        direction: str | None,
        now: float,
        request_id: str | None,
    ) -> dict[str, Any]:
        """Judge one code; the answer is the JSON body of a 200 response."""
        now_s = int(now)
        decision = verify(
            code,
            keys=self._keys.view().keyring,
            policy=policy,
            now=now_s,
            skew=self._skew,
            direction=direction,
            checkpoint=checkpoint,
            revocations=self._subjects.revocations,
        )
        if decision.replay_key is not None and decision.claims is not None:
            ttl = max(1, decision.claims.exp + self._skew - now_s + 1)
            if not await self._first_use(decision.replay_key, ttl, now_s):
                decision = decision.rejected(Reason.REPLAYED)

        body: dict[str, Any] = {"valid": decision.valid, "reason": decision.reason.value}
        handle = decision.subject_handle
        if decision.valid and handle is not None:
            unavailable = False
            try:
                cached = await self._subjects.lookup(handle)
            except BackendUnavailable:
                cached, unavailable = None, True
                self._metrics.backend_errors.labels("database", "subject_lookup").inc()
            if (cached is None and not unavailable) or (
                cached is not None and cached.status != "active"
            ):
                # Unknown citizen, or suspended in storage before the event arrived.
                decision = decision.rejected(Reason.REVOKED)
                body = {"valid": False, "reason": Reason.REVOKED.value}
            else:
                have = cached.attributes if cached is not None else {}
                body["subject"] = pairwise_subject(
                    self._keys.pairwise_secret, partner.client_id, handle
                )
                body["attributes"] = {k: have[k] for k in partner.attributes if k in have}
                if unavailable:
                    body["attributes_unavailable"] = True
                body["kind"] = decision.kind
                body["code_expires_at"] = rfc3339(decision.expires_at or 0)
        body["verified_at"] = rfc3339(now)

        label = (policy.name, decision.reason.value)
        counter = self._counted.get(label)
        if counter is None:
            counter = self._counted[label] = self._metrics.verifications.labels(*label)
        counter.inc()
        self._audit.record(
            AuditRecord(
                at_ms=int(now * 1000),
                partner_id=partner.client_id,
                partner_name=partner.name,
                scene=policy.name,
                checkpoint=checkpoint,
                direction=policy.direction_of(direction) or None,
                reason=decision.reason.value,
                subject_handle=handle,
                kid=decision.kid,
                request_id=request_id,
            )
        )
        return body

    async def _first_use(self, key: bytes, ttl: int, now: int) -> bool:
        try:
            return await self._state.first_use(key, ttl_seconds=ttl)
        except BackendUnavailable:
            self._metrics.backend_errors.labels("state", "first_use").inc()
            if self._local_replay is None:
                raise SingleUseUnavailable(
                    "single-use state unavailable; scene fails closed"
                ) from None
            return self._local_replay.first_use(key, expires_at=now + ttl, now=now)
