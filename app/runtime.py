"""Everything a running service holds, built from :class:`Settings` — no globals.

:func:`build_runtime` opens the backends, loads (or creates) key sets and wires the
services; :meth:`Runtime.start` and :meth:`Runtime.close` run in the app's lifespan.

Development posture conveniences (never in production): the key-encryption key and
the admin token are generated on first start into ``SUISHEN_DATA_DIR`` (files with mode
0600) and the admin token is printed once, when it is generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.errors import InvalidCitizenToken
from suishen.app.auth.partner_tokens import PartnerTokens
from suishen.app.observability import Metrics
from suishen.app.services.audit import AuditWriter
from suishen.app.services.keys import CODES, TOKENS, KeyManager, KeyView
from suishen.app.services.partners import PartnerService
from suishen.app.services.subjects import SubjectService
from suishen.app.services.verify import VerifyService
from suishen.app.settings import Settings
from suishen.app.storage.base import Database, Event, StateBackend
from suishen.app.storage.memory import MemoryState
from suishen.errors import BackendUnavailable, ConfigError
from suishen.keys.kek import KeyEncryptionKey

log = logging.getLogger("suishen.runtime")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class CitizenAuth:
    """Validates citizens' tokens against every trusted identity provider.

    Apps refresh codes every half-minute with the same access token, so a validated
    token is remembered (bounded, until its ``exp`` and at most ``cache_seconds``):
    the signature check is then a dictionary lookup. Only successes are cached, and
    ``exp`` is re-checked on every hit.
    """

    def __init__(
        self,
        validators: list[CitizenTokenValidator],
        *,
        cache_size: int = 50_000,
        cache_seconds: int = 300,
    ) -> None:
        self._validators = validators
        self._cache: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds

    async def validate(self, token: str, *, now: int) -> str:
        """The citizen's ``sub``; :class:`InvalidCitizenToken` when no provider vouches."""
        hit = self._cache.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._cache[token]
        error: InvalidCitizenToken | None = None
        for validator in self._validators:
            try:
                claims = await validator.validate_claims(token, now=now)
            except InvalidCitizenToken as exc:
                error = exc
                continue
            sub: str = claims["sub"]
            until = min(int(claims["exp"]), now + self._cache_seconds)
            self._cache[token] = (sub, until)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return sub
        raise error or InvalidCitizenToken("no identity provider is configured")


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
    _local_limits: MemoryState = field(default_factory=MemoryState)

    async def start(self) -> None:
        """Subscribe to the change feed and start background work."""
        self.state.subscribe(self.on_event)
        await self.state.start()
        self.audit.start()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="key-refresh"))
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
        elif event.kind == "partner":
            await self.partners.apply(event)
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
        """Take one request from a partner's shared budget (0.0, or seconds to wait).

        While the shared state is down, each process limits on its own (fail open to a
        per-process bucket): a verification is never refused for want of a counter.
        """
        try:
            return await self.state.rate_limit(client_id, per_second=per_second,
                                               now_ms=int(now * 1000))
        except BackendUnavailable:
            self.metrics.backend_errors.labels("state", "rate_limit").inc()
            return await self._local_limits.rate_limit(client_id, per_second=per_second,
                                                       now_ms=int(now * 1000))

    def now(self) -> float:
        """The clock (one place, so tests and benchmarks see what the service sees)."""
        return time.time()


async def open_database(settings: Settings) -> Database:
    """SQLite under the data directory, or PostgreSQL when ``SUISHEN_DATABASE_URL`` is a
    ``postgresql://`` URL (``sqlite:///path`` selects another SQLite file)."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if url.startswith(("postgresql://", "postgres://")):
        from suishen.app.storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(
            url,
            min_size=settings.database_pool_min,
            max_size=settings.database_pool_max,
            command_timeout=settings.database_timeout_seconds,
            lazy=True,
        )
    from suishen.app.storage.sqlite import SQLiteDatabase

    if url.startswith("sqlite:///"):
        return await SQLiteDatabase.open(url.removeprefix("sqlite:///"))
    if url:
        raise ConfigError("SUISHEN_DATABASE_URL must start with postgresql:// or sqlite:///")
    return await SQLiteDatabase.open(settings.sqlite_path)


def open_state(settings: Settings) -> StateBackend:
    """Redis when ``SUISHEN_REDIS_URL`` is set, else in-process state."""
    if settings.redis_url is not None:
        from suishen.app.storage.redis_state import RedisState

        return RedisState.from_url(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            timeout=settings.redis_timeout_seconds,
        )
    # The embedded default: single use kept in the data directory, so that a restart
    # never lets a consumed code pass (issue 8 item 3).
    return MemoryState(single_use_path=settings.data_dir / "single-use.sqlite3")


def _dev_secret_file(path: Path, make: str) -> tuple[str, bool]:
    """Read a development secret from ``path``, creating it (0600) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_text("utf-8").strip(), False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(make + "\n")
    return make, True


def resolve_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK from settings; in development, generated once into the data directory."""
    if settings.key_encryption_key is not None:
        return KeyEncryptionKey.from_text(settings.key_encryption_key.get_secret_value())
    if settings.production:
        raise ConfigError("SUISHEN_KEY_ENCRYPTION_KEY is required in production")
    text, created = _dev_secret_file(
        settings.data_dir / "kek", KeyEncryptionKey.generate_text()
    )
    if created:
        print(
            f"suishen: WARNING development key-encryption key generated in "
            f"{settings.data_dir / 'kek'}; set SUISHEN_KEY_ENCRYPTION_KEY in production",
            file=sys.stderr,
        )
    return KeyEncryptionKey.from_text(text)


def resolve_admin_token(settings: Settings) -> str:
    """The operators' token; in development generated once and printed once."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    if settings.production:
        raise ConfigError("SUISHEN_ADMIN_TOKEN is required in production")
    path = settings.data_dir / "admin-token"
    token, created = _dev_secret_file(path, secrets.token_urlsafe(32))
    if created:
        # Printed once, on the console of the developer who started the service; the
        # log stream never carries it.
        print(f"suishen: development admin token (saved in {path}): {token}", file=sys.stderr)
    return token


async def build_runtime(settings: Settings, *, metrics: Metrics | None = None) -> Runtime:
    """Open backends, load keys and wire the services."""
    settings.check_posture()
    kek = resolve_kek(settings)
    admin_token = resolve_admin_token(settings)
    metrics = metrics or Metrics()
    db = await open_database(settings)
    try:
        await db.migrate()
        state = open_state(settings)
        keys = KeyManager(
            db,
            state,
            kek,
            alg=settings.signing_alg,
            overlap_seconds={
                CODES: settings.code_ttl_seconds + settings.clock_skew_seconds,
                # Partner tokens verify with a 5 s leeway after their lifetime.
                TOKENS: settings.partner_token_ttl_seconds + 5,
            },
        )
        await keys.load_or_create()
        subjects = SubjectService(db, state, cache_seconds=settings.subject_cache_seconds)
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
        partners=PartnerService(db, state),
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
