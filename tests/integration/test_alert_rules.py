"""The alert rules and the dashboard shipped in deploy/: ``promtool check rules`` and the
``promtool test rules`` unit tests (Debian's prometheus package), the dashboard's shape, and
the metric-name extraction the live-metrics test relies on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from damselfly.testing.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "damselfly.json"
PROMTOOL = shutil.which("promtool")
# CI installs it (scripts/setup.sh), so there a missing promtool fails instead of skipping.
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None and os.environ.get("CI") != "true",
    reason="promtool missing: scripts/setup.sh installs Debian's prometheus (needs root)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent
    )


@requires_promtool
def test_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


@requires_promtool
def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@requires_promtool
def test_a_broken_expectation_fails_promtool(tmp_path):
    tests = (RULES.parent / "rules.test.yml").read_text().replace("90.91%", "12.34%")
    (tmp_path / "rules.yml").write_text(RULES.read_text())
    (tmp_path / "rules.test.yml").write_text(tests)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "rules.test.yml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "DamselflyOriginTrafficHigh" in result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_a_runbook_in_operations_doc():
    operations = (ROOT / "docs" / "operations.md").read_text().lower()
    alerts = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    names = [r["alert"] for r in alerts if "alert" in r]
    assert names == [
        "DamselflyOriginTrafficHigh",
        "DamselflyDownloadFailures",
        "DamselflyTasksStalled",
        "DamselflyNoSeedPeer",
        "DamselflySchedulerDown",
        "DamselflyManagerDown",
        "DamselflyDiskNearlyFull",
        "DamselflyInjectionFailures",
    ]
    for rule in (r for r in alerts if "alert" in r):
        assert rule["labels"]["severity"] in {"warning", "critical"}
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f"### {rule['alert'].lower()}" in operations, anchor


def test_dashboard_has_the_panels_operators_asked_for():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in (
        "Cold start",
        "Origin bytes",
        "Peer bytes",
        "Cache hit rate",
        "Failed downloads",
        "Targets up per role",
        "Uploads in progress and refused",
    ):
        assert any(t.startswith(wanted) for t in titles), wanted
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum(rate(damselfly_daemon_peer_bytes_total[5m]))", {"damselfly_daemon_peer_bytes_total"}),
        (
            'histogram_quantile(0.9, sum by (le) (rate(a_bucket{le!="1"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        ("up{job=~'a|b'} == 0 and on (instance) b > 1e3", {"up", "b"}),
        ("sum without (pod) (x) / ignoring (le) group_left y offset 5m", {"x", "y"}),
        ("damselfly:origin_ratio:rate30m > 0.5", {"damselfly:origin_ratio:rate30m"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr, names):
    assert metric_names(expr) == names
