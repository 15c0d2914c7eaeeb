"""Signing and verifying trust bundles with trust-anchor keys.

A bundle (:mod:`suishen.codecs.bundle`) travels as a tagged COSE_Sign1 whose protected
header is ``{1: alg, 4: kid}`` of a trust-anchor key — a key set of its own, separate
from code signing, published at ``GET /v1/trust-anchor`` and provisioned into gates —
and whose signature covers the payload with ``external_aad`` = :data:`BUNDLE_AAD`
(domain separation: nothing else signed by any key of this service verifies as a
bundle). Gates hold the anchor's public keys (a JWK Set); a bundle signed by any other
key is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from suishen.codecs import bundle as codec
from suishen.codecs import cbor, cose
from suishen.codecs.statuslist import StatusList
from suishen.errors import CodecError
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey, UnsupportedAlgorithm
from suishen.keys.signer import Signer, SoftwareSigner

BUNDLE_AAD = b"SC1 trust bundle"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024
DEFAULT_HORIZON = 86_400
DEFAULT_REFRESH = 900
DEFAULT_LIFETIME = 86_400


def horizon_slots(now: int, slot_seconds: int, horizon: int = DEFAULT_HORIZON,
                  keep_ended: int = 0) -> list[int]:
    """The slot starts a gate needs at ``now``: the current slot, those starting within
    ``horizon`` seconds, and (``keep_ended`` seconds) those that ended less than
    ``keep_ended`` before ``now`` — codes made at the end of a slot stay fresh after it
    ends (:func:`ended_grace`)."""
    start = now - max(0, keep_ended)
    first = start - start % slot_seconds
    return list(range(first, now + horizon + 1, slot_seconds))


def ended_grace(*, skew: int, offline_lifetime: int) -> int:
    """How long after its slot ends a slot's status list is still needed (seconds).

    An offline code made at ``iat`` is accepted while ``iat < slot end + skew`` and
    ``now <= iat + offline_lifetime + skew`` (:mod:`suishen.verifiers.offline`), so a
    code of a slot can be fresh until ``slot end + offline_lifetime + 2 * skew``. The
    service keeps the slot that long in full bundles and deltas, and gates keep it that
    long past the issue time of the bundles they take: without it a gate that synced
    just after the hour refused (``trust_expired``) the codes made just before it."""
    return offline_lifetime + 2 * skew


def build(
    *,
    version: int,
    now: int,
    keys: Iterable[codec.BundleKey],
    slot_seconds: int,
    list_sizes: Mapping[int, int],
    revoked: Mapping[int, Iterable[int]],
    horizon: int = DEFAULT_HORIZON,
    refresh: int = DEFAULT_REFRESH,
    lifetime: int = DEFAULT_LIFETIME,
    venue_keys: Iterable[codec.BundleKey] = (),
    revoked_venues: Iterable[bytes] = (),
    keep_ended: int = 0,
) -> codec.Bundle:
    """A full bundle for the slots of :func:`horizon_slots` (those with a list size),
    the slot that ended less than ``keep_ended`` seconds before ``now`` included:
    ``list_sizes`` and ``revoked`` map slot starts to the size of the slot's status list
    and its revoked indices; ``venue_keys`` and ``revoked_venues`` for venue codes."""
    lists = {}
    for slot in horizon_slots(now, slot_seconds, horizon, keep_ended):
        size = list_sizes.get(slot)
        if not size:
            continue
        status = StatusList(size=size)
        status.set_many(revoked.get(slot, ()))
        lists[slot] = codec.SlotList(size=size, lst=status.compress())
    return codec.Bundle(
        typ=codec.TYP_BUNDLE,
        version=version,
        issued_at=now,
        refresh_after=now + refresh,
        expires_at=now + lifetime,
        slot_seconds=slot_seconds,
        keys=tuple(keys),
        lists=lists,
        venue_keys=tuple(venue_keys),
        revoked_venues=tuple(sorted(set(revoked_venues))),
    )


def delta(
    full: codec.Bundle,
    *,
    since: codec.Bundle,
    flips: Mapping[int, Iterable[int]],
    keep_ended: int = 0,
    since_slots: Iterable[int] | None = None,
) -> codec.Bundle:
    """The delta from ``since`` to ``full`` (both built by :func:`build`): lists of the
    slots ``since`` lacks, and ``flips`` (slot -> indices revoked after ``since``) for
    the slots it holds (``since_slots``, by default those of ``since.lists``). The
    caller compares sizes and serves ``full`` when the delta is not smaller.

    ``keep_ended`` (seconds): also flip a held slot that ended less than this before
    ``full.issued_at`` (:func:`ended_grace`). A gate keeps the slot that just ended
    that long, for the codes made at its end that are still fresh; without its flips,
    a delta taken just after the hour would leave a device revoked just before it
    accepted until the gate drops the slot (stop 21, fixed in stop 23). A ``full``
    built with the same ``keep_ended`` holds that slot already (stop 24)."""
    held = set(since.lists if since_slots is None else since_slots)
    ended_after = full.issued_at - keep_ended
    wanted = {s for s in held
              if s in full.lists or (keep_ended > 0 and s + full.slot_seconds > ended_after)}
    new_lists = {s: lst for s, lst in full.lists.items() if s not in held}
    held_flips = {s: tuple(sorted(set(ix))) for s, ix in flips.items() if s in wanted}
    return codec.Bundle(
        typ=codec.TYP_DELTA,
        version=full.version,
        since=since.version,
        issued_at=full.issued_at,
        refresh_after=full.refresh_after,
        expires_at=full.expires_at,
        slot_seconds=full.slot_seconds,
        keys=full.keys,
        lists=new_lists,
        flips={s: ix for s, ix in held_flips.items() if ix},
        venue_keys=full.venue_keys,
        revoked_venues=full.revoked_venues,
    )


class UntrustedBundle(codec.BundleError):
    """A bundle not signed by a trust anchor the gate holds (or badly signed)."""


def sign(anchor: PrivateKey, kid: bytes, bundle: codec.Bundle) -> bytes:
    """:func:`sign_with` a software anchor key (tests, benchmarks, tools)."""
    return sign_with(SoftwareSigner(anchor, kid), bundle)


def sign_with(signer: Signer, bundle: codec.Bundle) -> bytes:
    """The signed bundle (tagged COSE_Sign1 bytes), through the Signer seam."""
    payload = codec.encode(bundle)
    protected = cbor.dumps({cose.HDR_ALG: signer.algorithm.cose, cose.HDR_KID: signer.kid})
    signature = signer.sign(cose.sig_structure(protected, payload, BUNDLE_AAD))
    return cose.encode_sign1(protected, {}, payload, signature)


def open_signed(data: bytes, anchors: Mapping[bytes, PublicKey]) -> codec.Bundle:
    """Verify a signed bundle against the anchors (kid -> key) and decode it.

    Raises :class:`UntrustedBundle` for an unknown anchor or a bad signature and
    :class:`~suishen.codecs.bundle.BundleError` for anything malformed.
    """
    if not isinstance(data, bytes) or len(data) > MAX_BUNDLE_BYTES:
        raise codec.BundleError("a signed bundle is bytes of bounded size")
    try:
        message = cose.decode_sign1(data)
    except CodecError as exc:
        raise codec.BundleError(f"not a signed bundle: {exc}") from exc
    if message.unprotected or message.protected.keys() != {cose.HDR_ALG, cose.HDR_KID}:
        raise codec.BundleError("a bundle's protected header is exactly alg and kid")
    kid = message.protected[cose.HDR_KID]
    key = anchors.get(kid) if isinstance(kid, bytes) else None
    if key is None:
        raise UntrustedBundle("bundle not signed by a trust anchor this gate holds")
    try:
        alg = Alg.from_cose(message.protected[cose.HDR_ALG])
    except UnsupportedAlgorithm as exc:
        raise UntrustedBundle("bundle signature algorithm not accepted") from exc
    tbs = cose.sig_structure(message.protected_raw, message.payload, BUNDLE_AAD)
    if alg is not key.alg or not key.verify(message.signature, tbs):
        raise UntrustedBundle("bundle signature does not verify")
    return codec.decode(message.payload)
