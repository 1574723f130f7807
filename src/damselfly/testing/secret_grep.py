"""Where a secret ended up: the greps of issue 11's token tests.

``files_containing(root, needle)`` lists the regular files under ``root`` whose bytes hold
``needle`` (symlinks skipped: they point at files listed anyway); ``fetch_text(url, token)``
reads an HTTP answer (a metrics page, a manager listing) to grep it. ``free_port()`` and
``host_port(url)`` place a ``RecordingRelay`` on a link."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]


async def fetch_text(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return await response.text()


def host_port(url: str) -> tuple[str, int]:
    """``http://host:port/...`` (or ``host:port``) as ``(host, port)``."""
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port.split("/")[0])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
