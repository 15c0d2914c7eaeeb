"""The one list of verification outcomes, shared by the server, the SDK and gates."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a code was accepted or rejected (SPEC §4). Exactly one per decision.

    Checks run in this order, and the first failure names the reason:
    ``unsupported_version`` (prefix/version) -> ``malformed`` (base45, CBOR, COSE,
    headers) -> ``unknown_key`` (kid not trusted, pending, or outside its window) ->
    ``revoked`` (key revoked) -> ``bad_signature`` (signature, including the high-S twin
    of an ECDSA signature, or an ``alg`` outside the closed list or not matching the
    key) -> ``malformed`` (claims) -> ``expired`` / ``not_yet_valid`` (with clock skew)
    -> ``revoked`` (citizen or device) -> ``scene_not_allowed`` -> ``replayed``.
    """

    OK = "ok"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    REPLAYED = "replayed"
    SCENE_NOT_ALLOWED = "scene_not_allowed"
