"""``damselfly report``: the five rollout figures before and after, the change, and a chart.

    damselfly report --prometheus URL --before START..END --after START..END
    damselfly report --before-file DIR_OR_FILE --after-file DIR_OR_FILE

The table goes to stdout; the PNG (``--png``, default ``damselfly-report.png``) needs
matplotlib, which is optional: without it the chart is skipped and stderr says so.
See docs/operations.md ("Rollout report").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from damselfly.cli.report_figures import FIGURE_NAMES, Figures, change, figures, formatted
from damselfly.cli.report_sources import (
    parse_window,
    totals_from_files,
    totals_from_prometheus,
)
from damselfly.cli.reporting import report_failure
from damselfly.core.errors import EXIT_OK, DamselflyError, UsageError

PROG = "damselfly report"
DEFAULT_PNG = Path("damselfly-report.png")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--prometheus", help="Prometheus base URL, e.g. http://prometheus:9090")
    parser.add_argument("--before", help="window before the rollout: START..END")
    parser.add_argument("--after", help="window after the rollout: START..END")
    parser.add_argument(
        "--before-file", type=Path, action="append", help="saved scrape or directory (repeatable)"
    )
    parser.add_argument(
        "--after-file", type=Path, action="append", help="saved scrape or directory (repeatable)"
    )
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help=f"default {DEFAULT_PNG}")
    parser.add_argument("--no-png", action="store_true", help="do not draw the chart")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        before, after = _collect(args)
        print(table(before, after), end="")
        if not args.no_png:
            print(write_chart(before, after, args.png), file=sys.stderr)
    except DamselflyError as exc:
        return report_failure(PROG, exc, debug=False)
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _collect(args: argparse.Namespace) -> tuple[Figures, Figures]:
    if args.before_file or args.after_file:
        if not (args.before_file and args.after_file) or args.prometheus:
            raise UsageError("give --before-file and --after-file, or --prometheus with windows")
        return figures(totals_from_files(args.before_file)), figures(
            totals_from_files(args.after_file)
        )
    if not (args.prometheus and args.before and args.after):
        raise UsageError("give --prometheus URL --before START..END --after START..END")
    windows = parse_window(args.before, "--before"), parse_window(args.after, "--after")
    return asyncio.run(_from_prometheus(args.prometheus, *windows))


async def _from_prometheus(
    url: str, before: tuple[float, float], after: tuple[float, float]
) -> tuple[Figures, Figures]:
    return (
        figures(await totals_from_prometheus(url, before)),
        figures(await totals_from_prometheus(url, after)),
    )


def table(before: Figures, after: Figures) -> str:
    rows = [("figure", "before", "after", "change")]
    b, a = asdict(before), asdict(after)
    for name, label in FIGURE_NAMES.items():
        rows.append(
            (
                label,
                formatted(name, b[name]),
                formatted(name, a[name]),
                change(name, b[name], a[name]),
            )
        )
    return "".join(f"{r[0]:<18}{r[1]:>14}{r[2]:>14}{r[3]:>14}\n" for r in rows)


def write_chart(before: Figures, after: Figures, path: Path) -> str:
    """Draw one pair of bars per figure; returns the line to print (written or skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return "PNG skipped: matplotlib is not installed (pip install matplotlib)"
    b, a = asdict(before), asdict(after)
    figure, axes = pyplot.subplots(1, len(FIGURE_NAMES), figsize=(3 * len(FIGURE_NAMES), 3.2))
    for axis, (name, label) in zip(axes, FIGURE_NAMES.items(), strict=True):
        values = [b[name] or 0.0, a[name] or 0.0]
        axis.bar(["before", "after"], values, color=["#9aa5b1", "#2f7ed8"])
        axis.set_title(f"{label}\n{change(name, b[name], a[name])}", fontsize=9)
        axis.tick_params(labelsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise UsageError(f"--png {path}: {exc.strerror or exc}") from exc
    finally:
        pyplot.close(figure)
    return f"PNG written: {path}"


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        add_arguments(argparse.ArgumentParser(prog=PROG, description=__doc__)).parse_args(argv)
    )


if __name__ == "__main__":
    sys.exit(main())
