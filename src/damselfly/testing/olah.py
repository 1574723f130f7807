"""Run a real olah (PyPI ``olah``, a self-hosted Hugging Face mirror) for tests.

olah in offline mode serves plain git repositories from its ``mirrors-path``, laid out
``<mirrors>/<models|datasets|spaces>/<owner>/<repo>`` on branch ``main``. Large files are
git-lfs pointer files in the tree with the object at ``.git/lfs/objects/<aa>/<bb>/<oid>``;
``build_mirror_repo`` writes exactly that with the git CLI (no git-lfs needed), with fixed
author and dates so the same files always give the same commit.

What olah 0.5.x does in this mode, as observed (and so what tests can rely on):

- ``/api/{type}/{repo}/revision/{rev}``: ``sha`` and ``siblings``; an unknown revision answers
  401 ``RepoNotFound`` (the real hub: 404 ``RevisionNotFound``).
- ``/api/{type}/{repo}/tree/{commit}``: 307 to ``.../tree/{commit}/``; entries carry
  ``lfs: {oid, size, pointerSize}`` for pointer files; no pagination.
- ``HEAD /resolve``: 200 for every file (no 302, no ``X-Linked-*``), ``ETag`` = git blob id,
  or the sha256 for LFS files; ``Content-Length``; no ``Accept-Ranges``.
- ``GET /resolve``: 200 with the whole body for every request: ``Range`` is ignored.
- a missing file answers 404 ``EntryNotFound`` (older olah answered 401).

``OlahServer`` writes the config, starts ``olah-cli -c <toml>`` on a free loopback port,
waits until it answers, and stops it (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from damselfly.core.lifecycle import AsyncResource
from damselfly.demo.hub_repos import DEFAULT_LFS_THRESHOLD, FileSource, lfs_pointer

STARTUP_TIMEOUT = 30.0
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "damselfly",
    "GIT_AUTHOR_EMAIL": "tests@damselfly.invalid",
    "GIT_COMMITTER_NAME": "damselfly",
    "GIT_COMMITTER_EMAIL": "tests@damselfly.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


class OlahUnavailable(RuntimeError):
    """olah or git is not installed, or olah did not start (the message says why)."""


def olah_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "olah-cli"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("olah-cli")


def olah_available() -> bool:
    return olah_executable() is not None and shutil.which("git") is not None


def build_mirror_repo(
    mirrors: Path,
    repo_id: str,
    files: Mapping[str, FileSource],
    *,
    repo_type: str = "models",
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
) -> str:
    """Write ``files`` as a git repo olah can serve; returns the commit id of ``main``."""
    root = mirrors / repo_type / repo_id
    root.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    for path, source in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        if size >= lfs_threshold:
            _store_lfs_object(root, target, source, size)
        else:
            _write(target, source)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "Upload")
    return _git(root, "rev-parse", "HEAD").strip()


def _store_lfs_object(root: Path, target: Path, source: FileSource, size: int) -> None:
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(source)
    else:
        with source.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    oid = digest.hexdigest()
    obj = root / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    obj.parent.mkdir(parents=True, exist_ok=True)
    _write(obj, source)
    target.write_bytes(lfs_pointer(oid, size))


def _write(target: Path, source: FileSource) -> None:
    if isinstance(source, bytes):
        target.write_bytes(source)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), **_GIT_IDENTITY}
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise OlahUnavailable(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class OlahServer(AsyncResource):
    """``async with OlahServer(mirrors, workdir) as olah:`` then use ``olah.endpoint``."""

    def __init__(self, mirrors: Path, workdir: Path, *, host: str = "127.0.0.1") -> None:
        self.mirrors = mirrors
        self.workdir = workdir
        self.host = host
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "olah.out"

    async def start(self) -> None:
        executable = olah_executable()
        if executable is None:
            raise OlahUnavailable("olah-cli not found (pip install olah)")
        self.port = _free_port(self.host)
        config = self._write_config()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                executable, "-c", str(config), cwd=self.workdir, env=env, stdout=log, stderr=log
            )
        await self._wait_ready()

    async def aclose(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _write_config(self) -> Path:
        # hf-netloc points at the discard port on loopback: offline olah must never go out.
        text = (
            "[basic]\n"
            f'host = "{self.host}"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.workdir / "repos"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            'hf-scheme = "http"\n'
            'hf-netloc = "127.0.0.1:9"\n'
            'hf-lfs-netloc = "127.0.0.1:9"\n'
            "[accessibility]\n"
            "offline = true\n"
        )
        path = self.workdir / "olah.toml"
        path.write_text(text)
        return path

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self._process is None or self._process.returncode is not None:
                    break
                try:
                    async with session.get(self.endpoint + "/") as response:
                        await response.read()
                        return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        await self.aclose()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise OlahUnavailable(f"olah did not start on {self.endpoint}:\n{tail}")
