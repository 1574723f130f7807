"""Cluster sizes (tiers) and the fluid lower bound a distribution can reach on them.

A tier fixes the node count ``N``, the file size ``S``, the origin's uplink ``B_o`` and every
node's link ``B`` (up and down). No system can deliver ``S`` to ``N`` nodes faster than the
Kumar & Ross fluid bound ``max(S / B_o, S / B, N * S / (B_o + N * B))``: the origin must send
every byte at least once, each node must receive every byte, and all uploads together must
carry ``N * S`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
MBIT = 1_000_000 / 8  # bytes per second in one Mbit/s


@dataclass(frozen=True)
class Tier:
    name: str
    nodes: int
    size: int  # bytes
    origin_mbit: float  # B_o, nominal (the tbf rate)
    node_mbit: float  # B, nominal, each way

    @property
    def origin_rate(self) -> float:
        """Nominal B_o in bytes per second."""
        return self.origin_mbit * MBIT

    @property
    def node_rate(self) -> float:
        """Nominal B in bytes per second."""
        return self.node_mbit * MBIT

    def with_overrides(self, nodes: int | None, size: int | None) -> Tier:
        return Tier(
            self.name,
            self.nodes if nodes is None else nodes,
            self.size if size is None else size,
            self.origin_mbit,
            self.node_mbit,
        )


TIERS = {
    "smoke": Tier("smoke", 4, 64 * MIB, 50, 200),
    "standard": Tier("standard", 16, 512 * MIB, 100, 500),
    "scale": Tier("scale", 50, 512 * MIB, 50, 500),
}


def fluid_bound(size: int, nodes: int, origin_rate: float, node_rate: float) -> float:
    """Seconds: ``max(S / B_o, S / B, N * S / (B_o + N * B))``; rates in bytes per second."""
    return max(
        size / origin_rate,
        size / node_rate,
        nodes * size / (origin_rate + nodes * node_rate),
    )


def direct_time(size: int, nodes: int, origin_rate: float) -> float:
    """Seconds for every node to pull the whole file from the origin: ``N * S / B_o``."""
    return nodes * size / origin_rate
