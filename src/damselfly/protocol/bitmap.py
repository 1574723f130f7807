"""Piece bitmaps: which pieces of a task a peer holds.

Wire form (gRPC ``bytes`` fields and the piece server's ``/bitmap``): ``ceil(piece_count / 8)``
bytes, bit ``i`` = piece ``i``, most significant bit of byte 0 first; padding bits are zero.
An empty byte string means "no piece". ``PieceBitmap`` is an immutable value over a Python int
in that same bit order (piece ``i`` is bit ``width - 1 - i``), so union, difference and counts
are single integer operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from damselfly.core.errors import ProtocolError


def bitmap_length(piece_count: int) -> int:
    """Bytes in the wire form of a bitmap over ``piece_count`` pieces."""
    return -(-piece_count // 8)


@dataclass(frozen=True)
class PieceBitmap:
    piece_count: int
    bits: int = 0

    @classmethod
    def empty(cls, piece_count: int) -> PieceBitmap:
        return cls(piece_count)

    @classmethod
    def full(cls, piece_count: int) -> PieceBitmap:
        width = bitmap_length(piece_count) * 8
        return cls(piece_count, ((1 << piece_count) - 1) << (width - piece_count))

    @classmethod
    def from_bytes(cls, data: bytes, piece_count: int) -> PieceBitmap:
        """Parse the wire form; raise ``ProtocolError`` when it does not fit ``piece_count``."""
        if not data:
            return cls(piece_count)
        expected = bitmap_length(piece_count)
        if len(data) != expected:
            raise ProtocolError(
                f"piece bitmap of {len(data)} bytes for {piece_count} pieces "
                f"(expected {expected} bytes, or none)"
            )
        bitmap = cls(piece_count, int.from_bytes(data, "big"))
        if bitmap.bits & ~cls.full(piece_count).bits:
            raise ProtocolError(f"piece bitmap sets bits beyond piece {piece_count - 1}")
        return bitmap

    @classmethod
    def of(cls, piece_count: int, numbers: Iterable[int]) -> PieceBitmap:
        return cls(piece_count).with_pieces(numbers)

    def to_bytes(self) -> bytes:
        return self.bits.to_bytes(bitmap_length(self.piece_count), "big")

    def _mask(self, number: int) -> int:
        if not 0 <= number < self.piece_count:
            raise ProtocolError(f"piece {number} out of range 0..{self.piece_count - 1}")
        return 1 << (bitmap_length(self.piece_count) * 8 - 1 - number)

    def has(self, number: int) -> bool:
        return bool(self.bits & self._mask(number))

    def with_pieces(self, numbers: Iterable[int]) -> PieceBitmap:
        bits = self.bits
        for number in numbers:
            bits |= self._mask(number)
        return PieceBitmap(self.piece_count, bits)

    def union(self, other: PieceBitmap) -> PieceBitmap:
        return PieceBitmap(self.piece_count, self.bits | other.bits)

    def has_any_missing_from(self, other: PieceBitmap) -> bool:
        """Whether this bitmap holds at least one piece ``other`` lacks."""
        return bool(self.bits & ~other.bits)

    @property
    def count(self) -> int:
        return self.bits.bit_count()

    @property
    def is_complete(self) -> bool:
        return self.count == self.piece_count

    def numbers(self) -> Iterator[int]:
        """Held piece numbers, ascending."""
        width = bitmap_length(self.piece_count) * 8
        bits = self.bits
        while bits:
            top = bits.bit_length() - 1
            yield width - 1 - top
            bits ^= 1 << top
