"""Piece math: the Dragonfly piece-length rule, overrides, and cutting a file into pieces."""

from __future__ import annotations

import pytest

from damselfly.core.errors import UsageError
from damselfly.core.pieces import (
    MAX_PIECE_LENGTH_OVERRIDE,
    MIN_PIECE_LENGTH_OVERRIDE,
    ByteRange,
    GiB,
    KiB,
    MiB,
    Piece,
    choose_piece_length,
    default_piece_length,
    iter_pieces,
    next_power_of_two,
    piece_at,
    piece_count,
    pieces_in_range,
    validate_piece_length,
)


@pytest.mark.parametrize(
    ("content_length", "piece_length"),
    [
        (0, 4 * MiB),
        (1, 4 * MiB),
        (4 * MiB, 4 * MiB),
        (2_000_000_000, 4 * MiB),  # "up to ~2 GB: 4 MiB pieces"
        (500 * 4 * MiB, 4 * MiB),  # exactly 500 pieces of 4 MiB
        (500 * 4 * MiB + 1, 8 * MiB),  # one byte more needs a bigger piece
        (2 * GiB, 8 * MiB),
        (10 * GiB, 32 * MiB),
        (130_000_000_000, 64 * MiB),  # 130 GB: clamped to 64 MiB
        (10_000 * GiB, 64 * MiB),
    ],
)
def test_default_piece_length(content_length: int, piece_length: int) -> None:
    assert default_piece_length(content_length) == piece_length
    assert choose_piece_length(content_length) == piece_length


def test_default_piece_length_rejects_negative() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        default_piece_length(-1)


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 1), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (2**40 + 1, 2**41)]
)
def test_next_power_of_two(n: int, expected: int) -> None:
    assert next_power_of_two(n) == expected


@pytest.mark.parametrize(
    "override", [MIN_PIECE_LENGTH_OVERRIDE, 4 * MiB, 5 * MiB, MAX_PIECE_LENGTH_OVERRIDE]
)
def test_valid_override_wins(override: int) -> None:
    validate_piece_length(override)
    assert choose_piece_length(130_000_000_000, override) == override


@pytest.mark.parametrize(
    "override", [0, -1, MIN_PIECE_LENGTH_OVERRIDE - 1, 1 * KiB, MAX_PIECE_LENGTH_OVERRIDE + 1]
)
def test_invalid_override_is_a_usage_error(override: int) -> None:
    with pytest.raises(UsageError, match=f"piece length {override}: must be between"):
        choose_piece_length(100, override)


@pytest.mark.parametrize(
    ("content_length", "piece_length", "count"),
    [(0, 4 * MiB, 0), (1, 4 * MiB, 1), (4 * MiB, 4 * MiB, 1), (4 * MiB + 1, 4 * MiB, 2)],
)
def test_piece_count(content_length: int, piece_length: int, count: int) -> None:
    assert piece_count(content_length, piece_length) == count


def test_pieces_cover_the_file_exactly_once() -> None:
    content_length, piece_length = 10 * MiB + 7, 4 * MiB
    pieces = list(iter_pieces(content_length, piece_length))
    assert pieces == [
        Piece(0, 0, 4 * MiB),
        Piece(1, 4 * MiB, 4 * MiB),
        Piece(2, 8 * MiB, 2 * MiB + 7),
    ]
    assert sum(p.length for p in pieces) == content_length
    assert pieces[2].byte_range == ByteRange(8 * MiB, 2 * MiB + 7)


def test_empty_file_has_no_pieces() -> None:
    assert list(iter_pieces(0, 4 * MiB)) == []


@pytest.mark.parametrize("number", [-1, 3])
def test_piece_at_out_of_range(number: int) -> None:
    with pytest.raises(IndexError, match=r"out of range 0\.\.2"):
        piece_at(number, 10 * MiB + 7, 4 * MiB)


def test_byte_range() -> None:
    byte_range = ByteRange(100, 50)
    assert byte_range.end == 150
    assert byte_range.http_header() == "bytes=100-149"
    assert ByteRange(0, 1).http_header() == "bytes=0-0"


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [
        (0, 1, range(0, 1)),
        (0, 0, range(0)),
        (4 * MiB - 1, 2, range(0, 2)),
        (4 * MiB, 4 * MiB, range(1, 2)),
        (0, 10 * MiB + 7, range(0, 3)),
        (9 * MiB, 100 * MiB, range(2, 3)),  # clipped at the end of the file
    ],
)
def test_pieces_in_range(start: int, length: int, expected: range) -> None:
    assert pieces_in_range(ByteRange(start, length), 10 * MiB + 7, 4 * MiB) == expected
