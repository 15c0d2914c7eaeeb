"""Status lists (IETF Token Status List, draft-ietf-oauth-status-list §4): one status of
``bits`` bits (1, 2, 4 or 8) per index, packed least-significant bit first, compressed
with DEFLATE in the ZLIB format (RFC 1950) at level 9.

Packing: index ``i`` with ``bits = b`` lives in byte ``i * b // 8`` at bit offset
``(i * b) % 8`` counted from the least significant bit — so with one bit per status,
statuses ``1,0,0,1,1,1,0,1`` for indices 0..7 are the byte ``0xB9``
(draft §4.1; its examples are the test vectors in ``tests/vectors/status-list/``).

Status values: ``0`` valid, ``1`` invalid (revoked or suspended); this project uses
``bits = 1``. A list has a declared ``size`` (number of indices); an index outside it is
an error, never "valid". Decompression is bounded: a list whose inflated size differs
from the declared one is refused, so a hostile bundle cannot make a gate inflate more
than the size it states (and a caller bounds that size).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from suishen.errors import CodecError

ALLOWED_BITS = (1, 2, 4, 8)
LEVEL = 9


class StatusListError(CodecError):
    """A status list that is malformed, too large, or indexed out of range."""


@dataclass(slots=True)
class StatusList:
    """A mutable status list; :meth:`compress` gives the wire form."""

    size: int
    bits: int = 1
    data: bytearray | None = None

    def __post_init__(self) -> None:
        if self.bits not in ALLOWED_BITS:
            raise StatusListError(f"bits must be one of {ALLOWED_BITS}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise StatusListError("size must be a non-negative integer")
        nbytes = byte_length(self.size, self.bits)
        if self.data is None:
            self.data = bytearray(nbytes)
        elif len(self.data) != nbytes:
            raise StatusListError("status list data does not match its size")

    def _locate(self, index: int) -> tuple[int, int, int]:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.size:
            raise StatusListError(f"index {index!r} outside the status list")
        position = index * self.bits
        return position >> 3, position & 7, (1 << self.bits) - 1

    def get(self, index: int) -> int:
        """The status at ``index``."""
        byte, shift, mask = self._locate(index)
        assert self.data is not None
        return (self.data[byte] >> shift) & mask

    def set(self, index: int, status: int) -> None:
        """Set the status at ``index``."""
        byte, shift, mask = self._locate(index)
        if not 0 <= status <= mask:
            raise StatusListError(f"status {status} does not fit {self.bits} bits")
        assert self.data is not None
        self.data[byte] = (self.data[byte] & ~(mask << shift)) | (status << shift)

    def set_many(self, indices: Iterable[int], status: int = 1) -> None:
        """Set one status at many indices."""
        for index in indices:
            self.set(index, status)

    def compress(self) -> bytes:
        """The ``lst`` value: ZLIB/DEFLATE of the packed bytes."""
        assert self.data is not None
        return zlib.compress(bytes(self.data), LEVEL)

    @classmethod
    def decompress(cls, lst: bytes, *, size: int, bits: int = 1) -> StatusList:
        """Inflate an ``lst`` value of a list declared to hold ``size`` statuses."""
        if bits not in ALLOWED_BITS:
            raise StatusListError(f"bits must be one of {ALLOWED_BITS}")
        if not isinstance(lst, bytes):
            raise StatusListError("lst is not a byte string")
        expected = byte_length(size, bits)
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(lst, expected)
            if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
                raise StatusListError("status list inflates beyond its declared size")
        except zlib.error as exc:
            raise StatusListError("status list is not ZLIB/DEFLATE data") from exc
        if len(data) != expected:
            raise StatusListError("status list inflates to a different size than declared")
        return cls(size=size, bits=bits, data=bytearray(data))


def byte_length(size: int, bits: int) -> int:
    """Bytes needed for ``size`` statuses of ``bits`` bits."""
    return (size * bits + 7) // 8
