"""Status lists (codecs/statuslist.py) against the IETF Token Status List draft's
examples, plus bounds and hostile input."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.codecs.statuslist import StatusList, StatusListError

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "status-list" / "examples.json").read_text()
)["vectors"]


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"bits{v['bits']}")
def test_draft_examples_pack_and_compress_byte_for_byte(vector: dict) -> None:
    bits, statuses = vector["bits"], vector["statuses"]
    lst = StatusList(size=len(statuses), bits=bits)
    for index, status in enumerate(statuses):
        lst.set(index, status)
    assert bytes(lst.data or b"").hex() == vector["packed_hex"]
    assert lst.compress() == b64u_decode(vector["lst_base64url"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"bits{v['bits']}")
def test_draft_examples_decode(vector: dict) -> None:
    statuses = vector["statuses"]
    lst = StatusList.decompress(
        b64u_decode(vector["lst_base64url"]), size=len(statuses), bits=vector["bits"]
    )
    assert [lst.get(i) for i in range(len(statuses))] == statuses


@given(st.sets(st.integers(0, 9_999), max_size=300), st.sampled_from([1, 2, 4, 8]))
def test_round_trip(indices: set[int], bits: int) -> None:
    lst = StatusList(size=10_000, bits=bits)
    lst.set_many(indices, 1)
    back = StatusList.decompress(lst.compress(), size=10_000, bits=bits)
    assert {i for i in range(10_000) if back.get(i)} == indices


def test_index_outside_the_list_is_an_error_not_valid() -> None:
    lst = StatusList(size=16)
    for bad in (-1, 16, 2**40, True, "3", 1.0):
        with pytest.raises(StatusListError):
            lst.get(bad)  # type: ignore[arg-type]


def test_status_must_fit_its_bits() -> None:
    with pytest.raises(StatusListError):
        StatusList(size=8, bits=1).set(0, 2)
    with pytest.raises(StatusListError):
        StatusList(size=8, bits=3)


def test_a_list_inflating_beyond_its_declared_size_is_refused() -> None:
    bomb = zlib.compress(b"\x00" * 10_000_000, 9)  # 10 MB from about 10 KB
    with pytest.raises(StatusListError):
        StatusList.decompress(bomb, size=8 * 1024)


def test_a_list_inflating_short_or_with_trailing_bytes_is_refused() -> None:
    with pytest.raises(StatusListError):
        StatusList.decompress(zlib.compress(b"\x00" * 10), size=8 * 11)
    with pytest.raises(StatusListError):
        StatusList.decompress(zlib.compress(b"\x00" * 10) + b"junk", size=80)


@given(st.binary(max_size=200))
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(StatusListError):
        StatusList.decompress(data, size=1024)


def test_sparse_city_scale_list_compresses_well() -> None:
    """One slot of the city: 0.1 % of about a million indices set compresses to a few
    bits per index set (the bundle benchmark measures the 34-million case)."""
    rng = random.Random(7)
    size = 1 << 20
    lst = StatusList(size=size)
    lst.set_many(rng.sample(range(size), size // 1000))
    compressed = lst.compress()
    assert len(compressed) < size // 8 // 20  # at least 20x smaller than the raw bits
