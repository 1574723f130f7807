"""Default filesystem locations shared by several binaries (dfget and dfdaemon agree on them).

The piece store and the daemon's socket are defaulted here and nowhere else.

Read at call time from the mapping the caller passes (normally ``os.environ``), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STORAGE_DIR_ENV = "DAMSELFLY_STORAGE_DIR"
SYSTEM_STORE_DIR = Path("/var/lib/damselfly")
SYSTEM_SOCKET_PATH = Path("/var/run/damselfly/dfdaemon.sock")
SOCKET_NAME = "dfdaemon.sock"


def default_socket_path(env: Mapping[str, str], uid: int | None = None) -> Path:
    """Where dfdaemon's local API listens and dfget looks for it.

    ``/var/run/damselfly/dfdaemon.sock`` for root; else ``$XDG_RUNTIME_DIR/damselfly/`` (a
    per-user directory only its owner can enter); else ``~/.cache/damselfly/``.
    """
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return SYSTEM_SOCKET_PATH
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "damselfly" / SOCKET_NAME
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "damselfly" / SOCKET_NAME


def store_dir(
    configured: str | Path | None, env: Mapping[str, str], uid: int | None = None
) -> Path:
    """The piece store's root: ``configured`` (a flag or a setting) if given, else the default."""
    if configured:
        return Path(configured).expanduser()
    return default_store_dir(env, uid)


def default_store_dir(env: Mapping[str, str], uid: int | None = None) -> Path:
    """``$DAMSELFLY_STORAGE_DIR``, else /var/lib/damselfly for root, else the user's cache.

    dfget, dfdaemon and the Python API share it, so a daemon serves what dfget fetched.
    """
    configured = env.get(STORAGE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return SYSTEM_STORE_DIR
    cache = env.get("XDG_CACHE_HOME")
    if cache and os.path.isabs(cache):
        return Path(cache) / "damselfly"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "damselfly"
