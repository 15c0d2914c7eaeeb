"""Typed settings from ``SUISHEN_`` environment variables (documented in the README).

Two independent choices:

* the **security posture**, ``SUISHEN_ENV``: ``development`` (default: a development
  identity provider, a generated admin token and key-encryption key kept under the data
  directory) or ``production`` (none of that: the service refuses to start, naming what
  is missing, without ``SUISHEN_ADMIN_TOKEN``, ``SUISHEN_KEY_ENCRYPTION_KEY`` and the
  identity-provider settings);
* the **storage backends**: SQLite under ``SUISHEN_DATA_DIR`` and in-process state by
  default; PostgreSQL with ``SUISHEN_DATABASE_URL`` and Redis with ``SUISHEN_REDIS_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from suishen.errors import ConfigError
from suishen.keys.algorithms import Alg

# A P-256 public JWK with every member the device routes accept (kty, crv, x, y, alg,
# use) is about 155 bytes of JSON with json.dumps' default separators and 211 indented by
# 2 (in the batch array): 224 covers both. The overhead covers the name and the object.
DEVICE_KEY_JSON_BYTES = 224
DEVICE_BODY_OVERHEAD = 1024


class Settings(BaseSettings):
    """Every setting of the service; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SUISHEN_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    redis_prefix: str = "suishen"
    admin_token: SecretStr | None = None
    key_encryption_key: SecretStr | None = None
    idp_issuer: str | None = None
    idp_audience: str | None = None
    idp_jwks: str | None = None
    # The citizen page's OIDC sign-in (authorisation code + PKCE, a public client): its
    # client id at the provider, and the scope it asks for. Without a client id the page
    # offers no OIDC sign-in (and, in production, no sign-in at all).
    idp_client_id: str | None = None
    idp_scope: str = "openid"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False
    allow_dev_on_network: bool = False
    limit_concurrency: int = Field(default=2048, ge=1, le=1_000_000)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    code_ttl_seconds: int = Field(default=60, ge=5, le=86_400)
    clock_skew_seconds: int = Field(default=30, ge=0, le=600)
    signing_alg: Alg = Alg.ES256
    partner_token_ttl_seconds: int = Field(default=300, ge=30, le=86_400)
    # The longest lifetime (exp - iat) a partner token may claim and still verify; unset:
    # the lifetime this service issues. Raise it first when rolling out a longer TTL.
    partner_token_max_lifetime_seconds: int | None = Field(default=None, ge=30, le=3600)
    default_rate_limit_per_second: int = Field(default=200, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=16_384, ge=1024, le=10_000_000)
    # POST /v1/gate-events only: a batch of up to 1,000 offline decisions (codes of up to
    # 1,024 characters each) needs more than max_body_bytes.
    gate_upload_max_bytes: int = Field(default=2_097_152, ge=16_384, le=50_000_000)
    single_use_when_redis_down: Literal["closed", "local"] = "closed"
    # Transit (SPEC.md §6.2): a second entry within this many seconds of an open one is
    # refused as passback; an older open entry closes as incomplete at the maximum fare.
    passback_seconds: int = Field(default=1_800, ge=0, le=7 * 86_400)

    database_pool_min: int = Field(default=1, ge=0, le=100)
    database_pool_max: int = Field(default=10, ge=1, le=500)
    database_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)

    # The most records in one transaction (audit, journeys, check-ins); the writer
    # starts once 64 wait, so transactions grow with the load up to this
    # (suishen.app.services.queued).
    audit_batch_size: int = Field(default=500, ge=1, le=100_000)
    audit_flush_interval_ms: int = Field(default=200, ge=10, le=60_000)
    audit_queue_max: int = Field(default=100_000, ge=100, le=10_000_000)
    subject_cache_seconds: int = Field(default=300, ge=1, le=86_400)
    key_refresh_seconds: int = Field(default=10, ge=1, le=3600)

    # Offline codes (SPEC.md §6.1; docs/offline.md).
    offline_slot_seconds: int = Field(default=3600, ge=60, le=86_400)
    offline_days: int = Field(default=3, ge=1, le=7)
    offline_code_lifetime_seconds: int = Field(default=30, ge=5, le=600)
    offline_max_devices: int = Field(default=5, ge=1, le=100)
    # Indices per slot status list: at least the credentials issued per slot (every
    # citizen's device holds one per slot); the city (34 M) needs ~42.5 M. Only raise it.
    offline_status_list_size: int = Field(default=1_048_576, ge=1024, le=1 << 27)
    trust_bundle_refresh_seconds: int = Field(default=900, ge=10, le=86_400)
    trust_bundle_lifetime_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    trust_bundle_min_rebuild_seconds: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _offline_window(self) -> Settings:
        if 86_400 % self.offline_slot_seconds:
            raise ValueError("SUISHEN_OFFLINE_SLOT_SECONDS must divide a day (86400)")
        if self.trust_bundle_refresh_seconds > self.trust_bundle_lifetime_seconds:
            raise ValueError("SUISHEN_TRUST_BUNDLE_REFRESH_SECONDS must not exceed "
                             "SUISHEN_TRUST_BUNDLE_LIFETIME_SECONDS")
        return self

    @property
    def offline_slots(self) -> int:
        """Slots in the credential window (days x slots per day): the largest batch."""
        return min(500, self.offline_days * 86_400 // self.offline_slot_seconds)

    @property
    def device_body_bytes(self) -> int:
        """The body limit of the device routes (``POST /v1/devices`` and
        ``POST /v1/devices/{id}/credentials``): ``SUISHEN_MAX_BODY_BYTES`` or, when
        larger, what the largest batch (:attr:`offline_slots` keys) needs at
        :data:`DEVICE_KEY_JSON_BYTES` per key plus :data:`DEVICE_BODY_OVERHEAD` — so the
        largest batch the service accepts always fits its body limit (with the defaults
        72 keys: 17,152 bytes, just above the 16,384 of the other routes)."""
        need = self.offline_slots * DEVICE_KEY_JSON_BYTES + DEVICE_BODY_OVERHEAD
        return max(self.max_body_bytes, need)

    @model_validator(mode="after")
    def _token_lifetimes(self) -> Settings:
        bound = self.partner_token_max_lifetime_seconds
        if bound is not None and bound < self.partner_token_ttl_seconds:
            raise ValueError("SUISHEN_PARTNER_TOKEN_MAX_LIFETIME_SECONDS must be at least "
                             "SUISHEN_PARTNER_TOKEN_TTL_SECONDS (tokens it issues must verify)")
        return self

    @property
    def partner_token_lifetime_bound(self) -> int:
        """The longest partner-token lifetime that verifies (see the field's comment)."""
        return self.partner_token_max_lifetime_seconds or self.partner_token_ttl_seconds

    @field_validator("signing_alg", mode="before")
    @classmethod
    def _alg(cls, value: object) -> object:
        return Alg.parse(value) if isinstance(value, str) else value

    @property
    def production(self) -> bool:
        """True in the production posture."""
        return self.env == "production"

    @property
    def idp_configured(self) -> bool:
        """True when an external identity provider is configured."""
        return bool(self.idp_issuer and self.idp_audience and self.idp_jwks)

    @property
    def sqlite_path(self) -> Path:
        """Where the embedded default keeps its database."""
        return self.data_dir / "suishen.db"

    def check_posture(self) -> None:
        """Raise :class:`ConfigError` naming every production setting that is missing."""
        if not self.production:
            return
        missing = [
            name
            for name, value in (
                ("SUISHEN_ADMIN_TOKEN", self.admin_token),
                ("SUISHEN_KEY_ENCRYPTION_KEY", self.key_encryption_key),
                ("SUISHEN_IDP_ISSUER", self.idp_issuer),
                ("SUISHEN_IDP_AUDIENCE", self.idp_audience),
                ("SUISHEN_IDP_JWKS", self.idp_jwks),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                "production posture (SUISHEN_ENV=production) needs " + ", ".join(missing)
            )
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        if len(token) < 32:
            raise ConfigError("SUISHEN_ADMIN_TOKEN must be at least 32 characters in production")
