"""The real hub SDKs run in a child process, for tests that compare their results with ours.

``HF_SDK_SCRIPT`` runs ``python -c HF_SDK_SCRIPT '<json>'``: for each named call
(``{"fn": "snapshot"|"file", **kwargs}``) it prints the path huggingface_hub returned or the
exception's class and message, as one JSON object. ``run_modelscope_sdk`` runs a given script
with the ModelScope SDK pointed at a test hub (small parallel-download parts, so ranged
downloads happen on small files) and returns the JSON after its ``RESULT `` marker.

For a node's proxy and hub mirror (``tests/e2e/test_proxy_mesh.py``,
``tests/e2e/test_token_grep.py``): ``hub_proxy_settings`` is the ``DAMSELFLY_DAEMON_PROXY``
value that intercepts a TLS test hub and its CDN and mirrors the hub; ``hf_client_env`` is
the environment of an unchanged huggingface_hub going through a node's proxy
(``HTTPS_PROXY`` + the node's proxy CA alone), its mirror (``HF_ENDPOINT``) or straight to
the hub; ``run_hf_sdk`` runs ``HF_SDK_SCRIPT`` with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from damselfly.demo.cluster import Node
from damselfly.testing.proxy import CA_VARIABLES, proxy_settings_json, url_rule

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


def hub_proxy_settings(hub: Any, hub_bundle: Path) -> str:
    """Proxy rules for ``hub`` (a ``TlsHfTestHub``: intercepted, certificates for 127.0.0.1)
    and its CDN, the hub's CA bundle, and a hub mirror endpoint on a free port, as JSON."""
    rules = [url_rule("hub", hub.origin, intercept=True), url_rule("cdn", hub.cdn.base_url)]
    mirrors = [{"listen": "127.0.0.1:0", "upstream": hub.endpoint}]
    return proxy_settings_json(str(hub_bundle), rules, mirrors)


def hf_client_env(
    home: Path,
    node: Node | None,
    hub: Any,
    *,
    hub_bundle: Path | None = None,
    mirror: bool = False,
    xet: bool = False,
) -> dict[str, str]:
    """huggingface_hub's environment in a fresh ``home``: through ``node``'s proxy, or its
    mirror (``mirror``), or straight to the hub (``node`` None: trusts ``hub_bundle``).
    ``xet``: huggingface_hub may use Xet (hf_xet installed), as it does by default."""
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    if node is None:
        assert hub_bundle is not None, "straight to the hub: give the hub's CA bundle"
        env.update({variable: str(hub_bundle) for variable in CA_VARIABLES})
        env["HF_ENDPOINT"] = hub.endpoint
        return env
    if mirror:
        env["HF_ENDPOINT"] = f"http://{node.ready['mirrors']}"
        return env
    (home / "no-certs").mkdir()
    assert node.storage_dir is not None
    ca = node.storage_dir / "proxy" / "ca.crt"
    env.update({variable: str(ca) for variable in CA_VARIABLES})
    env.update(SSL_CERT_DIR=str(home / "no-certs"), NO_PROXY="", no_proxy="")
    env["HTTPS_PROXY"] = f"http://{node.ready['proxy']}"
    env["HF_ENDPOINT"] = hub.endpoint  # the test hub is not huggingface.co
    return env


async def run_hf_sdk(env: dict[str, str], calls: dict[str, dict[str, object]]) -> Any:
    """Run ``HF_SDK_SCRIPT`` with ``calls`` in ``env``; its JSON answer (one entry a call)."""
    stdout = await run_child(HF_SDK_SCRIPT, env, json.dumps(calls))
    return json.loads(stdout.strip().splitlines()[-1])
