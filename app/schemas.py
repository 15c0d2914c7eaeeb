"""Request and response models for the HTTP API (and its OpenAPI document).

The two hot routes, verify and issuance, parse and answer with msgspec for speed
(:class:`VerifyBody`, :class:`CodeRequest`, :class:`CodeOut`); those types are also the
source of their OpenAPI entries (:func:`verify_openapi`, :func:`codes_openapi`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from suishen.app.text import MAX_SUBJECT_CHARS, PRINTABLE_PATTERN, SUBJECT_PATTERN
from suishen.codecs import uscc as uscc_codec
from suishen.verifiers import transit as transit_rules
from suishen.verifiers.enterprise import ENTERPRISE_ATTRIBUTES, EXTRA_ATTRIBUTES
from suishen.verifiers.policy import ATTRIBUTES, SCENES
from suishen.verifiers.reasons import Reason

# The one list of scenes (and of attributes) is the policy table in suishen.verifiers:
# these Literal types are built from it, so schemas, OpenAPI and checks follow it.
if TYPE_CHECKING:
    Scene = str
    Attribute = str
    EnterpriseAttribute = str
    EnterpriseExtra = str
else:
    Scene = Literal[tuple(SCENES)]
    Attribute = Literal[tuple(ATTRIBUTES)]
    EnterpriseAttribute = Literal[ENTERPRISE_ATTRIBUTES]
    EnterpriseExtra = Literal[EXTRA_ATTRIBUTES]

SubjectId = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT_CHARS,
                                 pattern=SUBJECT_PATTERN,
                                 description="printable, no surrounding spaces")]

_CHECKPOINT = r"^[A-Za-z0-9._:/-]{1,64}$"


class Strict(BaseModel):
    """Unknown fields are refused: a typo must not pass silently. (Patterns are matched
    by pydantic-core's default engine, whose ``$`` is the end of the text — Python's
    ``re`` would let a trailing newline through.)"""

    model_config = ConfigDict(extra="forbid")


ENTERPRISE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
EnterpriseId = Annotated[str, msgspec.Meta(pattern=ENTERPRISE_ID_PATTERN,
                                           description="the enterprise's id")]


class PersonalCodeRequest(msgspec.Struct, tag="personal", tag_field="kind",
                          forbid_unknown_fields=True):
    """``{"kind": "personal"}``: the citizen's personal code (the same as no body)."""


class EnterpriseCodeRequest(msgspec.Struct, tag="enterprise", tag_field="kind",
                            forbid_unknown_fields=True):
    """``{"kind": "enterprise", "enterprise_id": ...}``: the code of an enterprise the
    citizen is an authorised agent of (SPEC §6.3; 403 otherwise)."""

    enterprise_id: EnterpriseId


# ``POST /v1/codes`` optional body (SPEC §4), tagged by ``kind``: the one schema of the
# route — decoding enforces it and the OpenAPI entry is generated from it.
CodeRequest = PersonalCodeRequest | EnterpriseCodeRequest


class CodeOut(msgspec.Struct):
    """``POST /v1/codes`` answer: a freshly issued code (RFC 3339 times)."""

    code: str
    kind: str
    issued_at: str
    expires_at: str
    refresh_after: str
    kid: str


MAX_CODE = 1024

Code = Annotated[str, msgspec.Meta(max_length=MAX_CODE, examples=["SC1:..."])]
Checkpoint = Annotated[str, msgspec.Meta(pattern=_CHECKPOINT, examples=["L2-S12-G3"])]


class VerifyBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/verify`` request: the one schema of the route. Decoding enforces these
    constraints and the OpenAPI entry is generated from this type."""

    code: Code
    scene: Scene
    checkpoint: Checkpoint | None = None
    direction: Literal["in", "out"] | None = None


class JourneyAnswer(msgspec.Struct, omit_defaults=True):
    """The journey a transit tap closed (SPEC.md §4, §6.2): on exits and bus taps."""

    status: str
    fare: Annotated[int, msgspec.Meta(description="fen")]
    entered_at: str | None = None
    entry_checkpoint: str | None = None


class VerifyAnswer(msgspec.Struct, omit_defaults=True):
    """``POST /v1/verify`` answer: 200 for every code the service could judge."""

    valid: bool
    reason: Reason  # encoded as its value; the schema lists every reason
    verified_at: str
    subject: Annotated[str, msgspec.Meta(description="pairwise pseudonym (valid only)")] | None = (
        None
    )
    attributes: dict[str, str] | None = None
    kind: str | None = None
    code_expires_at: str | None = None
    attributes_unavailable: bool | None = None
    journey: JourneyAnswer | None = None
    enterprise: Annotated[
        dict[str, str | list[str]],
        msgspec.Meta(description="an enterprise code: the enterprise attributes the "
                                 "partner may see (its enterprise_attributes)"),
    ] | None = None


AttributeValue = Annotated[str, Field(max_length=256, pattern=PRINTABLE_PATTERN,
                                      description="printable text")]


class SubjectIn(Strict):
    """``PUT /v1/admin/subjects/{sub}``."""

    status: Literal["active", "suspended"]
    attributes: dict[Attribute, AttributeValue] = Field(default_factory=dict)


class SubjectOut(BaseModel):
    """A citizen as operators see it."""

    sub: str
    status: str
    attributes: dict[str, str]
    created_at: str
    updated_at: str


class PartnerIn(Strict):
    """``POST /v1/admin/partners``."""

    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE_PATTERN,
                      description="printable text")
    scenes: list[Scene] = Field(min_length=1, max_length=len(SCENES))
    attributes: list[Attribute] = Field(default_factory=list, max_length=len(ATTRIBUTES))
    enterprise_attributes: list[EnterpriseAttribute] = Field(
        default_factory=list, max_length=len(ENTERPRISE_ATTRIBUTES),
        description="what the partner may see of an enterprise code's enterprise")
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)


class PartnerOut(BaseModel):
    """A registered partner; ``client_secret`` appears once, at registration."""

    client_id: str
    client_secret: str | None = None
    name: str
    scenes: list[str]
    attributes: list[str]
    enterprise_attributes: list[str]
    rate_limit_per_second: int | None
    created_at: str


class DevTokenIn(Strict):
    """``POST /v1/dev/citizen-token``."""

    sub: SubjectId


class TokenOut(BaseModel):
    """An access token."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str | None = None


class VerificationItem(BaseModel):
    """One verification of the citizen's codes."""

    verified_at: str
    partner: str
    scene: str
    checkpoint: str | None
    direction: str | None
    result: str
    valid: bool
    offline: bool = Field(default=False,
                          description="decided by an offline gate, uploaded later")


class VerificationPage(BaseModel):
    """A page of the citizen's history, newest first."""

    items: list[VerificationItem]
    next_before: int | None = Field(description="pass as ?before= for the next page")


class GateEventError(BaseModel):
    """Why one entry of an upload was not taken (its index in ``events``)."""

    index: int
    reason: str
    detail: str


class GateUploadAnswer(BaseModel):
    """``POST /v1/gate-events``: what the batch did. Re-sending it is harmless."""

    accepted: int = Field(description="new decisions stored")
    duplicates: int = Field(description="already stored from this gate: nothing changed")
    duplicate_uses: int = Field(description="the same code already stored from another "
                                            "gate: recorded, fared once")
    ignored: int = Field(description="decisions the gate refused (nothing to store)")
    errors: list[GateEventError]


class JourneyItem(BaseModel):
    """One of the citizen's transit journeys (SPEC.md §6.2)."""

    network: str
    operator: str
    status: str
    fare: int = Field(description="fen")
    entry_station: str | None
    entry_checkpoint: str | None
    entered_at: str | None
    exit_station: str | None
    exit_checkpoint: str | None
    exited_at: str | None
    offline: bool


class JourneyPage(BaseModel):
    """A page of the citizen's journeys, newest first."""

    items: list[JourneyItem]
    next_before: int | None = Field(description="pass as ?before= for the next page")


def verify_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request and answer schemas of ``/v1/verify`` and their components, generated
    from :class:`VerifyBody` and :class:`VerifyAnswer`."""
    (body, answer), components = msgspec.json.schema_components(
        [VerifyBody, VerifyAnswer], ref_template="#/components/schemas/{name}"
    )
    return {"request": body, "answer": answer}, components


# --- fare tables (SPEC.md §6.2) -------------------------------------------------------
# The documented shape of ``PUT /v1/admin/fares/{network}``. The route validates with
# the pure core's parse_fare_table (one implementation of the rules); these types only
# publish them. What a JSON Schema cannot say: which shape goes with which network
# (metro and ferry: zones; bus: flat), and that no fare exceeds ``max_fare``.
_IDENT = r"^[A-Za-z0-9._:/-]{1,64}$"
Fen = Annotated[int, msgspec.Meta(ge=0, le=transit_rules.MAX_FEN,
                                  description="integer fen (never a float)")]
StationId = Annotated[str, msgspec.Meta(pattern=_IDENT)]
Zone = Annotated[int, msgspec.Meta(ge=0, le=transit_rules.MAX_ZONE)]
ZonesCrossed = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,3})$")]


class EntryExitFareTable(msgspec.Struct, forbid_unknown_fields=True):
    """A metro or ferry fare table: stations in zones, a fare per number of zones
    crossed (``"0"`` required), the maximum fare, the policy for exits without entry."""

    operator: Annotated[str, msgspec.Meta(pattern=_IDENT, description="who collects")]
    zones: Annotated[dict[StationId, Zone], msgspec.Meta(
        min_length=1, max_length=transit_rules.MAX_STATIONS,
        description="station (a checkpoint id up to its last '-') -> zone number")]
    fares: Annotated[dict[ZonesCrossed, Fen], msgspec.Meta(
        min_length=1, description="zones crossed -> fen, each at most max_fare")]
    max_fare: Fen
    exit_without_entry: Literal["refuse", "charge_max"] = "refuse"


class FlatFareTable(msgspec.Struct, forbid_unknown_fields=True):
    """A bus fare table: one flat fare per tap (at most ``max_fare``)."""

    operator: Annotated[str, msgspec.Meta(pattern=_IDENT, description="who collects")]
    flat_fare: Fen
    max_fare: Fen


def fare_table_openapi() -> dict[str, Any]:
    """The request body schema of ``PUT /v1/admin/fares/{network}`` (inlined)."""
    (entry_exit, flat), components = msgspec.json.schema_components(
        [EntryExitFareTable, FlatFareTable], ref_template="{name}")
    del entry_exit, flat
    shapes = [components["EntryExitFareTable"], components["FlatFareTable"]]
    shapes[0]["properties"]["fares"]["required"] = ["0"]  # a journey within one zone
    return {"oneOf": shapes}
def codes_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request and answer schemas of ``POST /v1/codes`` and their components,
    generated from :class:`CodeRequest` and :class:`CodeOut`."""
    (body, answer), components = msgspec.json.schema_components(
        [CodeRequest, CodeOut], ref_template="#/components/schemas/{name}"
    )
    return {"request": body, "answer": answer}, components


# --- devices and offline credentials (SPEC.md §6.1) -----------------------------------
DeviceName = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE_PATTERN,
                                  description="printable text, at most 64 characters")]
DeviceKeys = Annotated[list[Any], Field(
    min_length=1, max_length=500,
    description="P-256 public JWKs (kty EC, crv P-256, x, y), one per slot",
)]


class DeviceIn(Strict):
    """``POST /v1/devices``: a name and a batch of device public keys."""

    name: DeviceName
    keys: DeviceKeys


class RefillIn(Strict):
    """``POST /v1/devices/{device_id}/credentials``: fresh device public keys."""

    keys: DeviceKeys


class CredentialOut(BaseModel):
    """One offline credential: base64url (no padding) of its COSE bytes, its slot."""

    credential: str
    slot_start: str
    slot_end: str
    kid: str


class DeviceCredentialsOut(BaseModel):
    """A device and the credentials just issued for it (matched to keys by ``cnf``)."""

    device_id: str
    name: str
    credentials: list[CredentialOut]


class DeviceOut(BaseModel):
    """One of the citizen's devices."""

    device_id: str
    name: str
    registered_at: str
    credentials_valid_until: str | None
    status: Literal["active", "revoked"]


class DeviceList(BaseModel):
    """``GET /v1/devices``."""

    devices: list[DeviceOut]


# --- enterprises (SPEC.md §6.3, issue 11) ----------------------------------------------
MAX_AGENTS = 100
MAX_LIST_ITEMS = 32


def _valid_uscc(value: str) -> str:
    try:
        return uscc_codec.validate(value)
    except uscc_codec.InvalidUSCC as exc:
        raise ValueError(str(exc)) from None


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("agents must not repeat")
    return values


EnterpriseText = Annotated[str, Field(min_length=1, max_length=512, pattern=PRINTABLE_PATTERN,
                                      description="printable text")]
EnterpriseValueIn = EnterpriseText | Annotated[list[EnterpriseText],
                                               Field(max_length=MAX_LIST_ITEMS)]
USCC = Annotated[str, Field(min_length=18, max_length=18,
                            pattern=r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$",
                            description="unified social credit code (GB 32100-2015), "
                                        "check character verified"),
                 AfterValidator(_valid_uscc)]


class EnterpriseIn(Strict):
    """``PUT /v1/admin/enterprises/{enterprise_id}``: the whole enterprise (a replace)."""

    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE_PATTERN,
                      description="printable text")
    uscc: USCC
    status: Literal["active", "suspended"] = "active"
    attributes: dict[EnterpriseExtra, EnterpriseValueIn] = Field(default_factory=dict)
    agents: Annotated[list[SubjectId], Field(max_length=MAX_AGENTS),
                      AfterValidator(_unique)] = Field(
        default_factory=list, description="citizen subs who may act for the enterprise")


class EnterpriseOut(BaseModel):
    """An enterprise as operators see it (agency handles are never shown)."""

    enterprise_id: str
    name: str
    uscc: str
    status: str
    attributes: dict[str, str | list[str]]
    agents: list[str]
    created_at: str
    updated_at: str


# --- unified recognition (POST /v1/resolve, SPEC.md §6.3) ------------------------------
class ResolveIn(Strict):
    """``POST /v1/resolve``: any code."""

    code: str = Field(max_length=MAX_CODE, examples=["SC1:..."])


class ResolveOut(BaseModel):
    """What a partner learns of a code: its kind and issuer (once recognised as this
    service's: ``null`` for a code it cannot vouch for), its validity, and the kind's
    public information — ``enterprise`` for an enterprise code (the attributes the
    partner's ``enterprise_attributes`` allow). Never anything personal."""

    kind: str | None
    issuer: str | None
    valid: bool
    reason: Reason
    verified_at: str
    code_expires_at: str | None = None
    enterprise: dict[str, str | list[str]] | None = None
