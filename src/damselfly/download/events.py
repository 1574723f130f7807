"""What a download tells its observer (the progress display, metrics, the daemon's API).

The download code calls these event-named methods; it never formats output itself. Every
method must be cheap and must not raise: they run on the piece hot path.
"""

from __future__ import annotations

from typing import Protocol


class DownloadObserver(Protocol):
    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        """A file begins; ``held_bytes`` were already in the store (resume, cache hit)."""

    def bytes_received(self, name: str, length: int) -> None:
        """``length`` more bytes of ``name`` are verified and stored."""

    def file_finished(self, name: str) -> None: ...

    def file_failed(self, name: str, error: BaseException) -> None: ...


class NullObserver:
    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        pass

    def bytes_received(self, name: str, length: int) -> None:
        pass

    def file_finished(self, name: str) -> None:
        pass

    def file_failed(self, name: str, error: BaseException) -> None:
        pass


class CountingObserver(NullObserver):
    """Counts bytes and events; used by tests and by the summary line of dfget."""

    def __init__(self) -> None:
        self.received_bytes = 0
        self.held_bytes = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.failed: list[str] = []

    def __enter__(self) -> CountingObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        self.started.append(name)
        self.held_bytes += held_bytes

    def bytes_received(self, name: str, length: int) -> None:
        self.received_bytes += length

    def file_finished(self, name: str) -> None:
        self.finished.append(name)

    def file_failed(self, name: str, error: BaseException) -> None:
        self.failed.append(name)
