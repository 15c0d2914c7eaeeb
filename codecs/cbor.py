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
* tags only from the COSE/CWT family (:data:`ALLOWED_TAGS`) — never the semantic tags
  (dates, bignums, ...) whose content another decoder would interpret;
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
# COSE_Encrypt0, COSE_Mac0, COSE_Sign1, CWT, COSE_Encrypt, COSE_Mac, COSE_Sign.
ALLOWED_TAGS = frozenset({16, 17, 18, 61, 96, 97, 98})


class CBORError(CodecError):
    """The bytes are not CBOR of the strict subset this decoder accepts."""


@dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tag (major type 6) and its content."""

    number: int
    value: Any


def _encode_tag(encoder: Any, value: Any) -> None:
    if not isinstance(value, Tag):
        raise CBORError(f"cannot encode {type(value).__name__} as CBOR")
    encoder.encode(cbor2.CBORTag(value.number, value.value))


def dumps(value: Any) -> bytes:
    """Encode a value (ints, bytes, str, lists, dicts, :class:`Tag` at any depth)."""
    return bytes(cbor2.dumps(value, default=_encode_tag))


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


def _item(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    # The hot path of every verification (about twenty items per code), so it is written
    # for CPython speed: the argument is decoded inline, the common majors (unsigned
    # int, byte string) are tested first, and map keys are checked by exact type (the
    # decoder only ever yields exact ints, strs, bools, ... so ``type(k) is int`` is the
    # same test as ``isinstance(k, int) and not isinstance(k, bool)``). Every check of
    # the strict subset described above is still made, in the same order.
    try:
        initial = buf[pos]
    except IndexError:
        raise CBORError("truncated CBOR item") from None
    pos += 1
    major = initial >> 5
    info = initial & 0x1F
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise CBORError("unsupported simple value or float")
    if info < 24:
        arg = info
    elif info < 28:
        end = pos + (1 << (info - 24))
        if end > len(buf):
            raise CBORError("truncated CBOR argument")
        arg = int.from_bytes(buf[pos:end], "big")
        pos = end
    else:
        # 28-30 are reserved; 31 is an indefinite length, which the strict subset refuses.
        raise CBORError("indefinite length or reserved additional information")
    if major == 0:
        return arg, pos
    if major == 2:
        end = pos + arg
        if end > len(buf):
            raise CBORError("truncated CBOR string")
        return buf[pos:end], end
    if major == 3:
        end = pos + arg
        if end > len(buf):
            raise CBORError("truncated CBOR string")
        try:
            return buf[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise CBORError("text string is not valid UTF-8") from None
    if major == 1:
        return -1 - arg, pos
    if depth <= 0:
        raise CBORError("CBOR nesting too deep")
    depth -= 1
    if major == 4:
        # Every element takes at least one byte: refuse counts the input cannot hold.
        if arg > len(buf) - pos:
            raise CBORError("truncated CBOR array")
        items: list[Any] = []
        append = items.append
        for _ in range(arg):
            value, pos = _item(buf, pos, depth)
            append(value)
        return items, pos
    if major == 5:
        if 2 * arg > len(buf) - pos:
            raise CBORError("truncated CBOR map")
        mapping: dict[Any, Any] = {}
        for _ in range(arg):
            key, pos = _item(buf, pos, depth)
            key_type = type(key)
            if key_type is not int and key_type is not str:
                raise CBORError("map key is neither an integer nor a text string")
            if key in mapping:
                raise CBORError("duplicate map key")
            mapping[key], pos = _item(buf, pos, depth)
        return mapping, pos
    # major == 6: a tag
    if arg not in ALLOWED_TAGS:
        raise CBORError(f"CBOR tag {arg} is not accepted")
    value, pos = _item(buf, pos, depth)
    return Tag(arg, value), pos
