"""Enterprises (SPEC.md §6.3, issue 11): operators upsert and read them back. The
service and its in-memory directory are :mod:`suishen.app.services.enterprises`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from suishen.app.deps import OperatorFirst, RuntimeDep
from suishen.app.schemas import EnterpriseIn, EnterpriseOut
from suishen.app.storage.enterprises import Enterprise
from suishen.errors import NotFound
from suishen.timefmt import rfc3339

admin = APIRouter(prefix="/v1/admin", tags=["operators"], route_class=OperatorFirst)
EnterprisePath = Annotated[str, Path(min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def _out(enterprise: Enterprise) -> EnterpriseOut:
    return EnterpriseOut(
        enterprise_id=enterprise.enterprise_id,
        name=enterprise.name,
        uscc=enterprise.uscc,
        status=enterprise.status,
        attributes=dict(enterprise.attributes),
        agents=enterprise.agents,
        created_at=rfc3339(enterprise.created_at),
        updated_at=rfc3339(enterprise.updated_at),
    )


@admin.put("/enterprises/{enterprise_id}", response_model=EnterpriseOut)
async def put_enterprise(enterprise_id: EnterprisePath, body: EnterpriseIn,
                         runtime: RuntimeDep) -> EnterpriseOut:
    """Create or replace an enterprise. Every bad field is listed in the 422's
    ``errors``. Agents added get an agency (their enterprise codes); agents removed lose
    it, and a suspension refuses every code of the enterprise, in every process within a
    second."""
    enterprise = await runtime.enterprises.put(
        enterprise_id, name=body.name, uscc=body.uscc, status=body.status,
        attributes={str(k): v for k, v in body.attributes.items()}, agents=body.agents)
    return _out(enterprise)


@admin.get("/enterprises/{enterprise_id}", response_model=EnterpriseOut)
async def get_enterprise(enterprise_id: EnterprisePath, runtime: RuntimeDep) -> EnterpriseOut:
    """Read an enterprise back (404 when there is none)."""
    enterprise = await runtime.enterprises.get(enterprise_id)
    if enterprise is None:
        raise NotFound("no such enterprise")
    return _out(enterprise)
