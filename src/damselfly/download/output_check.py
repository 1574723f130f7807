"""Refuse an unusable output path before any byte is fetched.

The store checks again when it delivers (the filesystem may change meanwhile); this early
check only spares the user a download whose result could never be written.
"""

from __future__ import annotations

import os
from pathlib import Path

from damselfly.core.errors import OutputError


def check_output(path: Path, *, overwrite: bool) -> None:
    if path.is_dir():
        raise OutputError(str(path), "is a directory")
    if path.exists() and not overwrite:
        raise OutputError(str(path), "already exists (use --overwrite to replace it)")
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise OutputError(str(path), f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(str(path), f"permission denied: cannot write to {parent}")


def check_output_dir(path: Path) -> None:
    """An output directory for a recursive download: absent, or a directory we can write."""
    if path.exists() and not path.is_dir():
        raise OutputError(str(path), "exists and is not a directory (recursive downloads need one)")
    parent = _nearest_existing(path)
    if not parent.is_dir():
        raise OutputError(str(path), f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(str(path), f"permission denied: cannot write to {parent}")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def same_filesystem(path: Path, store_root: Path) -> bool:
    """Whether ``path`` would be on the store's file system (a hard link can join them)."""
    output_device = _nearest_existing(path.parent).stat().st_dev
    return output_device == _nearest_existing(store_root).stat().st_dev


def check_same_filesystem(path: Path, store_root: Path) -> None:
    """``--force-hard-link``: the output must be on the store's filesystem."""
    if not same_filesystem(path, store_root):
        raise OutputError(
            str(path),
            f"cannot hard-link: not on the same filesystem as the store {store_root} "
            "(drop --force-hard-link to copy)",
        )
