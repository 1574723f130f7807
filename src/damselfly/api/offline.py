"""Offline and degraded mode: answering from the local caches, as huggingface_hub does.

``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` never touch the network; a hub that cannot
be reached (or answers an error other than "no such revision / file") falls back the same way,
with one warning line on the ``damselfly.api`` logger. The lookup is huggingface_hub's:

- the commit is the revision when that is a commit hash, else ``refs/<revision>`` of the cache;
- ``snapshot_download``: ``snapshots/<commit>`` if it exists; with ``local_dir``: that folder,
  if it exists and is not empty;
- ``hf_hub_download``: ``snapshots/<commit>/<path>`` if it exists; with ``local_dir``:
  ``<local_dir>/<path>`` if it is a file.

Nothing found: ``CacheMissError`` (huggingface_hub's ``LocalEntryNotFoundError``), except that
a missing repository or a refused token is raised as itself, as huggingface_hub does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from damselfly.api.hf_compat import CacheMissError
from damselfly.backends.hf_errors import (
    HubEntryNotFoundError,
    HubGatedRepoError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
)
from damselfly.core.errors import BackendError, SourceAuthError
from damselfly.core.safe_paths import unsafe_path_reason

log = logging.getLogger("damselfly.api")
T = TypeVar("T")

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_RAISED_AS_IS = (HubRevisionNotFoundError, HubEntryNotFoundError)
_RAISED_WHEN_MISSING = (HubRepoNotFoundError, HubGatedRepoError, SourceAuthError)


def hub_offline(env: Mapping[str, str]) -> bool:
    """``HF_HUB_OFFLINE`` (huggingface_hub's spelling of true: 1, ON, YES, TRUE)."""
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cached_commit(repo_dir: Path, revision: str) -> str | None:
    if _COMMIT_RE.match(revision):
        return revision
    if unsafe_path_reason(revision) is not None:
        return None
    try:
        return (repo_dir / "refs" / revision).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def cached_snapshot(repo_dir: Path, revision: str, local_dir: Path | None) -> str | None:
    if local_dir is not None:
        if local_dir.is_dir() and any(local_dir.iterdir()):
            return str(local_dir.resolve())
        return None
    commit = cached_commit(repo_dir, revision)
    snapshot = repo_dir / "snapshots" / commit if commit else None
    return str(snapshot) if snapshot is not None and snapshot.is_dir() else None


def cached_file(repo_dir: Path, revision: str, path: str, local_dir: Path | None) -> str | None:
    if unsafe_path_reason(path) is not None:
        return None
    if local_dir is not None:
        target = local_dir.resolve() / path
        return str(target) if target.is_file() else None
    commit = cached_commit(repo_dir, revision)
    pointer = repo_dir / "snapshots" / commit / path if commit else None
    return str(pointer) if pointer is not None and pointer.exists() else None


def online_or_cached(
    download: Callable[[], T],
    cached: Callable[[], str | None],
    what: str,
    tolerated: tuple[type[BackendError], ...] = (BackendError,),
) -> T | str:
    """``download()``; if the hub fails in a way huggingface_hub tolerates (or only as
    ``tolerated`` says: the modelscope SDK falls back when the hub is unreachable only), the
    cached copy."""
    try:
        return download()
    except _RAISED_AS_IS:
        raise
    except tolerated as error:
        found = cached()
        if found is None:
            if isinstance(error, _RAISED_WHEN_MISSING):
                raise
            raise missing(what, f"the hub failed ({error})") from error
        log.warning("damselfly: %s; using the cached %s", error, what)
        return found


def missing(what: str, why: str) -> CacheMissError:
    return CacheMissError(f"{what}: not in the local cache and {why}")
