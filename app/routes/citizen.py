"""Citizens: issue a personal code (JSON, PNG or SVG) and read who verified it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from suishen.app.deps import BodyFirst, CitizenSub, RuntimeDep
from suishen.app.schemas import (
    CodeOut,
    EnterpriseCodeRequest,
    PersonalCodeRequest,
    VerificationItem,
    VerificationPage,
)
from suishen.timefmt import rfc3339

router = APIRouter(tags=["citizens"], route_class=BodyFirst)
NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "/v1/codes",
    status_code=201,
    response_model=CodeOut,
    responses={201: {"content": {"image/png": {}, "image/svg+xml": {}}}},
)
async def issue_code(
    runtime: RuntimeDep,
    sub: CitizenSub,
    format: Annotated[Literal["json", "png", "svg"], Query()] = "json",
    wanted: PersonalCodeRequest | EnterpriseCodeRequest | None = None,
) -> Response:
    """Issue the citizen's current personal code (``?format=png|svg`` for the QR image,
    with the expiry in ``X-Code-Expires-At``); with ``{"kind": "enterprise",
    "enterprise_id"}`` the code of an enterprise the citizen is an agent of (403
    otherwise)."""
    if isinstance(wanted, EnterpriseCodeRequest):
        issued = await runtime.issuance.issue_enterprise(sub, wanted.enterprise_id)
    else:
        issued = await runtime.issuance.issue(sub)
    expires = rfc3339(issued.expires_at)
    if format == "json":
        body = CodeOut(
            code=issued.text,
            kind=issued.kind,
            issued_at=rfc3339(issued.issued_at),
            expires_at=expires,
            refresh_after=rfc3339(issued.refresh_after),
            kid=issued.kid,
        )
        return Response(body.model_dump_json(), status_code=201, headers=NO_STORE,
                        media_type="application/json")
    from suishen.codecs import qr

    # X-Code-Refresh-After: when the citizen page fetches the next image (§3 half-life).
    headers = {**NO_STORE, "X-Code-Expires-At": expires,
               "X-Code-Refresh-After": rfc3339(issued.refresh_after)}
    if format == "png":
        return Response(qr.render_png(issued.text), status_code=201, headers=headers,
                        media_type="image/png")
    return Response(qr.render_svg(issued.text), status_code=201, headers=headers,
                    media_type="image/svg+xml")


@router.get("/v1/me/verifications", response_model=VerificationPage)
async def my_verifications(
    runtime: RuntimeDep,
    sub: CitizenSub,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> VerificationPage:
    """Every verification of the citizen's codes, newest first (the right to know who
    read their code). Pass ``next_before`` back as ``before`` for the next page."""
    page = await runtime.subjects.history(sub, limit=limit, before=before)
    items = [
        VerificationItem(
            verified_at=rfc3339(e.record.at_ms / 1000),
            partner=e.record.partner_name,
            scene=e.record.scene,
            checkpoint=e.record.checkpoint,
            direction=e.record.direction,
            result=e.record.reason,
            valid=e.record.reason == "ok",
            offline=e.record.offline,
        )
        for e in page.entries
    ]
    return VerificationPage(items=items, next_before=page.next_before)
