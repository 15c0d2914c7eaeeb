"""``POST /v1/verify`` behind the route: the request checks (scope, scene, rate limit),
the pure pipeline, then single use, subject status and attributes, pairwise subject,
audit and metrics. The result is a :class:`VerifyOutcome` (no JSON, no HTTP): the route
presents it; refusals are domain errors that :mod:`suishen.app.problems` maps.

Hot-path budget (SPEC §7): for a valid code of a known partner this does no database
query — keys, the suspended set, the partner and (usually) the citizen's attributes are
in memory; single use is one Redis ``SET NX`` in production. The audit record is queued,
not written.

Redis down (single use cannot be checked across processes): the
``SUISHEN_SINGLE_USE_WHEN_REDIS_DOWN`` choice holds — ``closed`` (default) answers 503 so
that the gate falls back to its offline check and nobody passes twice; ``local`` uses
this process's memory (a code could pass once per process during the outage).
Re-scannable scenes do not need Redis at all (fail open is safe there).

Transit (issue 10, ``docs/transit.md``): in a metro, ferry or bus scene whose network
has a fare table, the single-use check also reads and moves the citizen's open entry
(one Redis script, :meth:`TransitService.move`); once the citizen is known to be active
the tap is decided by the pure core (``suishen.verifiers.transit.tap``) and a refusal
(``passback``, ``no_entry``) is the answer; a code refused after the move (the citizen
unknown or suspended in storage) has its move undone. The code's single use is
consumed by then: a refused tap burns the code (the citizen needs a new one anyway;
codes live 60 s), and the same code can never be tried again at another gate while the
first answer is in flight. With Redis down and
``local`` single use, taps are accepted without a journey.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.services.enterprises import AgencyView, EnterpriseService
from suishen.app.services.keys import KeyManager
from suishen.app.services.ratelimit import RateLimiter
from suishen.app.services.subjects import SubjectService
from suishen.app.services.transit import TransitService
from suishen.app.storage.base import AuditRecord, Partner, StateBackend
from suishen.errors import (
    BackendUnavailable,
    RateLimited,
    SceneNotAllowed,
    ScopeNotAllowed,
    UnknownScene,
)
from suishen.keys.blinding import pairwise_subject
from suishen.verifiers.core import NO_CREDENTIAL_STATUS, Decision, verify
from suishen.verifiers.enterprise import EnterpriseValue, public_view
from suishen.verifiers.memory import InMemoryReplay
from suishen.verifiers.offline import DEFAULT_LIFETIME, CredentialStatus
from suishen.verifiers.policy import SCENES, ScenePolicy
from suishen.verifiers.reasons import Reason
from suishen.verifiers.transit import FareTable, Journey
from suishen.verifiers.venue import NO_VENUES, VenueTrust

log = logging.getLogger("suishen.verify")
# Reason -> its string, looked up per request (an enum's .value is a descriptor call).
_VALUES = {reason: reason.value for reason in Reason}


class SingleUseUnavailable(BackendUnavailable):
    """Single use cannot be checked and the scene fails closed."""


class VerifyOutcome(msgspec.Struct, frozen=True):
    """The judgement of one code, as the service decided it (times in seconds since the
    epoch). ``subject``, ``attributes``, ``code_expires_at`` and ``enterprise`` (an
    enterprise code's attributes the partner may see) are set for a valid code only;
    ``kind`` whenever the code's signature was checked (the verify answer shows it for
    valid codes only, ``POST /v1/resolve`` for every judged code);
    ``attributes_unavailable`` says the citizen's attributes could not be read (the
    code itself was judged).

    An immutable msgspec Struct (built in C; one per request, see
    :class:`~suishen.app.storage.base.AuditRecord`); copies with a change:
    :func:`msgspec.structs.replace`."""

    valid: bool
    reason: Reason
    verified_at: float
    subject: str | None = None
    attributes: dict[str, str] | None = None
    kind: str | None = None
    code_expires_at: int | None = None
    attributes_unavailable: bool = False
    journey: Journey | None = None
    enterprise: dict[str, EnterpriseValue] | None = None
    venue_id: str | None = None  # a venue code's venue (hex), whenever it was judged


@dataclass(slots=True)
class _Tap:
    """A transit tap in flight: the network's table, the slot as found with single use
    and as the move left it (``read``: single use was first and moved the slot)."""

    table: FareTable
    found: bytes | None = None
    after: bytes | None = None
    read: bool = False
    handle: bytes = b""  # whose slot was moved


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
        limiter: RateLimiter,
        default_rate_per_second: int,
        skew: int,
        fallback_local: bool,
        clock: Clock = SYSTEM_CLOCK,
        credentials: CredentialStatus = NO_CREDENTIAL_STATUS,
        offline_lifetime: int = DEFAULT_LIFETIME,
        transit: TransitService | None = None,
        enterprises: EnterpriseService | None = None,
        venues: VenueTrust = NO_VENUES,
    ) -> None:
        self._enterprises = enterprises
        self._venues = venues  # venue codes: judged, then scene_not_allowed (SPEC §6.3)
        self._keys = keys
        self._subjects = subjects
        self._state = state
        self._audit = audit
        self._metrics = metrics
        self._limiter = limiter
        self._default_rate = default_rate_per_second
        self._skew = skew
        self._clock = clock
        self._credentials = credentials  # revoked devices' offline credentials, live
        self._offline_lifetime = offline_lifetime
        self._transit = transit
        self._local_replay = InMemoryReplay() if fallback_local else None
        self._counted: dict[tuple[str, str], Any] = {}  # labelled counters, looked up once

    async def judge(
        self,
        *,
        partner: Partner,
        scopes: frozenset[str],
        scene: str,
        code: object,
        checkpoint: str | None,
        direction: str | None,
        request_id: str | None,
    ) -> VerifyOutcome:
        """Check the request, then judge the code.

        Raises :class:`UnknownScene` for a scene without policy,
        :class:`ScopeNotAllowed` / :class:`SceneNotAllowed` when the token or the
        partner's registration does not cover ``scene``, :class:`RateLimited` when the
        partner's budget is spent, and :class:`SingleUseUnavailable` when a single-use
        scene cannot be checked.
        Every code that is judged, valid or not, gives an outcome (and an audit record).
        """
        policy = SCENES.get(scene)
        if policy is None:
            raise UnknownScene(f"unknown scene {scene}"[:100])
        if f"verify:{scene}" not in scopes:
            raise ScopeNotAllowed(f"this partner is not registered for scene {scene}")
        if scene not in partner.scenes:
            raise SceneNotAllowed(f"this partner is not registered for scene {scene}")
        now = await self.take(partner)
        return await self.verify(partner=partner, policy=policy, code=code,
                                 checkpoint=checkpoint, direction=direction, now=now,
                                 request_id=request_id)

    async def take(self, partner: Partner) -> float:
        """Take one request from the partner's rate budget (shared by verify and
        resolve) and return ``now``; :class:`RateLimited` when it is spent."""
        now = self._clock()
        rate = partner.rate_limit_per_second or self._default_rate
        wait = self._limiter.take_now(partner.client_id, per_second=rate, now=now)
        if wait is None:
            wait = await self._limiter.take(partner.client_id, per_second=rate, now=now)
        if wait > 0:
            self._metrics.rate_limited.inc()
            raise RateLimited("rate limit exceeded", retry_after=math.ceil(wait))
        return now

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
    ) -> VerifyOutcome:
        """Judge one code in ``policy``'s scene at ``now`` (no request checks)."""
        table = self._transit.table(policy.name) if self._transit is not None else None
        tapping = _Tap(table) if table is not None else None
        decision = await self._decide(code, policy, checkpoint, direction, int(now),
                                     tapping=tapping)
        decision, agency = self._agency(decision)
        outcome = await self._outcome(decision, partner, now)
        if agency is not None and outcome.valid:
            enterprise = agency.enterprise
            outcome = msgspec.structs.replace(outcome, enterprise=public_view(
                name=enterprise.name, uscc=enterprise.uscc,
                attributes=enterprise.attributes, allowed=partner.enterprise_attributes))
        if tapping is not None and tapping.read:
            if outcome.valid:
                outcome = await self._journey(outcome, decision, tapping,
                                              checkpoint=checkpoint, direction=direction,
                                              now=int(now))
            elif self._transit is not None:
                await self._transit.undo(tapping.table, tapping.handle,
                                         found=tapping.found, after=tapping.after)
        self._record(outcome, decision, partner, policy, checkpoint=checkpoint,
                     direction=direction, request_id=request_id)
        return outcome

    async def _decide(self, code: object, policy: ScenePolicy, checkpoint: str | None,
                      direction: str | None, now_s: int, *, tapping: _Tap | None) -> Decision:
        """The pure pipeline, then single use."""
        decision = self.judge_pure(code, policy, checkpoint, direction, now_s)
        expires_at = decision.expires_at
        if decision.replay_key is not None and expires_at is not None:
            ttl = max(1, expires_at + self._skew - now_s + 1)
            handle = decision.subject_handle
            if tapping is not None and handle is not None and decision.valid:
                first = await self._first_use_and_move(decision.replay_key, ttl, now_s,
                                                       tapping, handle, checkpoint=checkpoint,
                                                       direction=direction)
            else:
                first = await self._first_use(decision.replay_key, ttl, now_s)
            if not first:
                decision = decision.rejected(Reason.REPLAYED)
        return decision

    def _agency(self, decision: Decision) -> tuple[Decision, AgencyView | None]:
        """An enterprise code's decision made the agent's (their handle), or ``revoked``
        when the agency is gone or the enterprise or the agent is suspended; other
        kinds pass unchanged. ``revoked`` wins over ``scene_not_allowed`` (the order of
        :class:`Reason`)."""
        handle = decision.subject_handle
        if decision.kind != "enterprise" or handle is None:
            return decision, None
        view = self._enterprises.agency(handle) if self._enterprises is not None else None
        refusable = decision.valid or decision.reason is Reason.SCENE_NOT_ALLOWED
        if view is None:
            gone = decision.rejected(Reason.REVOKED) if refusable else decision
            return replace(gone, subject_handle=None), None
        agent = view.agency.agent_handle
        decision = replace(decision, subject_handle=agent)
        if refusable and (view.enterprise.suspended
                          or self._subjects.revocations.subject_revoked(agent)):
            return decision.rejected(Reason.REVOKED), None
        return decision, view
    def judge_pure(self, code: object, policy: ScenePolicy, checkpoint: str | None,
                   direction: str | None, now_s: int) -> Decision:
        """The pure pipeline with this service's keys and live revocation state, at
        ``now_s`` (no single use): what ``/v1/verify`` and the re-verification of an
        offline gate's upload (at the time the gate decided) both run."""
        return verify(
            code,
            keys=self._keys.view().keyring,
            policy=policy,
            now=now_s,
            skew=self._skew,
            direction=direction,
            checkpoint=checkpoint,
            revocations=self._subjects.revocations,
            credentials=self._credentials,
            offline_lifetime=self._offline_lifetime,
            venues=self._venues,
        )

    @property
    def skew(self) -> int:
        """The clock skew allowed, in seconds."""
        return self._skew

    async def _outcome(self, decision: Decision, partner: Partner, now: float) -> VerifyOutcome:
        """The citizen's status and attributes for a valid code, and the pairwise subject."""
        handle = decision.subject_handle
        if not decision.valid or handle is None:
            return VerifyOutcome(decision.valid, decision.reason, now, kind=decision.kind,
                                 venue_id=None if decision.venue_id is None
                                 else decision.venue_id.hex())
        unavailable = False
        cached = self._subjects.cached(handle)  # this process's memory: no await
        if cached is None:
            try:
                cached = await self._subjects.lookup(handle)
            except BackendUnavailable:
                cached, unavailable = None, True
                self._metrics.backend_errors.labels("database", "subject_lookup").inc()
        if (cached is None and not unavailable) or (
            cached is not None and cached.status != "active"
        ):
            # Unknown citizen, or suspended in storage before the event arrived.
            return VerifyOutcome(False, Reason.REVOKED, now, kind=decision.kind)
        have = cached.attributes if cached is not None else {}
        return VerifyOutcome(
            True,
            decision.reason,
            now,
            subject=pairwise_subject(self._keys.pairwise_secret, partner.client_id, handle),
            attributes={k: have[k] for k in partner.attributes if k in have},
            kind=decision.kind,
            code_expires_at=decision.expires_at or 0,
            attributes_unavailable=unavailable,
        )

    def _record(self, outcome: VerifyOutcome, decision: Decision, partner: Partner,
                policy: ScenePolicy, *, checkpoint: str | None, direction: str | None,
                request_id: str | None) -> None:
        """Metrics and the audit record (queued, not written)."""
        reason, now = _VALUES[outcome.reason], outcome.verified_at
        label = (policy.name, reason)
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
                reason=reason,
                subject_handle=decision.subject_handle,
                kid=decision.kid,
                request_id=request_id,
            )
        )

    async def _journey(self, outcome: VerifyOutcome, decision: Decision, tapping: _Tap, *,
                       checkpoint: str | None, direction: str | None,
                       now: int) -> VerifyOutcome:
        """The tap of a valid transit code: a refusal, or the outcome with its journey."""
        assert self._transit is not None and decision.subject_handle is not None
        step = await self._transit.step(tapping.table, tapping.handle,
                                        tapping.found, direction=direction,
                                        checkpoint=checkpoint, now=now,
                                        after=tapping.after, moved=True)
        if step.reason is not None:
            return VerifyOutcome(False, step.reason, outcome.verified_at)
        journey = step.journey
        if journey is None:
            return outcome
        return msgspec.structs.replace(outcome, journey=journey)

    async def _first_use_and_move(self, key: bytes, ttl: int, now: int, tapping: _Tap,
                                  handle: bytes, *, checkpoint: str | None,
                                  direction: str | None) -> bool:
        assert self._transit is not None
        transit = self._transit
        slot = transit.slot(handle, tapping.table.network)
        move = transit.move(tapping.table, direction=direction, checkpoint=checkpoint,
                            now=now)
        tapping.handle = handle
        try:
            first, tapping.found, tapping.after = await self._state.first_use_and_move(
                key, ttl_seconds=ttl, slot=slot, move=move)
        except BackendUnavailable:
            # Falls back as single use does (fail closed, or local without a journey).
            return await self._first_use(key, ttl, now)
        tapping.read = first
        return first

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
