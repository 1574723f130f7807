"""Private content needs proof of access (issue 11, item 3), with real processes over mTLS.

A private repo on a test hub; node A downloads a file with its token. Node B with a valid
peer certificate but no grant gets 403 from A's piece port (no bytes, counted); B without a
token is refused by the hub; B with its *own* token gets a grant from the scheduler and the
file through the mesh; the task's id is keyed with the cluster secret, not the public one
computed from the file's sha256. The token appears nowhere but in the processes that used it:
not in a log, a store file, a certificate directory, any node's metrics."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import aiohttp
import pytest

from damselfly.core.digests import Digest
from damselfly.core.ids import task_id_for_content
from damselfly.core.pieces import choose_piece_length
from damselfly.demo.hub_repos import HubRepo
from damselfly.security.files import NodeFiles
from damselfly.security.tls import client_context
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.secret_grep import fetch_text, files_containing

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
TOKEN = "hf_" + "PrivateTokenNeverLogged42" * 2
URL = "hf://acme/private/model.bin"


async def test_private_file_is_shared_only_with_a_grant(tmp_path):
    data = os.urandom(6 * MiB + 7)
    repo = HubRepo("acme/private", {"model.bin": data}, private=True,
                   allowed_tokens=frozenset({TOKEN}), lfs_threshold=1024)  # fmt: skip
    async with HfTestHub([repo]) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
        async with LocalCluster(tmp_path / "c", peers=2, seeds=1, env=env, tls=True) as cluster:
            first = await cluster.dfget(0, URL, tmp_path / "a.bin", "--hf-token", TOKEN)
            assert first.code == 0, cluster.logs()
            assert (tmp_path / "a.bin").read_bytes() == data

            task_id = _private_task_of(cluster.peers[0].storage_dir)
            digest = Digest("sha256", hashlib.sha256(data).hexdigest())
            public_id = task_id_for_content(digest, choose_piece_length(len(data), None))
            assert task_id != public_id  # keyed with the cluster secret: not derivable
            b_files = NodeFiles.in_dir(cluster.workdir / "pki" / "peer-1")
            status, body = await _piece(cluster.peers[0].upload_url, task_id, b_files)
            assert status == 403
            assert data[:1024] not in body
            a_refused = "damselfly_daemon_upload_access_refused_total"
            assert await cluster.metric(0, a_refused) == 1

            no_token = await cluster.dfget(1, URL, tmp_path / "none.bin")
            assert no_token.code != 0
            assert not (tmp_path / "none.bin").exists()

            second = await cluster.dfget(1, URL, tmp_path / "b.bin", "--hf-token", TOKEN)
            assert second.code == 0, cluster.logs()
            assert (tmp_path / "b.bin").read_bytes() == data
            assert await cluster.metric(1, "damselfly_daemon_peer_bytes_total") == len(data)
            assert await cluster.metric(0, a_refused) == 1  # B's grant was accepted

            metrics = [await fetch_text(node.metrics_url) for node in cluster.all_nodes()]
            assert not any(TOKEN in text for text in metrics)
        assert files_containing(cluster.workdir, TOKEN.encode()) == []


def _private_task_of(storage_dir: Path | None) -> str:
    assert storage_dir is not None
    marks = list(storage_dir.rglob("private/*"))
    assert len(marks) == 1, marks
    return marks[0].name


async def _piece(upload_url: str, task_id: str, files: NodeFiles) -> tuple[int, bytes]:
    context: ssl.SSLContext = client_context(files, check_hostname=False, piece_port=True)
    url = f"{upload_url}/v1/tasks/{task_id}/pieces/0"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, timeout=aiohttp.ClientTimeout(10)) as response,
    ):
        return response.status, await response.read()
