"""The verification pipeline: code text, trusted keys, scene policy and ``now`` in; a
:class:`Decision` with exactly one :class:`Reason` out.

The pipeline never raises for a bad code — a rejected code is a result — and does no
I/O. Revocation sets come in through :class:`RevocationView`; single use is left to the
caller's replay memory through :attr:`Decision.replay_key` (the service's is async and
shared; a gate's is in process — see :class:`suishen.verifiers.memory.Verifier`).

Kinds are dispatched after the signature check, so an offline code (a device signature
over a service-signed credential) can add its second signature check there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from suishen.codecs import offline as offline_codec
from suishen.codecs import sc1
from suishen.codecs import venue as venue_codec
from suishen.errors import CodecError, UnsupportedVersion
from suishen.keys.algorithms import Alg, UnsupportedAlgorithm
from suishen.keys.blinding import unblind
from suishen.keys.keyring import KeyRing, KeyState
from suishen.verifiers.offline import (
    DEFAULT_LIFETIME as DEFAULT_OFFLINE_LIFETIME,
)
from suishen.verifiers.offline import (
    CredentialStatus,
    verify_offline,
)
from suishen.verifiers.policy import Presentation, ScenePolicy
from suishen.verifiers.reasons import Reason
from suishen.verifiers.venue import NO_VENUES, VenueTrust, check_venue

DEFAULT_SKEW = 30


class RevocationView(Protocol):
    """Which citizens are currently refused (suspended). Implementations MUST answer
    from memory: the verifier calls this on the hot path."""

    def subject_revoked(self, handle: bytes) -> bool:
        """True when codes of the citizen with this handle must be refused."""


class _NoRevocations:
    def subject_revoked(self, handle: bytes) -> bool:
        return False


NO_REVOCATIONS: RevocationView = _NoRevocations()


class _NoCredentialStatus:
    def credential_revoked(self, slot_start: int, index: int) -> bool | None:
        return None


NO_CREDENTIAL_STATUS: CredentialStatus = _NoCredentialStatus()


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one verification.

    ``subject_handle`` is set only when the verifier holds the key's blinding secret
    (the service); partners and gates never see it. ``replay_key`` is set when the code
    passed everything and the scene is single use: the caller MUST consume it and turn
    the decision into ``replayed`` if it was already consumed.
    """

    reason: Reason
    kid: str | None = None
    kind: str | None = None
    claims: sc1.PersonalClaims | None = None
    subject_handle: bytes | None = None
    replay_key: bytes | None = None
    # An offline code (kind "offline"): its parsed form and when it stops being fresh.
    offline_code: offline_codec.OfflineCode | None = None
    offline_expires_at: int | None = None
    # A venue code (kind "venue"): the venue id it names (SPEC §6.3).
    venue_id: bytes | None = None

    @property
    def valid(self) -> bool:
        """True only for ``ok``."""
        return self.reason is Reason.OK

    @property
    def expires_at(self) -> int | None:
        """The code's ``exp`` (an offline code: its ``iat`` + lifetime), when read."""
        return self.offline_expires_at if self.claims is None else self.claims.exp

    def rejected(self, reason: Reason) -> Decision:
        """The same decision with a failure reason (and no replay key)."""
        return replace(self, reason=reason, replay_key=None)


def verify(
    text: object,
    *,
    keys: KeyRing,
    policy: ScenePolicy,
    now: int,
    skew: int = DEFAULT_SKEW,
    direction: str | None = None,
    checkpoint: str | None = None,
    revocations: RevocationView = NO_REVOCATIONS,
    credentials: CredentialStatus = NO_CREDENTIAL_STATUS,
    offline_lifetime: int = DEFAULT_OFFLINE_LIFETIME,
    venues: VenueTrust = NO_VENUES,
) -> Decision:
    """Verify one code of either kind. See :class:`Reason` for the order of checks, and
    :mod:`suishen.verifiers.offline` for offline codes (``credentials`` is the status of
    offline credentials: the service's live state, or a gate's trust bundle; without one
    an offline code cannot be judged and is ``trust_expired``). A venue code is judged
    by :func:`suishen.verifiers.venue.check_venue` against ``venues``, then by the scene
    policy (which accepts no ``venue`` kind: ``scene_not_allowed``)."""
    try:
        parsed = sc1.parse_code(text)  # type: ignore[arg-type]  # non-str is CodecError
    except UnsupportedVersion:
        return Decision(Reason.UNSUPPORTED_VERSION)
    except CodecError:
        return Decision(Reason.MALFORMED)
    if isinstance(parsed, venue_codec.VenueCode):
        checked = check_venue(parsed, venues)
        outcome = checked.reason
        if outcome is Reason.OK:
            outcome = policy.check(
                Presentation("venue", policy.name, direction, checkpoint)) or Reason.OK
        kind = "venue" if checked.kid is not None else None
        return Decision(outcome, checked.kid, kind, venue_id=parsed.venue_id)
    if not isinstance(parsed, sc1.Envelope):
        o = verify_offline(
            parsed, keys=keys, policy=policy, now=now, skew=skew, status=credentials,
            lifetime=offline_lifetime, direction=direction, checkpoint=checkpoint,
            subjects=revocations,
        )
        return Decision(
            o.reason, o.kid, o.kind if o.code is not None else None, None, o.subject_handle,
            o.replay_key, o.code, o.expires_at,
        )
    envelope = parsed

    kid = envelope.kid
    kid_hex = kid.hex()
    key = keys.get(kid)
    # An untrusted kid ends here: nothing below runs without a key we hold, so judging
    # the claims first never lets an unknown key's code further than `unknown_key`.
    if key is None:
        return Decision(Reason.UNKNOWN_KEY, kid=kid_hex)
    if key.state is _KEY_REVOKED:
        return Decision(Reason.REVOKED, kid=kid_hex)
    try:
        alg = Alg.from_cose(envelope.alg)
    except UnsupportedAlgorithm:
        return Decision(Reason.BAD_SIGNATURE, kid=kid_hex)
    message = envelope.message
    public = key.public
    # verify_canonical: a high-S ECDSA twin of a genuine code is refused, so one signed
    # content has one accepted text (issue 8 item 9).
    if alg is not public.alg or not public.verify_canonical(
        message.signature, message.to_be_signed()
    ):
        return Decision(Reason.BAD_SIGNATURE, kid=kid_hex)

    try:
        claims = sc1.decode_claims(message.payload)
    except UnsupportedVersion:
        return Decision(Reason.UNSUPPORTED_VERSION, kid=kid_hex)
    except CodecError:
        return Decision(Reason.MALFORMED, kid=kid_hex)
    kind = claims.kind.label
    iat, exp = claims.iat, claims.exp
    handle = None
    if key.blinding is not None:
        handle = unblind(claims.sub, key.blinding, iat=iat, cti=claims.cti)

    # Times are judged on the code's own claims (SPEC §4) before the key's window: a
    # code from the future is `not_yet_valid` even when this verifier's clock has not
    # reached its key's `not_before` yet (a gate with a slow clock right after a
    # rotation), and an expired code is `expired` whatever its key did since. Only a
    # code whose own times are fine is refused for its key's window (`unknown_key`):
    # a pending key, or a retired one whose overlap has closed.
    reason: Reason | None
    if now > exp + skew:
        reason = _EXPIRED
    elif iat > now + skew:
        reason = Reason.NOT_YET_VALID
    elif not key.in_window(now, skew):
        reason = Reason.UNKNOWN_KEY
    elif handle is not None and revocations.subject_revoked(handle):
        reason = Reason.REVOKED
    else:
        reason = policy.check(Presentation(kind, policy.name, direction, checkpoint))
    if reason is not None:
        return Decision(reason, kid_hex, kind, claims, handle)
    # Built once, when the outcome is known (a rejected or single-use code used to make
    # a second Decision).
    replay_key = policy.replay_key(kid, claims.cti, direction)
    return Decision(_OK, kid_hex, kind, claims, handle, replay_key)


_OK, _EXPIRED, _KEY_REVOKED = Reason.OK, Reason.EXPIRED, KeyState.REVOKED
