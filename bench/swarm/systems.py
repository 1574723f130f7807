"""The systems the swarm benchmark compares, by name."""

from __future__ import annotations

from collections.abc import Sequence

from bench.swarm.bittorrent import BitTorrent, Torrents
from bench.swarm.direct import Direct
from bench.swarm.mesh import Damselfly
from bench.swarm.system import SwarmSystem, Tools

SYSTEM_NAMES = ("damselfly", "damselfly-mtls", "damselfly-copy", "direct", "bt-cold", "bt-warm")
DEFAULT_SYSTEMS = ("damselfly", "direct", "bt-cold", "bt-warm")  # mTLS, copies on request


def build_systems(
    names: Sequence[str], tools: Tools, *, damselfly_log_level: str = "warn"
) -> list[SwarmSystem]:
    """The chosen systems; raises ``BenchError`` when a tool one of them needs is missing."""
    torrents = Torrents()  # shared: cold and warm use the same torrent
    factories: dict[str, SwarmSystem] = {
        "damselfly": Damselfly(damselfly_log_level),
        "damselfly-mtls": Damselfly(damselfly_log_level, tls=True),
        "damselfly-copy": Damselfly(damselfly_log_level, copy=True),
        "direct": Direct(),
        "bt-cold": BitTorrent(torrents, warm=False),
        "bt-warm": BitTorrent(torrents, warm=True),
    }
    needs = {
        "damselfly": ("dfget", "dfdaemon", "damselfly"),
        "damselfly-mtls": ("dfget", "dfdaemon", "damselfly"),
        "damselfly-copy": ("dfget", "dfdaemon", "damselfly"),
        "direct": ("curl",),
        "bt-cold": ("aria2c", "opentracker", "mktorrent"),
        "bt-warm": ("aria2c", "opentracker", "mktorrent"),
    }
    for name in names:
        tools.require("curl", *needs[name])  # curl: the calibration transfers
    return [factories[name] for name in names]
