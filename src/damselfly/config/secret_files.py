"""Files that hold a secret (a hub token, a manager token, a private key): refused, as ssh
refuses a private key, when group or others may read them.

A token in a file only group or others cannot read is the safe way to hand one over: argv is
visible to every user in the process list and the environment of a process to its owner and
root. A file anyone may read is no better than argv, so it is refused with one line that says
how to fix it (``chmod 600``) rather than used. Symlinks are followed: Kubernetes mounts
Secrets as symlinks into ``..data/``, and the mode that matters is the target's.
"""

from __future__ import annotations

import stat
from pathlib import Path

from damselfly.core.errors import ConfigError

READABLE_BY_OTHERS = 0o077  # any group or other permission bit


def mode_refusal(path: str, mode: int) -> str:
    """The one line that refuses ``path`` (also ``security.errors.KeyFileModeError``'s)."""
    return (
        f"{path}: refusing to use a secret file readable by group or others "
        f"(mode {mode:04o}; run chmod 600 {path})"
    )


class SecretFileModeError(ConfigError):
    """A secret file that group or others may read or write (not an ``OSError``: callers
    that treat a missing file as "no token" must not swallow this)."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(mode_refusal(path, mode))
        self.path = path
        self.mode = mode


def check_secret_mode(path: Path) -> None:
    """Raise ``SecretFileModeError`` when group or others have any permission on ``path``;
    ``OSError`` when it cannot be looked at."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & READABLE_BY_OTHERS:
        raise SecretFileModeError(str(path), mode)


def read_secret_text(path: Path) -> str:
    """The file's text, stripped, after the mode check (``OSError`` passes through: a missing
    file means different things to different callers)."""
    check_secret_mode(path)
    return path.read_text(encoding="utf-8").strip()
