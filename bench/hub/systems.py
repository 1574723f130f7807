"""The systems compared: dfget hf:// -r (cold, warm, into the HF cache) and hf download.

Each is a ``bench.common.rounds.System`` over this benchmark's ``Workspace``. A run's files
live in ``<root>/runs/<system>/``: ``out`` (the ``--local-dir`` / ``-O`` directory),
``store`` (dfget's piece store), ``hf-home`` (``HF_HOME``: token, config, cache). All three
are deleted before a cold run, so every byte comes from the hub; ``dfget-warm`` keeps its
store (filled once, untimed) and gets a new output each time.

``hf download`` is the real huggingface_hub CLI: one worker thread per file (``--max-workers``,
default 8), one streamed GET per file, written to ``.incomplete`` then renamed. The
``hf-download-w<N>`` systems pass ``--max-workers N``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.rounds import Plan, System
from bench.common.workspace import BenchError, remove
from bench.hub.workspace import Workspace

SYSTEM_NAMES = ("dfget", "dfget-warm", "dfget-hf-cache", "hf-download", "hf-download-cache")
_WORKERS_NAME = re.compile(r"^hf-download-w([1-9]\d*)$")


@dataclass(frozen=True)
class Tools:
    dfget: str
    hf: str

    @classmethod
    def find(cls) -> Tools:
        """The venv's own console scripts: the dfget under test and huggingface_hub's CLI."""
        bin_dir = Path(sys.executable).parent
        dfget, hf = bin_dir / "dfget", bin_dir / "hf"
        missing = [str(p) for p in (dfget, hf) if not p.exists()]
        if missing:
            raise BenchError(f"not installed: {', '.join(missing)} (try: make setup)")
        return cls(str(dfget), str(hf))


def is_system_name(name: str) -> bool:
    return name in SYSTEM_NAMES or _WORKERS_NAME.match(name) is not None


class _Run:
    """The three per-run directories of a system."""

    name: str

    def out(self, ws: Workspace) -> Path:
        return ws.path("runs", self.name, "out")

    def store(self, ws: Workspace) -> Path:
        return ws.path("runs", self.name, "store")

    def hf_home(self, ws: Workspace) -> Path:
        return ws.path("runs", self.name, "hf-home")

    def _fresh(self, ws: Workspace) -> None:
        remove(ws.path("runs", self.name))
        self.hf_home(ws).mkdir(parents=True)


class DfgetCold(_Run):
    """``dfget hf://REPO -r -O out --storage-dir store --no-progress``, all three empty."""

    name = "dfget"

    def __init__(self, dfget: str) -> None:
        self._dfget = dfget

    def prepare(self, ws: Workspace) -> Plan:
        self._fresh(ws)
        argv = dfget_argv(self._dfget, ws, ["-O", str(self.out(ws))], self.store(ws))
        return Plan(argv, self.out(ws), ws.client_env(self.hf_home(ws)))

    def clean(self, ws: Workspace) -> None:
        remove(ws.path("runs", self.name))


class DfgetWarm(_Run):
    """The same command with the piece store of an earlier download and a new output."""

    name = "dfget-warm"

    def __init__(self, dfget: str) -> None:
        self._dfget = dfget

    def prepare(self, ws: Workspace) -> Plan:
        if not self.store(ws).exists():
            self._fill_store(ws)
        remove(self.out(ws), self.hf_home(ws))
        self.hf_home(ws).mkdir(parents=True)
        argv = dfget_argv(self._dfget, ws, ["-O", str(self.out(ws))], self.store(ws))
        return Plan(argv, self.out(ws), ws.client_env(self.hf_home(ws)))

    def clean(self, ws: Workspace) -> None:
        remove(self.out(ws), self.hf_home(ws))

    def _fill_store(self, ws: Workspace) -> None:
        self._fresh(ws)
        argv = dfget_argv(self._dfget, ws, ["-O", str(self.out(ws))], self.store(ws))
        env = ws.client_env(self.hf_home(ws))
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise BenchError(f"filling the warm store failed: {done.stderr.strip()}")


class DfgetHfCache(_Run):
    """``dfget hf://REPO -r --hf-cache``: blobs + snapshot symlinks under a fresh HF_HOME."""

    name = "dfget-hf-cache"

    def __init__(self, dfget: str) -> None:
        self._dfget = dfget

    def prepare(self, ws: Workspace) -> Plan:
        self._fresh(ws)
        argv = dfget_argv(self._dfget, ws, ["--hf-cache"], self.store(ws))
        hf_home = self.hf_home(ws)
        return Plan(argv, ws.snapshot(hf_home), ws.client_env(hf_home))

    def clean(self, ws: Workspace) -> None:
        remove(ws.path("runs", self.name))


class HfDownload(_Run):
    """``hf download REPO --local-dir out`` (or into the cache), fresh ``HF_HOME``."""

    def __init__(self, hf: str, *, cache: bool, max_workers: int | None) -> None:
        self._hf, self._cache, self._max_workers = hf, cache, max_workers
        self.name = "hf-download" + ("-cache" if cache else "")
        if max_workers is not None:
            self.name += f"-w{max_workers}"

    def prepare(self, ws: Workspace) -> Plan:
        self._fresh(ws)
        argv = [self._hf, "download", ws.repo.repo_id]
        if self._max_workers is not None:
            argv += ["--max-workers", str(self._max_workers)]
        hf_home = self.hf_home(ws)
        if self._cache:
            return Plan(argv, ws.snapshot(hf_home), ws.client_env(hf_home))
        argv += ["--local-dir", str(self.out(ws))]
        return Plan(argv, self.out(ws), ws.client_env(hf_home))

    def clean(self, ws: Workspace) -> None:
        remove(ws.path("runs", self.name))


def dfget_argv(dfget: str, ws: Workspace, where: list[str], store: Path) -> list[str]:
    url = f"hf://{ws.repo.repo_id}"
    return [dfget, url, "-r", *where, "--storage-dir", str(store), "--no-progress"]


def build_systems(names: Sequence[str], tools: Tools) -> list[System[Workspace]]:
    return [_system(name, tools) for name in names]


def _system(name: str, tools: Tools) -> System[Workspace]:
    if name == "dfget":
        return DfgetCold(tools.dfget)
    if name == "dfget-warm":
        return DfgetWarm(tools.dfget)
    if name == "dfget-hf-cache":
        return DfgetHfCache(tools.dfget)
    if name in ("hf-download", "hf-download-cache"):
        return HfDownload(tools.hf, cache=name.endswith("-cache"), max_workers=None)
    workers = _WORKERS_NAME.match(name)
    if workers is None:
        raise BenchError(f"unknown system {name!r}")
    return HfDownload(tools.hf, cache=False, max_workers=int(workers.group(1)))
