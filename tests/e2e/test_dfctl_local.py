"""dfctl's local commands against a real dfdaemon's socket: task ls/stat/rm, export, gc."""

from __future__ import annotations

import json
import os
from pathlib import Path

from damselfly.testing.cluster import LocalCluster, run_dfctl

DATA = os.urandom(300 * 1024)


async def test_list_stat_export_remove_and_collect(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files={"/m.bin": DATA}) as cluster:
        url = cluster.origin.url("/m.bin")
        done = await cluster.dfget(0, url, tmp_path / "m.bin")
        assert done.code == 0, done.stderr
        endpoint = ["-e", str(cluster.peers[0].socket)]

        code, out, err = await run_dfctl(*endpoint, "-o", "json", "task", "ls")
        assert code == 0, err
        tasks = [t for t in json.loads(out) if t["url"] == url]
        assert [(t["content_length"], t["state"]) for t in tasks] == [(len(DATA), "succeeded")]
        task_id = tasks[0]["task_id"]

        code, out, err = await run_dfctl(*endpoint, "-o", "json", "task", "stat", task_id)
        assert code == 0, err
        assert json.loads(out)["pieces_held"] >= 1

        code, _out, err = await run_dfctl(*endpoint, "export", task_id, "-O", str(tmp_path / "x"))
        assert code == 0, err
        assert (tmp_path / "x").read_bytes() == DATA

        code, _out, err = await run_dfctl(*endpoint, "task", "rm", task_id)
        assert (code, err) == (0, f"dfctl: removed task {task_id}\n")
        code, _out, err = await run_dfctl(*endpoint, "task", "stat", task_id)
        assert (code, err) == (1, "dfctl: error: dfdaemon answered 404: no such task\n")
        code, _out, err = await run_dfctl(*endpoint, "gc")
        assert code == 0, err
        assert err.startswith("dfctl: freed "), err
