"""``make bench-single``: dfget (standalone) vs curl vs aria2c, one file over loopback.

Steps: make a file of random bytes on /dev/shm and hash it; serve it with the project's test
origin in a separate process; run every system once per round, rounds interleaved and the
order rotated, each from a cold state; time each run and read its CPU and peak RSS from
``wait4``; check every output's sha256 (untimed); print a markdown table and write all raw
runs plus the summary to ``bench/results/single-<timestamp>.json``.

    .venv/bin/python bench/single/run.py --size 1GiB --rounds 3
    .venv/bin/python bench/single/run.py --systems dfget,aria2c --concurrent-pieces 16
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common import report  # noqa: E402
from bench.common.arguments import positive_int, size_type  # noqa: E402
from bench.common.machine import load_average, machine_info  # noqa: E402
from bench.common.rounds import Harness, run_rounds  # noqa: E402
from bench.common.workspace import (  # noqa: E402
    BenchError,
    check_room,
    sha256_of,
    shm_directory,
)
from bench.single.report import BASELINES, verdict  # noqa: E402
from bench.single.systems import SYSTEM_NAMES, Tools, build_systems  # noqa: E402
from bench.single.workspace import Workspace, make_source, origin_process  # noqa: E402
from damselfly.core.units import format_size, parse_size  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
SHM_COPIES = 4  # source + warm store + one output + one store, at most, at any time
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        run(args)
    except BenchError as exc:
        print(f"bench-single: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("bench-single: interrupted; origin stopped, /dev/shm cleaned", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="bench-single", description=summary)
    parser.add_argument(
        "--size", type=size_type("--size"), default=parse_size("1GiB"), help="default 1GiB"
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="default 3")
    parser.add_argument(
        "--systems",
        type=_systems,
        default=list(SYSTEM_NAMES),
        help=f"comma-separated subset of {','.join(SYSTEM_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--concurrent-pieces", type=positive_int, help="passed to dfget (default: dfget's own)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm directory")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    tools = Tools.find(args.systems)
    systems = build_systems(args.systems, tools, concurrent_pieces=args.concurrent_pieces)
    started, load_start = datetime.now(UTC), load_average()
    with shm_directory(keep=args.keep) as root:
        check_room(root, SHM_COPIES * args.size)
        print(f"writing {format_size(args.size)} of random bytes to {root}", file=sys.stderr)
        source = make_source(root / "origin", args.size)
        with origin_process(source.path.parent, root / "origin.log") as origin:
            ws = Workspace(root, source, origin)
            records = run_rounds(_harness(ws), systems, args.rounds)
    load_end = load_average()
    summaries = report.summarise(records, args.size)
    found = report.ratios(summaries, BASELINES)
    print(report.markdown_table(summaries, found, BASELINES))
    print(f"\n{verdict(found)}")
    print(f"load average (1/5/15 min): start {load_start}, end {load_end}")
    document = _document(args, tools, started, [load_start, load_end], records, source.sha256)
    path = RESULTS_DIR / f"single-{started:%Y%m%dT%H%M%SZ}.json"
    report.write_json(path, document)
    print(f"raw runs: {path.relative_to(REPO)}", file=sys.stderr)


def _harness(ws: Workspace) -> Harness[Workspace]:
    return Harness(
        ws=ws,
        log_dir=ws.path("logs"),
        run_length=ws.source.size,
        origin_cpu_seconds=ws.origin.cpu_seconds,
        verify=lambda output, what: _verify(output, ws, what),
    )


def _verify(output: Path, ws: Workspace, what: str) -> None:
    if not output.is_file():
        raise BenchError(f"{what}: no output at {output}")
    size = output.stat().st_size
    if size != ws.source.size:
        raise BenchError(f"{what}: output has {size} bytes, expected {ws.source.size}")
    actual = sha256_of(output)
    if actual != ws.source.sha256:
        raise BenchError(f"{what}: sha256 {actual} differs from the source's {ws.source.sha256}")


def _document(
    args: argparse.Namespace,
    tools: Tools,
    started: datetime,
    loads: list[list[float]],
    records: Sequence[report.RunRecord],
    sha256: str,
) -> dict[str, Any]:
    summaries = report.summarise(records, args.size)
    found = report.ratios(summaries, BASELINES)
    return {
        "benchmark": "single",
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "settings": {
            "size": args.size,
            "rounds": args.rounds,
            "systems": args.systems,
            "concurrent_pieces": args.concurrent_pieces,
        },
        "source": {"size": args.size, "sha256": sha256},
        "machine": machine_info({"dfget": tools.dfget, "curl": tools.curl, "aria2c": tools.aria2c}),
        "load_average": {"start": loads[0], "end": loads[1]},
        "runs": [r.to_json() for r in records],
        "summary": report.summaries_json(summaries),
        "ratios": found,
        "verdict": verdict(found),
    }


def _systems(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SYSTEM_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SYSTEM_NAMES)}; got {text!r}")
    return names


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
