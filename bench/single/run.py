"""``make bench-single``: dfget (standalone, through a dfdaemon) vs curl, aria2c, huggingface_hub.

Steps: make a file of random bytes on /dev/shm and hash it; serve it with the project's test
origin in a separate process and, when a chosen system needs them, from a test Hugging Face
hub (the same file as a one-file repo) and through a scheduler with one dfdaemon (all started
once, untimed); run every system once per round, rounds interleaved and the order rotated,
each from its cold (or warm) state; time each run and read its CPU and peak RSS from ``wait4``
(plus the daemon's, for the systems through it); check every output's sha256 (untimed); print
a markdown table and write all raw runs plus the summary to
``bench/results/single-<timestamp>.json``.

    .venv/bin/python bench/single/run.py --size 1GiB --rounds 3
    .venv/bin/python bench/single/run.py --systems dfget,aria2c --concurrent-pieces 16
    .venv/bin/python bench/single/run.py --systems dfget-daemon,dfget-daemon-warm,curl
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common import report  # noqa: E402
from bench.common.arguments import (  # noqa: E402
    positive_int,
    run_guarded,
    size_type,
    system_names,
)
from bench.common.machine import load_average, machine_info  # noqa: E402
from bench.common.rounds import Harness, run_rounds  # noqa: E402
from bench.common.workspace import (  # noqa: E402
    BenchError,
    check_room,
    sha256_of,
    shm_directory,
)
from bench.single.daemon import daemon_node  # noqa: E402
from bench.single.hub import single_file_hub  # noqa: E402
from bench.single.report import BASELINES, node_notes, verdict  # noqa: E402
from bench.single.systems import (  # noqa: E402
    HUB_SYSTEMS,
    NODE_SYSTEMS,
    SYSTEM_NAMES,
    Tools,
    build_systems,
)
from bench.single.via_daemon import with_daemon_usage  # noqa: E402
from bench.single.workspace import (  # noqa: E402
    PRIMER_NAME,
    Source,
    Workspace,
    make_primer,
    make_source,
    origin_process,
)
from damselfly.core.units import format_size, parse_size  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
# at most, at any time: source (the hub's repo is a hard link to it) + dfget-warm's store +
# the daemon's store (outputs through it are hard links) + one run's output + one run's store
SHM_COPIES = 5


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded(
        "bench-single", lambda: run(args), on_interrupt="servers stopped, /dev/shm cleaned"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="bench-single", description=summary)
    parser.add_argument(
        "--size", type=size_type("--size"), default=parse_size("1GiB"), help="default 1GiB"
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="default 3")
    parser.add_argument(
        "--systems",
        type=system_names(SYSTEM_NAMES),
        default=None,
        help=f"comma-separated subset of {','.join(SYSTEM_NAMES)}"
        " (default: all whose tools are installed)",
    )
    parser.add_argument(
        "--concurrent-pieces",
        type=positive_int,
        help="passed to every dfget (default: dfget's own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm directory")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    tools = Tools.find()
    args.systems = args.systems or _available(tools)
    systems = build_systems(args.systems, tools, concurrent_pieces=args.concurrent_pieces)
    started, load_start = datetime.now(UTC), load_average()
    with shm_directory(keep=args.keep) as root:
        check_room(root, SHM_COPIES * args.size)
        print(f"writing {format_size(args.size)} of random bytes to {root}", file=sys.stderr)
        source = make_source(root / "origin", args.size)
        with _world(root, source, tools, args.systems) as ws:
            records = run_rounds(_harness(ws), systems, args.rounds)
    records = with_daemon_usage(records, systems)
    load_end = load_average()
    summaries = report.summarise(records, args.size)
    found = report.ratios(summaries, BASELINES)
    print(report.markdown_table(summaries, found, BASELINES))
    for note in node_notes(records, args.size):
        print(f"\n{note}")
    print(f"\n{verdict(found)}")
    print(f"load average (1/5/15 min): start {load_start}, end {load_end}")
    document = _document(args, tools, started, [load_start, load_end], records, source.sha256)
    path = RESULTS_DIR / f"single-{started:%Y%m%dT%H%M%SZ}.json"
    report.write_json(path, document)
    print(f"raw runs: {path.relative_to(REPO)}", file=sys.stderr)


@contextlib.contextmanager
def _world(root: Path, source: Source, tools: Tools, names: Sequence[str]) -> Iterator[Workspace]:
    """The origin, and the hub and the node if a chosen system needs them; all stopped after."""
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(origin_process(source.path.parent, root / "origin.log"))
        hub = node = None
        if HUB_SYSTEMS & set(names):
            logs = root / "hub.log"
            hub = stack.enter_context(
                single_file_hub(source.path, source.size, source.sha256, root, logs)
            )
            print(f"hub {hub.hub.endpoint} (CDN {hub.hub.cdn})", file=sys.stderr)
        if NODE_SYSTEMS & set(names):
            make_primer(source.path.parent)
            primer_url = f"{origin.base_url}/{PRIMER_NAME}"
            node = stack.enter_context(daemon_node(tools.node(), root / "node", primer_url))
            print("scheduler and dfdaemon ready", file=sys.stderr)
        yield Workspace(root, source, origin, hub, node)


def _available(tools: Tools) -> list[str]:
    """Every system whose tools are installed; says on stderr which are left out."""
    chosen = []
    for name in SYSTEM_NAMES:
        missing = tools.missing(name)
        if missing:
            print(f"skipping {name}: not installed: {', '.join(missing)}", file=sys.stderr)
        else:
            chosen.append(name)
    return chosen


def _harness(ws: Workspace) -> Harness[Workspace]:
    return Harness(
        ws=ws,
        log_dir=ws.path("logs"),
        run_length=ws.source.size,
        origin_cpu_seconds=ws.serving_cpu_seconds,
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
        "machine": machine_info(tools.versioned()) | {"huggingface_hub": _hub_version()},
        "load_average": {"start": loads[0], "end": loads[1]},
        "runs": [r.to_json() for r in records],
        "summary": report.summaries_json(summaries),
        "ratios": found,
        "verdict": verdict(found),
    }


def _hub_version() -> str | None:
    try:
        return metadata.version("huggingface_hub")
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
