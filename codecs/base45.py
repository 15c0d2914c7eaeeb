"""Base45 (RFC 9285): bytes <-> the 45-character QR alphanumeric alphabet.

Every two bytes ``[a, b]`` become the number ``n = a*256 + b`` written as three base-45
digits ``c + d*45 + e*45**2`` and sent in the order ``c d e``; a trailing single byte
becomes two digits ``c d``. Decoding is strict: characters outside the alphabet, a
length of ``3k+1`` and triples above 65535 (or pairs above 255) are errors.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from suishen.errors import CodecError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
# Byte -> digit value, 0xFF for bytes outside the alphabet (a bytes.translate table).
_DECODE_TABLE = bytes(ALPHABET.find(chr(i)) if chr(i) in ALPHABET else _INVALID for i in range(256))


class Base45Error(CodecError):
    """The text is not valid base45."""


@lru_cache(maxsize=1)
def _triples() -> tuple[str, ...]:
    """n (0..65535) -> its three digits "c d e", in sending order: built on the first
    encode (about 4 MB, a few tens of milliseconds), so that encoding is one lookup per
    two bytes -- about twice as fast as two divisions and a concatenation per value, and
    a code is encoded on every issuance (issue 13)."""
    return tuple(ALPHABET[n % 45] + ALPHABET[n // 45 % 45] + ALPHABET[n // 2025]
                 for n in range(0x10000))


def encode(data: bytes) -> str:
    """Encode bytes as base45 text."""
    triples = _triples()
    full = len(data) - len(data) % 2
    out = "".join(map(triples.__getitem__, struct.unpack(f">{full // 2}H", data[:full])))
    if full != len(data):
        out += triples[data[-1]][:2]  # a trailing byte (< 256) is two digits "cd"
    return out


def decode(text: str | bytes) -> bytes:
    """Decode base45 text; raise :class:`Base45Error` on anything but valid base45."""
    if isinstance(text, str):
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise Base45Error("base45 text has a character outside the alphabet") from None
    else:
        raw = bytes(text)
    digits = raw.translate(_DECODE_TABLE)
    if _INVALID in digits:
        raise Base45Error("base45 text has a character outside the alphabet")
    n = len(digits)
    rest = n % 3
    if rest == 1:
        raise Base45Error("base45 text has a length of 3k+1")
    full = n - rest
    out = _decode_triples(digits[:full], full // 3) if full else b""
    if rest == 2:
        last = digits[full] + digits[full + 1] * 45
        if last > 0xFF:
            raise Base45Error("base45 pair encodes a value above 255")
        out += bytes((last,))
    return out


def _decode_triples(digits: bytes, count: int) -> bytes:
    """Decode ``count`` full triples of digit values (0..44) into ``2*count`` bytes.

    All triples at once, in one big integer (SIMD within a register): read big-endian,
    triple ``j`` fills one 24-bit slot with ``c``, ``d``, ``e`` in its high, middle and
    low byte. Masking out each digit stream and computing ``c + 45*d + 2025*e`` for every
    slot in one multiply-add cannot carry into the next slot (the largest value,
    44 + 45*44 + 2025*44 = 91124, is below 2**24), so each slot then holds its triple's
    value, and a value above 65535 is exactly a slot with its top byte set. Written out
    big-endian, a slot is (0, high, low): dropping every third byte leaves the output.
    Three to four times faster than a per-triple loop in CPython, with the same checks.
    """
    low, top = _slot_masks(count)
    packed = int.from_bytes(digits, "big")
    values = ((packed >> 16) & low) + 45 * ((packed >> 8) & low) + 2025 * (packed & low)
    if values & top:
        raise Base45Error("base45 triple encodes a value above 65535")
    out = bytearray(values.to_bytes(3 * count, "big"))
    del out[::3]
    return bytes(out)


@lru_cache(maxsize=16)
def _slot_masks(count: int) -> tuple[int, int]:
    """The low and the top byte of each of ``count`` 24-bit slots, as masks."""
    low = int.from_bytes(b"\xff\x00\x00" * count, "little")
    return low, low << 16
