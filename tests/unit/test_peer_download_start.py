"""Where a peer download starts fetching: the piece a streaming reader needs, else at random."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from damselfly.daemon.engine.peer_download import _first_piece


@dataclass
class _Asked:  # the one field of ``FillRequest`` that ``_first_piece`` reads
    first_piece: int | None


@pytest.mark.parametrize(("asked", "count", "start"), [(0, 8, 0), (5, 8, 5), (7, 8, 7)])
def test_a_readers_piece_is_where_the_fill_starts(asked: int, count: int, start: int) -> None:
    assert _first_piece(_Asked(asked), count) == start  # type: ignore[arg-type]


@pytest.mark.parametrize(("asked", "count"), [(None, 8), (8, 8), (-1, 8), (None, 0), (3, 0)])
def test_otherwise_a_start_within_the_file(asked: int | None, count: int) -> None:
    starts = {_first_piece(_Asked(asked), count) for _ in range(200)}  # type: ignore[arg-type]
    assert starts <= set(range(max(1, count)))
    assert len(starts) > 1 or count <= 1  # random: peers starting together spread out
