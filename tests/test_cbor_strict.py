"""The strict CBOR decoder (codecs/cbor.py): one test per kind of input it must refuse,
and a round trip against cbor2 as an independent encoder."""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.codecs import cbor
from suishen.codecs.cbor import MAX_DEPTH, CBORError, Tag
from suishen.errors import CodecError


def rejects(data: bytes, **kw: Any) -> None:
    with pytest.raises(CBORError):
        cbor.loads(data, **kw)


def test_cbor_error_is_a_codec_error() -> None:
    assert issubclass(CBORError, CodecError)


# --- accepted basics ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x00", 0),
        (b"\x17", 23),
        (b"\x18\x18", 24),
        (b"\x19\x01\x00", 256),
        (b"\x1a\xff\xff\xff\xff", 2**32 - 1),
        (b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", 2**64 - 1),
        (b"\x20", -1),
        (b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff", -(2**64)),
        (b"\x40", b""),
        (b"\x43abc", b"abc"),
        (b"\x60", ""),
        (b"\x63\xe6\xb0\xb4", "\u6c34"),
        (b"\x80", []),
        (b"\x82\x01\x02", [1, 2]),
        (b"\xa0", {}),
        (b"\xa2\x01\x02\x61a\x03", {1: 2, "a": 3}),
        (b"\xf4", False),
        (b"\xf5", True),
        (b"\xf6", None),
        (b"\xd2\x80", Tag(18, [])),
    ],
)
def test_accepts(data: bytes, value: Any) -> None:
    decoded = cbor.loads(data)
    assert decoded == value
    assert type(decoded) is type(value)


def test_accepts_bytes_like_input() -> None:
    assert cbor.loads(bytearray(b"\x01")) == 1
    assert cbor.loads(memoryview(b"\x01")) == 1


# --- refused ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        b"\x5f\x41a\xff",  # indefinite-length byte string
        b"\x7f\x61a\xff",  # indefinite-length text string
        b"\x9f\x01\xff",  # indefinite-length array
        b"\xbf\x01\x02\xff",  # indefinite-length map
        b"\x9f\xff",
        b"\xff",  # a lone "break"
        b"\x82\x01\xff",  # "break" inside a definite array
    ],
)
def test_rejects_indefinite_lengths(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("data", [b"\x1c", b"\x1d", b"\x1e", b"\x3c", b"\x5c", b"\x9d", b"\xdc"])
def test_rejects_reserved_additional_information(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("data", [b"\x00\x00", b"\x80\x00", b"\xa0\xa0", b"\x43abcd"])
def test_rejects_trailing_bytes(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xa2\x01\x00\x01\x00",  # {1: 0, 1: 0}
        b"\xa2\x01\x00\x01\x01",  # same key, different values
        b"\xa2\x61a\x00\x61a\x01",  # {"a": 0, "a": 1}
        b"\xa3\x01\x00\x02\x00\x01\x00",  # the duplicate is not adjacent
        b"\xa2\x18\x01\x00\x01\x00",  # 1 written in two lengths: still the same key
    ],
)
def test_rejects_duplicate_map_keys(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xf9\x3c\x00",  # half float 1.0
        b"\xfa\x3f\x80\x00\x00",  # single float 1.0
        b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # double float 1.0
        b"\xf9\x7e\x00",  # NaN
        b"\xf7",  # undefined
        b"\xe0",  # simple value 0
        b"\xf8\x20",  # simple value 32 (two bytes)
        b"\x81\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # a float nested in an array
        b"\xa1\x01\xfa\x3f\x80\x00\x00",  # a float as a map value
    ],
)
def test_rejects_floats_and_other_simple_values(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x62\xc3\x28",  # invalid continuation byte
        b"\x61\xff",
        b"\x61\x80",  # lone continuation byte
        b"\x63\xed\xa0\x80",  # UTF-8 encoded surrogate U+D800
        b"\x62\xc0\x80",  # overlong NUL
        b"\x64\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xa1\x62\xc3\x28\x00",  # bad UTF-8 in a map key
    ],
)
def test_rejects_text_that_is_not_utf8(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x18",  # argument missing
        b"\x19\x01",  # argument cut short
        b"\x1b\x00\x00\x00",
        b"\x43ab",  # byte string shorter than declared
        b"\x63ab",
        b"\x82\x01",  # array missing an element
        b"\xa1\x01",  # map missing a value
        b"\xa2\x01\x02",  # map missing a pair
        b"\xd2",  # tag without content
        b"\xd2\x84\x40\xa0\x40",  # COSE_Sign1 cut short
    ],
)
def test_rejects_truncated_input(data: bytes) -> None:
    rejects(data)


def test_every_prefix_of_a_valid_item_is_rejected() -> None:
    data = cbor2.dumps({1: [b"abc", "d\u00e9f", {2: -300}], -7: cbor2.CBORTag(18, [1, 2])})
    assert cbor.loads(data)
    for cut in range(len(data)):
        rejects(data[:cut])


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert MAX_DEPTH == 8
    data = b"\x81" * MAX_DEPTH + b"\x00"
    value = cbor.loads(data)
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list)
        value = value[0]
    assert value == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * (MAX_DEPTH + 1) + b"\x00",  # arrays
        b"\xa1\x00" * (MAX_DEPTH + 1) + b"\x00",  # maps
        b"\xc1" * (MAX_DEPTH + 1) + b"\x00",  # tags count as nesting too
        b"\x81" * 100_000 + b"\x00",  # deep enough to blow the C stack if recursed into
        b"\x81" * 100_000,
    ],
)
def test_rejects_nesting_too_deep(data: bytes) -> None:
    rejects(data)


def test_depth_limit_is_a_parameter() -> None:
    data = b"\x81" * 3 + b"\x00"
    assert cbor.loads(data, max_depth=3) == [[[0]]]
    rejects(data, max_depth=2)


@pytest.mark.parametrize(
    "data",
    [
        b"\x5b" + b"\xff" * 8,  # byte string of 2**64-1 bytes
        b"\x7b" + b"\xff" * 8,  # text string of 2**64-1 bytes
        b"\x9b" + b"\xff" * 8,  # array of 2**64-1 items
        b"\xbb" + b"\xff" * 8,  # map of 2**64-1 pairs
        b"\x9a\xff\xff\xff\xff" + b"\x00" * 16,  # 4 G items, a few bytes given
        b"\xba\x00\x01\x00\x00" + b"\x00" * 16,
        b"\x82\x01\x5b" + b"\x7f" + b"\xff" * 7,  # nested
    ],
)
def test_rejects_huge_declared_lengths_without_allocating(data: bytes) -> None:
    tracemalloc.start()
    try:
        rejects(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"decoder allocated {peak} bytes for a {len(data)}-byte input"


@pytest.mark.parametrize(
    "data",
    [
        b"\xa1\xf5\x00",  # {true: 0}
        b"\xa1\xf4\x00",  # {false: 0}
        b"\xa2\x01\x00\xf5\x00",  # {1: 0, true: 0}: true must not pass as a duplicate of 1
        b"\xa1\xf6\x00",  # {null: 0}
        b"\xa1\x41a\x00",  # {h'61': 0}
        b"\xa1\x80\x00",  # {[]: 0}
        b"\xa1\xa0\x00",  # {{}: 0}
        b"\xa1\xc1\x00\x00",  # {1(0): 0}
        b"\xa1\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00\x00",  # {1.0: 0}
    ],
)
def test_rejects_map_keys_other_than_int_or_text(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("value", ["\x01", 1, None, ["\x01"]])
def test_rejects_input_that_is_not_bytes(value: Any) -> None:
    rejects(value)


# --- against cbor2 as an independent encoder --------------------------------------------
INTS = st.integers(min_value=-(2**64), max_value=2**64 - 1)  # no bignums (tags 2 and 3)
LEAVES = st.one_of(
    INTS, st.binary(max_size=40), st.text(max_size=20), st.booleans(), st.none()
)
KEYS = st.one_of(INTS, st.text(max_size=10))
TAG_NUMBERS = st.sampled_from(sorted(cbor.ALLOWED_TAGS))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(KEYS, children, max_size=5),
        st.builds(cbor2.CBORTag, TAG_NUMBERS, children),
    )


VALUES = st.recursive(LEAVES, _extend, max_leaves=25)


def ours(value: Any) -> Any:
    """What the strict decoder should give for a value cbor2 encoded."""
    if isinstance(value, cbor2.CBORTag):
        return Tag(value.tag, ours(value.value))
    if isinstance(value, list):
        return [ours(v) for v in value]
    if isinstance(value, dict):
        return {k: ours(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types (so True != 1 and b"" != "")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Tag):
        return a.number == b.number and same(a.value, b.value)
    return bool(a == b)


@given(VALUES)
def test_round_trip_against_cbor2(value: Any) -> None:
    data = cbor2.dumps(value)
    decoded = cbor.loads(data, max_depth=64)
    assert same(decoded, ours(value))


UNTAGGED = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


@given(UNTAGGED, st.none() | TAG_NUMBERS)
def test_our_encoder_is_read_back(value: Any, tag: int | None) -> None:
    # cbor.dumps takes a Tag at the top (that is how COSE_Sign1 is written) and plain
    # values inside it; the bytes must be cbor2's and decode back to the same value.
    expected = value if tag is None else Tag(tag, value)
    reference = value if tag is None else cbor2.CBORTag(tag, value)
    data = cbor.dumps(expected)
    assert data == cbor2.dumps(reference)
    assert same(cbor.loads(data, max_depth=64), expected)


def test_our_encoder_takes_nested_tags() -> None:
    value = [Tag(16, 0), Tag(17, Tag(18, b""))]
    assert same(cbor.loads(cbor.dumps(value)), value)


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_cbor_error(data: bytes) -> None:
    try:
        cbor.loads(data)
    except CBORError:
        return
    # Anything the strict decoder accepts is well-formed CBOR that cbor2 reads too
    # (only COSE/CWT tags pass, so cbor2 applies no semantic tag handler to it).
    cbor2.loads(data)


@pytest.mark.parametrize("tag", [0, 1, 2, 3, 4, 5, 24, 32, 55799])
def test_semantic_tags_are_refused(tag: int) -> None:
    with pytest.raises(CBORError):
        cbor.loads(cbor2.dumps(cbor2.CBORTag(tag, 0)))


@given(st.binary(max_size=40))
def test_random_bytes_behind_a_cose_head_raise_only_cbor_error(tail: bytes) -> None:
    with contextlib.suppress(CBORError):
        cbor.loads(b"\xd2\x84" + tail)
