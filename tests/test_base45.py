"""Base45 (RFC 9285): the RFC's own examples, its invalid inputs, and properties checked
against a straightforward reference decoder written from the RFC text."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.codecs import base45
from suishen.codecs.base45 import ALPHABET, Base45Error
from suishen.errors import CodecError

# RFC 9285 §4.1-§4.3 (encoding) and §4.4 (decoding).
RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


def reference_decode(text: str) -> bytes:
    """RFC 9285 §6, one chunk at a time, as plainly as possible."""
    values = []
    for ch in text:
        if ch not in ALPHABET:
            raise ValueError("character outside the alphabet")
        values.append(ALPHABET.index(ch))
    if len(values) % 3 == 1:
        raise ValueError("length 3k+1")
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i : i + 3]
        if len(chunk) == 3:
            n = chunk[0] + chunk[1] * 45 + chunk[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError("triple above 65535")
            out += n.to_bytes(2, "big")
        else:
            n = chunk[0] + chunk[1] * 45
            if n > 0xFF:
                raise ValueError("pair above 255")
            out.append(n)
    return bytes(out)


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_rfc_9285_examples_encode(raw: bytes, text: str) -> None:
    assert base45.encode(raw) == text


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_rfc_9285_examples_decode(raw: bytes, text: str) -> None:
    assert base45.decode(text) == raw
    assert base45.decode(text.encode("ascii")) == raw


def test_rfc_9285_decoding_example_ietf() -> None:
    # §4.4: "QED8WEX0" decodes to "ietf!".
    assert base45.decode("QED8WEX0").decode("ascii") == "ietf!"


def test_empty() -> None:
    assert base45.encode(b"") == ""
    assert base45.decode("") == b""


def test_alphabet_is_the_qr_alphanumeric_set() -> None:
    assert ALPHABET == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    assert len(set(ALPHABET)) == 45


def test_extreme_values() -> None:
    assert base45.encode(b"\xff\xff") == "FGW"  # 65535 = 15 + 42*45 + 32*2025
    assert base45.decode("FGW") == b"\xff\xff"
    assert base45.encode(b"\xff") == "U5"  # 255 = 30 + 5*45
    assert base45.decode("000") == b"\x00\x00"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GGW", "triple 65536 is above 65535 (RFC 9285 §6)"),
        (":::", "largest triple 91124"),
        ("BB8GGW", "a bad triple after a good one"),
        ("GGWBB8", "a bad triple before a good one"),
        ("BB8" * 50 + "GGW" + "BB8" * 50, "a bad triple in the middle of a long text"),
        ("V5", "pair 256 is above 255"),
        ("::", "largest pair 2024"),
        ("BB8::", "a bad trailing pair after a good triple"),
    ],
)
def test_values_out_of_range(text: str, why: str) -> None:
    with pytest.raises(Base45Error):
        base45.decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "bb8",  # lower case is outside the alphabet
        "BB=",
        "BB\n",
        "BB8\x00",
        "BB_",
        "BB,",
        "B#8",
    ],
)
def test_characters_outside_the_alphabet(text: str) -> None:
    with pytest.raises(Base45Error):
        base45.decode(text)
    with pytest.raises(Base45Error):
        base45.decode(text.encode("latin-1"))


@pytest.mark.parametrize("text", ["A", "BB8B", "%69 VD92EX0AB", "1234567"])
def test_length_3k_plus_1(text: str) -> None:
    assert len(text) % 3 == 1
    with pytest.raises(Base45Error):
        base45.decode(text)


@pytest.mark.parametrize("text", ["ÄBC", "BB８", "B\u00a08", "BB8\u2028", "🙂🙂🙂"])
def test_non_ascii_text(text: str) -> None:
    with pytest.raises(Base45Error):
        base45.decode(text)


@pytest.mark.parametrize("raw", [b"\xc3\x84BC", bytes([0x80, 0x42, 0x38]), b"BB\xff"])
def test_non_ascii_bytes(raw: bytes) -> None:
    with pytest.raises(Base45Error):
        base45.decode(raw)


def test_base45_error_is_a_codec_error() -> None:
    assert issubclass(Base45Error, CodecError)


@given(st.binary(max_size=300))
def test_round_trip(raw: bytes) -> None:
    text = base45.encode(raw)
    assert set(text) <= set(ALPHABET)
    assert len(text) == 3 * (len(raw) // 2) + 2 * (len(raw) % 2)
    assert base45.decode(text) == raw
    assert base45.decode(text.encode("ascii")) == raw
    assert reference_decode(text) == raw


@given(st.text(alphabet=ALPHABET, max_size=200))
def test_decode_agrees_with_the_reference(text: str) -> None:
    try:
        expected = reference_decode(text)
    except ValueError:
        with pytest.raises(Base45Error):
            base45.decode(text)
    else:
        assert base45.decode(text) == expected
        assert base45.encode(expected) == text


@given(st.text(max_size=60))
def test_decode_raises_only_base45_error(text: str) -> None:
    with contextlib.suppress(Base45Error):
        base45.decode(text)


@given(st.binary(max_size=60))
def test_decode_bytes_raises_only_base45_error(raw: bytes) -> None:
    with contextlib.suppress(Base45Error):
        base45.decode(raw)


def test_encode_of_every_16_bit_value_is_the_rfc_encoding() -> None:
    """The reciprocal multiplications of the encoder are exact for every 16-bit value."""
    alphabet = base45.ALPHABET
    data = b"".join(n.to_bytes(2, "big") for n in range(0x10000))
    expected = "".join(alphabet[n % 45] + alphabet[n // 45 % 45] + alphabet[n // 2025]
                       for n in range(0x10000))
    assert base45.encode(data) == expected
    assert base45.encode(data + b"\xff") == expected + alphabet[255 % 45] + alphabet[255 // 45]
