"""The one list of verification outcomes, shared by the server, the SDK and gates."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a code was accepted or rejected (SPEC §4). Exactly one per decision.

    Checks run in this order, and the first failure names the reason:
    ``unsupported_version`` (prefix/version) -> ``malformed`` (base45, CBOR, COSE,
    headers) -> ``unknown_key`` (kid not trusted) -> ``revoked`` (key revoked) ->
    ``bad_signature`` (signature, including the high-S twin of an ECDSA signature, or an
    ``alg`` outside the closed list or not matching the key) -> ``malformed`` (claims)
    -> ``expired`` / ``not_yet_valid`` (the code's own ``exp``/``iat``, with clock skew)
    -> ``unknown_key`` (the key is pending, or outside its validity window at ``now``)
    -> ``revoked`` (citizen or device) -> ``scene_not_allowed`` -> ``replayed``.

    The time claims are judged before the key's window (SPEC §4): a code from the future
    is ``not_yet_valid`` even when the verifier's clock is before its key's window.
    Only a trusted kid with a valid signature gets that far.
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
    # Transit (SPEC §6.2): an entry while the citizen's previous entry on that network
    # is still open, and an exit with no open journey where the network refuses it.
    PASSBACK = "passback"
    NO_ENTRY = "no_entry"
    # An offline gate whose trust bundle is past its hard expiry, or does not cover the
    # credential's slot, and fails closed (SPEC §6.1).
    TRUST_EXPIRED = "trust_expired"
