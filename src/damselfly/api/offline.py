"""Offline and degraded mode: answering from the local caches, as huggingface_hub does.

``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` never touch the network; a hub that cannot
be reached (or answers an error other than "no such revision / file") falls back the same way,
with one warning line on the ``damselfly.api`` logger. The lookup is huggingface_hub's:

- the commit is the revision when that is a commit hash, else ``refs/<revision>`` of the cache;
- ``snapshot_download``: ``snapshots/<commit>`` if it exists; with ``local_dir``: that folder,
  if it exists and is not empty; when the commit's listing is cached (``trees/<commit>.json``,
  ``download/hub_trees.py``), every file it lists that the patterns select must be there,
  else ``IncompleteSnapshotError`` (huggingface_hub's, with ``snapshot_path``);
- ``hf_hub_download``: ``snapshots/<commit>/<path>`` if it exists; with ``local_dir``:
  ``<local_dir>/<path>`` if it is a file.

In the cache (not a local dir), a file the cached listing names and the snapshot lacks is
first looked up in the piece store (``download/hub_restore.py``): huggingface_hub would fail
there, damselfly answers when its store holds the file.

Nothing found: ``CacheMissError`` (huggingface_hub's ``LocalEntryNotFoundError``), except that
a missing repository or a refused token is raised as itself, as huggingface_hub does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from damselfly.api.hf_compat import CacheMissError, IncompleteSnapshotError
from damselfly.backends.hf_errors import (
    HubEntryNotFoundError,
    HubGatedRepoError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
)
from damselfly.core.errors import BackendError, SourceAuthError
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.download.hub_layouts import METADATA_DIR
from damselfly.download.hub_trees import missing_files

log = logging.getLogger("damselfly.api")
T = TypeVar("T")

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_RAISED_AS_IS = (HubRevisionNotFoundError, HubEntryNotFoundError)
_RAISED_WHEN_MISSING = (HubRepoNotFoundError, HubGatedRepoError, SourceAuthError)


def cached_commit(repo_dir: Path, revision: str) -> str | None:
    if _COMMIT_RE.match(revision):
        return revision
    if unsafe_path_reason(revision) is not None:
        return None
    try:
        return (repo_dir / "refs" / revision).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


Selection = tuple[Sequence[str], Sequence[str]]  # include, exclude
# (commit, repo paths the snapshot lacks) -> those still missing after asking the piece store
Restorer = Callable[[str, list[str]], list[str]]


def cached_snapshot(
    repo_dir: Path,
    revision: str,
    local_dir: Path | None,
    selection: Selection = ((), ()),
    under: str = "",
    restore: Restorer | None = None,
) -> str | None:
    """The cached folder of ``under`` (a repo folder; ``""``: the repo) for ``selection``;
    files the cached listing names and the snapshot lacks are first asked of ``restore``."""
    commit = cached_commit(repo_dir, revision)
    if local_dir is not None:
        if not (local_dir.is_dir() and any(local_dir.iterdir())):
            return None
        if commit is not None and not under:
            check_complete(local_dir / METADATA_DIR, commit, local_dir, selection)
        return str(local_dir.resolve())
    if commit is None:
        return None
    snapshot = repo_dir / "snapshots" / commit
    check_complete(repo_dir, commit, snapshot, selection, under, restore)
    return str(snapshot) if snapshot.is_dir() else None


def check_complete(
    folder: Path,
    commit: str,
    base_dir: Path,
    selection: Selection,
    under: str = "",
    restore: Restorer | None = None,
) -> None:
    """Raise ``IncompleteSnapshotError`` when the cached listing shows files missing from
    ``base_dir`` (and ``restore`` cannot bring them back); no folder at all is no error."""
    missing = missing_files(folder, commit, base_dir, selection, under)
    if missing and restore is not None:
        missing = restore(commit, missing)
    if not missing or not base_dir.is_dir():
        return
    sample = ", ".join(missing[:3]) + (
        f", ... ({len(missing) - 3} more)" if len(missing) > 3 else ""
    )
    raise IncompleteSnapshotError(
        f"{base_dir}: the cached snapshot of commit {commit} is incomplete: "
        f"{len(missing)} file(s) missing ({sample})",
        snapshot_path=str(base_dir),
    )


def cached_file(
    repo_dir: Path,
    revision: str,
    path: str,
    local_dir: Path | None,
    restore: Restorer | None = None,
) -> str | None:
    if unsafe_path_reason(path) is not None:
        return None
    if local_dir is not None:
        target = local_dir.resolve() / path
        return str(target) if target.is_file() else None
    commit = cached_commit(repo_dir, revision)
    if commit is None:
        return None
    pointer = repo_dir / "snapshots" / commit / path
    if not pointer.exists() and restore is not None:
        restore(commit, [path])
    return str(pointer) if pointer.exists() else None


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
