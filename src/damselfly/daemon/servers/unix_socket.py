"""The local API's unix socket: created with its final permissions, and who is calling.

``bind_unix_socket`` never leaves a moment in which anyone but the allowed users could
connect: the socket is bound under a hidden temporary name in the same directory, given its
group and mode, and only then renamed into place (which also replaces a stale socket
atomically). It is not listening yet when it appears (connects are refused until the server
starts), so there is no window at all.

A file already at the path is replaced only if it is a socket and nobody answers on it: a
regular file is never removed, and a live socket means another daemon owns the path.

``peer_credentials`` reads the caller's pid, uid and gid from the connection
(``SO_PEERCRED``, Linux): the kernel vouches for them, the client cannot choose them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damselfly.core.errors import ConfigError

log = logging.getLogger(__name__)

DIR_MODE = 0o755
_CRED_FORMAT = "3i"  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def bind_unix_socket(path: Path, *, mode: int, gid: int | None = None) -> socket.socket:
    """A bound, not yet listening, ``AF_UNIX`` stream socket at ``path`` with ``mode``."""
    _prepare_dir(path.parent)
    _check_existing(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temp))
        if gid is not None:
            os.chown(temp, -1, gid)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ConfigError(f"local API socket {path}: {exc.strerror or exc}") from exc
    return sock


def remove_socket(path: Path, inode: int) -> None:
    """Remove ``path`` if it is still the socket we created (``inode``)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def peer_credentials(transport: Any) -> PeerCredentials | None:
    """The caller's credentials, or ``None`` when the platform cannot tell."""
    option = getattr(socket, "SO_PEERCRED", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if option is None or sock is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize(_CRED_FORMAT))
    pid, uid, gid = struct.unpack(_CRED_FORMAT, raw)
    return PeerCredentials(pid, uid, gid)


def _prepare_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise ConfigError(f"local API socket directory {directory}: {exc.strerror}") from exc


def _check_existing(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"local API socket {path}: exists and is not a socket; not replacing it")
    if _answers(path):
        raise ConfigError(f"local API socket {path}: another process is listening on it")
    log.info("replacing stale socket %s", path)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            raise ConfigError(f"local API socket {path}: cannot probe it: {exc}") from exc
        return True
