"""The token grep of issue 11 over captured traffic: a hub token reaches no wire but the hub's.

A private repo on a test hub; a manager, a scheduler, a seed and two daemons as processes,
in plain text so a wiretap reads every message: a ``RecordingRelay`` sits on each link a
token could leak over (daemons -> scheduler, daemons and scheduler -> manager, B -> A's
piece port, reached through A's ``--advertise-ip``). A downloads with its token, B with its
own (the same value: one test hub); in plain text there are no grants, so A refuses B's
piece request (403) and B reads the hub: the request is on the wire all the same. Then the
token must be in none of the captured bytes (the scheduler's messages: all its state came
over that wire), nor in a log (debug level), a store, a certificate directory, the
manager's database or answers, or any node's metrics (the scheduler's included).

Two ways in: ``dfget hf://`` with ``--hf-token``, and an unchanged huggingface_hub through
the daemons (A's forward proxy with ``HTTPS_PROXY`` and the proxy's CA, B's hub mirror
endpoint with ``HF_ENDPOINT``; a TLS test hub). Only the client, the node it asked and the
hub see the token: the client's own files are outside the greps' tree, the hub's link is
TLS. Over mTLS the same wires carry only ciphertext (``test_private_content.py`` greps that
cluster's files and metrics)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from damselfly.demo.hub_repos import HubRepo
from damselfly.protocol.manager import API_PREFIX
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.hub_clients import hf_client_env, hub_proxy_settings, run_hf_sdk
from damselfly.testing.manager import serving_manager
from damselfly.testing.proxy import TlsHfTestHub, loopback_server_context
from damselfly.testing.relay import RecordingRelay
from damselfly.testing.secret_grep import fetch_text, files_containing, free_port, host_port

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
TOKEN = "hf_" + "WiretapMustNeverSeeThis7" * 2
URL = "hf://acme/private/model.bin"
RELAY_IP = "127.0.0.3"  # A advertises this address; the piece relay listens on it


def private_repo(data: bytes) -> HubRepo:
    files = {"model.bin": data, "config.json": b'{"private": true}\n'}
    return HubRepo("acme/private", files, private=True, allowed_tokens=frozenset({TOKEN}),
                   lfs_threshold=1024)  # fmt: skip


@dataclass
class Tapped:
    """A cluster whose every link is recorded: seed, A (``peers[0]``), B (``peers[1]``)."""

    cluster: LocalCluster
    wires: dict[str, bytearray]
    manager_url: str
    manager_admin: str


async def test_a_hub_token_is_on_no_wire_but_the_hubs(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 11)
    async with (
        HfTestHub([private_repo(data)]) as hub,
        wiretapped_cluster(tmp_path, {"HF_ENDPOINT": hub.endpoint}) as tapped,
    ):
        for i, name in ((0, "a.bin"), (1, "b.bin")):
            run = await tapped.cluster.dfget(i, URL, tmp_path / name, "--hf-token", TOKEN)
            assert run.code == 0, tapped.cluster.logs()
            assert (tmp_path / name).read_bytes() == data
        await assert_token_nowhere(tapped)


@pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)
async def test_a_hub_token_used_through_the_proxy_and_mirror_is_on_no_wire_but_the_hubs(
    tmp_path: Path,
) -> None:
    data = os.urandom(3 * MiB + 11)
    repo = private_repo(data)
    ca, bundle = trustme.CA(), tmp_path / "hub-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with TlsHfTestHub([repo], ssl_context=loopback_server_context(ca)) as hub:
        env = {"SSL_CERT_FILE": str(bundle), "HF_ENDPOINT": hub.endpoint,
               "DAMSELFLY_DAEMON_PROXY": hub_proxy_settings(hub, bundle)}  # fmt: skip
        async with wiretapped_cluster(tmp_path, env) as tapped:
            a, b = tapped.cluster.peers
            file_call = {"fn": "file", "repo_id": "acme/private", "filename": "model.bin"}
            snapshot_call = {"fn": "snapshot", "repo_id": "acme/private"}
            for name, node, mirror, call in (
                ("proxy", a, False, file_call),
                ("mirror", b, True, snapshot_call),
            ):
                env = hf_client_env(tmp_path / f"home-{name}", node, hub, mirror=mirror)
                results = await run_hf_sdk(env, {name: {**call, "token": TOKEN}})
                path = Path(results[name]["path"])  # KeyError: the SDK's error, printed
                got = path.read_bytes() if path.is_file() else (path / "model.bin").read_bytes()
                assert got == data, results
            assert hub.stats.bytes_served["cdn"] >= 2 * len(data)  # no grants in plain text
            await assert_token_nowhere(tapped)


@asynccontextmanager
async def wiretapped_cluster(tmp_path: Path, env: Mapping[str, str]) -> AsyncIterator[Tapped]:
    """A manager, a scheduler, a seed, A and B, each link through a ``RecordingRelay``;
    daemons and scheduler log at debug level (the strictest grep)."""
    database = tmp_path / "manager.sqlite3"
    async with (
        serving_manager(f"sqlite:///{database}", config_interval=0.5) as manager,
        RecordingRelay(host_port(manager.url)) as manager_wire,
        AsyncExitStack() as wires,  # closed after the cluster: its nodes leave through them
    ):
        env = {
            **env,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "DAMSELFLY_DAEMON_LOG_LEVEL": "debug",
            "DAMSELFLY_SCHEDULER_LOG_LEVEL": "debug",
            "DAMSELFLY_DAEMON_MANAGER__URL": f"http://{manager_wire.address}",
            "DAMSELFLY_SCHEDULER_MANAGER__URL": f"http://{manager_wire.address}",
            "DAMSELFLY_SCHEDULER_MANAGER__CACHE_FILE": str(tmp_path / "c" / "scheduler.json"),
            "DAMSELFLY_MANAGER_TOKEN": manager.tokens["member"],
        }
        async with LocalCluster(tmp_path / "c", peers=0, seeds=0, env=env) as cluster:
            captured = await _add_nodes(cluster, wires)
            captured["manager"] = manager_wire.captured
            yield Tapped(cluster, captured, manager.url, manager.tokens["admin"])
        # the nodes stopped (their last log lines and goodbyes written and recorded)
        assert manager_wire.connections > 0
        for name, wire in captured.items():
            assert TOKEN.encode() not in wire, f"the token crossed the {name} link"
        assert files_containing(tmp_path / "c", TOKEN.encode()) == []
        assert TOKEN.encode() not in database.read_bytes()


async def _add_nodes(cluster: LocalCluster, wires: AsyncExitStack) -> dict[str, bytearray]:
    """A seed, A (its piece port behind a relay) and B, all through a scheduler relay."""
    scheduler = host_port(f"http://{cluster.scheduler_addresses[0]}")
    wire = await wires.enter_async_context(RecordingRelay(scheduler))
    await cluster.add_daemon(seed=True, schedulers=[wire.address])
    port = free_port()
    a_flags = ["--upload-listen", f"127.0.0.1:{port}", "--advertise-ip", RELAY_IP]
    await cluster.add_daemon(schedulers=[wire.address], flags=a_flags)
    relay = RecordingRelay(("127.0.0.1", port), listen_host=RELAY_IP, listen_port=port)
    pieces = await wires.enter_async_context(relay)
    await cluster.add_daemon(schedulers=[wire.address])
    return {"scheduler": wire.captured, "pieces": pieces.captured}


async def assert_token_nowhere(tapped: Tapped) -> None:
    """After both downloads, the cluster running: the grep over wires, metrics and the
    manager's answers (``wiretapped_cluster`` greps files and wires again once stopped)."""
    cluster, captured = tapped.cluster, tapped.wires
    metrics = [await fetch_text(node.metrics_url) for node in cluster.all_nodes()]
    members = await fetch_text(f"{tapped.manager_url}{API_PREFIX}/members", tapped.manager_admin)
    assert b"acme/private" in captured["scheduler"]  # plain text: the grep can see a message
    assert b"/pieces/" in captured["pieces"]  # B asked A (refused: no grant without mTLS)
    assert members.startswith('[{"role":')  # the manager's list of members, not an error
    for name, wire in captured.items():
        assert TOKEN.encode() not in wire, f"the token crossed the {name} link"
    assert not any(TOKEN in text for text in [*metrics, members])
