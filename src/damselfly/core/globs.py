"""Include / exclude filters for recursive downloads.

Semantics are huggingface_hub's ``allow_patterns`` / ``ignore_patterns``, so a pattern means
the same in ``dfget -I`` as in ``snapshot_download``: ``fnmatch`` globs over the file's path
relative to the download root (``*`` also crosses ``/``), a pattern ending in ``/`` matches
everything below that folder, no include patterns means "everything", and an exclude pattern
wins over an include pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase


def _normalise(pattern: str) -> str:
    return pattern + "*" if pattern.endswith("/") else pattern


def path_selected(path: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    if include and not any(fnmatchcase(path, _normalise(p)) for p in include):
        return False
    return not any(fnmatchcase(path, _normalise(p)) for p in exclude)
