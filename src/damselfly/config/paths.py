"""Default filesystem locations shared by several binaries (dfget and dfdaemon agree on them).

Read at call time from the mapping the caller passes (normally ``os.environ``), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

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
