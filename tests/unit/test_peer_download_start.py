"""Where a peer download starts fetching: the piece a streaming reader needs, else at random."""

from __future__ import annotations

import pytest

from damselfly.daemon.engine.piece_dispatcher import start_piece


@pytest.mark.parametrize(("asked", "count", "start"), [(0, 8, 0), (5, 8, 5), (7, 8, 7)])
def test_a_readers_piece_is_where_the_fill_starts(asked: int, count: int, start: int) -> None:
    assert start_piece(asked, count) == start


@pytest.mark.parametrize(("asked", "count"), [(None, 8), (8, 8), (-1, 8), (None, 0), (3, 0)])
def test_otherwise_a_start_within_the_file(asked: int | None, count: int) -> None:
    starts = {start_piece(asked, count) for _ in range(200)}
    assert starts <= set(range(max(1, count)))
    assert len(starts) > 1 or count <= 1  # random: peers starting together spread out
