"""Verification keys, looked up by kid: what a verifier trusts.

A :class:`KeyRing` is built from a key set (the service: with blinding secrets, so it
can recover subject handles) or from a published JWK Set (partners and gates: public
keys only). It is immutable; a process swaps in a new ring when keys change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from suishen.errors import KeyManagementError
from suishen.keys.algorithms import PublicKey
from suishen.timefmt import parse_rfc3339


class KeyState(StrEnum):
    """Lifecycle states of a signing key (see :mod:`suishen.keys.keyset`)."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key with its state, validity window and (service only) blinding secret."""

    kid: bytes
    public: PublicKey
    state: KeyState
    not_before: int | None = None
    not_after: int | None = None
    blinding: bytes | None = None

    def in_window(self, now: int, skew: int) -> bool:
        """True when the key may verify at ``now`` (pending keys never do)."""
        if self.state not in (KeyState.ACTIVE, KeyState.RETIRED):
            return False
        if self.not_before is not None and now < self.not_before - skew:
            return False
        return self.not_after is None or now <= self.not_after + skew


class KeyRing:
    """An immutable kid -> :class:`VerificationKey` map."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys: dict[bytes, VerificationKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise KeyManagementError(f"duplicate kid {key.kid.hex()}")
            self._keys[key.kid] = key

    def get(self, kid: bytes) -> VerificationKey | None:
        """The key with this kid, or None."""
        return self._keys.get(kid)

    def __iter__(self) -> Iterator[VerificationKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_jwks(cls, jwks: Any) -> KeyRing:
        """Trust the keys of a published JWK Set (``GET /v1/keys``).

        Each JWK MUST have a hex ``kid``, ``use`` absent or ``"sig"``, and a key type
        allowed for its ``alg``; a JWK without ``status`` is taken as ``active``.
        Anything else raises :class:`KeyManagementError` — a gate must not silently run
        with fewer keys than it was given.
        """
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise KeyManagementError("a JWK Set is an object with a 'keys' array")
        keys = []
        for jwk in jwks["keys"]:
            if not isinstance(jwk, dict):
                raise KeyManagementError("a JWK is an object")
            if jwk.get("use", "sig") != "sig":
                raise KeyManagementError("only signature keys are trusted")
            try:
                kid = bytes.fromhex(jwk["kid"])
                state = KeyState(jwk.get("status", "active"))
                not_before = _opt_time(jwk.get("not_before"))
                not_after = _opt_time(jwk.get("not_after"))
            except (KeyError, TypeError, ValueError) as exc:
                raise KeyManagementError(f"bad JWK member: {exc}") from None
            public = PublicKey.from_jwk(jwk)
            if public.kid_bytes() != kid:
                raise KeyManagementError(f"kid {jwk['kid']} does not match its key")
            keys.append(VerificationKey(kid, public, state, not_before, not_after))
        return cls(keys)


def _opt_time(value: Any) -> int | None:
    return None if value is None else parse_rfc3339(value)
