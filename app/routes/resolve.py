"""``POST /v1/resolve`` (SPEC.md §6.3, issue 11): unified recognition for partners. The
logic is :mod:`suishen.app.services.resolve`; this parses and presents."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from suishen.app.deps import RuntimeDep, auth_first
from suishen.app.observability import request_id_var
from suishen.app.routes.partner import authenticate_partner
from suishen.app.schemas import ResolveIn, ResolveOut
from suishen.timefmt import rfc3339


async def _partner_check(request: Request) -> None:
    """401 before the body is looked at; the partner is kept for the handler."""
    partner, _ = await authenticate_partner(request.app.state.runtime,
                                            request.headers.get("authorization"))
    request.state.partner = partner


router = APIRouter(tags=["partners"], route_class=auth_first(_partner_check))


@router.post("/v1/resolve", response_model=ResolveOut)
async def resolve(body: ResolveIn, request: Request, runtime: RuntimeDep) -> Response:
    """Any code this service issues — personal, offline, enterprise — named with its
    kind, issuer and validity (``unsupported_version`` for other prefixes), plus what the
    partner may see: an enterprise's permitted attributes, nothing personal. Any
    registered partner may call it; it shares the partner's verify rate budget, never
    consumes a single-use code, and is audited like a verification (scene
    ``resolve``)."""
    found = await runtime.resolver.resolve(partner=request.state.partner, code=body.code,
                                           request_id=request_id_var.get())
    out = ResolveOut(
        kind=found.kind,
        issuer=found.issuer,
        valid=found.valid,
        reason=found.reason,
        verified_at=rfc3339(found.verified_at),
        code_expires_at=None if found.code_expires_at is None
        else rfc3339(found.code_expires_at),
        **found.public,
    )
    return Response(out.model_dump_json(exclude_defaults=True), media_type="application/json",
                    headers={"Cache-Control": "no-store"})
