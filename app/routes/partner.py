"""Partners: the OAuth 2.0 token endpoint and ``POST /v1/verify``.

``/v1/verify`` is an endpoint on the app's fast lane: it authenticates with a
stateless token check, parses with msgspec and answers with msgspec — FastAPI's pydantic
machinery is the slow part of a naive endpoint, not the cryptography (SPEC §7). Its one
schema, :class:`suishen.app.schemas.VerifyBody`, is both enforced and documented.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from suishen.app.auth.errors import InvalidClient, InvalidPartnerToken
from suishen.app.auth.partner_tokens import parse_basic_credentials
from suishen.app.deps import auth_throttle, bearer, client_address
from suishen.app.observability import Answer, FastRequest, request_id_var, response_answer
from suishen.app.problems import from_exception
from suishen.app.runtime import Runtime
from suishen.app.schemas import JourneyAnswer, TokenOut, VerifyAnswer, VerifyBody
from suishen.app.services.verify import VerifyOutcome
from suishen.app.storage.base import Partner
from suishen.errors import InvalidRequest, UnsupportedMediaType
from suishen.timefmt import rfc3339

router = APIRouter(tags=["partners"])
_decoder = msgspec.json.Decoder(VerifyBody)
_encoder = msgspec.json.Encoder()


def _oauth_error(status: int, error: str, description: str,
                 headers: dict[str, str] | None = None) -> Response:
    """RFC 6749 §5.2 error body (the token endpoint speaks OAuth, not problem+json)."""
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="suishen"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=headers)


@router.post(
    "/v1/oauth/token",
    response_model=TokenOut,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            }
        }
    },
)
async def token(request: Request) -> Response:
    """OAuth 2.0 client credentials (RFC 6749 §4.4): form body or HTTP Basic."""
    runtime: Runtime = request.app.state.runtime
    throttle, client, now = auth_throttle(request, "oauth"), client_address(request), runtime.now()
    wait = throttle.retry_after(client, now)
    if wait:
        return _oauth_error(429, "slow_down", "too many failed authentications",
                            headers={"Retry-After": str(wait)})
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return _oauth_error(400, "invalid_request",
                            "use application/x-www-form-urlencoded")
    raw = await request.body()
    try:
        form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "malformed form body")
    fields: dict[str, str] = {}
    for key, values in form.items():
        if len(values) != 1:
            return _oauth_error(400, "invalid_request", f"parameter {key} repeated")
        fields[key] = values[0]
    grant = fields.get("grant_type")
    if grant is None:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type",
                            "only client_credentials is supported")
    basic = None
    authorization = request.headers.get("authorization")
    if authorization and authorization.lstrip().lower().startswith("basic"):
        try:
            basic = parse_basic_credentials(authorization)
        except InvalidClient:
            throttle.failed(client, now)
            return _oauth_error(401, "invalid_client", "malformed HTTP Basic credentials")
    if basic is not None and ("client_secret" in fields or "client_id" in fields):
        return _oauth_error(400, "invalid_request", "use one client authentication method")
    client_id, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
    if not client_id or not secret:
        throttle.failed(client, now)
        return _oauth_error(401, "invalid_client", "client authentication failed")
    try:
        partner = await runtime.partners.authenticate(client_id, secret)
    except InvalidClient:
        throttle.failed(client, now)
        return _oauth_error(401, "invalid_client", "client authentication failed")
    allowed = [f"verify:{scene}" for scene in partner.scenes]
    requested = fields.get("scope")
    if requested is None:
        scopes = allowed
    else:
        scopes = requested.split()
        if not scopes or not set(scopes) <= set(allowed):
            return _oauth_error(400, "invalid_scope",
                                "scope must be a subset of: " + " ".join(allowed))
    issued = runtime.partner_tokens.issue(partner.client_id, scopes, now=int(runtime.now()))
    return JSONResponse(issued, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def authenticate_partner(
    runtime: Runtime, header: str | None
) -> tuple[Partner, frozenset[str]]:
    """The partner behind a bearer access token, and the token's scopes."""
    token = bearer(header)
    claims = runtime.partner_tokens.verify(token, now=int(runtime.now()))
    partner = runtime.partners.known(claims.client_id) or await runtime.partners.get(
        claims.client_id)
    if partner is None:
        raise InvalidPartnerToken("unknown client")
    return partner, claims.scopes


async def judge(
    runtime: Runtime, authorization: str | None, body: bytes, content_type: str | None = None
) -> Response | bytes:
    """The verify request itself: JSON bytes of a 200 answer, or a problem response.
    Order: 401 (token), 415 (not ``application/json``), 422 (body), then the service's
    403 (scope, scene) and 429 (rate limit)."""
    try:
        partner, scopes = await authenticate_partner(runtime, authorization)
        media = (content_type or "").split(";")[0].strip().lower()
        if media != "application/json":
            raise UnsupportedMediaType("the body must be application/json")
        try:
            req = _decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"invalid verify request: {exc}"[:300]) from None
        except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
            # invalid UTF-8 inside a JSON string raises UnicodeDecodeError, not DecodeError
            raise InvalidRequest("the body is not JSON") from None
        outcome = await runtime.verifier.judge(
            partner=partner,
            scopes=scopes,
            scene=req.scene,
            code=req.code,
            checkpoint=req.checkpoint,
            direction=req.direction,
            request_id=request_id_var.get(),
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes problem+json here
        return from_exception(exc)
    return _encoder.encode(present(outcome))


def present(outcome: VerifyOutcome) -> VerifyAnswer:
    """The SPEC §4 answer for an outcome (RFC 3339 times; absent fields omitted)."""
    if not outcome.valid:
        return VerifyAnswer(False, outcome.reason, rfc3339(outcome.verified_at))
    return VerifyAnswer(
        True,
        outcome.reason,
        rfc3339(outcome.verified_at),
        subject=outcome.subject,
        attributes=outcome.attributes,
        kind=outcome.kind,
        code_expires_at=None if outcome.code_expires_at is None
        else rfc3339(outcome.code_expires_at),
        attributes_unavailable=True if outcome.attributes_unavailable else None,
        journey=None if outcome.journey is None else JourneyAnswer(
            outcome.journey.status.value,
            outcome.journey.fare,
            None if outcome.journey.entered_at is None else rfc3339(outcome.journey.entered_at),
            outcome.journey.entry_checkpoint,
        ),
        enterprise=outcome.enterprise,
    )


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def verify_fast(request: FastRequest) -> Answer:
    """``POST /v1/verify`` on the app's fast lane (see
    :class:`suishen.app.main.SuishenApp`): the body-size limit, request id and latency
    metrics come from the :class:`EdgeMiddleware`'s fast entry that reads the request."""
    answer = await judge(request.runtime, request.authorization, request.body,
                         request.content_type)
    if isinstance(answer, bytes):
        return 200, answer, _JSON_HEADERS
    return response_answer(answer)
