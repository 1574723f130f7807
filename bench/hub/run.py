"""``make bench-hub``: dfget hf:// -r vs hf download, one model repo from the same local hub.

Steps: write a sharded model repo (random shards, small JSON files) to /dev/shm and hash every
file; serve it with the project's test hub (API + CDN with 302s) in a separate process; run
every system once per round, rounds interleaved and the order rotated, each from a cold state
(fresh output, piece store and HF_HOME); time each run and read its CPU and peak RSS from
``wait4``; check every output file's sha256 (untimed); print a markdown table and write all raw
runs plus the summary to ``bench/results/hub-<timestamp>.json``.

    .venv/bin/python bench/hub/run.py                      # 4 x 256 MiB shards, 3 rounds
    .venv/bin/python bench/hub/run.py --shards 2 --shard-size 64MiB --rounds 1
    .venv/bin/python bench/hub/run.py --systems dfget,hf-download,hf-download-w16
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common import report  # noqa: E402
from bench.common.arguments import positive_int, run_guarded, size_type  # noqa: E402
from bench.common.machine import load_average, machine_info  # noqa: E402
from bench.common.rounds import Harness, run_rounds  # noqa: E402
from bench.common.workspace import BenchError, check_room, sha256_of, shm_directory  # noqa: E402
from bench.hub.repo import ModelRepo, build_repo  # noqa: E402
from bench.hub.report import BASELINES, verdict  # noqa: E402
from bench.hub.systems import SYSTEM_NAMES, Tools, build_systems, is_system_name  # noqa: E402
from bench.hub.workspace import Workspace, hub_process, lfs_threshold  # noqa: E402
from damselfly.core.units import format_size, parse_size  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
REPO_ID = "bench/model"
# source + warm store + one run's output or cache + slack (.incomplete files, metadata)
SHM_COPIES = 4
IGNORED_DIRS = (".cache",)  # huggingface_hub's (and dfget's) local-dir metadata


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded("bench-hub", lambda: run(args), on_interrupt="hub stopped, /dev/shm cleaned")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="bench-hub", description=summary)
    parser.add_argument("--shards", type=positive_int, default=4, help="default 4")
    parser.add_argument(
        "--shard-size",
        type=size_type("--shard-size"),
        default=parse_size("256MiB"),
        help="default 256MiB",
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="default 3")
    parser.add_argument(
        "--systems",
        type=_systems,
        default=list(SYSTEM_NAMES),
        help=f"comma-separated, from {','.join(SYSTEM_NAMES)} and hf-download-w<N>"
        " (hf download --max-workers N); default: all but the -w<N> ones",
    )
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm directory")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    tools = Tools.find()
    systems = build_systems(args.systems, tools)
    started, load_start = datetime.now(UTC), load_average()
    with shm_directory(keep=args.keep) as root:
        check_room(root, SHM_COPIES * args.shards * args.shard_size)
        size = format_size(args.shard_size)
        print(f"writing {args.shards} x {size} shards + small files to {root}", file=sys.stderr)
        repo = build_repo(root / "repo", REPO_ID, shards=args.shards, shard_size=args.shard_size)
        with hub_process(repo, root / "hub.log", shard_size=args.shard_size) as hub:
            print(f"hub {hub.endpoint} (CDN {hub.cdn}), commit {hub.commit}", file=sys.stderr)
            ws = Workspace(root, repo, hub)
            records = run_rounds(_harness(ws), systems, args.rounds)
    loads = [load_start, load_average()]
    document = _document(args, tools, started, loads, records, ws)
    print(report.markdown_table(_summaries(records, repo), document["ratios"], BASELINES))
    print(f"\n{document['verdict']}")
    print(f"load average (1/5/15 min): start {loads[0]}, end {loads[1]}")
    path = RESULTS_DIR / f"hub-{started:%Y%m%dT%H%M%SZ}.json"
    report.write_json(path, document)
    print(f"raw runs: {path.relative_to(REPO)}", file=sys.stderr)


def _harness(ws: Workspace) -> Harness[Workspace]:
    return Harness(
        ws=ws,
        log_dir=ws.path("logs"),
        run_length=ws.repo.total_size,
        origin_cpu_seconds=ws.hub.cpu_seconds,
        verify=lambda output, what: verify_tree(output, ws.repo, what),
    )


def verify_tree(output: Path, repo: ModelRepo, what: str) -> None:
    """Exactly the repo's files below ``output`` (symlinks followed; ``.cache`` ignored),
    each with the source's size and sha256."""
    found = set(_files_below(output))
    expected = {f.path for f in repo.files}
    if found != expected:
        missing, extra = sorted(expected - found), sorted(found - expected)
        raise BenchError(f"{what}: in {output}: missing {missing}, unexpected {extra}")
    for file in repo.files:
        path = output / file.path
        if path.stat().st_size != file.size:
            raise BenchError(
                f"{what}: {file.path} has {path.stat().st_size} bytes, not {file.size}"
            )
        if sha256_of(path) != file.sha256:
            raise BenchError(f"{what}: {file.path}: sha256 differs from the source's")


def _files_below(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        found += [(Path(dirpath) / name).relative_to(root).as_posix() for name in filenames]
    return found


def _summaries(records: Sequence[report.RunRecord], repo: ModelRepo) -> list[report.SystemSummary]:
    return report.summarise(records, repo.total_size)


def _document(
    args: argparse.Namespace,
    tools: Tools,
    started: datetime,
    loads: list[list[float]],
    records: Sequence[report.RunRecord],
    ws: Workspace,
) -> dict[str, Any]:
    summaries = _summaries(records, ws.repo)
    found = report.ratios(summaries, BASELINES)
    return {
        "benchmark": "hub",
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "settings": {
            "shards": args.shards,
            "shard_size": args.shard_size,
            "rounds": args.rounds,
            "systems": args.systems,
            "lfs_threshold": lfs_threshold(args.shard_size),
        },
        "repo": {
            "repo_id": ws.repo.repo_id,
            "commit": ws.hub.commit,
            "total_size": ws.repo.total_size,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in ws.repo.files],
        },
        "machine": machine_info({"dfget": tools.dfget, "hf": tools.hf})
        | {"huggingface_hub": metadata.version("huggingface_hub")},
        "load_average": {"start": loads[0], "end": loads[1]},
        "runs": [r.to_json() for r in records],
        "summary": report.summaries_json(summaries),
        "ratios": found,
        "verdict": verdict(found),
    }


def _systems(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if not is_system_name(n)]
    if unknown or not names:
        choices = f"{','.join(SYSTEM_NAMES)},hf-download-w<N>"
        raise argparse.ArgumentTypeError(f"choose from {choices}; got {text!r}")
    return names


if __name__ == "__main__":
    sys.exit(main())
