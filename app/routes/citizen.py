"""Citizens: issue a code (JSON, PNG or SVG) and read who verified it.

``POST /v1/codes`` is an endpoint on the app's fast lane (like ``/v1/verify``,
see :class:`suishen.app.main.SuishenApp`): the same citizen token check as every citizen
route (:func:`~suishen.app.deps.authenticate_citizen`), the optional body decoded with
msgspec (:class:`~suishen.app.schemas.CodeRequest`, the route's one schema, also the
source of its OpenAPI entry), the answer encoded with msgspec, errors as problem+json
through :func:`suishen.app.problems.from_exception`. Checks, in order: 401 (token), 422
(``format``), 415 (a body that is not ``application/json``), 422 (body), then the
service's 403 (suspended citizen; not an agent of the enterprise, which every citizen
is until the enterprise directory exists) and 503 (no signing key, enrolment while the
database is down). FastAPI's dependency injection and pydantic
answer were about half of the route's cost (py-spy, issue 13).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from fastapi import APIRouter, Query
from starlette.datastructures import QueryParams

from suishen.app.deps import BodyFirst, CitizenSub, RuntimeDep, authenticate_citizen
from suishen.app.observability import Answer, FastRequest, problem_answer
from suishen.app.runtime import Runtime
from suishen.app.schemas import (
    ENTERPRISE_ID_PATTERN,
    CodeOut,
    CodeRequest,
    EnterpriseCodeRequest,
    PersonalCodeRequest,
    VerificationItem,
    VerificationPage,
)
from suishen.errors import InvalidRequest, UnsupportedMediaType
from suishen.keys.issuer import IssuedCode
from suishen.timefmt import rfc3339

router = APIRouter(tags=["citizens"], route_class=BodyFirst)
FORMATS = ("json", "png", "svg")
_PERSONAL = PersonalCodeRequest()
_ENTERPRISE_ID = re.compile(ENTERPRISE_ID_PATTERN)
_decoder: msgspec.json.Decoder[CodeRequest] = msgspec.json.Decoder(CodeRequest)
_encoder = msgspec.json.Encoder()
_NO_STORE = (b"cache-control", b"no-store")
_JSON_HEADERS = [(b"content-type", b"application/json"), _NO_STORE]
_IMAGE_TYPES = {"png": b"image/png", "svg": b"image/svg+xml"}


def _format(query_string: bytes) -> str:
    """The ``format`` query parameter (the last one, as for FastAPI routes)."""
    if not query_string:
        return "json"
    value = QueryParams(query_string.decode("latin-1")).get("format", "json")
    if value not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    return value


def _request(body: bytes, content_type: str | None) -> CodeRequest:
    """The optional body: none is a personal code."""
    if not body:
        return _PERSONAL
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        req: CodeRequest = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid code request: {exc}"[:300]) from None
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not JSON") from None
    if isinstance(req, EnterpriseCodeRequest) and not _ENTERPRISE_ID.fullmatch(
        req.enterprise_id
    ):  # msgspec matches patterns with re.search, whose `$` lets a final newline through
        raise InvalidRequest("enterprise_id must match " + ENTERPRISE_ID_PATTERN)
    return req


async def issue(runtime: Runtime, sub: str, req: CodeRequest) -> IssuedCode:
    """The code ``req`` asks for, issued for the citizen ``sub``."""
    if isinstance(req, PersonalCodeRequest):
        return await runtime.issuance.issue(sub)
    return await runtime.issuance.issue_enterprise(sub, req.enterprise_id)


def present(issued: IssuedCode, fmt: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The 201 body and headers of an issued code in ``fmt`` (JSON, PNG or SVG)."""
    expires = rfc3339(issued.expires_at)
    refresh = rfc3339(issued.refresh_after)
    if fmt == "json":
        body = _encoder.encode(CodeOut(issued.text, issued.kind, rfc3339(issued.issued_at),
                                       expires, refresh, issued.kid))
        return body, _JSON_HEADERS
    from suishen.codecs import qr

    image = qr.render_png(issued.text) if fmt == "png" else qr.render_svg(issued.text)
    # X-Code-Refresh-After: when the citizen page fetches the next image (§3 half-life).
    return image, [(b"content-type", _IMAGE_TYPES[fmt]), _NO_STORE,
                   (b"x-code-expires-at", expires.encode()),
                   (b"x-code-refresh-after", refresh.encode())]


async def issue_fast(request: FastRequest) -> Answer:
    """``POST /v1/codes[?format=json|png|svg]`` on the app's fast lane (201 with the
    code; the QR image for ``png``/``svg``, expiry in ``X-Code-Expires-At`` and the next
    refresh in ``X-Code-Refresh-After``); the body-size limit, request id and latency
    metrics come from the :class:`~suishen.app.observability.EdgeMiddleware`'s fast
    entry that reads the request."""
    runtime: Runtime = request.runtime
    try:
        sub = await authenticate_citizen(runtime, request.authorization)
        fmt = _format(request.scope["query_string"])
        issued = await issue(runtime, sub, _request(request.body, request.content_type))
        answer, headers = present(issued, fmt)
    except Exception as exc:  # noqa: BLE001 - every failure becomes problem+json here
        return problem_answer(exc)
    return 201, answer, headers


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
