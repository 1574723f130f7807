"""Progress output for dfget: bars on a terminal, plain lines elsewhere, nothing with
``--no-progress``. All of it goes to stderr; stdout stays free for data.

Both displays implement ``DownloadObserver``; the download code never formats output.
"""

from __future__ import annotations

import sys
import time
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

from damselfly.core.units import format_size
from damselfly.download.events import CountingObserver

PLAIN_INTERVAL = 5.0  # seconds between plain progress lines for one file


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


class LineDisplay(CountingObserver):
    """Plain lines for logs and pipes: start, every few seconds, and finish of each file."""

    def __init__(self, stream: TextIO, *, interval: float = PLAIN_INTERVAL) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval
        self._files: dict[str, _FileProgress] = {}

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        super().file_started(name, total_bytes, held_bytes)
        self._files[name] = _FileProgress(total_bytes, held_bytes)
        size = "unknown size" if total_bytes is None else format_size(total_bytes)
        held = f", {format_size(held_bytes)} already stored" if held_bytes else ""
        self._line(f"{name}: started ({size}{held})")

    def bytes_received(self, name: str, length: int) -> None:
        super().bytes_received(name, length)
        state = self._files[name]
        state.done += length
        now = time.monotonic()
        if now - state.last_line >= self._interval:
            state.last_line = now
            self._line(f"{name}: {state.describe(now)}")

    def file_finished(self, name: str) -> None:
        super().file_finished(name)
        state = self._files.pop(name)
        self._line(f"{name}: done, {state.summary(time.monotonic())}")

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()


class _FileProgress:
    def __init__(self, total: int | None, held: int) -> None:
        self.total = total
        self.done = held
        self.held = held
        self.started = self.last_line = time.monotonic()

    def describe(self, now: float) -> str:
        speed = (self.done - self.held) / max(now - self.started, 1e-6)
        share = f"{100 * self.done / self.total:.0f}% of " if self.total else ""
        total = format_size(self.total) if self.total is not None else "?"
        return f"{share}{total}, {format_size(speed)}/s"

    def summary(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        fetched = self.done - self.held
        if fetched == 0:
            return f"{format_size(self.done)}, all from the local store"
        return f"{format_size(self.done)} in {elapsed:.1f} s ({format_size(fetched / elapsed)}/s)"


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


Display = BarDisplay | LineDisplay | CountingObserver


def make_display(*, enabled: bool, many_files: bool, stream: TextIO | None = None) -> Display:
    stream = stream or sys.stderr
    if not enabled:
        return CountingObserver()
    if stream.isatty():
        return BarDisplay(stream, show_total=many_files)
    return LineDisplay(stream)
