"""What a distribution system plugs into the swarm harness, and what one run hands it.

A ``SwarmSystem`` deploys itself (untimed: daemons, trackers, seeds that must be up before
the start), then returns one ``NodeJob`` per node: the command that node runs when the gate
opens, where its copy will be, and how we learn it is complete (the command exits, or a hook
writes a timestamp file). Services that must start at the same moment as the nodes (the cold
BitTorrent seed, which reads the origin as soon as it runs) are ``GatedService``s.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.common.workspace import BenchError
from bench.swarm.netns import Host, Layout
from bench.swarm.origin import Origin
from bench.swarm.procs import Proc, Processes

# Roles of processes, for the CPU breakdown and the peak RSS figures.
NODE_DAEMON = "node-daemon"  # one long-running process per node (dfdaemon, aria2c)
NODE_CLIENT = "node-client"  # the per-node command that exits when done (dfget, curl)
SEED = "seed"
CONTROL = "control"  # scheduler, tracker


@dataclass(frozen=True)
class Source:
    path: Path  # inside the origin's root
    size: int
    sha256: str


@dataclass(frozen=True)
class Tools:
    """Executables, resolved once; empty when not installed."""

    dfget: str
    dfdaemon: str
    damselfly: str
    curl: str
    aria2c: str
    opentracker: str
    mktorrent: str

    @classmethod
    def find(cls) -> Tools:
        venv = Path(sys.executable).parent
        names = ("dfget", "dfdaemon", "damselfly", "curl", "aria2c", "opentracker", "mktorrent")
        return cls(**{name: _which(venv, name) for name in names})

    def require(self, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            raise BenchError(f"not installed: {', '.join(missing)}")

    def to_json(self) -> dict[str, str]:
        return dict(self.__dict__)


def _which(venv: Path, name: str) -> str:
    local = venv / name
    return str(local) if local.exists() else shutil.which(name) or ""


@dataclass(frozen=True)
class Context:
    layout: Layout
    origin: Origin
    source: Source
    tools: Tools
    env: Mapping[str, str]  # for every child: no proxies, no DFGET_* overrides
    work_dir: Path  # this invocation's files that outlive a run (torrents)
    run_dir: Path  # this run's files: stores, outputs; removed after the run
    log_dir: Path  # this run's logs

    @property
    def url(self) -> str:
        return self.origin.url(self.source.path.name)

    def node_dir(self, host: Host) -> Path:
        path = self.run_dir / host.role
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


@dataclass(frozen=True)
class NodeJob:
    host: Host
    argv: list[str]
    output: Path  # the node's copy, checked against the source's sha256
    done_file: Path | None = None  # None: done when the command exits 0
    is_daemon: bool = False  # the command keeps running as the node's daemon (aria2c)


@dataclass(frozen=True)
class GatedService:
    role: str
    host: Host
    argv: list[str]


@dataclass
class Deployment:
    services: list[tuple[str, Proc]]  # (role, process), running before the gate opens
    jobs: list[NodeJob]
    gated: list[GatedService] = field(default_factory=list)


class SwarmSystem(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def source_on_seed(self) -> bool:
        """True when the file starts on the seed (warm), not the origin: the fluid bound
        then uses the seed's uplink (B) where it would use the origin's (B_o)."""
        ...

    def deploy(self, ctx: Context, procs: Processes) -> Deployment:
        """Start what must run before the gate opens (untimed); return the node jobs."""
        ...

    def collect(self, ctx: Context, deployment: Deployment) -> dict[str, Any]:
        """Extra figures read after the last node finished, before anything stops.

        Raises ``BenchError`` when they show the run did not measure this system."""
        ...
