"""The service container: the live components of one API process, wired from
:class:`Settings` by :func:`build_runtime` — no globals. :meth:`Runtime.start` and
:meth:`Runtime.close` run in the app's lifespan.

Where the other jobs live: change-feed dispatch in :mod:`suishen.app.events`, gauges in
:class:`suishen.app.observability.GaugeLoop`, the rate limiter in
:mod:`suishen.app.services.ratelimit` (owned by the verify service), citizen
authentication in :mod:`suishen.app.auth.citizen_auth`, development secrets in
:mod:`suishen.app.devsecrets`, backend factories in :mod:`suishen.app.storage.factory`,
the clock in :mod:`suishen.app.clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from suishen.app.auth.citizen_auth import CitizenAuth, citizen_auth_for
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.partner_tokens import PartnerTokens
from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.devsecrets import resolve_admin_token, resolve_kek
from suishen.app.events import EventDispatcher
from suishen.app.observability import GaugeLoop, Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.services.devices import DeviceService
from suishen.app.services.enterprises import EnterpriseService
from suishen.app.services.gate_events import GateUploads
from suishen.app.services.issuance import IssuanceService
from suishen.app.services.keys import TOKENS, VENUES, KeyManager, KeyView, default_overlaps
from suishen.app.services.partners import PartnerService
from suishen.app.services.ratelimit import RateLimiter
from suishen.app.services.resolve import ResolveService
from suishen.app.services.subjects import SubjectService
from suishen.app.services.transit import JourneyWriter, TransitService
from suishen.app.services.trust import TrustPruner, TrustService, ensure_anchor
from suishen.app.services.venues import CheckinWriter, VenueService
from suishen.app.services.verify import VerifyService
from suishen.app.settings import Settings
from suishen.app.storage.base import Database, StateBackend
from suishen.app.storage.factory import open_database, open_state
from suishen.keys.bundle import ended_grace


@dataclass
class Runtime:
    """The live components of one API process."""

    settings: Settings
    db: Database
    state: StateBackend
    metrics: Metrics
    keys: KeyManager
    subjects: SubjectService
    partners: PartnerService
    audit: AuditWriter
    verifier: VerifyService
    issuance: IssuanceService
    partner_tokens: PartnerTokens
    citizen_auth: CitizenAuth
    admin_token: str
    events: EventDispatcher
    gauges: GaugeLoop
    devices: DeviceService
    trust: TrustService
    transit: TransitService
    enterprises: EnterpriseService
    resolver: ResolveService
    gate_events: GateUploads
    venues: VenueService
    pruner: TrustPruner
    dev_idp: DevIdentityProvider | None = None
    clock: Clock = SYSTEM_CLOCK
    _key_poll: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Subscribe to the change feed and start background work."""
        self.events.start(self.state)
        await self.state.start()
        self.audit.start()
        self.transit.writer.start()
        self.venues.writer.start()
        self.gauges.start()
        self.pruner.start()  # ended credential rows and old trust versions
        # Key-set versions are checked once a second, so a change made behind the
        # service's back (`suishen keys rotate` on its database) is picked up in ~1 s.
        self._key_poll = asyncio.create_task(self.keys.poll(), name="key-version-poll")

    async def close(self) -> None:
        """Stop background work, drain the audit queue, close the backends."""
        if self._key_poll is not None:
            self._key_poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._key_poll
            self._key_poll = None
        await self.events.close()
        await self.gauges.close()
        await self.pruner.close()
        await self.audit.close()
        await self.transit.writer.close()
        await self.venues.writer.close()
        await self.state.close()
        await self.db.close()

    def now(self) -> float:
        """The clock (one place, so tests and benchmarks see what the service sees)."""
        return self.clock()


async def build_runtime(
    settings: Settings, *, metrics: Metrics | None = None, clock: Clock = SYSTEM_CLOCK
) -> Runtime:
    """Open backends, load keys and wire the services, all on one ``clock``."""
    settings.check_posture()
    kek = resolve_kek(settings)
    admin_token = resolve_admin_token(settings)
    metrics = metrics or Metrics()
    db = await open_database(settings, clock=clock)
    try:
        await db.migrate()
        state = open_state(settings, clock=clock, metrics=metrics)
        keys = KeyManager(
            db.keysets,
            state,
            kek,
            alg=settings.signing_alg,
            overlap_seconds=default_overlaps(settings),
            clock=clock,
        )
        await keys.load_or_create()
        subjects = SubjectService(
            db, state, cache_seconds=settings.subject_cache_seconds, clock=clock
        )
        await subjects.load_suspended()
        await ensure_anchor(db, keys, kek, alg=settings.signing_alg, now=int(clock()))
        await ensure_anchor(db, keys, kek, alg=settings.signing_alg, now=int(clock()),
                            name=VENUES)
        devices = DeviceService(
            db, state, keys=keys, subjects=subjects,
            slot_seconds=settings.offline_slot_seconds, slots=settings.offline_slots,
            list_size=settings.offline_status_list_size,
            max_devices=settings.offline_max_devices, clock=clock,
        )
        await devices.load_revoked()
        subjects.on_change.append(devices.subject_changed)
        transit = TransitService(
            db, state, secret=kek.derive(b"suishen:journey-slots"),
            writer=JourneyWriter(db, metrics, batch_size=settings.audit_batch_size,
                                 flush_interval=settings.audit_flush_interval_ms / 1000,
                                 max_queue=settings.audit_queue_max, clock=clock),
            metrics=metrics, passback_seconds=settings.passback_seconds, clock=clock,
        )
        await transit.load()
        enterprises = EnterpriseService(db, state, subjects=subjects, clock=clock)
        await enterprises.load()
        venues = VenueService(
            db, state, keys=keys, limiter=RateLimiter(state, metrics),
            secret=kek.derive(b"suishen:checkin-buckets"), metrics=metrics, clock=clock,
            writer=CheckinWriter(db, metrics, batch_size=settings.audit_batch_size,
                                 flush_interval=settings.audit_flush_interval_ms / 1000,
                                 max_queue=settings.audit_queue_max),
        )
        await venues.load_revoked()
    except BaseException:
        await db.close()
        raise
    audit = AuditWriter(
        db,
        metrics,
        batch_size=settings.audit_batch_size,
        flush_interval=settings.audit_flush_interval_ms / 1000,
        max_queue=settings.audit_queue_max,
        clock=clock,
    )
    partner_tokens = PartnerTokens(
        keys.view(TOKENS).keyset, kek, ttl=settings.partner_token_ttl_seconds,
        max_lifetime=settings.partner_token_lifetime_bound,
    )
    dev_idp = None
    if not settings.production:
        dev_idp = DevIdentityProvider.derived(kek.derive(b"suishen:dev-idp"))
    verifier = VerifyService(
        keys=keys,
        subjects=subjects,
        state=state,
        audit=audit,
        metrics=metrics,
        limiter=RateLimiter(state, metrics),
        default_rate_per_second=settings.default_rate_limit_per_second,
        skew=settings.clock_skew_seconds,
        fallback_local=settings.single_use_when_redis_down == "local",
        clock=clock,
        credentials=devices.revoked,
        offline_lifetime=settings.offline_code_lifetime_seconds,
        transit=transit,
        enterprises=enterprises,
        venues=venues,
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        state=state,
        metrics=metrics,
        keys=keys,
        subjects=subjects,
        partners=PartnerService(db, state, clock=clock),
        clock=clock,
        audit=audit,
        verifier=verifier,
        issuance=IssuanceService(keys=keys, subjects=subjects, metrics=metrics,
                                 ttl_seconds=settings.code_ttl_seconds, clock=clock,
                                 enterprises=enterprises),
        partner_tokens=partner_tokens,
        citizen_auth=citizen_auth_for(settings, dev_idp),
        admin_token=admin_token,
        events=EventDispatcher(keys=keys, subjects=subjects, metrics=metrics,
                               refresh_seconds=settings.key_refresh_seconds, devices=devices,
                               transit=transit, enterprises=enterprises, venues=venues),
        gauges=GaugeLoop(metrics, audit=audit, db=db),
        dev_idp=dev_idp,
        devices=devices,
        transit=transit,
        enterprises=enterprises,
        resolver=ResolveService(verifier, issuer=partner_tokens.issuer,
                                venues=venues.public_info),
        gate_events=GateUploads(db, verifier=verifier, transit=transit, metrics=metrics,
                                clock=clock),
        venues=venues,
        pruner=TrustPruner(db, metrics, slot_seconds=settings.offline_slot_seconds,
                           lifetime_seconds=settings.trust_bundle_lifetime_seconds,
                           clock=clock),
        trust=TrustService(
            db, keys, slot_seconds=settings.offline_slot_seconds,
            list_size=settings.offline_status_list_size,
            refresh_seconds=settings.trust_bundle_refresh_seconds,
            lifetime_seconds=settings.trust_bundle_lifetime_seconds,
            min_rebuild_seconds=settings.trust_bundle_min_rebuild_seconds, clock=clock,
            # Redis: one process builds each version, all serve the same bytes.
            shared=state if settings.redis_url is not None else None,
            keep_ended_seconds=ended_grace(
                skew=settings.clock_skew_seconds,
                offline_lifetime=settings.offline_code_lifetime_seconds),
        ),
    )

    def on_keys(name: str, view: KeyView) -> None:
        if name == TOKENS:
            runtime.partner_tokens = runtime.partner_tokens.with_keyset(view.keyset)

    keys.on_change.append(on_keys)
    return runtime
