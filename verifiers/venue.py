"""Judging a venue code (SPEC.md §6.3): pure, no I/O; what the service, the SDK and
offline gates share.

A venue code is not a citizen credential. The outcome of the cryptographic and
revocation checks, in this order (the first failure names the reason):

* ``unknown_key`` — the verifier holds no venue key at all (a gate whose bundle has
  none);
* ``bad_signature`` — no venue key it holds verifies the signature (a code signed by
  anything else, or tampered with);
* ``revoked`` — the key that verifies it was revoked, or the venue is revoked;
* ``ok`` — a genuine code of a live venue.

What follows ``ok`` depends on where the code is presented: ``POST /v1/checkins`` takes
it (the citizen scanned the venue); at ``POST /v1/verify`` and at gates the scene policy
decides, and no scene accepts the kind ``venue`` (a gate scans citizens' codes, not the
venue's own poster): ``scene_not_allowed``. Venue codes have no time claims, so time is
not a parameter here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from suishen.codecs import venue as codec
from suishen.keys.keyring import KeyState, VerificationKey
from suishen.keys.venue import verifying_key
from suishen.verifiers.reasons import Reason

KIND = "venue"


class VenueTrust(Protocol):
    """The venue keys and revoked venues a verifier holds: the service's live state or a
    gate's trust bundle. Implementations MUST answer from memory (hot path)."""

    def venue_keys(self) -> Sequence[VerificationKey]:
        """The venue public keys (with states)."""

    def venue_revoked(self, venue_id: bytes) -> bool:
        """True when codes of this venue must be refused."""


class _NoVenues:
    def venue_keys(self) -> Sequence[VerificationKey]:
        return ()

    def venue_revoked(self, venue_id: bytes) -> bool:
        return False


NO_VENUES: VenueTrust = _NoVenues()


@dataclass(frozen=True, slots=True)
class VenueCheck:
    """The outcome: a reason, the venue id (always: the code names it) and the kid
    (hex) of the key that verified it, if one did."""

    reason: Reason
    venue_id: bytes
    kid: str | None = None

    @property
    def valid(self) -> bool:
        """True only for ``ok``."""
        return self.reason is Reason.OK


def check_venue(code: codec.VenueCode, trust: VenueTrust) -> VenueCheck:
    """Judge a parsed venue code against ``trust`` (see the module's order)."""
    keys = trust.venue_keys()
    if not keys:
        return VenueCheck(Reason.UNKNOWN_KEY, code.venue_id)
    key = verifying_key(code, keys)
    if key is None:
        return VenueCheck(Reason.BAD_SIGNATURE, code.venue_id)
    kid = key.kid.hex()
    if key.state is KeyState.REVOKED or trust.venue_revoked(code.venue_id):
        return VenueCheck(Reason.REVOKED, code.venue_id, kid)
    return VenueCheck(Reason.OK, code.venue_id, kid)
