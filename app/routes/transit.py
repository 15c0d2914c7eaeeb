"""Transit journeys (SPEC.md §6.2, issue 10): fare tables and settlement for operators,
the citizen's journeys, offline gates' uploads (``POST /v1/gate-events``, the design in
:mod:`suishen.app.services.gate_events`). The rules are in
:mod:`suishen.verifiers.transit`; the state and records in
:mod:`suishen.app.services.transit`."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from suishen.app.deps import BodyFirst, CitizenSub, OperatorFirst, RuntimeDep
from suishen.app.observability import request_id_var
from suishen.app.problems import problem_response
from suishen.app.routes.partner import authenticate_partner
from suishen.app.schemas import (
    MAX_CODE,
    GateUploadAnswer,
    JourneyItem,
    JourneyPage,
    fare_table_openapi,
)
from suishen.app.services.gate_events import MAX_CHECKPOINT, MAX_EPOCH, MAX_EVENTS
from suishen.errors import BodyTooLarge, InvalidRequest, NotFound, UnsupportedMediaType
from suishen.timefmt import rfc3339
from suishen.verifiers.policy import SCENES
from suishen.verifiers.transit import FareTableError, JourneyStatus

admin = APIRouter(prefix="/v1/admin", tags=["operators"], route_class=OperatorFirst)
citizen = APIRouter(tags=["citizens"], route_class=BodyFirst)
partner = APIRouter(tags=["partners"])
NetworkPath = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[a-z]+$")]
NO_STORE = {"Cache-Control": "no-store"}
_STATUSES = [s.value for s in JourneyStatus if s is not JourneyStatus.OPEN]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key[:64]!r}")
        out[key] = value
    return out


# The body is documented by app.schemas.fare_table_openapi() and validated by the pure
# core's parse_fare_table (one implementation of the rules, listing every problem; an
# unknown network too, which is why the path parameter is only documented as an enum).
FareNetworkPath = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[a-z]+$",
                                       json_schema_extra={"enum": ["metro", "ferry", "bus"]})]


@admin.put(
    "/fares/{network}",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": fare_table_openapi()}}}},
    responses={422: {"description": "not a valid fare table for this network: every "
                                    "problem is listed in `problems`"}},
)
async def put_fares(network: FareNetworkPath, request: Request, runtime: RuntimeDep) -> Response:
    """Create or replace the fare table of ``metro``, ``ferry`` (zones and fares) or
    ``bus`` (a flat fare); amounts in integer fen. Every problem of a refused table is
    listed in the 422's ``problems``. Applies in every process within a second."""
    raw = await request.body()
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # not UTF-8, not JSON, a duplicate member, a 5,000-digit int
        return problem_response(422, f"the body is not a JSON fare table: {exc}"[:200],
                                type_="validation")
    try:
        table = await runtime.transit.put(network, body)
    except FareTableError as exc:
        return problem_response(422, "the fare table is not valid", type_="validation",
                                extra={"problems": exc.problems})
    return Response(json.dumps({"network": network, **table.as_json()}),
                    media_type="application/json")


@admin.get("/fares/{network}")
async def get_fares(network: NetworkPath, runtime: RuntimeDep) -> Response:
    """The stored fare table of ``network`` (404 when it has none)."""
    table = await runtime.transit.get(network) if network in ("metro", "ferry", "bus") else None
    if table is None:
        raise NotFound(f"no fare table for network {network}")
    return Response(json.dumps({"network": network, **table.as_json()}),
                    media_type="application/json")


@admin.get("/settlement",
           responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
async def settlement(
    runtime: RuntimeDep,
    date_: Annotated[date, Query(alias="date", description="YYYY-MM-DD (UTC day)")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """Journeys and fares per operator for one UTC day (journeys count on the day they
    closed). Every journey belongs to one network and its fen to that network's
    operator, so nothing is owed between operators and the totals add up to the sum of
    all fares (``docs/transit.md``)."""
    day = date_  # FastAPI refuses anything but a calendar date with a 422
    groups, totals = await runtime.transit.settlement(day)
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["date", "operator", "journeys", "fares_fen", *_STATUSES])
        for t in totals.values():
            writer.writerow([day.isoformat(), t.operator, t.journeys, t.fares,
                             *(t.by_status.get(s, 0) for s in _STATUSES)])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={**NO_STORE,
                                 "Content-Disposition":
                                     f'attachment; filename="settlement-{day}.csv"'})
    body = {
        "date": day.isoformat(),
        "journeys": sum(g.journeys for g in groups),
        "fares": sum(g.fares for g in groups),
        "operators": [
            {"operator": t.operator, "journeys": t.journeys, "fares": t.fares,
             "by_status": dict(t.by_status), "by_network": dict(t.by_network)}
            for t in totals.values()
        ],
        "owed": [],  # the settlement rule accounts every fen to one operator
    }
    return Response(json.dumps(body), media_type="application/json", headers=NO_STORE)


@citizen.get("/v1/me/journeys", response_model=JourneyPage)
async def my_journeys(
    runtime: RuntimeDep,
    sub: CitizenSub,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> JourneyPage:
    """The citizen's transit journeys, newest first, with fares in fen. Pass
    ``next_before`` back as ``before`` for the next page."""
    subject = await runtime.subjects.get(sub)
    if subject is None:
        return JourneyPage(items=[], next_before=None)
    entries, next_before = await runtime.transit.history(subject.handle, limit=limit,
                                                         before=before)
    items = []
    for entry in entries:
        j = entry.record.journey
        items.append(JourneyItem(
            network=j.network, operator=j.operator, status=j.status.value, fare=j.fare,
            entry_station=j.entry_station, entry_checkpoint=j.entry_checkpoint,
            entered_at=None if j.entered_at is None else rfc3339(j.entered_at),
            exit_station=j.exit_station, exit_checkpoint=j.exit_checkpoint,
            exited_at=None if j.exited_at is None else rfc3339(j.exited_at),
            offline=entry.record.offline,
        ))
    return JourneyPage(items=items, next_before=next_before)


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}

# The documented entry: the gate's log line (sdk.gate). The route checks each entry
# itself, so that one bad entry is a per-entry error and not a 422 for the batch.
_GATE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "scene", "decided_at", "valid"],
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE},
        "scene": {"type": "string", "enum": sorted(SCENES)},
        "direction": {"type": ["string", "null"], "enum": ["in", "out", None]},
        "checkpoint": {"type": ["string", "null"], "minLength": 1,
                       "maxLength": MAX_CHECKPOINT, "pattern": "^[ -~]+$"},
        "decided_at": {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH,
                       "description": "when the gate decided (seconds since the epoch)"},
        "valid": {"type": "boolean", "description": "the gate's decision"},
        "reason": {"type": "string", "maxLength": 64, "description": "the gate's reason"},
    },
    "description": "one offline decision; other members (the gate's own) are ignored",
}


@partner.post(
    "/v1/gate-events",
    response_model=GateUploadAnswer,
    responses={status: {"description": text, "content": _PROBLEM} for status, text in (
        (401, "missing or invalid partner token"),
        (413, f"body too large or more than {MAX_EVENTS} events"),
        (415, "body is not application/json"))},
    openapi_extra={
        "security": [{"partnerOAuth": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["events"], "additionalProperties": False,
            "properties": {"events": {"type": "array", "maxItems": MAX_EVENTS,
                                      "items": _GATE_EVENT_SCHEMA}},
        }}}},
    },
)
async def gate_events(request: Request, runtime: RuntimeDep) -> Response:
    """Upload an offline gate's decisions (at most 1,000 a batch; any partner token,
    each entry in one of the partner's scenes). Each accepted decision is verified
    again by the service, then enters the citizen's history (marked offline) and their
    journeys. Idempotent: a re-sent batch changes nothing. Bad entries are listed in
    ``errors`` (the others are taken); a batch refused as a whole writes nothing."""
    who, scopes = await authenticate_partner(runtime, request.headers.get("authorization"))
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    raw = await request.body()
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # not UTF-8, not JSON, a duplicate member, a huge int
        raise InvalidRequest(f"the body is not JSON: {exc}"[:200]) from None
    if not isinstance(body, dict) or set(body) != {"events"} or not isinstance(
        body["events"], list
    ):
        raise InvalidRequest('the body must be {"events": [...]}')
    if len(body["events"]) > MAX_EVENTS:
        raise BodyTooLarge(f"at most {MAX_EVENTS} events in one batch")
    result = await runtime.gate_events.upload(who, scopes, body["events"],
                                              request_id=request_id_var.get())
    return Response(json.dumps(result.as_json()), media_type="application/json",
                    headers=NO_STORE)
