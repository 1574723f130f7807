"""What the benchmark commands share on their command line: argument types, and one way to
run a benchmark that turns failures and interrupts into a one-line message and an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from bench.common.workspace import BenchError
from damselfly.core.errors import UsageError
from damselfly.core.units import parse_size


def size_type(flag: str) -> Callable[[str], int]:
    """An argparse ``type`` for a positive size such as ``256MiB``, naming ``flag``."""

    def parse(text: str) -> int:
        try:
            size = parse_size(text, what=flag)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        if size <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be positive")
        return size

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def system_names(known: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse ``type`` for a comma-separated list of ``known`` names, duplicates dropped."""

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(known)}; got {text!r}")
        return names

    return parse


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A signal handler that ends the benchmark as Ctrl-C does (cleanup runs)."""
    raise KeyboardInterrupt


EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def run_guarded(
    prog: str,
    work: Callable[[], int | None],
    *,
    on_interrupt: str,
    signals: Sequence[signal.Signals] = (signal.SIGTERM,),
) -> int:
    """Run ``work``; a ``BenchError`` is ``prog: FAILED: ...`` (exit 1), Ctrl-C or one of
    ``signals`` is ``prog: interrupted; <on_interrupt>`` (exit 130) after cleanup ran."""
    for signum in signals:
        signal.signal(signum, raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        return work() or 0
    except BenchError as exc:
        print(f"{prog}: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED
