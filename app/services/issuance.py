"""Personal codes for citizens: enrolment on first sight (a known citizen needs no
database round trip), the suspension check and the signature; and enterprise codes for
an enterprise's agents (SPEC.md §6.3: the agency handle from memory, no database round
trip either). Returns the signed code (:class:`~suishen.keys.issuer.IssuedCode`); the
route chooses its presentation (JSON, PNG or SVG)."""

from __future__ import annotations

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.observability import Metrics
from suishen.app.services.enterprises import EnterpriseService
from suishen.app.services.keys import KeyManager
from suishen.app.services.subjects import SubjectService
from suishen.codecs.sc1 import Kind
from suishen.errors import EnterpriseSuspended, IssuanceError, NotAnAgent
from suishen.keys.issuer import IssuedCode, Issuer


class IssuanceService:
    """Issues the current personal code of a citizen, and enterprise codes."""

    def __init__(
        self,
        *,
        keys: KeyManager,
        subjects: SubjectService,
        metrics: Metrics,
        ttl_seconds: int,
        clock: Clock = SYSTEM_CLOCK,
        enterprises: EnterpriseService | None = None,
    ) -> None:
        self._enterprises = enterprises
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
        issuer = self._issuer()
        # No database round trip for a known citizen (SubjectService.handle_for_code).
        handle = await self._subjects.handle_for_code(sub)
        issued = issuer.issue_personal(handle, now=int(self._clock()), ttl=self._ttl)
        self._metrics.codes_issued.inc()
        return issued

    async def issue_enterprise(self, sub: str, enterprise_id: str) -> IssuedCode:
        """A fresh code of enterprise ``enterprise_id`` for its agent ``sub``: the
        personal layout with kind ``enterprise`` and the agency handle blinded as
        ``sub`` (``codecs/sc1.py``).

        Raises :class:`NotAnAgent` when ``sub`` is not an agent of the enterprise (or
        there is no such enterprise), :class:`EnterpriseSuspended` for a suspended
        enterprise, :class:`SubjectSuspended` for a suspended agent and
        :class:`IssuanceError` when no signing key is active.
        """
        issuer = self._issuer()
        view = (self._enterprises.agency_of(enterprise_id, sub)
                if self._enterprises is not None else None)
        if view is None:
            raise NotAnAgent("this citizen is not an agent of that enterprise")
        if view.enterprise.suspended:
            raise EnterpriseSuspended("this enterprise is suspended")
        await self._subjects.handle_for_code(sub)  # the agent's own suspension
        issued = issuer.issue_personal(view.agency.handle, now=int(self._clock()),
                                       ttl=self._ttl, kind=Kind.ENTERPRISE)
        self._metrics.codes_issued.inc()
        return issued

    def _issuer(self) -> Issuer:
        issuer = self._keys.view().issuer
        if issuer is None:
            raise IssuanceError("no active signing key; an operator must rotate keys")
        return issuer
