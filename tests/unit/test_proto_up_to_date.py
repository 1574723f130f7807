"""The committed protobuf / gRPC code is exactly what scripts/gen_proto.sh generates from
scheduler.proto today, so the .proto file and the code cannot drift apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "src" / "damselfly" / "protocol"
GENERATED = ["scheduler_pb2.py", "scheduler_pb2.pyi", "scheduler_pb2_grpc.py"]


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) is not installed")
    script = ROOT / "scripts" / "gen_proto.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    stale = [
        name
        for name in GENERATED
        if (tmp_path / "damselfly" / "protocol" / name).read_bytes()
        != (PROTOCOL / name).read_bytes()
    ]
    assert stale == [], f"stale generated code {stale}: run scripts/gen_proto.sh and commit"
