"""Measure what each link class really delivers (goodput), before each round.

``tbf`` shapes the IP packets, and TCP/IP headers, ACK timing and this machine's load take
their share: goodput is ~0.955 x the rate on an idle machine. The fluid bound must use what a
transfer can get, so each round starts with short ``curl`` transfers, run inside the
namespaces like the real ones:

* origin class: node 1 fetches ``CALIBRATION_ORIGIN_LENGTH`` bytes from the origin (limited by
  the origin's uplink B_o, node 1's downlink being faster);
* node class: node 1 fetches ``CALIBRATION_NODE_LENGTH`` bytes from a test origin started
  for the moment in the seed namespace (the seed's uplink and node 1's downlink, both B).

Each is measured ``SAMPLES`` times; the best counts (load can only slow a transfer down).
Goodput = bytes / (total time - time to the request being sent), from curl's ``-w``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common.workspace import BenchError, write_random
from bench.swarm.netns import Host, Layout
from bench.swarm.origin import Origin
from bench.swarm.procs import Processes, wait_ready

CALIBRATION_ORIGIN_LENGTH = 8 * 1024 * 1024
CALIBRATION_NODE_LENGTH = 32 * 1024 * 1024
CALIBRATION_NAME = "calibration.bin"
SAMPLES = 2
NODE_SERVER_PORT = 8081
CURL_TIMEOUT = 120
_SERVING = re.compile(r"serving .* at http://")


@dataclass(frozen=True)
class Calibration:
    origin_rate: float  # bytes per second, B_o as measured
    node_rate: float  # B as measured
    origin_samples: list[float]
    node_samples: list[float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prepare_files(origin_root: Path, node_root: Path) -> None:
    """The calibration files (untimed, once): one the origin serves, one for the node test."""
    write_random(origin_root / CALIBRATION_NAME, CALIBRATION_ORIGIN_LENGTH)
    write_random(node_root / CALIBRATION_NAME, CALIBRATION_NODE_LENGTH)


def calibrate(
    layout: Layout, origin: Origin, node_root: Path, env: Mapping[str, str], log_dir: Path
) -> Calibration:
    client = layout.nodes[0]
    origin_url = origin.url(CALIBRATION_NAME)
    origin_samples = [_goodput(client, origin_url, env) for _ in range(SAMPLES)]
    node_samples = _node_samples(layout.seed, client, node_root, env, log_dir)
    return Calibration(max(origin_samples), max(node_samples), origin_samples, node_samples)


def _node_samples(
    server: Host, client: Host, root: Path, env: Mapping[str, str], log_dir: Path
) -> list[float]:
    procs = Processes(env)
    argv = [sys.executable, "-m", "damselfly.testing.origin", "--root", str(root)]
    argv += ["--host", server.ip, "--port", str(NODE_SERVER_PORT)]
    try:
        proc = procs.start("calibration server", server, argv, log_dir / "calibration.log")
        wait_ready([proc], _SERVING, timeout=30)
        url = f"http://{server.ip}:{NODE_SERVER_PORT}/{CALIBRATION_NAME}"
        return [_goodput(client, url, env) for _ in range(SAMPLES)]
    finally:
        procs.stop_all()


def _goodput(client: Host, url: str, env: Mapping[str, str]) -> float:
    fmt = "%{http_code} %{size_download} %{time_pretransfer} %{time_total}"
    argv = client.argv(["curl", "-s", "-o", "/dev/null", "-w", fmt, url])
    done = subprocess.run(
        argv, capture_output=True, text=True, env=dict(env), timeout=CURL_TIMEOUT, check=False
    )
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 4 or fields[0] != "200":
        raise BenchError(f"calibration transfer {url} failed: {done.stdout} {done.stderr}")
    size, pretransfer, total = int(fields[1]), float(fields[2]), float(fields[3])
    return size / (total - pretransfer)
