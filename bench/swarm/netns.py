"""The simulated cluster's network: one bridge, a namespace per host, shaped veth links.

Layout (addresses from 198.18.0.0/15, reserved for benchmarks; one /16 on one bridge)::

    root namespace: bridge <tag>br 198.18.0.1/16 (the harness reads counters and metrics)
    origin   198.18.0.2   link B_o (the origin's uplink)
    control  198.18.0.3   link B   (scheduler or tracker)
    seed     198.18.0.4   link B   (damselfly's seed peer, the BitTorrent seed)
    node i   198.18.1.i   link B   (i = 1..N; past 250 the third octet grows)

Each host is a namespace ``<tag>-<role>`` whose ``eth0`` is one end of a veth pair; the other
end (``<tag><short role>``) is a port of the bridge. Both ends get a ``tbf`` qdisc at the link's
rate: ``eth0``'s egress is the host's upload, the bridge end's egress its download. There is no
default route anywhere and no NAT: a namespace can reach the bridge's /16 and nothing else.

Every name starts with the run's tag (``dfsw`` + 4 hex digits), so ``teardown`` can remove
exactly what this run made: processes still inside its namespaces (all started by this run),
the veth pairs, the namespaces, the bridge. ``network()`` always tears down, also on Ctrl-C
and errors; ``stale_names()`` finds what a killed run (SIGKILL) left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.workspace import BenchError

TAG_PREFIX = "dfsw"
BRIDGE_CIDR = "198.18.0.1/16"
PREFIX_LENGTH = 16
TBF_LATENCY = "50ms"
TBF_MIN_BURST = 64 * 1024  # at least one GSO super-packet
TBF_BURST_SECONDS = 0.002
TEARDOWN_WAIT = 5.0  # seconds for the kernel to finish removing namespaces and links
NODES_PER_OCTET = 250


@dataclass(frozen=True)
class Host:
    role: str  # "origin", "control", "seed", "n1" ...
    netns: str
    veth: str  # the bridge end, in the root namespace
    ip: str
    rate_mbit: float

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host's namespace (``ip netns exec`` execs: same pid)."""
        return ["ip", "netns", "exec", self.netns, *command]


@dataclass(frozen=True)
class Layout:
    tag: str
    bridge: str
    origin: Host
    control: Host
    seed: Host
    nodes: tuple[Host, ...]

    @property
    def hosts(self) -> tuple[Host, ...]:
        return (self.origin, self.control, self.seed, *self.nodes)


def new_tag() -> str:
    return TAG_PREFIX + secrets.token_hex(2)


def plan_layout(tag: str, nodes: int, origin_mbit: float, node_mbit: float) -> Layout:
    def host(role: str, short: str, ip: str, rate: float) -> Host:
        return Host(role, f"{tag}-{role}", f"{tag}{short}", ip, rate)

    return Layout(
        tag=tag,
        bridge=f"{tag}br",
        origin=host("origin", "o", "198.18.0.2", origin_mbit),
        control=host("control", "c", "198.18.0.3", node_mbit),
        seed=host("seed", "s", "198.18.0.4", node_mbit),
        nodes=tuple(host(f"n{i}", f"n{i}", node_ip(i), node_mbit) for i in range(1, nodes + 1)),
    )


def node_ip(index: int) -> str:
    """198.18.1.1 for node 1 ... 198.18.1.250, then 198.18.2.1 ..."""
    octet3, octet4 = divmod(index - 1, NODES_PER_OCTET)
    return f"198.18.{1 + octet3}.{1 + octet4}"


@contextlib.contextmanager
def network(layout: Layout) -> Iterator[Layout]:
    """Build the bridge and every host; always tear everything down afterwards."""
    try:
        _ip("link", "add", layout.bridge, "type", "bridge")
        _ip("link", "set", layout.bridge, "up")
        _ip("addr", "add", BRIDGE_CIDR, "dev", layout.bridge)
        for host in layout.hosts:
            _add_host(layout.bridge, host)
        yield layout
    finally:
        left = teardown(layout.tag, [h.netns for h in layout.hosts])
        if left:
            print(f"bench-swarm: WARNING: not removed: {', '.join(left)}", file=sys.stderr)
        else:
            print(f"network {layout.tag}*: removed (ip netns list is clean)", file=sys.stderr)


def _add_host(bridge: str, host: Host) -> None:
    _ip("netns", "add", host.netns)
    _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
    _ip("link", "set", host.veth, "master", bridge, "up")
    _ip("-n", host.netns, "link", "set", "lo", "up")
    _ip("-n", host.netns, "addr", "add", f"{host.ip}/{PREFIX_LENGTH}", "dev", "eth0")
    _ip("-n", host.netns, "link", "set", "eth0", "up")
    _shape(host.veth, host.rate_mbit, netns=None)  # what the host downloads
    _shape("eth0", host.rate_mbit, netns=host.netns)  # what the host uploads


def _shape(device: str, rate_mbit: float, *, netns: str | None) -> None:
    burst = max(TBF_MIN_BURST, int(rate_mbit * 1e6 / 8 * TBF_BURST_SECONDS))
    where = [] if netns is None else ["-n", netns]
    argv = ["tc", *where, "qdisc", "replace", "dev", device, "root", "tbf"]
    argv += ["rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", TBF_LATENCY]
    _run(argv)


def teardown(tag: str, namespaces: Sequence[str]) -> list[str]:
    """Kill what runs in our namespaces, delete links, namespaces and the bridge.

    Returns the names still present afterwards (empty when all is gone)."""
    for netns in namespaces:
        _kill_inside(netns)
    for link in _names(["ip", "-o", "link", "show"], tag):
        _ip_quiet("link", "del", link)
    for netns in _names(["ip", "netns", "list"], tag):
        _ip_quiet("netns", "del", netns)
    deadline = time.monotonic() + TEARDOWN_WAIT
    while stale_names(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stale_names(tag)


def stale_names(tag: str = TAG_PREFIX) -> list[str]:
    """Namespaces and links whose names start with ``tag``."""
    found = _names(["ip", "netns", "list"], tag) + _names(["ip", "-o", "link", "show"], tag)
    return sorted(set(found))


def _kill_inside(netns: str) -> None:
    """SIGKILL every process left in ``netns``: all of them were started by this run."""
    done = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    )
    for pid in (int(word) for word in done.stdout.split() if word.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _names(argv: list[str], tag: str) -> list[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    names = []
    for line in done.stdout.splitlines():
        words = line.split()
        # "ip netns list": "NAME (id: 3)"; "ip -o link show": "7: NAME@if2: <...> ..."
        word = words[1] if argv[1] == "-o" and len(words) > 1 else (words[0] if words else "")
        name = word.rstrip(":").split("@")[0]
        if name.startswith(tag):
            names.append(name)
    return names


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _ip_quiet(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=False)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def interface_counter(device: str, counter: str) -> int:
    """A root-namespace interface's byte or packet counter (``rx_bytes``, ``tx_bytes``...)."""
    return int(Path(f"/sys/class/net/{device}/statistics/{counter}").read_text())
