"""Strict CBOR (RFC 8949) decoding for untrusted input.

Anything scanned from a QR code is hostile until proven otherwise, so this decoder
accepts a deliberately small, well-formed subset and rejects the rest with a typed
error (never a bare ``except``):

* definite lengths only (no indefinite-length strings, arrays or maps, no "break");
* no trailing bytes after the top-level item;
* no duplicate map keys, and map keys are integers or text strings only;
* text strings are valid UTF-8;
* major type 7 only for ``false``, ``true`` and ``null`` (no floats, no undefined, no
  other simple values);
* a nesting-depth limit and lengths checked against the bytes that remain *before*
  anything is sliced or allocated.

Encoding uses ``cbor2`` (its C encoder produces preferred, shortest-form arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from suishen.errors import CodecError

MAX_DEPTH = 8


class CBORError(CodecError):
    """The bytes are not CBOR of the strict subset this decoder accepts."""


@dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tag (major type 6) and its content."""

    number: int
    value: Any


def dumps(value: Any) -> bytes:
    """Encode a value (ints, bytes, str, lists, dicts, :class:`Tag`) as CBOR."""
    if isinstance(value, Tag):
        return bytes(cbor2.dumps(cbor2.CBORTag(value.number, value.value)))
    return bytes(cbor2.dumps(value))


def loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode exactly one strict CBOR item that fills ``data`` completely."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CBORError("CBOR input must be bytes")
    buf = bytes(data)
    if not buf:
        raise CBORError("empty CBOR input")
    value, end = _item(buf, 0, max_depth)
    if end != len(buf):
        raise CBORError(f"{len(buf) - end} trailing bytes after the CBOR item")
    return value


def _argument(buf: bytes, pos: int, info: int) -> tuple[int, int]:
    """Read the argument of an initial byte whose additional information is ``info``."""
    if info < 24:
        return info, pos
    if info > 27:
        # 28-30 are reserved; 31 is an indefinite length, which the strict subset refuses.
        raise CBORError("indefinite length or reserved additional information")
    size = 1 << (info - 24)
    end = pos + size
    if end > len(buf):
        raise CBORError("truncated CBOR argument")
    return int.from_bytes(buf[pos:end], "big"), end


def _item(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if pos >= len(buf):
        raise CBORError("truncated CBOR item")
    initial = buf[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise CBORError("unsupported simple value or float")
    arg, pos = _argument(buf, pos, info)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        end = pos + arg
        if end > len(buf):
            raise CBORError("truncated CBOR string")
        chunk = buf[pos:end]
        if major == 2:
            return chunk, end
        try:
            return chunk.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CBORError("text string is not valid UTF-8") from None
    if depth <= 0:
        raise CBORError("CBOR nesting too deep")
    if major == 4:
        # Every element takes at least one byte: refuse counts the input cannot hold.
        if arg > len(buf) - pos:
            raise CBORError("truncated CBOR array")
        items = []
        for _ in range(arg):
            value, pos = _item(buf, pos, depth - 1)
            items.append(value)
        return items, pos
    if major == 5:
        if 2 * arg > len(buf) - pos:
            raise CBORError("truncated CBOR map")
        mapping: dict[Any, Any] = {}
        for _ in range(arg):
            key, pos = _item(buf, pos, depth - 1)
            if not isinstance(key, int | str) or isinstance(key, bool):
                raise CBORError("map key is neither an integer nor a text string")
            if key in mapping:
                raise CBORError("duplicate map key")
            mapping[key], pos = _item(buf, pos, depth - 1)
        return mapping, pos
    # major == 6: a tag
    value, pos = _item(buf, pos, depth - 1)
    return Tag(arg, value), pos
