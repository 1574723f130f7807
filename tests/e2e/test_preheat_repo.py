"""A preheated hub repo end to end: a real manager, scheduler, seed and peer, a loopback
Hugging Face hub. ``dfctl preheat create hf://owner/repo --exclude ...`` has the seed fetch
the repo; the peer's ``dfget hf://owner/repo -r`` then reads no content byte from the hub or
its CDN and gets every file from the mesh."""

from __future__ import annotations

import json
import os
from pathlib import Path

from damselfly.testing.cluster import LocalCluster, run_dfctl, wait_until
from damselfly.testing.hf_hub import HfTestHub, HubRepo
from damselfly.testing.manager import serving_manager

MiB = 1024 * 1024
FILES = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": os.urandom(2 * MiB),  # LFS: served by the CDN
    "notes/readme.md": os.urandom(64 * 1024),  # plain git file: served by the hub
}


async def test_a_preheated_repo_costs_a_peer_no_hub_content_byte(tmp_path: Path) -> None:
    repo = HubRepo("acme/tiny", {**FILES, "big.bin": os.urandom(MiB)}, lfs_threshold=MiB)
    async with (
        HfTestHub([repo]) as hub,
        serving_manager(
            f"sqlite:///{tmp_path / 'm.sqlite3'}", config_interval=0.5, keepalive_interval=0.5
        ) as manager,
    ):
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
               "DAMSELFLY_DAEMON_MANAGER__URL": manager.url,
               "DAMSELFLY_MANAGER_TOKEN": manager.tokens["member"]}  # fmt: skip
        dfctl_env = {**os.environ, "DFCTL_MANAGER": manager.url,
                     "DFCTL_TOKEN": manager.tokens["admin"],
                     "XDG_CONFIG_HOME": str(tmp_path / "dfctl")}  # fmt: skip
        async with LocalCluster(tmp_path, peers=1, seeds=1, env=env) as cluster:
            code, out, err = await run_dfctl(
                "-o", "json", "preheat", "create", "hf://acme/tiny", "--exclude", "big.bin",
                env=dfctl_env,
            )  # fmt: skip
            assert code == 0, err
            job_id = json.loads(out)["id"]

            async def finished() -> bool:
                _code, out, _err = await run_dfctl(
                    "-o", "json", "preheat", "status", str(job_id), env=dfctl_env
                )
                status = json.loads(out)
                assert status["state"] != "failed", status
                return bool(status["state"] == "succeeded")

            await wait_until(finished, within=60, interval=0.25)
            served = dict(hub.stats.bytes_served)
            assert sum(served.values()) >= sum(map(len, FILES.values()))

            done = await cluster.dfget(
                0, "hf://acme/tiny", tmp_path / "got", "-r", "--exclude", "big.bin"
            )
            assert done.code == 0, cluster.logs()
            got = {p.relative_to(tmp_path / "got").as_posix(): p.read_bytes()
                   for p in (tmp_path / "got").rglob("*") if p.is_file()}  # fmt: skip
            assert {k: v for k, v in got.items() if not k.startswith(".cache/")} == FILES
            metrics = await cluster.metrics(0)
            assert metrics["damselfly_daemon_source_bytes_total"] == 0
            assert metrics["damselfly_daemon_peer_bytes_total"] == sum(map(len, FILES.values()))
            assert dict(hub.stats.bytes_served) == served  # listing and HEADs only
