"""The systems compared, each as: bring to a cold (or warm) state, the command, clean up.

Each is a ``bench.common.rounds.System`` over this benchmark's ``Workspace``: prepared outside
the timed region (its output and, for a cold dfget, its piece store deleted), run under
measurement, verified, cleaned. The systems through a dfdaemon are in
``bench.single.via_daemon``; the two against the test hub are here (``HfSnapshot``,
``DfgetHf``). Adding a system means one class, its name in ``SYSTEM_NAMES`` and
``_NEEDS``, and a line in ``build_systems``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.rounds import Plan, System, child_env
from bench.common.workspace import BenchError, remove
from bench.single.daemon import NodeTools
from bench.single.hub import FILE_NAME
from bench.single.via_daemon import DfgetDaemonCold, DfgetDaemonWarm
from bench.single.workspace import OUTPUT_NAME, Workspace

SYSTEM_NAMES = (
    "dfget",
    "dfget-warm",
    "dfget-daemon",
    "dfget-daemon-warm",
    "curl",
    "aria2c",
    "hf-snapshot",
    "dfget-hf",
)
NODE_SYSTEMS = frozenset({"dfget-daemon", "dfget-daemon-warm"})  # need scheduler + dfdaemon
HUB_SYSTEMS = frozenset({"hf-snapshot", "dfget-hf"})  # need the test hub
_NEEDS: Mapping[str, tuple[str, ...]] = {
    "dfget": ("dfget",),
    "dfget-warm": ("dfget",),
    "dfget-daemon": ("dfget", "dfdaemon", "damselfly"),
    "dfget-daemon-warm": ("dfget", "dfdaemon", "damselfly"),
    "curl": ("curl",),
    "aria2c": ("aria2c",),
    "hf-snapshot": ("huggingface_hub",),
    "dfget-hf": ("dfget",),
}
# snapshot_download in a fresh interpreter: argv = repo id, local dir
SNAPSHOT_SCRIPT = (
    "import sys\n"
    "from huggingface_hub import snapshot_download\n"
    "snapshot_download(sys.argv[1], local_dir=sys.argv[2])\n"
)


@dataclass(frozen=True)
class Tools:
    """Every tool's executable, or "" when missing (``python``: when huggingface_hub is)."""

    dfget: str
    dfdaemon: str
    damselfly: str
    curl: str
    aria2c: str
    python: str  # runs hf-snapshot: this interpreter, which imports huggingface_hub

    @classmethod
    def find(cls) -> Tools:
        """The venv's own damselfly commands (else ``PATH``'s), curl and aria2c from ``PATH``."""
        has_hub = importlib.util.find_spec("huggingface_hub") is not None
        return cls(
            dfget=_venv_or_path("dfget"),
            dfdaemon=_venv_or_path("dfdaemon"),
            damselfly=_venv_or_path("damselfly"),
            curl=shutil.which("curl") or "",
            aria2c=shutil.which("aria2c") or "",
            python=sys.executable if has_hub else "",
        )

    def missing(self, system: str) -> list[str]:
        """The tools ``system`` needs that are not installed."""
        found = self.versioned() | {"damselfly": self.damselfly, "huggingface_hub": self.python}
        return [tool for tool in _NEEDS[system] if not found.get(tool)]

    def require(self, systems: Sequence[str]) -> None:
        missing = sorted({tool for name in systems for tool in self.missing(name)})
        if missing:
            raise BenchError(f"not installed: {', '.join(missing)} (try: make bench-single)")

    def versioned(self) -> dict[str, str]:
        """The installed executables that answer ``--version``, by name (``damselfly`` has
        none: it is dfget's package)."""
        tools = [("dfget", self.dfget), ("dfdaemon", self.dfdaemon)]
        tools += [("curl", self.curl), ("aria2c", self.aria2c)]
        return {name: path for name, path in tools if path}

    def node(self) -> NodeTools:
        return NodeTools(self.dfget, self.dfdaemon, self.damselfly)


def _venv_or_path(command: str) -> str:
    venv = Path(sys.executable).parent / command
    return str(venv) if venv.exists() else shutil.which(command) or ""


class DfgetCold:
    """``dfget`` standalone with an empty piece store: every byte from the origin."""

    name = "dfget"

    def __init__(self, dfget: str, concurrent_pieces: int | None) -> None:
        self._dfget = dfget
        self._concurrent_pieces = concurrent_pieces

    def prepare(self, ws: Workspace) -> Plan:
        output, store = ws.path(self.name, OUTPUT_NAME), ws.path(self.name, "store")
        remove(output, store)
        output.parent.mkdir(parents=True, exist_ok=True)
        return Plan(dfget_argv(self._dfget, ws.url, output, store, self._concurrent_pieces), output)

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name, OUTPUT_NAME), ws.path(self.name, "store"))


class DfgetWarm:
    """``dfget`` again with the store kept from an earlier download: a cache hit.

    The store is filled once, untimed, by a cold dfget run the first time this system runs;
    each timed run then writes a new output from it."""

    name = "dfget-warm"

    def __init__(self, dfget: str, concurrent_pieces: int | None) -> None:
        self._dfget = dfget
        self._concurrent_pieces = concurrent_pieces

    def prepare(self, ws: Workspace) -> Plan:
        output, store = ws.path(self.name, OUTPUT_NAME), ws.path(self.name, "store")
        if not store.exists():
            self._fill_store(ws, store)
        remove(output)
        return Plan(dfget_argv(self._dfget, ws.url, output, store, self._concurrent_pieces), output)

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name, OUTPUT_NAME))

    def _fill_store(self, ws: Workspace, store: Path) -> None:
        priming = ws.path(self.name, "priming.bin")
        priming.parent.mkdir(parents=True, exist_ok=True)
        argv = dfget_argv(self._dfget, ws.url, priming, store, self._concurrent_pieces)
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
        if done.returncode != 0:
            raise BenchError(f"filling the warm store failed: {done.stderr.strip()}")
        remove(priming)


class Curl:
    name = "curl"

    def __init__(self, curl: str) -> None:
        self._curl = curl

    def prepare(self, ws: Workspace) -> Plan:
        output = ws.path(self.name, OUTPUT_NAME)
        remove(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        return Plan([self._curl, "-s", "-o", str(output), ws.url], output)

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name))


class Aria2c:
    """``aria2c -x8 -s8 -k1M``: eight connections, 1 MiB minimum split, no preallocation."""

    name = "aria2c"

    def __init__(self, aria2c: str) -> None:
        self._aria2c = aria2c

    def prepare(self, ws: Workspace) -> Plan:
        directory = ws.path(self.name)
        remove(directory)  # the output and any .aria2 control file
        directory.mkdir(parents=True)
        argv = [self._aria2c, "--no-conf", "-q", "-x8", "-s8", "-k1M", "--file-allocation=none"]
        argv += ["--allow-overwrite=true", "-d", str(directory), "-o", OUTPUT_NAME, ws.url]
        return Plan(argv, directory / OUTPUT_NAME)

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name))


class HfSnapshot:
    """``huggingface_hub.snapshot_download(repo, local_dir=out)`` in a fresh interpreter,
    with a fresh ``HF_HOME``; the whole subprocess is timed, imports included."""

    name = "hf-snapshot"

    def __init__(self, python: str) -> None:
        self._python = python

    def prepare(self, ws: Workspace) -> Plan:
        hub, out, hf_home = ws.require_hub(), ws.path(self.name, "out"), ws.path(self.name, "hf")
        remove(ws.path(self.name))
        hf_home.mkdir(parents=True)
        argv = [self._python, "-c", SNAPSHOT_SCRIPT, hub.repo_id, str(out)]
        return Plan(argv, out / FILE_NAME, hub.client_env(hf_home))

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name))


class DfgetHf:
    """``dfget hf://REPO/FILE -O out --storage-dir STORE --no-progress``: standalone, from the
    same hub as ``hf-snapshot``, with an empty store and a fresh ``HF_HOME``."""

    name = "dfget-hf"

    def __init__(self, dfget: str, concurrent_pieces: int | None) -> None:
        self._dfget = dfget
        self._concurrent_pieces = concurrent_pieces

    def prepare(self, ws: Workspace) -> Plan:
        hub, hf_home = ws.require_hub(), ws.path(self.name, "hf")
        remove(ws.path(self.name))
        hf_home.mkdir(parents=True)
        output, store = ws.path(self.name, OUTPUT_NAME), ws.path(self.name, "store")
        argv = dfget_argv(self._dfget, hub.dfget_url, output, store, self._concurrent_pieces)
        return Plan(argv, output, hub.client_env(hf_home))

    def clean(self, ws: Workspace) -> None:
        remove(ws.path(self.name))


def dfget_argv(
    dfget: str, url: str, output: Path, store: Path, concurrent_pieces: int | None
) -> list[str]:
    argv = [dfget, url, "-O", str(output), "--storage-dir", str(store), "--no-progress"]
    if concurrent_pieces is not None:
        argv += ["--concurrent-pieces", str(concurrent_pieces)]
    return argv


def build_systems(
    names: Sequence[str], tools: Tools, *, concurrent_pieces: int | None
) -> list[System[Workspace]]:
    tools.require(names)
    factories: Mapping[str, System[Workspace]] = {
        "dfget": DfgetCold(tools.dfget, concurrent_pieces),
        "dfget-warm": DfgetWarm(tools.dfget, concurrent_pieces),
        "dfget-daemon": DfgetDaemonCold(concurrent_pieces),
        "dfget-daemon-warm": DfgetDaemonWarm(concurrent_pieces),
        "curl": Curl(tools.curl),
        "aria2c": Aria2c(tools.aria2c),
        "hf-snapshot": HfSnapshot(tools.python),
        "dfget-hf": DfgetHf(tools.dfget, concurrent_pieces),
    }
    return [factories[name] for name in names]
