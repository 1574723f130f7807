"""Progress output for dfget: bars on a terminal, plain lines elsewhere, nothing with
``--no-progress``. All of it goes to stderr; stdout stays free for data.

Both displays implement ``DownloadObserver``; the download code never formats output.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from damselfly.core.units import format_size
from damselfly.download.events import CountingObserver

PLAIN_INTERVAL = 5.0  # seconds between plain progress lines for one file


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


def make_display(
    *, enabled: bool, many_files: bool, stream: TextIO | None = None
) -> CountingObserver:
    stream = stream or sys.stderr
    if not enabled:
        return CountingObserver()
    if stream.isatty():
        from damselfly.cli.progress_bars import BarDisplay  # rich costs startup time

        return BarDisplay(stream, show_total=many_files)
    return LineDisplay(stream)
