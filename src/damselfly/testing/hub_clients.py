"""The real hub SDKs run in a child process, for tests that compare their results with ours.

``HF_SDK_SCRIPT`` runs ``python -c HF_SDK_SCRIPT '<json>'``: for each named call
(``{"fn": "snapshot"|"file", **kwargs}``) it prints the path huggingface_hub returned or the
exception's class and message, as one JSON object. ``run_modelscope_sdk`` runs a given script
with the ModelScope SDK pointed at a test hub (small parallel-download parts, so ranged
downloads happen on small files) and returns the JSON after its ``RESULT `` marker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HF_SDK_SCRIPT = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
results = {}
for name, call in json.loads(sys.argv[1]).items():
    fn = snapshot_download if call.pop("fn") == "snapshot" else hf_hub_download
    try:
        results[name] = {"path": fn(**call)}
    except Exception as exc:
        results[name] = {"error": type(exc).__name__, "message": str(exc)[:500]}
print(json.dumps(results))
"""


async def run_child(
    script: str, env: dict[str, str], *argv: str, cwd: Path | None = None, seconds: float = 60
) -> str:
    """``python -c script *argv`` with only ``env``; its stdout. Killed after ``seconds``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *argv, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(seconds):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    return stdout.decode()


def result_line(stdout: str) -> Any:
    """The JSON after the ``RESULT `` marker a child script printed."""
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


async def run_modelscope_sdk(
    script: str, tmp_path: Path, endpoint: str, token: str, **extra: str
) -> Any:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "MODELSCOPE_ENDPOINT": endpoint,
        "MODELSCOPE_CACHE": str(tmp_path / "cache"),
        "MODELSCOPE_API_TOKEN": token,
        # Files over 1 MiB go through the SDK's parallel ranged download, 1 MiB parts.
        "MODELSCOPE_DOWNLOAD_PARALLEL_THRESHOLD_MB": "1",
        "MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS": "3",
        "MODELSCOPE_DOWNLOAD_PART_SIZE_MB": "1",
        **extra,
    }
    return result_line(await run_child(script, env, cwd=tmp_path))
