"""What the piece server counts (``UploadServer.statistics()``; ``metrics.py`` exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from damselfly.daemon.servers.upload_guard import GuardCounters

__all__ = ["GuardCounters", "UploadCounters", "UploadStatistics"]


@dataclass(frozen=True)
class UploadStatistics:
    pieces_served: int = 0  # complete piece responses
    bytes_uploaded: int = 0  # piece bytes handed to the kernel
    rejected_busy: int = 0  # 429s
    not_found: int = 0  # 404s (task or piece)
    active_uploads: int = 0  # piece responses in progress (slots in use)
    pieces_rechecked: int = 0  # pieces hashed while sent (the checked path)
    pieces_dropped: int = 0  # pieces that failed the re-check
    tasks_opened: int = 0  # Store.open_task calls made by the server
    connections: int = 0  # distinct client connections that sent a request
    watchers: int = 0  # watch streams open now
    guard: GuardCounters = field(default_factory=GuardCounters)  # caps, timeouts, refusals


@dataclass
class UploadCounters:
    pieces_served: int = 0
    bytes_uploaded: int = 0
    rejected_busy: int = 0
    not_found: int = 0
    pieces_rechecked: int = 0
    pieces_dropped: int = 0
    connections: int = 0
