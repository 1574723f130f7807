"""What the download engine is tuned by, and the callbacks it is given: shared by the filler,
the peer download and the seed worker (so none of them imports another for it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

PieceStored = Callable[[str, int], None]  # (task id, piece number): stored and verified
Rehome = Callable[[], Awaitable[None]]  # announce this host and its tasks again, now


@dataclass(frozen=True)
class EngineSettings:
    concurrent_pieces: int = 8  # piece requests in flight per task
    piece_timeout: float = 10.0  # seconds without a byte before a parent is given up
    stall_timeout: float = 20.0  # seconds without a new piece before asking for parents
    back_to_source: bool = True  # read the origin when no parent can serve
    report_interval: float = 0.5
    spot_checks: int = 2  # ranges re-read from the origin when it gives no checksum (mTLS)
