"""Trust bundles for offline gates (SPEC.md §6.1): structure, strict decoding, deltas.

A bundle is the CBOR payload of a COSE_Sign1 signed by a trust-anchor key (signing and
verifying live in :mod:`suishen.keys.bundle`). It tells a gate everything it needs to
decide codes with no network: the code-signing public keys with their windows and
states, and for each time slot ahead of it the revocation status list of that slot's
offline credentials (a credential carries its slot ``nbf`` and its index).

Payload (CBOR map, text keys; every member required unless marked)::

    {
      "typ": "suishen-trust-bundle" | "suishen-trust-delta",
      "version": uint,            monotonic; a gate refuses anything older (no rollback)
      "since": uint,              delta only: the version it applies to
      "issued_at": uint,          NumericDate; the gate's clock floor is this minus skew
      "refresh_after": uint,      soft expiry: decisions after it are flagged degraded
      "expires_at": uint,         hard expiry: after it, trust_expired (or flagged)
      "slot_seconds": uint,       the offline credential slot length
      "keys": [ {"kid": bstr, "alg": int (COSE), "pub": bstr (raw public key),
                 "nbf": uint, "exp": uint / null, "state": "active"/"retired"/"revoked"} ],
      "lists": { slot_start: {"bits": 1, "size": uint, "lst": bstr (ZLIB)} },
      "flips": { slot_start: [index, ...] }      delta only: indices newly revoked
      "venue_keys": [ key, ... ]  optional: the venue-signing keys (same form as "keys")
      "revoked_venues": [ bstr(5), ... ]   optional: revoked venue ids, ascending
    }

The two optional members (issue 11: venue codes, :mod:`suishen.codecs.venue`) are
written only when non-empty, so a bundle without venues is byte for byte what it was
before; both are always complete (a delta carries them whole, like ``keys``). A revoked
venue's printed code is refused offline by its id; a venue key is tried on every venue
code (they carry no kid).

A full bundle's ``lists`` hold the slots from the current one up to ``horizon`` (24 h
by default); a delta's ``lists`` hold the slots that entered the horizon since
``since``, and ``flips`` the indices set in slots the gate already holds. ``keys`` is
always complete (it is small). Status lists use :mod:`suishen.codecs.statuslist`.

Decoding is strict and bounded: :data:`MAX_LISTS` slots, :data:`MAX_LIST_SIZE` indices
a list, :data:`MAX_FLIPS` flipped indices a delta, :data:`MAX_KEYS` keys (and venue
keys), :data:`MAX_REVOKED_VENUES` revoked venue ids (unique: strictly ascending).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from suishen.codecs import cbor
from suishen.codecs.statuslist import StatusList
from suishen.errors import CodecError

TYP_BUNDLE = "suishen-trust-bundle"
TYP_DELTA = "suishen-trust-delta"
KEY_STATES = ("active", "retired", "revoked")
MAX_KEYS = 64
MAX_LISTS = 24 * 7  # a week of hourly slots
MAX_LIST_SIZE = 1 << 27  # 134 million indices (16 MiB of bits) per slot
MAX_FLIPS = 1 << 20
MAX_REVOKED_VENUES = 1 << 20  # 5 MiB of ids
VENUE_ID_BYTES = 5
_UINT32_MAX = 0xFFFFFFFF

_COMMON = frozenset(
    {"typ", "version", "issued_at", "refresh_after", "expires_at", "slot_seconds", "keys"}
)
_BUNDLE_LABELS = _COMMON | {"lists"}
_DELTA_LABELS = _COMMON | {"since", "lists", "flips"}
_OPTIONAL = frozenset({"venue_keys", "revoked_venues"})
_KEY_LABELS = frozenset({"kid", "alg", "pub", "nbf", "exp", "state"})
_LIST_LABELS = frozenset({"bits", "size", "lst"})


class BundleError(CodecError):
    """A bundle or delta that is not well formed."""


@dataclass(frozen=True, slots=True)
class BundleKey:
    """One code-signing public key as a gate sees it."""

    kid: bytes
    alg: int
    pub: bytes
    nbf: int
    exp: int | None
    state: str


@dataclass(frozen=True, slots=True)
class SlotList:
    """The wire form of one slot's status list (kept compressed until used)."""

    size: int
    lst: bytes
    bits: int = 1

    def inflate(self) -> StatusList:
        """The decompressed list (bounded by its declared size)."""
        return StatusList.decompress(self.lst, size=self.size, bits=self.bits)


@dataclass(frozen=True, slots=True)
class Bundle:
    """A decoded full bundle or delta (``since`` and ``flips`` only for deltas)."""

    typ: str
    version: int
    issued_at: int
    refresh_after: int
    expires_at: int
    slot_seconds: int
    keys: tuple[BundleKey, ...]
    lists: dict[int, SlotList]
    since: int | None = None
    flips: dict[int, tuple[int, ...]] = field(default_factory=dict)
    venue_keys: tuple[BundleKey, ...] = ()
    revoked_venues: tuple[bytes, ...] = ()  # ascending

    @property
    def is_delta(self) -> bool:
        """True for a delta."""
        return self.typ == TYP_DELTA


def encode(bundle: Bundle) -> bytes:
    """The CBOR payload of a bundle or delta."""
    body: dict[str, Any] = {
        "typ": bundle.typ,
        "version": bundle.version,
        "issued_at": bundle.issued_at,
        "refresh_after": bundle.refresh_after,
        "expires_at": bundle.expires_at,
        "slot_seconds": bundle.slot_seconds,
        "keys": _keys_out(bundle.keys),
        "lists": {
            slot: {"bits": s.bits, "size": s.size, "lst": s.lst}
            for slot, s in sorted(bundle.lists.items())
        },
    }
    if bundle.venue_keys:
        body["venue_keys"] = _keys_out(bundle.venue_keys)
    if bundle.revoked_venues:
        body["revoked_venues"] = sorted(bundle.revoked_venues)
    if bundle.is_delta:
        body["since"] = bundle.since
        body["flips"] = {slot: list(ix) for slot, ix in sorted(bundle.flips.items())}
    data = cbor.dumps(body)
    decode(data)  # never emit what a gate would refuse
    return data


def _keys_out(keys: tuple[BundleKey, ...]) -> list[dict[str, Any]]:
    return [{"kid": k.kid, "alg": k.alg, "pub": k.pub, "nbf": k.nbf, "exp": k.exp,
             "state": k.state} for k in keys]


def decode(payload: bytes) -> Bundle:
    """Strictly decode a bundle or delta payload."""
    item = cbor.loads(payload)
    if not isinstance(item, dict):
        raise BundleError("bundle is not a map")
    typ = item.get("typ")
    if typ == TYP_BUNDLE:
        labels = _BUNDLE_LABELS
    elif typ == TYP_DELTA:
        labels = _DELTA_LABELS
    else:
        raise BundleError("bundle typ is not a trust bundle or delta")
    if item.keys() - _OPTIONAL != labels:
        raise BundleError(f"{typ} members are not exactly {sorted(labels)} "
                          f"(and optionally {sorted(_OPTIONAL)})")
    version, issued, refresh, expires, slot_seconds = (
        _uint(item, name)
        for name in ("version", "issued_at", "refresh_after", "expires_at", "slot_seconds")
    )
    if not issued <= refresh <= expires:
        raise BundleError("issued_at <= refresh_after <= expires_at does not hold")
    if slot_seconds == 0:
        raise BundleError("slot_seconds is zero")
    since = None
    flips: dict[int, tuple[int, ...]] = {}
    if typ == TYP_DELTA:
        since = _uint(item, "since")
        if since >= version:
            raise BundleError("a delta's since is not before its version")
        flips = _flips(item["flips"])
    return Bundle(
        typ=typ,
        version=version,
        issued_at=issued,
        refresh_after=refresh,
        expires_at=expires,
        slot_seconds=slot_seconds,
        keys=_keys(item["keys"]),
        lists=_lists(item["lists"]),
        since=since,
        flips=flips,
        venue_keys=_venue_keys(item["venue_keys"]) if "venue_keys" in item else (),
        revoked_venues=_venue_ids(item["revoked_venues"]) if "revoked_venues" in item else (),
    )


def _venue_keys(value: Any) -> tuple[BundleKey, ...]:
    keys = _keys(value)
    if not keys:
        raise BundleError("venue_keys, when present, is not empty")
    return keys


def _venue_ids(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_REVOKED_VENUES:
        raise BundleError(f"revoked_venues is not a list of 1..{MAX_REVOKED_VENUES} ids")
    previous = b""
    for venue_id in value:
        if not isinstance(venue_id, bytes) or len(venue_id) != VENUE_ID_BYTES:
            raise BundleError(f"a revoked venue id is not {VENUE_ID_BYTES} bytes")
        if venue_id <= previous:
            raise BundleError("revoked venue ids are not strictly ascending")
        previous = venue_id
    return tuple(value)


def _keys(value: Any) -> tuple[BundleKey, ...]:
    if not isinstance(value, list) or len(value) > MAX_KEYS:
        raise BundleError(f"keys is not a list of at most {MAX_KEYS}")
    out = []
    seen: set[bytes] = set()
    for entry in value:
        if not isinstance(entry, dict) or entry.keys() != _KEY_LABELS:
            raise BundleError(f"a key's members are not exactly {sorted(_KEY_LABELS)}")
        kid, alg, pub, state = entry["kid"], entry["alg"], entry["pub"], entry["state"]
        if not isinstance(kid, bytes) or not 1 <= len(kid) <= 16 or kid in seen:
            raise BundleError("key kid is not a short, unique byte string")
        seen.add(kid)
        if not _is_int(alg) or not isinstance(pub, bytes) or not 1 <= len(pub) <= 133:
            raise BundleError("key alg or public key malformed")
        if state not in KEY_STATES:
            raise BundleError(f"key state is not one of {KEY_STATES}")
        exp = entry["exp"]
        if exp is not None and not _is_uint32(exp):
            raise BundleError("key exp is not a NumericDate or null")
        out.append(BundleKey(kid, alg, pub, _uint(entry, "nbf"), exp, state))
    return tuple(out)


def _lists(value: Any) -> dict[int, SlotList]:
    if not isinstance(value, dict) or len(value) > MAX_LISTS:
        raise BundleError(f"lists is not a map of at most {MAX_LISTS} slots")
    out = {}
    for slot, entry in value.items():
        if not _is_uint32(slot):
            raise BundleError("a slot start is not a NumericDate")
        if not isinstance(entry, dict) or entry.keys() != _LIST_LABELS:
            raise BundleError("a status list is not exactly bits, size and lst")
        bits, size, lst = entry["bits"], entry["size"], entry["lst"]
        if bits != 1 or not _is_int(bits):
            raise BundleError("status lists here have one bit per credential")
        if not _is_int(size) or not 0 < size <= MAX_LIST_SIZE:
            raise BundleError(f"status list size is not 1..{MAX_LIST_SIZE}")
        if not isinstance(lst, bytes):
            raise BundleError("lst is not a byte string")
        out[slot] = SlotList(size=size, lst=lst, bits=bits)
    return out


def _flips(value: Any) -> dict[int, tuple[int, ...]]:
    if not isinstance(value, dict) or len(value) > MAX_LISTS:
        raise BundleError("flips is not a map of slots")
    out = {}
    total = 0
    for slot, indices in value.items():
        if not _is_uint32(slot) or not isinstance(indices, list):
            raise BundleError("flips maps slot starts to lists of indices")
        total += len(indices)
        if total > MAX_FLIPS:
            raise BundleError(f"a delta flips at most {MAX_FLIPS} indices")
        if not all(_is_int(i) and 0 <= i < MAX_LIST_SIZE for i in indices):
            raise BundleError("a flipped index is not a list index")
        out[slot] = tuple(indices)
    return out


def _uint(item: dict[str, Any], name: str) -> int:
    value = item[name]
    if not _is_uint32(value):
        raise BundleError(f"{name} is not an unsigned 32-bit integer")
    return int(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uint32(value: object) -> bool:
    return _is_int(value) and 0 <= value <= _UINT32_MAX  # type: ignore[operator]
