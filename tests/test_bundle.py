"""Trust bundles (codecs/bundle.py, keys/bundle.py): round trip, strict decoding,
anchor signatures, bounded inflation, and the city-scale size script."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.codecs import bundle as codec
from suishen.codecs import cbor, cose
from suishen.codecs.statuslist import StatusList
from suishen.errors import CodecError
from suishen.keys import bundle as signing
from suishen.keys.algorithms import Alg, PrivateKey

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000


def sample(*, delta: bool = False, revoked: tuple[int, ...] = (3, 77)) -> codec.Bundle:
    status = StatusList(size=1000)
    status.set_many(revoked)
    key = PrivateKey.generate(Alg.ES256)
    keys = (
        codec.BundleKey(
            kid=key.public().kid_bytes(),
            alg=-7,
            pub=key.public().raw,
            nbf=T0 - 10,
            exp=None,
            state="active",
        ),
    )
    common: dict[str, Any] = {
        "version": 8 if delta else 7,
        "issued_at": T0,
        "refresh_after": T0 + 900,
        "expires_at": T0 + 86_400,
        "slot_seconds": 3600,
        "keys": keys,
    }
    if delta:
        return codec.Bundle(typ=codec.TYP_DELTA, since=7, lists={}, flips={T0: (5, 9)}, **common)
    lists = {T0: codec.SlotList(size=1000, lst=status.compress())}
    return codec.Bundle(typ=codec.TYP_BUNDLE, lists=lists, **common)


@pytest.mark.parametrize("delta", [False, True])
def test_round_trip(delta: bool) -> None:
    bundle = sample(delta=delta)
    assert codec.decode(codec.encode(bundle)) == bundle


def test_status_lists_survive_the_round_trip() -> None:
    bundle = codec.decode(codec.encode(sample(revoked=(0, 3, 999))))
    lst = bundle.lists[T0].inflate()
    assert [i for i in range(1000) if lst.get(i)] == [0, 3, 999]


def _mutated(change: dict[str, Any], *, delta: bool = False) -> bytes:
    body = cbor.loads(codec.encode(sample(delta=delta)))
    for name, value in change.items():
        if value is _DROP:
            body.pop(name)
        else:
            body[name] = value
    return cbor.dumps(body)


_DROP = object()


@pytest.mark.parametrize(
    "change",
    [
        {"typ": "something-else"},
        {"version": -1},
        {"version": "7"},
        {"version": True},
        {"issued_at": T0 + 1000},  # issued after refresh_after
        {"expires_at": T0 + 10},  # expires before refresh_after
        {"slot_seconds": 0},
        {"extra": 1},
        {"lists": _DROP},
        {"keys": [{"kid": b"k", "alg": -7, "pub": b"p", "nbf": 0, "exp": None}]},
        {"keys": [{"kid": b"k", "alg": -7, "pub": b"p", "nbf": 0, "exp": None, "state": "x"}]},
        {"keys": [{"kid": b"", "alg": -7, "pub": b"p", "nbf": 0, "exp": None, "state": "active"}]},
        {
            "keys": [
                {"kid": b"k", "alg": -7, "pub": b"p", "nbf": 0, "exp": None, "state": "active"}
            ]
            * 2
        },
        {"lists": {T0: {"bits": 2, "size": 10, "lst": b""}}},
        {"lists": {T0: {"bits": 1, "size": 0, "lst": b""}}},
        {"lists": {T0: {"bits": 1, "size": codec.MAX_LIST_SIZE + 1, "lst": b""}}},
        {"lists": {T0: {"bits": 1, "size": 10}}},
        {"lists": {"slot": {"bits": 1, "size": 10, "lst": b""}}},
        {"lists": {T0 + k: {"bits": 1, "size": 8, "lst": b""} for k in range(codec.MAX_LISTS + 1)}},
        {"flips": {T0: [1]}},  # flips in a full bundle
    ],
)
def test_bundle_decoding_is_strict(change: dict[str, Any]) -> None:
    with pytest.raises(codec.BundleError):
        codec.decode(_mutated(change))


@pytest.mark.parametrize(
    "change",
    [
        {"since": 8},  # not before its version
        {"since": _DROP},
        {"flips": {T0: [-1]}},
        {"flips": {T0: [codec.MAX_LIST_SIZE]}},
        {"flips": {T0: "1,2"}},
        {"flips": {T0: [1] * (codec.MAX_FLIPS + 1)}},
    ],
)
def test_delta_decoding_is_strict(change: dict[str, Any]) -> None:
    with pytest.raises(codec.BundleError):
        codec.decode(_mutated(change, delta=True))


def test_encode_refuses_what_a_gate_would_refuse() -> None:
    with pytest.raises(codec.BundleError):
        codec.encode(replace(sample(), refresh_after=T0 - 1))


@given(st.binary(max_size=300))
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):  # BundleError, or the CBOR layer's own
        codec.decode(data)


# --- anchor signatures -----------------------------------------------------------------
@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_signed_bundle_opens_with_its_anchor(alg: Alg) -> None:
    anchor = PrivateKey.generate(alg)
    kid = anchor.public().kid_bytes()
    signed = signing.sign(anchor, kid, sample())
    assert signing.open_signed(signed, {kid: anchor.public()}) == sample_like(signed)


def sample_like(signed: bytes) -> codec.Bundle:
    return codec.decode(cose.decode_sign1(signed).payload)


def test_bundle_from_another_anchor_is_untrusted() -> None:
    anchor, other = PrivateKey.generate(Alg.EDDSA), PrivateKey.generate(Alg.EDDSA)
    kid = anchor.public().kid_bytes()
    signed = signing.sign(other, kid, sample())  # claims the anchor's kid
    with pytest.raises(signing.UntrustedBundle):
        signing.open_signed(signed, {kid: anchor.public()})
    signed = signing.sign(other, other.public().kid_bytes(), sample())
    with pytest.raises(signing.UntrustedBundle):
        signing.open_signed(signed, {kid: anchor.public()})


def test_a_bundle_signature_without_the_bundle_aad_is_refused() -> None:
    """Something else the anchor key might sign (plain Sig_structure) is not a bundle."""
    anchor = PrivateKey.generate(Alg.EDDSA)
    kid = anchor.public().kid_bytes()
    payload = codec.encode(sample())
    protected = cbor.dumps({1: anchor.alg.cose, 4: kid})
    forged = cose.encode_sign1(
        protected, {}, payload, anchor.sign(cose.sig_structure(protected, payload))
    )
    with pytest.raises(signing.UntrustedBundle):
        signing.open_signed(forged, {kid: anchor.public()})


def test_tampered_bundle_is_refused() -> None:
    anchor = PrivateKey.generate(Alg.EDDSA)
    kid = anchor.public().kid_bytes()
    signed = bytearray(signing.sign(anchor, kid, sample()))
    signed[-70] ^= 1  # inside the payload, before the signature
    with pytest.raises(codec.BundleError):
        signing.open_signed(bytes(signed), {kid: anchor.public()})


def test_alg_mismatch_and_unprotected_headers_are_refused() -> None:
    anchor = PrivateKey.generate(Alg.EDDSA)
    kid = anchor.public().kid_bytes()
    payload = codec.encode(sample())
    for protected, unprotected in (
        (cbor.dumps({1: -7, 4: kid}), {}),  # ES256 claimed for an Ed25519 anchor
        (cbor.dumps({1: -8, 4: kid}), {4: kid}),
        (cbor.dumps({1: -8}), {}),
    ):
        tbs = cose.sig_structure(protected, payload, signing.BUNDLE_AAD)
        data = cose.encode_sign1(protected, unprotected, payload, anchor.sign(tbs))
        with pytest.raises(codec.BundleError):
            signing.open_signed(data, {kid: anchor.public()})


def test_size_script_runs_and_reports_against_the_budgets() -> None:
    """The city-scale script (benchmarks/bundle_size.py), run small: it must produce its
    report; the 34-million figures are in the issue note, not asserted here."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bundle_size.py"), "--citizens", "20000"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert report["slots_in_gate_bundle"] == 25
    assert report["slots_after_the_hour"] == 26  # the slot that just ended, too
    assert report["revoked_or_suspended"] == 20
    assert 0 < report["bundle_bytes"] < report["bundle_bytes_after_the_hour"]
    assert report["bundle_bytes_after_the_hour"] < report["bundle_budget_bytes"]
    assert 0 < report["delta_bytes"] < report["delta_budget_bytes"]


# --- venue codes in the bundle (issue 11 part B) ---------------------------------------
def _with_venues(bundle: codec.Bundle, ids: tuple[bytes, ...] = (b"\x00" * 5, b"\x01" * 5)
                 ) -> codec.Bundle:
    return replace(bundle, venue_keys=bundle.keys, revoked_venues=ids)


@pytest.mark.parametrize("delta", [False, True])
def test_venue_members_round_trip_and_are_optional(delta: bool) -> None:
    plain = sample(delta=delta)
    assert b"venue" not in codec.encode(plain)  # without venues: the old bytes
    with_venues = _with_venues(plain)
    assert codec.decode(codec.encode(with_venues)) == with_venues


@pytest.mark.parametrize("ids", [
    [b"\x01" * 5, b"\x00" * 5],  # not ascending
    [b"\x00" * 5, b"\x00" * 5],  # duplicate
    [b"\x00" * 4], [b"\x00" * 6], ["0000000000"], [5], [],
])
def test_revoked_venues_are_strict(ids: list[Any]) -> None:
    body = cbor.loads(codec.encode(sample()))
    body["revoked_venues"] = ids
    with pytest.raises(codec.BundleError):
        codec.decode(cbor.dumps(body))


def test_venue_keys_are_strict_and_bounded() -> None:
    body = cbor.loads(codec.encode(_with_venues(sample())))
    for bad in ([], "keys", [{"kid": b"k"}], body["keys"] * (codec.MAX_KEYS + 1)):
        broken = dict(body, venue_keys=bad)
        with pytest.raises(codec.BundleError):
            codec.decode(cbor.dumps(broken))
    with pytest.raises(codec.BundleError):  # unknown members stay refused
        codec.decode(cbor.dumps(dict(body, venues_revoked=[])))


def test_too_many_revoked_venues_are_refused_before_reading_them() -> None:
    body = cbor.loads(codec.encode(sample()))
    body["revoked_venues"] = [i.to_bytes(5, "big") for i in range(codec.MAX_REVOKED_VENUES + 1)]
    with pytest.raises(codec.BundleError):
        codec.decode(cbor.dumps(body))


def test_a_delta_carries_the_venue_members_whole() -> None:
    full = _with_venues(sample())
    since = replace(sample(), version=6)
    delta = signing.delta(full, since=since, flips={})
    assert delta.venue_keys == full.venue_keys and delta.revoked_venues == full.revoked_venues
