"""The systems compared, each as: bring to a cold (or warm) state, the command, clean up.

Each is a ``bench.common.rounds.System`` over this benchmark's ``Workspace``: prepared outside
the timed region (its output and, for a cold dfget, its piece store deleted), run under
measurement, verified, cleaned. Adding a system (issue 5: dfget through a daemon) means adding
one class here and its name to ``build_systems``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.rounds import Plan, System, child_env
from bench.common.workspace import BenchError, remove
from bench.single.workspace import Workspace

OUTPUT_NAME = "out.bin"
SYSTEM_NAMES = ("dfget", "dfget-warm", "curl", "aria2c")


@dataclass(frozen=True)
class Tools:
    dfget: str
    curl: str
    aria2c: str

    @classmethod
    def find(cls, names: Sequence[str]) -> Tools:
        """Resolve the executables the chosen systems need; dfget is the venv's own."""
        venv_dfget = Path(sys.executable).parent / "dfget"
        dfget = str(venv_dfget) if venv_dfget.exists() else shutil.which("dfget")
        found = {"dfget": dfget, "curl": shutil.which("curl"), "aria2c": shutil.which("aria2c")}
        needed = {name.removesuffix("-warm") for name in names}
        missing = sorted(tool for tool in needed if not found.get(tool))
        if missing:
            raise BenchError(f"not installed: {', '.join(missing)} (try: make bench-single)")
        return cls(**{tool: path or "" for tool, path in found.items()})


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
    factories: Mapping[str, System[Workspace]] = {
        "dfget": DfgetCold(tools.dfget, concurrent_pieces),
        "dfget-warm": DfgetWarm(tools.dfget, concurrent_pieces),
        "curl": Curl(tools.curl),
        "aria2c": Aria2c(tools.aria2c),
    }
    return [factories[name] for name in names]
