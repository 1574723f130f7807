"""``copies_bytes``: does copying between two files here move every byte?

A download's staged output is written from the verified buffers as pieces arrive
(``staging.py``) only where the other way, a copy out of the store's content file, would move
every byte too: on another file system than the store, or on one whose ``copy_file_range``
copies (tmpfs, ext4). Where the store and the output share a file system that clones ranges
(btrfs, XFS with reflink, bcachefs, ZFS block cloning, NFS server-side copy), the copy costs no
bytes and no space, and writing the output from memory would cost both: the copy path stays.
A file system not known here counts as one that may clone.
"""

from __future__ import annotations

import os

# file systems whose copy_file_range writes every byte again
_COPYING = frozenset({"tmpfs", "ramfs", "ext2", "ext3", "ext4", "vfat", "exfat", "f2fs"})
_MOUNTINFO = "/proc/self/mountinfo"


def copies_bytes(store_dev: int, output_dev: int) -> bool:
    """True where a copy from a file on ``store_dev`` to one on ``output_dev`` moves every
    byte (devices as ``st_dev``)."""
    if store_dev != output_dev:
        return True
    return mount_type(output_dev) in _COPYING


def mount_type(dev: int) -> str | None:
    """The file system type mounted from ``dev`` (``/proc/self/mountinfo``), or None."""
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        return None
    return None
