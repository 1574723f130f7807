"""``damselfly demo`` (the README's main job) end to end, small."""

import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_a_p2p_cluster_and_reads_the_origin_once():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "damselfly.cli.damselfly",
            "demo",
            "--peers",
            "2",
            "--shard-size",
            "8MiB",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every copy matches the hub's checksums: yes" in done.stdout
    ratio = float(re.search(r"\((\d+\.\d+)x the repo size", done.stdout).group(1))
    assert ratio <= 1.02
    assert done.stdout.count(" match\n") == 2


def test_demo_refuses_bad_peer_count():
    done = subprocess.run(
        [sys.executable, "-m", "damselfly.cli.damselfly", "demo", "--peers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "damselfly: error: --peers 0: must be between 1 and 64"
