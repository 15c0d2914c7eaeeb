"""Base45 (RFC 9285): bytes <-> the 45-character QR alphanumeric alphabet.

Every two bytes ``[a, b]`` become the number ``n = a*256 + b`` written as three base-45
digits ``c + d*45 + e*45**2`` and sent in the order ``c d e``; a trailing single byte
becomes two digits ``c d``. Decoding is strict: characters outside the alphabet, a
length of ``3k+1`` and triples above 65535 (or pairs above 255) are errors.
"""

from __future__ import annotations

import struct

from suishen.errors import CodecError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
# Byte -> digit value, 0xFF for bytes outside the alphabet (a bytes.translate table).
_DECODE_TABLE = bytes(ALPHABET.find(chr(i)) if chr(i) in ALPHABET else _INVALID for i in range(256))
_ENCODE = ALPHABET.encode("ascii")


class Base45Error(CodecError):
    """The text is not valid base45."""


def encode(data: bytes) -> str:
    """Encode bytes as base45 text."""
    out = bytearray()
    full = len(data) - len(data) % 2
    for i in range(0, full, 2):
        n = (data[i] << 8) | data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += bytes((_ENCODE[c], _ENCODE[d], _ENCODE[e]))
    if full != len(data):
        d, c = divmod(data[-1], 45)
        out += bytes((_ENCODE[c], _ENCODE[d]))
    return out.decode("ascii")


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
    # The three digit streams of every full triple, combined in one comprehension:
    # several times faster than a per-triple loop in CPython.
    values = [
        c + d * 45 + e * 2025
        for c, d, e in zip(digits[0:full:3], digits[1:full:3], digits[2:full:3], strict=True)
    ]
    if values and max(values) > 0xFFFF:
        raise Base45Error("base45 triple encodes a value above 65535")
    out = struct.pack(f">{len(values)}H", *values)
    if rest == 2:
        last = digits[full] + digits[full + 1] * 45
        if last > 0xFF:
            raise Base45Error("base45 pair encodes a value above 255")
        out += bytes((last,))
    return out
