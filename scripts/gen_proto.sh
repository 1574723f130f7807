#!/usr/bin/env bash
# Regenerate the committed protobuf / gRPC code from src/damselfly/protocol/*.proto.
#
#   scripts/gen_proto.sh            # writes next to the .proto files (commit the result)
#   scripts/gen_proto.sh OUT_ROOT   # writes under OUT_ROOT/damselfly/protocol/ instead
#
# Needs grpcio-tools (a dev dependency). PYTHON overrides the interpreter (default: .venv).
# tests/unit/test_proto_up_to_date.py runs this into a temp dir and compares.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="${1:-$root/src}"

mkdir -p "$out/damselfly/protocol"
cd "$root/src"
"$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    damselfly/protocol/scheduler.proto
