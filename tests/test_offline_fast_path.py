"""Differential, property-based: the offline exact-layout fast path
(``codecs.offline.parse_fast``) and the general path agree on every input.

Where the fast path answers, the general path answers the same value; where it declines
(None), the general path alone decides. Hypothesis draws valid codes (both service
algorithms, every encoding size of the status index and counter, extreme times),
mutated, truncated and extended ones, and random bytes.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suishen.codecs import cose, offline, sc1
from suishen.errors import SuishenError
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from tests.test_sc1_fast_path import mutated  # one mutation strategy for both fast paths

_SERVICE = [PrivateKey.generate(Alg.ES256), PrivateKey.generate(Alg.EDDSA)]
_DEVICES = [PrivateKey.generate(Alg.ES256) for _ in range(4)]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def general(data: bytes) -> tuple[str, Any]:
    try:
        message = cose.decode_sign1(data)
        if not offline.is_offline(message):
            return ("error", "not offline")
        return ("value", offline.parse(message))
    except SuishenError as exc:
        return ("error", type(exc))


@st.composite
def valid_code(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(_SERVICE))
    device = draw(st.sampled_from(_DEVICES))
    nbf = draw(st.integers(0, 0xFFFFFFFF - 1))
    exp = draw(st.integers(nbf + 1, 0xFFFFFFFF))
    index = draw(st.one_of(st.integers(0, 30), st.integers(0, 2**16), st.integers(0, 2**32 - 1)))
    handle = draw(st.binary(min_size=10, max_size=10))
    credential = koff.issue_credential(
        key, key.public().kid_bytes(), b"\x00" * 32, handle=handle,
        nbf=nbf, exp=exp, device=device.public(), status_index=index,
    )
    iat = draw(st.integers(0, 0xFFFFFFFF))
    counter = draw(st.integers(0, offline.MAX_COUNTER))
    return sc1.from_text(koff.make_code(device, credential, iat=iat, counter=counter))


def check(data: bytes) -> None:
    fast = offline.parse_fast(data)
    if fast is not None:
        assert general(data) == ("value", fast)


@SETTINGS
@given(valid_code())
def test_valid_codes_agree_and_the_common_layout_takes_the_fast_path(data: bytes) -> None:
    check(data)
    assert offline.parse_bytes(data) == general(data)[1]


@SETTINGS
@given(mutated(valid_code()))
def test_mutated_codes_agree(data: bytes) -> None:
    check(data)


@SETTINGS
@given(st.binary(min_size=200, max_size=260))
def test_random_bytes_agree(data: bytes) -> None:
    check(data)


def test_every_single_byte_substitution_of_one_code_agrees() -> None:
    key, device = _SERVICE[0], _DEVICES[0]
    credential = koff.issue_credential(
        key, key.public().kid_bytes(), b"\x00" * 32, handle=os.urandom(10), nbf=1_800_000_000,
        exp=1_800_003_600, device=device.public(), status_index=0x01020304,
    )
    data = sc1.from_text(koff.make_code(device, credential, iat=1_800_000_001, counter=30))
    assert offline.parse_fast(data) is not None  # the common layout is the fast one
    for pos in range(len(data)):
        for value in {0x00, 0x18, 0x1A, 0x20, 0x40, 0x58, 0xA0, 0xF4, 0xF5, 0xFF, data[pos] ^ 1}:
            mutated = data[:pos] + bytes((value,)) + data[pos + 1 :]
            check(mutated)
