"""huggingface_hub's tree listing cache: ``trees/<commit>.json``, written and read as it does.

huggingface_hub 2.4 keeps the recursive listing of a repo at a commit (immutable, so cached
forever) in ``<repo folder>/trees/<commit>.json`` of its cache, or in
``<local_dir>/.cache/huggingface/trees/<commit>.json`` for a local dir::

    {"format_version": 1,
     "files": {"config.json": {"size": 519, "blob_id": "<git sha1>"},
               "model.safetensors": {"size": 9, "blob_id": "<pointer's sha1>",
                                     "lfs_sha256": "<sha256>", "lfs_size": 9}}}

Online, huggingface_hub uses it instead of listing the repo again, so it must be the whole
repo: damselfly writes it only from a listing of the repo root (every entry at its repo path),
once a download into one of those layouts succeeded (huggingface_hub writes it before the
files; damselfly leaves nothing behind a failed download; never on a dry run). Offline, both
read it to tell a complete snapshot from one that lost files since: ``missing_files``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damselfly.backends.base import Entry
from damselfly.backends.hf_listing import BLOB_OID_PARAM, REVISION_PARAM
from damselfly.core.digests import GIT_BLOB_SHA1, Digest
from damselfly.core.globs import path_selected
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl
from damselfly.download.hub_files import output_errors, replace_atomically

FORMAT_VERSION = 1


def tree_path(folder: Path, commit: str) -> Path:
    return folder / "trees" / f"{commit}.json"


def listing_record(entries: Sequence[Entry]) -> tuple[str, dict[str, Any]] | None:
    """(commit, files) for a whole-repo listing; ``None`` when it is not one."""
    commits = {dict(e.params).get(REVISION_PARAM) for e in entries}
    if len(commits) != 1 or None in commits:
        return None
    files = {}
    for entry in sorted(entries, key=lambda e: e.path):
        info = _file_info(entry)
        if info is None:
            return None
        files[entry.path] = info
    return str(commits.pop()), files


def _file_info(entry: Entry) -> dict[str, Any] | None:
    blob_id = dict(entry.params).get(BLOB_OID_PARAM)
    at_repo_path = isinstance(entry.url, HubUrl) and entry.url.path == entry.path
    if not at_repo_path or blob_id is None or entry.content_length is None:
        return None
    info: dict[str, Any] = {"size": entry.content_length, "blob_id": blob_id}
    digest = entry.content_digest
    if digest is not None and digest.algorithm == "sha256":
        info |= {"lfs_sha256": digest.hex, "lfs_size": entry.content_length}
    return info


def write_listing(folder: Path, entries: Sequence[Entry]) -> None:
    """``trees/<commit>.json`` below ``folder``, if ``entries`` are a whole-repo listing."""
    record = listing_record(entries)
    if record is None:
        return
    commit, files = record
    path = tree_path(folder, commit)
    data = json.dumps({"format_version": FORMAT_VERSION, "files": files}, indent=1)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda tmp: tmp.write_text(data, encoding="utf-8"))


def read_listing(folder: Path, commit: str) -> dict[str, dict[str, Any]] | None:
    """``trees/<commit>.json``'s files (path -> size, blob_id[, lfs_sha256, lfs_size]);
    ``None``: none, unreadable, of an unknown format, or naming an unsafe path."""
    try:
        data = json.loads(tree_path(folder, commit).read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            return None
        files = dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(p, str) and unsafe_path_reason(p) is None for p in files):
        return None
    return files


def listed_entries(folder: Path, url: HubUrl, commit: str) -> list[Entry]:
    """The cached listing as the ``Entry`` values a listing of the repo root gives (pinned to
    ``commit``); entries with malformed fields are left out."""
    files = read_listing(folder, commit) or {}
    return [e for path, info in files.items() if (e := _entry(url, commit, path, info))]


def _entry(url: HubUrl, commit: str, path: str, info: Any) -> Entry | None:
    try:
        size, blob_id, lfs = int(info["size"]), str(info["blob_id"]), info.get("lfs_sha256")
        digest = Digest("sha256", str(lfs)) if lfs else Digest(GIT_BLOB_SHA1, blob_id)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    params = ((REVISION_PARAM, commit), (BLOB_OID_PARAM, blob_id))
    return Entry(url.with_path(path), path, size, digest, params)


def missing_files(
    folder: Path,
    commit: str,
    base_dir: Path,
    selection: tuple[Sequence[str], Sequence[str]] = ((), ()),
    under: str = "",
) -> list[str] | None:
    """The listed files below ``under`` that ``selection`` (include, exclude; relative to
    ``under``) asks for and ``base_dir`` (a snapshot or local dir) lacks; ``None``: no
    listing, so nobody can tell (huggingface_hub then returns the folder as it is)."""
    paths = read_listing(folder, commit)
    if paths is None:
        return None
    prefix = f"{under}/" if under else ""
    wanted = [p for p in paths if p.startswith(prefix)]
    wanted = [p for p in wanted if path_selected(p[len(prefix) :], *selection)]
    return [p for p in wanted if not os.path.isfile(base_dir / p)]
