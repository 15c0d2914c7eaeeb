"""Operators: citizens, partners and signing keys (``Authorization: Bearer`` with the
admin token)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from suishen.app.deps import OperatorFirst, RuntimeDep
from suishen.app.observability import verification_counts
from suishen.app.schemas import PartnerIn, PartnerOut, SubjectIn, SubjectOut
from suishen.app.storage.base import Subject
from suishen.app.text import MAX_SUBJECT_CHARS, SUBJECT_PATTERN
from suishen.errors import KeyManagementError, NotFound
from suishen.keys.algorithms import Alg
from suishen.timefmt import rfc3339

router = APIRouter(prefix="/v1/admin", tags=["operators"],
                   route_class=OperatorFirst)
SubPath = Annotated[str, Path(min_length=1, max_length=MAX_SUBJECT_CHARS,
                              pattern=SUBJECT_PATTERN)]


def _subject_out(subject: Subject) -> SubjectOut:
    return SubjectOut(
        sub=subject.sub,
        status=subject.status,
        attributes=dict(subject.attributes),
        created_at=rfc3339(subject.created_at),
        updated_at=rfc3339(subject.updated_at),
    )


@router.put("/subjects/{sub}", response_model=SubjectOut)
async def put_subject(sub: SubPath, body: SubjectIn, runtime: RuntimeDep) -> SubjectOut:
    """Create or update a citizen. A suspension applies to unexpired codes everywhere
    within a second."""
    subject = await runtime.subjects.upsert(
        sub, status=body.status, attributes={str(k): v for k, v in body.attributes.items()}
    )
    return _subject_out(subject)


@router.get("/subjects/{sub}", response_model=SubjectOut)
async def get_subject(sub: SubPath, runtime: RuntimeDep) -> SubjectOut:
    """Read a citizen back."""
    subject = await runtime.subjects.get(sub)
    if subject is None:
        raise NotFound("no such subject")
    return _subject_out(subject)


@router.post("/partners", status_code=201, response_model=PartnerOut)
async def create_partner(body: PartnerIn, runtime: RuntimeDep) -> Response:
    """Register a partner. The client secret is in this answer only (stored hashed)."""
    partner, secret = await runtime.partners.register(
        name=body.name,
        scenes=list(body.scenes),
        attributes=list(body.attributes),
        rate_limit_per_second=body.rate_limit_per_second,
        enterprise_attributes=list(body.enterprise_attributes),
    )
    out = PartnerOut(
        client_id=partner.client_id,
        client_secret=secret,
        name=partner.name,
        scenes=list(partner.scenes),
        attributes=list(partner.attributes),
        enterprise_attributes=list(partner.enterprise_attributes),
        rate_limit_per_second=partner.rate_limit_per_second,
        created_at=rfc3339(partner.created_at),
    )
    return Response(out.model_dump_json(), status_code=201, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.post("/keys/rotate")
async def rotate_keys(
    runtime: RuntimeDep,
    alg: Annotated[Literal["EdDSA", "ES256"] | None, Query()] = None,
    key_set: Annotated[Literal["codes", "tokens", "anchor"], Query()] = "codes",
) -> dict[str, object]:
    """A new active signing key; the old one keeps verifying until its codes have
    expired (code lifetime + clock skew; for ``codes``, at least the offline credential
    window). ``?key_set=tokens`` rotates the partner-token key instead,
    ``?key_set=anchor`` the trust-anchor key that signs trust bundles."""
    keyset = await runtime.keys.rotate(key_set, alg=Alg.parse(alg) if alg else None)
    return {"key_set": key_set, "active": keyset.active().kid, "version": keyset.version,
            **keyset.jwks(now=int(runtime.now()))}


@router.post("/keys/{kid}/revoke")
async def revoke_key(
    runtime: RuntimeDep,
    kid: Annotated[str, Path(pattern=r"^[0-9a-f]{2,32}$")],
    key_set: Annotated[Literal["codes", "tokens", "anchor"], Query()] = "codes",
) -> dict[str, object]:
    """Codes signed by this key stop verifying in every process within a second, and at
    gates on their next key or trust-bundle sync."""
    try:
        keyset = await runtime.keys.revoke(kid, key_set)
    except KeyManagementError:
        raise NotFound(f"no key {kid} in the {key_set} key set") from None
    return {"key_set": key_set, "kid": kid, "status": "revoked", "version": keyset.version}


@router.get("/stats")
async def stats(runtime: RuntimeDep) -> Response:
    """Counters for the console's live panel: verification decisions so far by scene and
    reason (every worker's, when ``suishen serve`` runs with a metrics port; else this
    process's), and the service's clock. Two readings a few seconds apart give
    verifications per second; a count that went down means a restart."""
    counts = verification_counts(runtime.metrics)
    body = {
        "at": rfc3339(runtime.now()),
        "at_ms": int(runtime.now() * 1000),
        "verifications": [{"scene": scene, "reason": reason, "count": count}
                          for (scene, reason), count in sorted(counts.items())],
    }
    return Response(json.dumps(body), media_type="application/json",
                    headers={"Cache-Control": "no-store"})
