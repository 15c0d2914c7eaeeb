"""Judging an offline code (SPEC.md §6.1): both signatures, the slot, the device's
clock, revocation, the scene — pure, with ``now`` a parameter.

The same function serves the service (``POST /v1/verify``, keys with blinding secrets,
live revocation state) and gates (keys and status lists from a trust bundle). Order of
checks, the first failure naming the reason (as for personal codes, SPEC.md §4 — time
is judged on the code's own claims before the key's window):

1. ``malformed``: the layout (:mod:`suishen.codecs.offline`; decoded by the caller,
   :func:`suishen.codecs.sc1.parse_code`).
2. ``unknown_key`` / ``revoked``: the credential's ``kid`` is not trusted / is revoked.
3. ``bad_signature``: an algorithm outside the closed list or not the key's, the
   service's signature over the credential, the device's over the code.
4. ``not_yet_valid`` / ``expired``: the device's ``iat`` against ``now`` (freshness:
   ``lifetime`` seconds, default 30, plus ``skew``), and ``iat`` against the
   credential's slot ``[nbf, exp)`` (with ``skew``).
5. ``unknown_key``: the key was not in its window at the code's ``iat``.
6. ``revoked``: the credential's status bit (device revoked, citizen suspended) or, at
   the service, the citizen's live state.
7. ``trust_expired``: the caller has no status list for the credential's slot (a gate
   whose bundle does not reach that far) — it cannot know, so it fails closed.
8. ``scene_not_allowed``: the scene's policy for kind ``offline``.

On success the decision carries the replay key (scene, direction, credential, ``iat``,
counter): a gate's or the service's replay memory consumes it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from suishen.codecs import offline
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, UnsupportedAlgorithm
from suishen.keys.keyring import KeyRing, KeyState
from suishen.verifiers.policy import Presentation, ScenePolicy
from suishen.verifiers.reasons import Reason

DEFAULT_LIFETIME = 30
KIND = "offline"


class CredentialStatus(Protocol):
    """Revocation state of offline credentials, by slot and index. Answers from memory."""

    def credential_revoked(self, slot_start: int, index: int) -> bool | None:
        """True when revoked, False when valid, None when this view has no list for the
        slot (a gate beyond its bundle's horizon)."""


class SubjectStatus(Protocol):
    """The service's live view of suspended citizens (gates have none)."""

    def subject_revoked(self, handle: bytes) -> bool:
        """True when the citizen's codes must be refused."""


@dataclass(frozen=True, slots=True)
class OfflineDecision:
    """The outcome for one offline code.

    ``expires_at`` is when the code stops being fresh (``iat + lifetime``), which is
    how long a replay memory must remember it (plus skew). ``subject_handle`` is set
    only where the blinding secret is held (the service).
    """

    reason: Reason
    kid: str | None = None
    code: offline.OfflineCode | None = None
    expires_at: int | None = None
    subject_handle: bytes | None = None
    replay_key: bytes | None = None
    kind: str = KIND

    @property
    def valid(self) -> bool:
        """True only for ``ok``."""
        return self.reason is Reason.OK


def replay_id(code: offline.OfflineCode) -> bytes:
    """What names one offline code for single use: credential and device claims."""
    cred = code.credential
    return b"".join(
        (
            cred.kid,
            cred.claims.nbf.to_bytes(4, "big"),
            cred.claims.status_index.to_bytes(4, "big"),
            code.claims.iat.to_bytes(4, "big"),
            code.claims.counter.to_bytes(1, "big"),
        )
    )


def verify_offline(
    code: offline.OfflineCode,
    *,
    keys: KeyRing,
    policy: ScenePolicy,
    now: int,
    skew: int,
    status: CredentialStatus,
    lifetime: int = DEFAULT_LIFETIME,
    direction: str | None = None,
    checkpoint: str | None = None,
    subjects: SubjectStatus | None = None,
) -> OfflineDecision:
    """Judge a decoded offline code (decoding errors are the caller's ``malformed``)."""
    credential = code.credential
    kid_hex = credential.kid.hex()
    key = keys.get(credential.kid)
    if key is None:
        return OfflineDecision(Reason.UNKNOWN_KEY, kid_hex)
    if key.state is KeyState.REVOKED:
        return OfflineDecision(Reason.REVOKED, kid_hex)
    try:
        alg = Alg.from_cose(credential.alg)
    except UnsupportedAlgorithm:
        return OfflineDecision(Reason.BAD_SIGNATURE, kid_hex)
    if alg is not key.public.alg or not koff.check_signatures(code, key.public):
        return OfflineDecision(Reason.BAD_SIGNATURE, kid_hex)

    iat, slot = code.claims.iat, credential.claims
    expires_at = iat + lifetime
    reason: Reason | None = None
    if iat > now + skew or iat < slot.nbf - skew:
        reason = Reason.NOT_YET_VALID
    elif now > expires_at + skew or iat >= slot.exp + skew:
        reason = Reason.EXPIRED
    elif not key.in_window(iat, skew):
        reason = Reason.UNKNOWN_KEY
    handle = None
    if reason is None:
        if key.blinding is not None:
            handle = koff.unblind_credential(credential, key.blinding)
        revoked = status.credential_revoked(slot.nbf, slot.status_index)
        if revoked is None:
            reason = Reason.TRUST_EXPIRED
        elif revoked or (
            handle is not None and subjects is not None and subjects.subject_revoked(handle)
        ):
            reason = Reason.REVOKED
        else:
            reason = policy.check(Presentation(KIND, policy.name, direction, checkpoint))
    if reason is not None:
        return OfflineDecision(reason, kid_hex, code, expires_at, handle)
    replay_key = policy.replay_key(b"offline", replay_id(code), direction)
    return OfflineDecision(Reason.OK, kid_hex, code, expires_at, handle, replay_key)
