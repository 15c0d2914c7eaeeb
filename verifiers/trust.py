"""What an offline gate trusts: the newest trust bundle it accepted, applied deltas and
all (SPEC.md §6.1). Pure and in memory; persistence is the SDK's (:mod:`suishen.sdk.gate`).

Rules:

* Only bundles signed by one of the gate's anchor keys are accepted
  (:func:`suishen.keys.bundle.open_signed`).
* **No rollback**: a bundle or delta whose ``version`` is not newer than the one held is
  refused (:class:`BundleRollback`); the same version again is a no-op.
* A delta applies only to the version it names (``since``); otherwise
  :class:`DeltaMismatch` — the gate fetches a full bundle. Flips for a slot the gate
  does not hold are a mismatch too, except for a slot that has ended: those are
  skipped (the gate would refuse that slot's codes for want of a list anyway).
* **Clock floor**: a gate never judges at a time before the newest accepted bundle's
  ``issued_at`` minus skew (:meth:`TrustState.floor`): a gate clock set to the past
  would otherwise accept expired codes.
* Health at ``now``: ``fresh`` before ``refresh_after``, ``degraded`` until
  ``expires_at``, then ``expired``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from suishen.codecs import bundle as codec
from suishen.codecs.statuslist import StatusList
from suishen.errors import KeyManagementError, VerificationError
from suishen.keys import bundle as signing
from suishen.keys.algorithms import Alg, PublicKey
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.verifiers.offline import DEFAULT_LIFETIME


class TrustError(VerificationError):
    """A bundle the gate will not take."""


class BundleRollback(TrustError):
    """A bundle or delta older than the one held."""


class DeltaMismatch(TrustError):
    """A delta for a version the gate does not hold: fetch a full bundle."""


class Health(StrEnum):
    """How current the gate's trust is."""

    FRESH = "fresh"
    DEGRADED = "degraded"
    EXPIRED = "expired"
    NONE = "none"


@dataclass(slots=True)
class TrustState:
    """The gate's current trust: anchors, the bundle header and keys, inflated lists."""

    anchors: Mapping[bytes, PublicKey]
    skew: int = 30
    # The offline code lifetime the gate judges with: an ended slot's list is kept for
    # keys.bundle.ended_grace after the slot ends (its last codes are still fresh).
    lifetime: int = DEFAULT_LIFETIME
    bundle: codec.Bundle | None = None
    keyring: KeyRing = field(default_factory=lambda: KeyRing([]))
    _lists: dict[int, StatusList] = field(default_factory=dict)
    _venue_keys: tuple[VerificationKey, ...] = ()
    _revoked_venues: frozenset[bytes] = frozenset()

    # --- taking bundles -------------------------------------------------------------
    def accept(self, signed: bytes) -> codec.Bundle:
        """Verify and apply a signed bundle or delta; return the bundle now held."""
        incoming = signing.open_signed(signed, self.anchors)
        return self.apply(incoming)

    def apply(self, incoming: codec.Bundle) -> codec.Bundle:
        """Apply an already verified bundle or delta (see the module rules)."""
        held = self.bundle
        if held is not None:
            if incoming.version == held.version:
                return held
            if incoming.version < held.version:
                raise BundleRollback(
                    f"bundle version {incoming.version} is older than {held.version}"
                )
        if incoming.is_delta:
            if held is None or incoming.since != held.version:
                raise DeltaMismatch(
                    f"delta since {incoming.since} does not apply to "
                    f"{None if held is None else held.version}"
                )
            lists = dict(self._lists)
            for slot, entry in incoming.lists.items():
                lists[slot] = entry.inflate()
            for slot, indices in incoming.flips.items():
                current = lists.get(slot)
                if current is None and slot + incoming.slot_seconds <= incoming.issued_at:
                    # A slot that ended and that this gate no longer holds (a service
                    # flips the one that just ended, see keys.bundle.delta): its codes
                    # find no list here and are refused anyway.
                    continue
                if current is None:
                    raise DeltaMismatch(f"delta flips slot {slot} the gate does not hold")
                flipped = StatusList(
                    size=current.size, bits=current.bits, data=bytearray(current.data or b"")
                )
                flipped.set_many(indices, 1)
                lists[slot] = flipped
        else:
            lists = {slot: entry.inflate() for slot, entry in incoming.lists.items()}
        # The held bundle keeps the header and keys; the status lists live inflated in
        # ``_lists`` (see :meth:`snapshot` for the full form).
        merged = replace(incoming, typ=codec.TYP_BUNDLE, since=None, flips={}, lists={})
        keyring = keyring_of(merged)
        venue_keys = tuple(keyring_of(merged, venues=True))
        # Drop the slots that ended longer than the grace before the bundle was issued:
        # nothing in them can be fresh any more. A slot that ended within it stays, for
        # the codes made at its end (a full bundle issued then holds it too).
        grace = signing.ended_grace(skew=self.skew, offline_lifetime=self.lifetime)
        ended = [s for s in lists if s + merged.slot_seconds + grace < merged.issued_at]
        for slot in ended:
            del lists[slot]
        self.bundle, self.keyring, self._lists = merged, keyring, lists
        self._venue_keys = venue_keys
        self._revoked_venues = frozenset(merged.revoked_venues)
        return merged

    def snapshot(self) -> codec.Bundle | None:
        """The held state as one full bundle (status lists re-compressed), for storage."""
        if self.bundle is None:
            return None
        lists = {
            slot: codec.SlotList(size=lst.size, lst=lst.compress(), bits=lst.bits)
            for slot, lst in sorted(self._lists.items())
        }
        return replace(self.bundle, lists=lists)

    # --- judging ------------------------------------------------------------------
    def floor(self) -> int | None:
        """The earliest time the gate may judge at (None before any bundle)."""
        return None if self.bundle is None else self.bundle.issued_at - self.skew

    def effective_now(self, now: int) -> int:
        """``now``, raised to the clock floor."""
        floor = self.floor()
        return now if floor is None else max(now, floor)

    def health(self, now: int) -> Health:
        """How current the trust is at ``now``."""
        if self.bundle is None:
            return Health.NONE
        if now < self.bundle.refresh_after:
            return Health.FRESH
        if now <= self.bundle.expires_at:
            return Health.DEGRADED
        return Health.EXPIRED

    def credential_revoked(self, slot_start: int, index: int) -> bool | None:
        """See :class:`suishen.verifiers.offline.CredentialStatus`."""
        lst = self._lists.get(slot_start)
        if lst is None or not 0 <= index < lst.size:
            return None
        return lst.get(index) != 0

    def venue_keys(self) -> tuple[VerificationKey, ...]:
        """The bundle's venue keys (:class:`suishen.verifiers.venue.VenueTrust`)."""
        return self._venue_keys

    def venue_revoked(self, venue_id: bytes) -> bool:
        """True for a venue the bundle lists as revoked."""
        return venue_id in self._revoked_venues

    def revoked_count(self) -> dict[int, int]:
        """Per slot, how many credentials are revoked (for ``bundle inspect``)."""
        return {
            slot: sum(bin(b).count("1") for b in (lst.data or b""))
            for slot, lst in sorted(self._lists.items())
        }


def keyring_of(bundle: codec.Bundle, *, venues: bool = False) -> KeyRing:
    """The code-signing keys of a bundle as a verifier's key ring (public keys only);
    ``venues``: its venue keys instead."""
    keys = []
    for entry in bundle.venue_keys if venues else bundle.keys:
        try:
            alg = Alg.from_cose(entry.alg)
            public = PublicKey.from_raw(alg, entry.pub)
        except KeyManagementError as exc:
            raise TrustError(f"bundle key {entry.kid.hex()} is not usable: {exc}") from exc
        keys.append(
            VerificationKey(entry.kid, public, KeyState(entry.state), entry.nbf, entry.exp)
        )
    return KeyRing(keys)
