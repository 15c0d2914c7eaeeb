"""SDK verifier: a :class:`suishen.verifiers.memory.Verifier` built from a JWK Set,
reading the clock when the caller gives no ``now``."""

from __future__ import annotations

import json
import time
from typing import Any

from suishen.keys.keyring import KeyRing
from suishen.verifiers.core import DEFAULT_SKEW, Decision
from suishen.verifiers.memory import InMemoryReplay, ReplayMemory
from suishen.verifiers.memory import Verifier as _CoreVerifier
from suishen.verifiers.reasons import Reason

__all__ = ["Decision", "Reason", "Verifier"]


class Verifier(_CoreVerifier):
    """Offline verification for partners and gates."""

    @classmethod
    def from_jwks(
        cls,
        jwks: dict[str, Any] | str | bytes,
        *,
        skew: int = DEFAULT_SKEW,
        replay: ReplayMemory | None = None,
    ) -> Verifier:
        """Trust the keys of a JWK Set (a dict, or its JSON text)."""
        if isinstance(jwks, str | bytes):
            jwks = json.loads(jwks)
        # ``replay or InMemoryReplay()`` would replace an *empty* shared memory (falsy: it
        # has ``__len__``) with a private one and silently split single use.
        return cls(
            KeyRing.from_jwks(jwks),
            skew=skew,
            replay=replay if replay is not None else InMemoryReplay(),
        )

    def verify(
        self,
        code: object,
        *,
        scene: str,
        now: int | None = None,
        direction: str | None = None,
        checkpoint: str | None = None,
    ) -> Decision:
        """Verify ``code``; ``now`` defaults to this machine's clock."""
        at = int(time.time()) if now is None else now
        return super().verify(code, scene=scene, now=at, direction=direction,
                              checkpoint=checkpoint)
