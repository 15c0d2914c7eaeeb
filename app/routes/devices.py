"""Citizens' devices and offline credentials; trust bundles and the trust anchor for
offline gates (SPEC.md §4 and §6.1)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from suishen.app.deps import BodyFirst, CitizenSub, RuntimeDep, bearer, citizen_sub
from suishen.app.routes.partner import authenticate_partner
from suishen.app.schemas import (
    CredentialOut,
    DeviceCredentialsOut,
    DeviceIn,
    DeviceList,
    DeviceOut,
    RefillIn,
)
from suishen.app.services.devices import Enrolment, credential_json
from suishen.timefmt import rfc3339

router = APIRouter(tags=["citizens"], route_class=BodyFirst)
trust_router = APIRouter(tags=["partners"])
NO_STORE = {"Cache-Control": "no-store"}
COSE = "application/cose"
DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _answer(enrolment: Enrolment, status: int) -> Response:
    body = DeviceCredentialsOut(
        device_id=enrolment.device.device_id,
        name=enrolment.device.name,
        credentials=[CredentialOut(**credential_json(c)) for c in enrolment.credentials],
    )
    return Response(body.model_dump_json(), status_code=status, headers=NO_STORE,
                    media_type="application/json")


@router.post("/v1/devices", status_code=201, response_model=DeviceCredentialsOut,
             responses={403: {"description": "the citizen is suspended"}})
async def register_device(body: DeviceIn, runtime: RuntimeDep, sub: CitizenSub) -> Response:
    """Register a device with a batch of P-256 public keys: one offline credential per
    key, for consecutive slots from the current one (at most the configured window;
    keys beyond it get none)."""
    enrolment = await runtime.devices.register(sub, name=body.name, keys=body.keys)
    return _answer(enrolment, 201)


@router.post("/v1/devices/{device_id}/credentials", response_model=DeviceCredentialsOut,
             responses={403: {"description": "the citizen is suspended"}})
async def refill_device(device_id: DeviceId, body: RefillIn, runtime: RuntimeDep,
                        sub: CitizenSub) -> Response:
    """The next credentials of a device: the slots after its last credential, up to the
    window's end; keys beyond the free slots get no credential."""
    enrolment = await runtime.devices.refill(sub, device_id, keys=body.keys)
    return _answer(enrolment, 200)


@router.get("/v1/devices", response_model=DeviceList)
async def list_devices(runtime: RuntimeDep, sub: CitizenSub) -> DeviceList:
    """The citizen's devices, oldest first."""
    devices = await runtime.devices.devices(sub)
    return DeviceList(devices=[
        DeviceOut(
            device_id=d.device_id, name=d.name, registered_at=rfc3339(d.created_at),
            credentials_valid_until=None if d.valid_until is None else rfc3339(d.valid_until),
            status="revoked" if d.revoked else "active",
        )
        for d in devices
    ])


async def _citizen_or_operator(request: Request, runtime: RuntimeDep) -> str | None:
    """The citizen's ``sub``, or None for the operators' admin token."""
    token = bearer(request.headers.get("authorization"))
    if hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
        return None
    return await citizen_sub(request, runtime)


@router.delete("/v1/devices/{device_id}", status_code=204,
               responses={204: {"description": "revoked"}})
async def revoke_device(device_id: DeviceId, request: Request,
                        runtime: RuntimeDep) -> Response:
    """Revoke a device (its owner, or an operator with the admin token): its offline
    codes stop verifying online within a second and at gates on their next sync."""
    sub = await _citizen_or_operator(request, runtime)
    await runtime.devices.revoke(device_id, sub=sub)
    return Response(status_code=204)


@trust_router.get("/v1/trust-anchor",
                  responses={200: {"content": {"application/jwk-set+json": {}}}})
async def trust_anchor(runtime: RuntimeDep) -> Response:
    """The public keys that sign trust bundles (JWK Set), for provisioning gates."""
    import json

    return Response(json.dumps(runtime.trust.anchor_jwks()),
                    headers={"Cache-Control": "public, max-age=300"},
                    media_type="application/jwk-set+json")


@trust_router.get("/v1/trust-bundle", responses={200: {"content": {COSE: {}}}})
async def trust_bundle(
    request: Request,
    runtime: RuntimeDep,
    since: Annotated[int | None, Query(ge=0, le=0xFFFFFFFF,
                                       description="the version the gate holds")] = None,
) -> Response:
    """The signed trust bundle (COSE_Sign1) for offline gates, or with ``since`` a
    signed delta from that version (the full bundle when no delta applies or it would
    not be smaller). Any partner token."""
    await authenticate_partner(runtime, request.headers.get("authorization"))
    signed, bundle = await runtime.trust.signed(since)
    headers = {"Cache-Control": "no-store", "X-Bundle-Version": str(bundle.version)}
    if bundle.is_delta:
        headers["X-Bundle-Since"] = str(bundle.since)
    return Response(signed, headers=headers, media_type=COSE)
