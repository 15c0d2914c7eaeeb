"""Venues and shops (SPEC.md §6.3, issue 11 part B): registration, revocation and visit
counts for operators, the printable poster for anyone, check-ins for citizens. The
design is in :mod:`suishen.app.services.venues` and docs/enterprise.md."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from suishen.app.deps import BodyFirst, CitizenSub, OperatorFirst, RuntimeDep
from suishen.app.schemas import (
    VENUE_ID_PATTERN,
    CheckinIn,
    CheckinItem,
    CheckinOut,
    CheckinPage,
    HourVisits,
    VenueIn,
    VenueOut,
    VenuePublic,
    VisitsOut,
)
from suishen.app.services.venues import venue_public_info
from suishen.app.storage.venues import Venue
from suishen.errors import InvalidRequest, NotFound
from suishen.timefmt import rfc3339

admin = APIRouter(prefix="/v1/admin", tags=["operators"], route_class=OperatorFirst)
public = APIRouter(tags=["public"])
citizen = APIRouter(tags=["citizens"], route_class=BodyFirst)
VenuePath = Annotated[str, Path(pattern=VENUE_ID_PATTERN, description="10 hex digits")]
NO_STORE = {"Cache-Control": "no-store"}
# A poster's code never changes; only a revocation ends it, and a revoked code is
# refused by every verifier whatever a cache holds. An hour keeps CDNs useful.
POSTER_CACHE = {"Cache-Control": "public, max-age=3600"}


def _out(venue: Venue) -> VenueOut:
    return VenueOut(
        **venue_public_info(venue), code=venue.code, enterprise_id=venue.enterprise_id,
        created_at=rfc3339(venue.created_at),
        revoked_at=None if venue.revoked_at is None else rfc3339(venue.revoked_at),
        poster=f"/v1/venues/{venue.venue_id}/code?format=png",
    )


async def _venue(runtime: RuntimeDep, venue_id: str) -> Venue:
    venue = await runtime.venues.get(venue_id)
    if venue is None:
        raise NotFound("no such venue")
    return venue


@admin.post("/venues", status_code=201, response_model=VenueOut)
async def create_venue(body: VenueIn, runtime: RuntimeDep) -> Response:
    """Register a venue or shop: its id and its static signed code (valid until the
    venue is revoked; QR version 5-M). An ``enterprise_id`` must name a registered
    enterprise (422 otherwise)."""
    if body.enterprise_id is not None and await runtime.enterprises.get(
            body.enterprise_id) is None:
        raise InvalidRequest(f"enterprise_id {body.enterprise_id!r} is not a registered "
                             "enterprise (register it first: PUT /v1/admin/enterprises/{id})")
    venue = await runtime.venues.register(
        name=body.name, address=body.address, kind=body.kind,
        enterprise_id=body.enterprise_id, info=dict(body.info))
    return Response(_out(venue).model_dump_json(), status_code=201,
                    media_type="application/json", headers=NO_STORE)


@admin.get("/venues/{venue_id}", response_model=VenueOut)
async def get_venue(venue_id: VenuePath, runtime: RuntimeDep) -> VenueOut:
    """Read a venue back."""
    return _out(await _venue(runtime, venue_id))


@admin.post("/venues/{venue_id}/revoke", response_model=VenueOut)
async def revoke_venue(venue_id: VenuePath, runtime: RuntimeDep) -> VenueOut:
    """Revoke a venue (final): its code is refused in every process within a second,
    and at gates on their next trust-bundle sync."""
    venue = await runtime.venues.revoke(venue_id)
    if venue is None:
        raise NotFound("no such venue")
    return _out(venue)


@admin.get("/venues/{venue_id}/visits", response_model=VisitsOut)
async def venue_visits(
    venue_id: VenuePath,
    runtime: RuntimeDep,
    day: Annotated[date, Query(alias="date", description="YYYY-MM-DD (UTC)")],
) -> VisitsOut:
    """Check-ins at the venue per hour of one day (UTC): counts only, nobody named."""
    await _venue(runtime, venue_id)
    hours = await runtime.venues.visits(venue_id, day)
    items = [HourVisits(hour=rfc3339(at_ms / 1000), visits=n) for at_ms, n in hours]
    return VisitsOut(venue_id=venue_id, date=day.isoformat(),
                     total=sum(h.visits for h in items), hours=items)


@public.get(
    "/v1/venues/{venue_id}/code",
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}, "text/plain": {}}}},
)
async def venue_code(
    venue_id: VenuePath,
    runtime: RuntimeDep,
    format: Annotated[Literal["png", "svg", "text"], Query()] = "png",
) -> Response:
    """The venue's printable poster: the QR code large with the venue's name under it
    (``png`` or ``svg``), or the code ``text``. A revoked venue is 404."""
    from suishen.app import poster

    venue = await _venue(runtime, venue_id)
    if venue.revoked:
        raise NotFound("this venue's code has been revoked")
    if format == "text":
        return Response(venue.code, media_type="text/plain", headers=POSTER_CACHE)
    if format == "svg":
        return Response(poster.poster_svg(venue.code, venue.name),
                        media_type="image/svg+xml", headers=POSTER_CACHE)
    # ~40 ms of drawing when not memoised: off the event loop
    png = await asyncio.to_thread(poster.poster_png, venue.code, venue.name)
    return Response(png, media_type="image/png", headers=POSTER_CACHE)


@citizen.post("/v1/checkins", status_code=201, response_model=CheckinOut)
async def checkin(body: CheckinIn, runtime: RuntimeDep, sub: CitizenSub) -> Response:
    """The citizen scanned a venue code: the venue's public information, recorded in the
    citizen's history. A revoked venue, a forged code or a citizen's code is a 422 with
    the ``reason``."""
    handle = await runtime.subjects.handle_for_code(sub)
    venue, at = await runtime.venues.checkin(handle, body.code)
    out = CheckinOut(venue=VenuePublic(**venue_public_info(venue)), checked_in_at=rfc3339(at))
    return Response(out.model_dump_json(), status_code=201, media_type="application/json",
                    headers=NO_STORE)


@citizen.get("/v1/me/checkins", response_model=CheckinPage)
async def my_checkins(
    runtime: RuntimeDep,
    sub: CitizenSub,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> CheckinPage:
    """The citizen's check-ins, newest first. Pass ``next_before`` back as ``before``
    for the next page."""
    subject = await runtime.subjects.get(sub)
    if subject is None:
        return CheckinPage(items=[], next_before=None)
    entries, next_before = await runtime.venues.history(subject.handle, limit=limit,
                                                        before=before)
    items = [CheckinItem(venue=None if v is None else VenuePublic(**venue_public_info(v)),
                         checked_in_at=rfc3339(e.record.at_ms / 1000)) for e, v in entries]
    return CheckinPage(items=items, next_before=next_before)
