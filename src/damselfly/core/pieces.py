"""Piece math: how a file of known length is cut into pieces.

The rule (same as Dragonfly's, so piece boundaries match a Dragonfly cluster's):

    piece_length = clamp(next_power_of_two(ceil(content_length / 500)), 4 MiB, 64 MiB)

so every file up to ~2 GB is cut into 4 MiB pieces (at most 500 of them), and a 130 GB file
into 64 MiB pieces (~2,000 of them). The last piece is usually shorter. A file of length 0 has
no pieces. A user may override the length with ``--piece-length``; we accept any value from
``MIN_PIECE_LENGTH_OVERRIDE`` (looser than Dragonfly's 4 MiB, which small test files need) up to
``MAX_PIECE_LENGTH_OVERRIDE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from damselfly.core.errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MIN_PIECE_LENGTH = 4 * MiB
MAX_PIECE_LENGTH = 64 * MiB
TARGET_PIECE_COUNT = 500
MIN_PIECE_LENGTH_OVERRIDE = 64 * KiB
MAX_PIECE_LENGTH_OVERRIDE = 1 * GiB


@dataclass(frozen=True, order=True)
class ByteRange:
    """The half-open interval ``[start, start + length)``."""

    start: int
    length: int

    @property
    def end(self) -> int:
        """Exclusive end offset."""
        return self.start + self.length

    def http_header(self) -> str:
        return f"bytes={self.start}-{self.end - 1}"


@dataclass(frozen=True, order=True)
class Piece:
    number: int
    offset: int
    length: int

    @property
    def byte_range(self) -> ByteRange:
        return ByteRange(self.offset, self.length)


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def default_piece_length(content_length: int) -> int:
    if content_length < 0:
        raise ValueError(f"content length must be >= 0, got {content_length}")
    wanted = next_power_of_two(-(-content_length // TARGET_PIECE_COUNT))
    return max(MIN_PIECE_LENGTH, min(MAX_PIECE_LENGTH, wanted))


def choose_piece_length(content_length: int, override: int | None = None) -> int:
    """The piece length for a file, honouring a validated user override."""
    if override is None:
        return default_piece_length(content_length)
    validate_piece_length(override)
    return override


def validate_piece_length(length: int) -> None:
    if not MIN_PIECE_LENGTH_OVERRIDE <= length <= MAX_PIECE_LENGTH_OVERRIDE:
        raise UsageError(
            f"piece length {length}: must be between {MIN_PIECE_LENGTH_OVERRIDE} "
            f"and {MAX_PIECE_LENGTH_OVERRIDE} bytes"
        )


def piece_count(content_length: int, piece_length: int) -> int:
    return -(-content_length // piece_length)


def piece_at(number: int, content_length: int, piece_length: int) -> Piece:
    count = piece_count(content_length, piece_length)
    if not 0 <= number < count:
        raise IndexError(f"piece {number} out of range 0..{count - 1}")
    offset = number * piece_length
    return Piece(number, offset, min(piece_length, content_length - offset))


def iter_pieces(content_length: int, piece_length: int) -> Iterator[Piece]:
    for number in range(piece_count(content_length, piece_length)):
        yield piece_at(number, content_length, piece_length)


def pieces_in_range(byte_range: ByteRange, content_length: int, piece_length: int) -> range:
    """Numbers of the pieces that overlap ``byte_range``."""
    if byte_range.length <= 0:
        return range(0)
    first = byte_range.start // piece_length
    last = min(byte_range.end, content_length) - 1
    return range(first, last // piece_length + 1)
