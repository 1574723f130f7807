"""Progress bars on a terminal (rich): one per running file, plus a total for many files."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from damselfly.download.events import CountingObserver


class BarDisplay(CountingObserver):
    """Rich bars: one per running file, plus a total when more than one file runs."""

    def __init__(self, stream: TextIO, *, show_total: bool) -> None:
        super().__init__()
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._total = self._progress.add_task("total", total=0) if show_total else None

    def __enter__(self) -> BarDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        super().file_started(name, total_bytes, held_bytes)
        self._tasks[name] = self._progress.add_task(
            _short(name), total=total_bytes, completed=held_bytes
        )
        if self._total is not None:
            total = self._progress.tasks[self._total].total or 0
            self._progress.update(self._total, total=total + (total_bytes or 0))
            self._progress.advance(self._total, held_bytes)

    def bytes_received(self, name: str, length: int) -> None:
        super().bytes_received(name, length)
        self._progress.advance(self._tasks[name], length)
        if self._total is not None:
            self._progress.advance(self._total, length)

    def file_finished(self, name: str) -> None:
        super().file_finished(name)
        if self._total is not None:  # many files: keep the screen to running ones
            self._progress.remove_task(self._tasks.pop(name))

    def file_failed(self, name: str, error: BaseException) -> None:
        super().file_failed(name, error)


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
