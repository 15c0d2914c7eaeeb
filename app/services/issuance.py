"""Personal codes for citizens: enrolment on first sight (a known citizen needs no
database round trip), the suspension check and the signature. Returns the signed code
(:class:`~suishen.keys.issuer.IssuedCode`); the route chooses its presentation (JSON,
PNG or SVG)."""

from __future__ import annotations

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.keys import KeyManager
from suishen.app.services.subjects import SubjectService
from suishen.errors import IssuanceError
from suishen.keys.issuer import IssuedCode


class IssuanceService:
    """Issues the current personal code of a citizen."""

    def __init__(
        self,
        *,
        keys: KeyManager,
        subjects: SubjectService,
        metrics: Metrics,
        ttl_seconds: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._keys = keys
        self._subjects = subjects
        self._metrics = metrics
        self._ttl = ttl_seconds
        self._clock = clock

    async def issue(self, sub: str) -> IssuedCode:
        """A fresh code for the citizen ``sub`` (enrolled on first sight).

        Raises :class:`SubjectSuspended` for a suspended citizen and
        :class:`IssuanceError` when no signing key is active.
        """
        issuer = self._keys.view().issuer
        if issuer is None:
            raise IssuanceError("no active signing key; an operator must rotate keys")
        # No database round trip for a known citizen (SubjectService.handle_for_code).
        handle = await self._subjects.handle_for_code(sub)
        issued = issuer.issue_personal(handle, now=int(self._clock()), ttl=self._ttl)
        self._metrics.codes_issued.inc()
        return issued
