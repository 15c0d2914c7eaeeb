"""Blinding and pairwise subjects against their SPEC formulas, written with one-shot
``hmac.digest`` (keys/blinding.py keeps keyed SHA-256 states and copies them), and
that keyed HMAC (:class:`KeyedHmac`) against RFC 4231's test vectors and ``hmac.new``."""

from __future__ import annotations

import base64
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suishen.keys.blinding import KeyedHmac, blind, pairwise_subject, unblind

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


# RFC 4231 section 4 (HMAC-SHA-256 test cases 1-4, 6 and 7; case 5 is a truncated
# output). The RFC's code components are under the Simplified BSD License (IETF Trust).
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize(("key", "data", "expected"), RFC4231)
def test_keyed_hmac_rfc4231(key: bytes, data: bytes, expected: str) -> None:
    assert KeyedHmac(key).mac(data).hex() == expected
    for cut in (0, 1, len(data) // 2, len(data)):  # any split into prefix and rest
        assert KeyedHmac(key, data[:cut]).mac(data[cut:]).hex() == expected


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), prefix=st.binary(max_size=100),
       rests=st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_keyed_hmac_is_hmac_new(key: bytes, prefix: bytes, rests: list[bytes]) -> None:
    keyed = KeyedHmac(key, prefix)
    for rest in rests:  # one keyed object, many MACs: the saved states never change
        assert keyed.mac(rest) == hmac.new(key, prefix + rest, "sha256").digest()
