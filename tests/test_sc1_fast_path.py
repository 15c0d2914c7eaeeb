"""Differential, property-based: the SC1 exact-layout fast path and the general path
agree on every input (issue 7 item 9).

The invariant (``codecs/sc1.py``): where the fast path answers, the general path
answers the same; where it declines (None), the general path alone decides. So for any
bytes, ``parse``/``decode_claims`` (fast first) give exactly what the general path gives,
the same value or the same error type. Hypothesis draws valid codes of both
algorithms, mutated, truncated and extended ones, re-encoded claims with arbitrary
times, and random bytes and texts.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from suishen.codecs import base45, cbor, cose, sc1
from suishen.errors import SuishenError
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.issuer import MAX_TTL, MIN_TTL, Issuer
from suishen.keys.signer import SoftwareSigner

_ISSUERS = [
    Issuer(SoftwareSigner.from_private(p), os.urandom(32))
    for p in (PrivateKey.generate(Alg.ES256), PrivateKey.generate(Alg.EDDSA))
]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """The value, or the error type (a non-SuishenError is a bug and propagates)."""
    try:
        return ("value", call(*args))
    except SuishenError as exc:
        return ("error", type(exc))


# --- strategies ----------------------------------------------------------------------------
@st.composite
def valid_cose(draw: st.DrawFn, min_iat: int = 0) -> bytes:
    issuer = draw(st.sampled_from(_ISSUERS))
    iat = draw(st.integers(min_iat, 0xFFFFFFFF - MAX_TTL))
    ttl = draw(st.integers(MIN_TTL, MAX_TTL))
    handle = draw(st.binary(min_size=10, max_size=10))
    cti = draw(st.binary(min_size=8, max_size=8))
    kind = draw(st.sampled_from([sc1.Kind.PERSONAL, sc1.Kind.ENTERPRISE]))
    return sc1.from_text(issuer.issue_personal(handle, now=iat, ttl=ttl, cti=cti,
                                               kind=kind).text)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "append")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data.insert(pos, draw(st.integers(0, 255)))
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@st.composite
def resigned_claims(draw: st.DrawFn) -> bytes:
    """A COSE message whose claims map has arbitrary values: short and long integer
    heads, exp <= iat, other kinds, missing or extra labels, wrong types."""
    value = st.one_of(st.integers(-(2**40), 2**40), st.binary(max_size=12),
                      st.text(max_size=4), st.booleans(), st.none())
    claims: dict[Any, Any] = {
        sc1.CLAIM_SUB: draw(st.one_of(st.binary(min_size=10, max_size=10), value)),
        sc1.CLAIM_EXP: draw(st.one_of(st.integers(0, 0xFFFFFFFF), value)),
        sc1.CLAIM_IAT: draw(st.one_of(st.integers(0, 0xFFFFFFFF), value)),
        sc1.CLAIM_CTI: draw(st.one_of(st.binary(min_size=8, max_size=8), value)),
        sc1.CLAIM_KIND: draw(st.one_of(st.sampled_from([0, 1, 2]), value)),
    }
    for label in draw(st.lists(st.sampled_from(sorted(claims)), max_size=2)):
        claims.pop(label, None)
    if draw(st.booleans()):
        claims[draw(st.integers(-10, 10))] = draw(value)
    issuer = draw(st.sampled_from(_ISSUERS))
    alg = draw(st.sampled_from([-7, -8, -9, -19, 0, 1, -36, 23, 24, -24, -25]))
    kid = draw(st.one_of(st.just(issuer.kid), st.binary(min_size=0, max_size=17)))
    protected = cbor.dumps({cose.HDR_ALG: alg, cose.HDR_KID: kid})
    payload = cbor.dumps(claims)
    signature = draw(st.binary(min_size=62, max_size=66))
    return cose.encode_sign1(protected, {}, payload, signature)


def _near(byte: int) -> st.SearchStrategy[bytes]:
    """Mostly the byte the layout wants, sometimes any byte."""
    return st.one_of(st.just(byte), st.just(byte), st.just(byte),
                     st.integers(0, 255)).map(lambda b: bytes((b,)))


@st.composite
def layout_claims(draw: st.DrawFn) -> bytes:
    """The 37-byte claims layout, head by head, each head sometimes wrong, and the
    values (exp, iat: any uint32, so exp <= iat half the time; kind: any byte) free."""
    parts = [
        draw(_near(0xA5)), draw(_near(0x02)), draw(_near(0x4A)),
        draw(st.binary(min_size=10, max_size=10)),
        draw(_near(0x04)), draw(_near(0x1A)), draw(st.binary(min_size=4, max_size=4)),
        draw(_near(0x06)), draw(_near(0x1A)), draw(st.binary(min_size=4, max_size=4)),
        draw(_near(0x07)), draw(_near(0x48)), draw(st.binary(min_size=8, max_size=8)),
        draw(_near(0x20)), draw(st.sampled_from([0x00, 0x02]).flatmap(_near)),
    ]
    return b"".join(parts)


@st.composite
def layout_cose(draw: st.DrawFn) -> bytes:
    """The 116-byte personal layout, head by head, each head sometimes wrong: the
    alg head byte ranges over all 256 values, the payload is :func:`layout_claims`."""
    kid = draw(st.sampled_from([i.kid for i in _ISSUERS]) | st.binary(min_size=2, max_size=2))
    parts = [
        draw(_near(0xD2)), draw(_near(0x84)), draw(_near(0x47)),
        draw(_near(0xA2)), draw(_near(0x01)), bytes((draw(st.integers(0, 255)),)),
        draw(_near(0x04)), draw(_near(0x42)), kid,
        draw(_near(0xA0)), draw(_near(0x58)), draw(_near(0x25)), draw(layout_claims()),
        draw(_near(0x58)), draw(_near(0x40)), draw(st.binary(min_size=64, max_size=64)),
    ]
    return b"".join(parts)


ANY_COSE = st.one_of(
    layout_cose(),
    valid_cose(),
    mutated(valid_cose()),
    resigned_claims(),
    mutated(resigned_claims()),
    st.binary(max_size=140),
)


# --- properties ------------------------------------------------------------------------
def _check_envelope(data: bytes) -> None:
    fast = sc1._parse_personal_layout(data)
    general = outcome(sc1._parse_general, data)
    if fast is not None:
        assert general == ("value", fast)
    # parse() as a whole (fast first) equals the general path on the same bytes
    assert outcome(sc1.parse, sc1.to_text(data)) == general
    if general[0] == "value":
        _check_claims(general[1].message.payload)


def _check_claims(payload: bytes) -> None:
    fast = sc1._personal_claims_layout(payload)
    general = outcome(sc1._decode_claims_general, payload)
    if fast is not None:
        assert general == ("value", fast)
    assert outcome(sc1.decode_claims, payload) == general


@SETTINGS
@given(ANY_COSE)
def test_fast_and_general_paths_agree_on_cose_bytes(data: bytes) -> None:
    _check_envelope(data)


@SETTINGS
@given(st.one_of(
    layout_claims(),
    mutated(valid_cose().map(lambda raw: cose.decode_sign1(raw).payload)),
    resigned_claims().map(lambda raw: cose.decode_sign1(raw).payload),
    st.binary(max_size=48),
))
def test_fast_and_general_paths_agree_on_claims(payload: bytes) -> None:
    _check_claims(payload)


@SETTINGS
@given(valid_cose(min_iat=2**16))
def test_valid_codes_take_the_fast_path(data: bytes) -> None:
    # Not only agreement: the layout the issuer writes is the one the fast path knows
    # (otherwise it would silently never run and cost only a failed match). Times
    # before 1970-01-01T18:12:16Z have shorter CBOR heads and take the general path.
    envelope = sc1._parse_personal_layout(data)
    assert envelope is not None
    claims = sc1._personal_claims_layout(envelope.message.payload)
    assert claims is not None and claims.kind in (sc1.Kind.PERSONAL, sc1.Kind.ENTERPRISE)


@SETTINGS
@given(st.one_of(
    valid_cose().map(sc1.to_text),
    st.tuples(valid_cose().map(sc1.to_text), st.integers(0, 180)).map(lambda t: t[0][: t[1]]),
    st.text(alphabet=base45.ALPHABET, max_size=200).map(lambda t: "SC1:" + t),
    st.text(max_size=40),
))
def test_fast_and_general_paths_agree_on_texts(text: str) -> None:
    try:
        data = sc1.from_text(text)
    except SuishenError as exc:
        # the text layer decides alone; parse() says the same
        assert outcome(sc1.parse, text) == ("error", type(exc))
        return
    assume(len(data) < 2000)
    _check_envelope(data)


def test_every_single_byte_substitution_agrees() -> None:
    """Exhaustive where it is cheap: every byte of a valid code replaced by each of the
    256 values (116 x 256 inputs per algorithm and kind: personal and enterprise), so
    every head the fast path pins is tried with every wrong value, and exp/iat bytes give
    exp <= iat cases."""
    for issuer, kind in itertools.product(_ISSUERS, (sc1.Kind.PERSONAL, sc1.Kind.ENTERPRISE)):
        data = sc1.from_text(issuer.issue_personal(os.urandom(10), now=1_800_000_000,
                                                   ttl=60, kind=kind).text)
        for pos in range(len(data)):
            for value in range(256):
                changed = data[:pos] + bytes((value,)) + data[pos + 1:]
                fast = sc1._parse_personal_layout(changed)
                general = outcome(sc1._parse_general, changed)
                if fast is not None:
                    assert general == ("value", fast), (pos, value)
                if general[0] == "value":
                    payload = general[1].message.payload
                    fast_claims = sc1._personal_claims_layout(payload)
                    if fast_claims is not None:
                        general_claims = outcome(sc1._decode_claims_general, payload)
                        assert general_claims == ("value", fast_claims), (pos, value)
