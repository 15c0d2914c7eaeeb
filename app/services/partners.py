"""Partners in a running service: registration, client authentication, and an
in-memory directory for the verify hot path (partners are never changed after
registration, so the directory needs no invalidation)."""

from __future__ import annotations

from collections.abc import Sequence

from suishen.app.auth.errors import InvalidClient
from suishen.app.auth.partner_tokens import hash_secret, new_client_credentials, verify_secret
from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.storage.base import Database, Partner, StateBackend


class PartnerService:
    """Registration and lookup of partners."""

    def __init__(
        self, db: Database, state: StateBackend, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._db = db
        self._state = state
        self._clock = clock
        self._known: dict[str, Partner] = {}

    async def register(
        self,
        *,
        name: str,
        scenes: Sequence[str],
        attributes: Sequence[str],
        rate_limit_per_second: int | None,
        enterprise_attributes: Sequence[str] = (),
    ) -> tuple[Partner, str]:
        """Store a new partner; returns it and its client secret (shown once).
        ``enterprise_attributes``: what it may see of an enterprise code's enterprise."""
        client_id, secret = new_client_credentials()
        partner = Partner(
            client_id=client_id,
            name=name,
            scenes=tuple(dict.fromkeys(scenes)),
            attributes=tuple(dict.fromkeys(attributes)),
            rate_limit_per_second=rate_limit_per_second,
            secret_hash=hash_secret(secret),
            created_at=int(self._clock()),
            enterprise_attributes=tuple(dict.fromkeys(enterprise_attributes)),
        )
        await self._db.partners.create(partner)
        self._known[client_id] = partner
        return partner, secret

    async def authenticate(self, client_id: str, secret: str) -> Partner:
        """The partner whose credentials these are; :class:`InvalidClient` otherwise."""
        partner = await self._db.partners.get(client_id) if len(client_id) <= 128 else None
        # Hash even for an unknown client (verify_secret does a dummy round for None) so
        # that response time does not tell which client ids exist.
        ok = verify_secret(secret, partner.secret_hash if partner else None)
        if partner is None or not ok:
            raise InvalidClient("invalid client credentials")
        self._known[client_id] = partner
        return partner

    def known(self, client_id: str) -> Partner | None:
        """A partner this process holds in memory (None: ask :meth:`get`)."""
        return self._known.get(client_id)

    async def get(self, client_id: str) -> Partner | None:
        """A partner, from memory when possible."""
        partner = self._known.get(client_id)
        if partner is None:
            partner = await self._db.partners.get(client_id)
            if partner is not None:
                self._known[client_id] = partner
        return partner
