"""Key sets: signing keys with states and validity windows, rotation and revocation.

The same idea as ``cryptography``'s ``MultiFernet`` (the first key signs, every key
verifies) plus states:

* ``pending``  — generated and published, not signing yet (lets gates cache it first);
* ``active``   — the one key that signs new codes (exactly one per key set);
* ``retired``  — no longer signs; keeps verifying until ``not_after``, which rotation
  sets to *now + the longest code lifetime + clock skew*;
* ``revoked``  — never verifies again; stays listed so that gates learn of it.

A :class:`KeySet` is an immutable value: every operation returns a new set with a higher
``version``. Private keys and secrets exist only sealed with the key-encryption key
(:mod:`suishen.keys.kek`); :meth:`KeySet.issuer` and :meth:`KeySet.keyring` unseal them
in memory. Storage is somebody else's job: anything implementing :class:`KeySetStore`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Protocol

from suishen.errors import KeyManagementError
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey, b64u
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.keys.signer import SoftwareSigner
from suishen.timefmt import rfc3339

DEFAULT_ALG = Alg.ES256  # faster to sign *and* verify here: see benchmarks/core_bench.py
_BLINDING_BYTES = 32
_MAX_KID_ATTEMPTS = 64

__all__ = ["DEFAULT_ALG", "KeyRecord", "KeySet", "KeySetStore", "KeyState"]


def _aad(purpose: str, kid: str = "") -> bytes:
    return f"suishen:{purpose}:{kid}".encode("ascii")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key as stored: public part in clear, secrets sealed."""

    kid: str
    alg: Alg
    public: bytes
    private_sealed: str
    blinding_sealed: str
    state: KeyState
    created_at: int
    not_before: int | None = None
    not_after: int | None = None
    revoked_at: int | None = None

    def public_key(self) -> PublicKey:
        """The verification key."""
        return PublicKey.from_raw(self.alg, self.public)

    def expired_at(self, now: int) -> bool:
        """True for a retired key whose verification window has closed."""
        return (
            self.state is KeyState.RETIRED and self.not_after is not None and now > self.not_after
        )

    def status_at(self, now: int) -> str:
        """The state, with ``expired`` for a retired key past its window."""
        return "expired" if self.expired_at(now) else self.state.value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (sealed secrets stay sealed)."""
        return {
            "kid": self.kid,
            "alg": self.alg.value,
            "public": b64u(self.public),
            "private_sealed": self.private_sealed,
            "blinding_sealed": self.blinding_sealed,
            "state": self.state.value,
            "created_at": self.created_at,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRecord:
        """Inverse of :meth:`to_dict`; :class:`KeyManagementError` on a damaged record."""
        from suishen.keys.algorithms import b64u_decode

        try:
            return cls(
                kid=str(data["kid"]),
                alg=Alg.parse(data["alg"]),
                public=b64u_decode(data["public"]),
                private_sealed=str(data["private_sealed"]),
                blinding_sealed=str(data["blinding_sealed"]),
                state=KeyState(data["state"]),
                created_at=int(data["created_at"]),
                not_before=_opt_int(data.get("not_before")),
                not_after=_opt_int(data.get("not_after")),
                revoked_at=_opt_int(data.get("revoked_at")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyManagementError(f"damaged key record: {exc}") from None


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class KeySet:
    """An immutable set of signing keys plus the key-set-wide pairwise secret.

    A set *with secrets* (the ``codes`` set) gives every key a blinding secret and holds
    the pairwise secret; a set without (``with_secrets=False``: partner-token keys)
    holds signing keys only (``blinding_sealed`` and ``pairwise_sealed`` are empty), so
    nothing that could unblind a code sits where it is not needed.
    """

    keys: tuple[KeyRecord, ...]
    pairwise_sealed: str
    version: int = 1

    # --- construction -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        kek: KeyEncryptionKey,
        *,
        now: int,
        alg: Alg = DEFAULT_ALG,
        with_secrets: bool = True,
    ) -> KeySet:
        """A new key set with one active key (and blinding and pairwise secrets unless
        ``with_secrets`` is False)."""
        pairwise = kek.seal(os.urandom(32), _aad("pairwise")) if with_secrets else ""
        empty = cls(keys=(), pairwise_sealed=pairwise, version=0)
        return empty.add_key(kek, now=now, alg=alg, state=KeyState.ACTIVE)

    @property
    def has_secrets(self) -> bool:
        """True for a set with blinding and pairwise secrets (see the class docstring)."""
        return bool(self.pairwise_sealed)

    def add_key(
        self, kek: KeyEncryptionKey, *, now: int, alg: Alg, state: KeyState = KeyState.PENDING
    ) -> KeySet:
        """Generate a key in ``state`` (``pending`` or ``active``; an active one retires
        the current active key with no overlap, so prefer :meth:`rotate`)."""
        if state not in (KeyState.PENDING, KeyState.ACTIVE):
            raise KeyManagementError("new keys are pending or active")
        taken = {k.kid for k in self.keys}
        for _ in range(_MAX_KID_ATTEMPTS):
            private = PrivateKey.generate(alg)
            public = private.public()
            kid = public.kid_bytes().hex()
            if kid not in taken:
                break
        else:  # pragma: no cover - needs ~2^16 keys
            raise KeyManagementError("could not find a free kid")
        record = KeyRecord(
            kid=kid,
            alg=alg,
            public=public.raw,
            private_sealed=kek.seal(private.raw, _aad("sign", kid)),
            blinding_sealed=(
                kek.seal(os.urandom(_BLINDING_BYTES), _aad("blind", kid))
                if self.has_secrets
                else ""
            ),
            state=state,
            created_at=now,
            not_before=now if state is KeyState.ACTIVE else None,
        )
        keys = self.keys
        if state is KeyState.ACTIVE:
            keys = tuple(_retire(k, now, 0) if k.state is KeyState.ACTIVE else k for k in keys)
        return replace(self, keys=(*keys, record), version=self.version + 1)

    # --- queries ------------------------------------------------------------------
    def get(self, kid: str) -> KeyRecord:
        """The record with this kid; :class:`KeyManagementError` if there is none."""
        for record in self.keys:
            if record.kid == kid:
                return record
        raise KeyManagementError(f"no key with kid {kid!r}")

    def active(self) -> KeyRecord:
        """The active signing key."""
        for record in self.keys:
            if record.state is KeyState.ACTIVE:
                return record
        raise KeyManagementError("the key set has no active key")

    # --- lifecycle ------------------------------------------------------------------
    def rotate(
        self,
        kek: KeyEncryptionKey,
        *,
        now: int,
        overlap_seconds: int,
        alg: Alg | None = None,
    ) -> KeySet:
        """Make a new key active and retire the current one (if any).

        The oldest pending key (of ``alg``, when given) is promoted if there is one,
        otherwise a new key is generated. The retired key keeps verifying for
        ``overlap_seconds`` (callers pass the longest code lifetime plus clock skew).
        """
        current = next((k for k in self.keys if k.state is KeyState.ACTIVE), None)
        # With no active key (it was revoked) there is nothing to retire.
        retiring = None if current is None else current.kid
        pending = [
            k for k in self.keys if k.state is KeyState.PENDING and (alg is None or k.alg is alg)
        ]
        base = self
        if not pending:
            fallback = current.alg if current else (self.keys[-1].alg if self.keys else DEFAULT_ALG)
            base = self.add_key(kek, now=now, alg=alg or fallback, state=KeyState.PENDING)
            chosen = base.keys[-1].kid
        else:
            chosen = pending[0].kid
        keys = tuple(
            replace(k, state=KeyState.ACTIVE, not_before=now)
            if k.kid == chosen
            else (_retire(k, now, overlap_seconds) if k.kid == retiring else k)
            for k in base.keys
        )
        return replace(base, keys=keys, version=self.version + 1)

    def revoke(self, kid: str, *, now: int) -> KeySet:
        """Revoke a key: it never verifies again. Revoking the active key leaves the set
        without a signer until the next rotation, which is what an operator who suspects
        compromise wants (rotate first to keep issuing)."""
        record = self.get(kid)
        if record.state is KeyState.REVOKED:
            return self
        keys = tuple(
            replace(k, state=KeyState.REVOKED, revoked_at=now) if k.kid == kid else k
            for k in self.keys
        )
        return replace(self, keys=keys, version=self.version + 1)

    # --- unsealed views -------------------------------------------------------------
    def signer(self, kek: KeyEncryptionKey) -> SoftwareSigner:
        """A :class:`~suishen.keys.signer.SoftwareSigner` for the active key (unseals
        its private key)."""
        record = self.active()
        private = PrivateKey.from_raw(
            record.alg, kek.open(record.private_sealed, _aad("sign", record.kid))
        )
        return SoftwareSigner(private, bytes.fromhex(record.kid))

    def issuer(self, kek: KeyEncryptionKey) -> Issuer:
        """The code issuer for the active key: its signer and blinding secret."""
        record = self.active()
        if not record.blinding_sealed:
            raise KeyManagementError("this key set has no blinding secrets: it cannot issue codes")
        blinding = kek.open(record.blinding_sealed, _aad("blind", record.kid))
        return Issuer(signer=self.signer(kek), blinding=blinding)

    def keyring(self, kek: KeyEncryptionKey | None = None) -> KeyRing:
        """Verification keys; with ``kek``, each carries its blinding secret."""
        return KeyRing(self._verification_key(r, kek) for r in self.keys)

    def pairwise_secret(self, kek: KeyEncryptionKey) -> bytes:
        """The secret behind partners' pairwise subjects."""
        if not self.has_secrets:
            raise KeyManagementError("this key set has no pairwise secret")
        return kek.open(self.pairwise_sealed, _aad("pairwise"))

    def check_kek(self, kek: KeyEncryptionKey) -> None:
        """Raise :class:`WrongKeyEncryptionKey` unless ``kek`` opens every secret."""
        if self.has_secrets:
            self.pairwise_secret(kek)
        for record in self.keys:
            kek.open(record.private_sealed, _aad("sign", record.kid))
            if record.blinding_sealed:
                kek.open(record.blinding_sealed, _aad("blind", record.kid))

    @staticmethod
    def _verification_key(record: KeyRecord, kek: KeyEncryptionKey | None) -> VerificationKey:
        blinding = None
        if kek is not None and record.state is not KeyState.REVOKED and record.blinding_sealed:
            blinding = kek.open(record.blinding_sealed, _aad("blind", record.kid))
        return VerificationKey(
            kid=bytes.fromhex(record.kid),
            public=record.public_key(),
            state=record.state,
            not_before=record.not_before,
            not_after=record.not_after,
            blinding=blinding,
        )

    def jwks(self, *, now: int) -> dict[str, Any]:
        """The public JWK Set (RFC 7517) with status and validity; expired keys omitted."""
        return {"keys": [jwk(r) for r in self.keys if not r.expired_at(now)]}

    # --- persistence helpers --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "version": self.version,
            "pairwise_sealed": self.pairwise_sealed,
            "keys": [k.to_dict() for k in self.keys],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeySet:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                keys=tuple(KeyRecord.from_dict(k) for k in data["keys"]),
                pairwise_sealed=str(data["pairwise_sealed"]),
                version=int(data["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyManagementError(f"damaged key set: {exc}") from None


def jwk(record: KeyRecord) -> dict[str, Any]:
    """One public JWK with ``kid``, ``alg``, ``use``, ``status`` and validity."""
    out: dict[str, Any] = {
        **record.public_key().jwk_members(),
        "kid": record.kid,
        "alg": record.alg.value,
        "use": "sig",
        "status": record.state.value,
    }
    if record.not_before is not None:
        out["not_before"] = rfc3339(record.not_before)
    if record.not_after is not None:
        out["not_after"] = rfc3339(record.not_after)
    if record.revoked_at is not None:
        out["revoked_at"] = rfc3339(record.revoked_at)
    return out


def _retire(record: KeyRecord, now: int, overlap_seconds: int) -> KeyRecord:
    return replace(record, state=KeyState.RETIRED, not_after=now + overlap_seconds)


class KeySetStore(Protocol):
    """Where named key sets live: a directory, SQLite or PostgreSQL -- ONE interface for
    the service (:mod:`suishen.app.services.keys`) and the ``suishen keys`` commands.

    Names: ``codes`` (signs codes) and ``tokens`` (signs partner access tokens).
    Implementations MUST store a set atomically (a reader sees the old set or the new
    one), MUST make :meth:`save` a compare-and-swap, and MUST NOT store anything
    unsealed. Async because the database backends are; the directory answers at once.
    """

    async def load(self, name: str) -> KeySet | None:
        """The stored key set, or None when there is none yet."""

    async def save(self, name: str, keyset: KeySet, *, expected_version: int | None) -> bool:
        """Compare-and-swap: store ``keyset`` only if the stored version is
        ``expected_version`` (None: only if there is no set of that name yet). True when
        stored, False when someone else changed (or created) it first."""

    async def versions(self) -> dict[str, int]:
        """name -> stored version of every key set: the cheap question a process asks
        (once a second) to learn that another process or the CLI changed a set."""
