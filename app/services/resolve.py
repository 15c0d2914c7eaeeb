"""``POST /v1/resolve`` behind the route (SPEC.md §6.3, issue 11): unified recognition.
Any code in; its kind, issuer and validity out, plus the public information the partner
may see — nothing personal (no subject, no citizen attributes), ever.

How a code is judged: by the verify path itself
(:meth:`~suishen.app.services.verify.VerifyService.verify`) under the pseudo-scene
:data:`suishen.verifiers.policy.RESOLVE` — every kind accepted, never single use, so a
resolve never consumes a code (a metro code resolved at a window still opens the gate).
The same decision is therefore recorded in the audit like a verification, under the
scene ``resolve`` (the citizen sees it in ``GET /v1/me/verifications``), counted in the
verification metrics under that scene, and rate-limited on the partner's verify budget.

What is shown per kind is one table, :data:`PUBLIC_INFO`: kind -> a function of the
outcome and the partner that returns the extra answer members. **Adding a kind (the
venue codes of issue 11 part B) is one entry there** (plus its judgement on the verify
path, which resolve reuses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suishen.app.services.verify import VerifyOutcome, VerifyService
from suishen.app.storage.base import Partner
from suishen.verifiers.policy import RESOLVE
from suishen.verifiers.reasons import Reason

PublicInfo = Callable[[VerifyOutcome, Partner], dict[str, Any]]


def _nothing(outcome: VerifyOutcome, partner: Partner) -> dict[str, Any]:
    """Personal and offline codes: nothing personal (no subject, no attributes)."""
    return {}


def _enterprise(outcome: VerifyOutcome, partner: Partner) -> dict[str, Any]:
    """Enterprise codes: the enterprise attributes the partner's registration allows
    (the agent stays anonymous)."""
    return {} if outcome.enterprise is None else {"enterprise": outcome.enterprise}


PUBLIC_INFO: dict[str, PublicInfo] = {
    "personal": _nothing,
    "offline": _nothing,
    "enterprise": _enterprise,
    # "venue": the venue's public information (issue 11 part B) plugs in here.
}

# Reasons that say the code is not one this service can vouch for: no issuer is named.
_UNRECOGNISED = frozenset({Reason.UNSUPPORTED_VERSION, Reason.MALFORMED, Reason.UNKNOWN_KEY,
                           Reason.BAD_SIGNATURE})


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a partner learns of a code: ``kind`` and ``issuer`` once the code is
    recognised as this service's (signature checked; else None), validity and reason,
    and the kind's public information (``public``, members of the answer)."""

    kind: str | None
    issuer: str | None
    valid: bool
    reason: Reason
    verified_at: float
    code_expires_at: int | None = None
    public: dict[str, Any] = field(default_factory=dict)


class ResolveService:
    """Unified recognition on top of the verify path."""

    def __init__(self, verifier: VerifyService, *, issuer: str) -> None:
        self._verifier = verifier
        self._issuer = issuer

    async def resolve(self, *, partner: Partner, code: object,
                      request_id: str | None) -> Resolution:
        """Judge ``code`` (never consuming it) and say what the partner may see.
        Raises :class:`~suishen.errors.RateLimited` when the partner's budget is spent."""
        now = await self._verifier.take(partner)
        outcome = await self._verifier.verify(partner=partner, policy=RESOLVE, code=code,
                                              checkpoint=None, direction=None, now=now,
                                              request_id=request_id)
        recognised = outcome.kind is not None and outcome.reason not in _UNRECOGNISED
        public: dict[str, Any] = {}
        if outcome.valid and outcome.kind is not None:
            info = PUBLIC_INFO.get(outcome.kind, _nothing)
            public = info(outcome, partner)
        return Resolution(
            kind=outcome.kind if recognised else None,
            issuer=self._issuer if recognised else None,
            valid=outcome.valid,
            reason=outcome.reason,
            verified_at=outcome.verified_at,
            code_expires_at=outcome.code_expires_at if outcome.valid else None,
            public=public,
        )
