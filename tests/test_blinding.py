"""Blinding and pairwise subjects against their SPEC formulas, written with one-shot
``hmac.digest`` (keys/blinding.py keeps keyed HMAC states and copies them)."""

from __future__ import annotations

import base64
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from suishen.keys.blinding import blind, pairwise_subject, unblind

secrets_ = st.binary(min_size=0, max_size=80)  # shorter and longer than a block


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, handle=st.binary(min_size=10, max_size=10),
       iat=st.integers(0, 2**64 - 1), cti=st.binary(min_size=0, max_size=16))
def test_blind_is_the_spec_formula(secret: bytes, handle: bytes, iat: int, cti: bytes) -> None:
    pad = hmac.digest(secret, b"SC1-sub" + iat.to_bytes(8, "big") + cti, "sha256")[:10]
    expected = bytes(a ^ b for a, b in zip(handle, pad, strict=True))
    assert blind(handle, secret, iat=iat, cti=cti) == expected
    assert unblind(expected, secret, iat=iat, cti=cti) == handle


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, partner=st.text(max_size=40), handle=st.binary(max_size=16))
def test_pairwise_is_the_spec_formula(secret: bytes, partner: str, handle: bytes) -> None:
    mac = hmac.digest(secret, b"SC1-pairwise" + partner.encode() + b"\x00" + handle, "sha256")
    expected = base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode("ascii")
    assert pairwise_subject(secret, partner, handle) == expected


def test_keyed_state_is_not_shared_between_calls() -> None:
    # The cached keyed state must be copied: a second call gives the same answer.
    secret, handle = b"k" * 32, b"h" * 10
    first = blind(handle, secret, iat=1, cti=b"c" * 8)
    assert blind(handle, secret, iat=1, cti=b"c" * 8) == first
    assert pairwise_subject(secret, "p", handle) == pairwise_subject(secret, "p", handle)
