"""Everything a running service holds, built from :class:`Settings` — no globals.

:func:`build_runtime` opens the backends, loads (or creates) key sets and wires the
services; :meth:`Runtime.start` and :meth:`Runtime.close` run in the app's lifespan.

Where the other jobs live: citizen authentication in :mod:`suishen.app.auth.citizen_auth`,
the rate-limit fallback in :mod:`suishen.app.services.ratelimit`, development secrets in
:mod:`suishen.app.devsecrets`, backend factories in :mod:`suishen.app.storage.factory`
(all re-exported here for existing imports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.citizen_auth import CitizenAuth
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.partner_tokens import PartnerTokens
from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.devsecrets import resolve_admin_token, resolve_kek
from suishen.app.observability import Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.services.keys import TOKENS, KeyManager, KeyView, default_overlaps
from suishen.app.services.partners import PartnerService
from suishen.app.services.ratelimit import RateLimiter
from suishen.app.services.subjects import SubjectService
from suishen.app.services.verify import VerifyService
from suishen.app.settings import Settings
from suishen.app.storage.base import Database, Event, StateBackend
from suishen.app.storage.factory import open_database, open_state
from suishen.errors import BackendUnavailable

__all__ = [
    "CitizenAuth", "Runtime", "build_runtime", "open_database", "open_state",
    "resolve_admin_token", "resolve_kek",
]

log = logging.getLogger("suishen.runtime")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


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
    partner_tokens: PartnerTokens
    citizen_auth: CitizenAuth
    admin_token: str
    dev_idp: DevIdentityProvider | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.state, self.metrics)

    async def start(self) -> None:
        """Subscribe to the change feed and start background work."""
        self.state.subscribe(self.on_event)
        await self.state.start()
        self.audit.start()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="key-refresh"))
        self._tasks.append(asyncio.create_task(self.keys.poll(), name="key-version-poll"))
        self._tasks.append(asyncio.create_task(self._gauge_loop(), name="metrics-gauges"))

    def update_gauges(self) -> None:
        """Set the gauges read at scrape time (the scrape is served by another listener,
        possibly another process, so each worker refreshes them itself)."""
        self.metrics.audit_queue.set(self.audit.pending)
        self.audit.health()
        stats = getattr(self.db, "pool_stats", None)
        if callable(stats):
            for state, value in stats().items():
                self.metrics.pool.labels(state).set(value)

    async def _gauge_loop(self) -> None:
        while True:
            try:
                self.update_gauges()
            except Exception:  # never let a gauge stop the loop; it is logged
                log.exception("metrics gauge update failed")
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Drain the audit queue, stop background work, close the backends."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.audit.close()
        await self.state.close()
        await self.db.close()

    async def on_event(self, event: Event) -> None:
        """Apply a change-feed event in this process."""
        self.metrics.events.labels(event.kind).inc()
        if event.kind == "subject":
            await self.subjects.apply(event)
        elif event.kind == "keys":
            await self.keys.refresh(event.data.get("name"))
        elif event.kind == "resync":
            await self._resync()

    async def _resync(self) -> None:
        try:
            await self.keys.refresh()
            await self.subjects.load_suspended()
        except BackendUnavailable:
            log.warning("resync deferred: database unavailable")

    async def _refresh_loop(self) -> None:
        """Safety net behind the change feed: re-read keys and suspensions periodically."""
        interval = self.settings.key_refresh_seconds
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(BackendUnavailable):
                await self._resync()

    async def rate_limit(self, client_id: str, *, per_second: int, now: float) -> float:
        """Take one request from a partner's shared budget (see :class:`RateLimiter`)."""
        return await self.limiter.take(client_id, per_second=per_second, now=now)

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
        state = open_state(settings, clock=clock)
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
        keys.view(TOKENS).keyset, kek, ttl=settings.partner_token_ttl_seconds
    )

    validators = []
    if settings.idp_configured:
        assert settings.idp_issuer and settings.idp_audience and settings.idp_jwks
        validators.append(
            CitizenTokenValidator(
                issuer=settings.idp_issuer,
                audience=settings.idp_audience,
                jwks=JwksSource(settings.idp_jwks),
                leeway=settings.clock_skew_seconds,
            )
        )
    dev_idp = None
    if not settings.production:
        # Derived from the KEK so that every development process sharing a database
        # (and so a KEK) accepts the others' citizen tokens.
        scalar = int.from_bytes(kek.derive(b"suishen:dev-idp"), "big") % (_P256_ORDER - 1) + 1
        dev_idp = DevIdentityProvider(ec.derive_private_key(scalar, ec.SECP256R1()))
        validators.append(
            CitizenTokenValidator(
                issuer=dev_idp.issuer,
                audience=dev_idp.audience,
                jwks=JwksSource.from_static(dev_idp.jwks()),
                leeway=settings.clock_skew_seconds,
            )
        )
    verifier = VerifyService(
        keys=keys,
        subjects=subjects,
        state=state,
        audit=audit,
        metrics=metrics,
        skew=settings.clock_skew_seconds,
        fallback_local=settings.single_use_when_redis_down == "local",
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
        partner_tokens=partner_tokens,
        citizen_auth=CitizenAuth(validators),
        admin_token=admin_token,
        dev_idp=dev_idp,
    )

    def on_keys(name: str, view: KeyView) -> None:
        if name == TOKENS:
            runtime.partner_tokens = runtime.partner_tokens.with_keyset(view.keyset)

    keys.on_change.append(on_keys)
    return runtime
