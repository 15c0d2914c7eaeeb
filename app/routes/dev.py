"""The development identity provider (development posture only; absent — 404 — in
production because this router is never mounted there)."""

from __future__ import annotations

from fastapi import APIRouter

from suishen.app.deps import BodyFirst, RuntimeDep
from suishen.app.schemas import DevTokenIn, TokenOut
from suishen.errors import InvalidRequest, NotFound

router = APIRouter(tags=["development"], route_class=BodyFirst)


@router.post("/v1/dev/citizen-token", response_model=TokenOut)
async def dev_citizen_token(body: DevTokenIn, runtime: RuntimeDep) -> dict[str, object]:
    """A citizen access token for ``sub``, signed by the development identity provider."""
    if runtime.dev_idp is None:  # pragma: no cover - router not mounted then
        raise NotFound("not found")
    try:
        return runtime.dev_idp.issue(body.sub, now=int(runtime.now()))
    except ValueError as exc:
        raise InvalidRequest(str(exc)[:200]) from None
