"""A P2P cluster whose every process has a forward proxy in its environment (``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY`` and the lower-case names gRPC reads): the origin is reached
through the proxy, the scheduler and the peers (piece traffic) never."""

from __future__ import annotations

import os

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.forward_proxy import ForwardProxy

MiB = 1024 * 1024


async def test_peers_and_scheduler_never_go_through_the_forward_proxy(tmp_path):
    data = os.urandom(6 * MiB)
    async with ForwardProxy() as proxy:
        names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
        env = {n: proxy.url for name in names for n in (name, name.lower())}
        env["NO_PROXY"] = env["no_proxy"] = ""
        cluster = LocalCluster(tmp_path / "c", peers=2, origin_files={"/f.bin": data}, env=env)
        async with cluster:
            url = cluster.origin.url("/f.bin")
            for index in (0, 1):
                out = tmp_path / f"out{index}.bin"
                done = await cluster.dfget(index, url, out, "--piece-length", "1MiB")
                assert done.code == 0, f"{done.stderr}\n{cluster.logs()}"
                assert out.read_bytes() == data
            origin_served = cluster.origin.bytes_served_for("/f.bin")
    origin = url.split("/")[2]
    assert proxy.forwarded, "the origin was reached through the proxy"
    assert {u.split("/")[2] for u in proxy.forwarded} == {origin}
    assert proxy.connects == []  # no tunnel: not to the scheduler (gRPC), not to a peer
    assert origin_served == len(data)  # once: the second peer got it from the mesh
