"""``damselfly report``: figures from two recorded metric sets of a test cluster (direct
downloads vs the mesh, tests/data/report/README.md), from a Prometheus HTTP API served on
loopback by the test, the PNG chart, and one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from damselfly.cli import report
from damselfly.cli.report_figures import change, figures, quantile
from damselfly.cli.report_sources import parse_window, totals_from_files, totals_from_prometheus

DATA = Path(__file__).resolve().parents[1] / "data" / "report"
MiB = 1024 * 1024


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "damselfly.cli.damselfly", "report", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {1.0: 0, 2.0: 10, math.inf: 10}, 1.5),
        (0.5, {1.0: 10, 2.0: 10, math.inf: 10}, 0.5),
        (0.95, {1.0: 5, 2.0: 5, math.inf: 10}, 2.0),  # in +Inf: the highest finite bound
        (0.5, {1.0: 0, math.inf: 0}, None),
        (0.5, {}, None),
    ],
)
def test_quantile_interpolates_like_histogram_quantile(q, buckets, expected):
    assert quantile(q, buckets) == expected


def test_recorded_cluster_shows_the_origin_bytes_drop_through_the_mesh():
    direct = figures(totals_from_files([DATA / "direct"]))
    mesh = figures(totals_from_files([DATA / "mesh"]))
    assert direct.origin_bytes == 24 * MiB  # three tasks, nothing shared
    assert mesh.origin_bytes == 8 * MiB  # one task, the seed read it once
    assert direct.peer_bytes == mesh.peer_bytes == 24 * MiB
    assert direct.cache_hit_ratio == mesh.cache_hit_ratio == 0.25  # 1 hit in 4 downloads
    assert direct.failed_downloads == mesh.failed_downloads == 0
    assert mesh.cold_start_p50_seconds is not None
    assert change("origin_bytes", direct.origin_bytes, mesh.origin_bytes) == "-66.7%"


@pytest.mark.parametrize(
    ("name", "before", "after", "text"),
    [
        ("cache_hit_ratio", 0.1, 0.45, "+35.0 pp"),
        ("failed_downloads", 3, 0, "-3"),
        ("peer_bytes", 0, 5, "n/a (was 0)"),
        ("cold_start_p95_seconds", None, 1.0, "n/a"),
    ],
)
def test_change_is_shown_in_the_unit_that_reads_best(name, before, after, text):
    assert change(name, before, after) == text


def test_the_command_prints_the_table_and_writes_the_png(tmp_path):
    result = run_cli(
        "--before-file", str(DATA / "direct"), "--after-file", str(DATA / "mesh"),
        "--png", "chart.png", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["figure", "before", "after", "change"]
    assert lines[3].split() == ["origin", "bytes", "24.0", "MiB", "8.0", "MiB", "-66.7%"]
    assert lines[5].split() == ["cache", "hit", "rate", "25.0%", "25.0%", "+0.0", "pp"]
    assert result.stderr.strip() == "PNG written: chart.png"
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_png_is_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "chart.png"
    argv = ["--before-file", str(DATA / "direct"), "--after-file", str(DATA / "mesh")]
    assert report.main([*argv, "--png", str(png)]) == 0
    captured = capsys.readouterr()
    assert "origin bytes" in captured.out
    assert (
        captured.err.strip() == "PNG skipped: matplotlib is not installed (pip install matplotlib)"
    )
    assert not png.exists()


async def test_figures_from_the_prometheus_http_api():
    queries: list[tuple[str, str]] = []

    async def query(request: web.Request) -> web.Response:
        text = request.query["query"]
        queries.append((text, request.query["time"]))
        if text.startswith("sum by (le)"):
            result = [
                {"metric": {"le": le}, "value": [0, count]}
                for le, count in (("1.0", "2"), ("2.5", "8"), ("+Inf", "10"))
            ]
        else:
            value = "1048576" if "source_bytes" in text else "4"
            result = [{"metric": {}, "value": [0, value]}]
        data = {"resultType": "vector", "result": result}
        return web.json_response({"status": "success", "data": data})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        window = parse_window("2026-11-01T00:00:00Z..2026-11-02T00:00:00Z", "--before")
        totals = await totals_from_prometheus(f"http://127.0.0.1:{port}", window)
    finally:
        await runner.cleanup()
    assert ("sum(increase(damselfly_daemon_source_bytes_total[86400s]))", "1793577600.000") in (
        queries
    )
    assert totals.buckets == {1.0: 2.0, 2.5: 8.0, math.inf: 10.0}
    result = figures(totals)
    assert result.origin_bytes == MiB
    assert result.cold_start_p50_seconds == pytest.approx(1.75)
    assert result.cache_hit_ratio == pytest.approx(4 / 12)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--before-file", "missing.prom", "--after-file", "x.prom"], 1, "cannot read"),
        (["--prometheus", "http://127.0.0.1:9", "--before", "1..2"], 2, "give --prometheus"),
        (["--prometheus", "http://x", "--before", "2..1", "--after", "3..4"], 2, "END must be"),
        (["--prometheus", "http://x", "--before", "2026-11-01T00:00..1", "--after", "3..4"], 2,
         "no time zone"),
        (["--prometheus", "http://127.0.0.1:9", "--before", "1..2", "--after", "3..4"], 1,
         "Prometheus at http://127.0.0.1:9"),
    ],
)  # fmt: skip
def test_errors_are_one_line(tmp_path, args, code, message):
    result = run_cli(*args, "--no-png", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("damselfly report: error: ")
    assert message in lines[0]


def test_a_file_that_is_not_prometheus_text_is_an_error(tmp_path):
    bad = tmp_path / "bad.prom"
    bad.write_text("this is { not metrics\n")
    with pytest.raises(Exception, match="not Prometheus text format"):
        totals_from_files([bad])
    seed = totals_from_files([DATA / "mesh" / "seed-0.prom"])
    assert seed.counters == {
        "damselfly_daemon_source_bytes_total": 8 * MiB,
        "damselfly_daemon_peer_bytes_total": 0.0,
        "damselfly_daemon_cache_hits_total": 0.0,
        "damselfly_daemon_task_failures_total": 0.0,
        "damselfly_daemon_task_duration_seconds_count": 0.0,
    }
    assert seed.buckets[math.inf] == 0.0
