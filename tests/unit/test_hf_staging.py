"""A local copy of a hub repo read into a manifest: which files are LFS, which commit, and
the listing and stats answered from it are those the hub's answers give."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from damselfly.backends.hf_manifest import (
    manifest_entries,
    manifest_stat,
    parse_manifest,
    parse_pointer,
    pointer_bytes,
)
from damselfly.backends.hf_staging import manifest_from_directory
from damselfly.core.digests import GIT_BLOB_SHA1, git_blob_sha1
from damselfly.core.errors import SourceProtocolError, UsageError
from damselfly.core.urls import parse_url

REPO = parse_url("hf://acme/tiny")
COMMIT = "a" * 40


def write(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def test_lfs_by_gitattributes_and_plain_files_by_blob_id(tmp_path: Path) -> None:
    files = {".gitattributes": b"*.bin filter=lfs -text\nsub/*.pt filter=lfs\n",
             "a.bin": b"x" * 10, "sub/m.pt": b"y", "m.pt": b"z", "c.json": b"{}"}  # fmt: skip
    write(tmp_path, files)
    manifest, stand_in = manifest_from_directory(tmp_path, REPO, "main")
    lfs = {f.path for f in manifest.files if f.sha256 is not None}
    assert lfs == {"a.bin", "sub/m.pt"}
    assert stand_in
    assert len(manifest.commit) == 40
    stat = manifest_stat(manifest, REPO.with_path("c.json"))
    assert stat.content_digest is not None
    assert (stat.content_digest.algorithm, stat.content_digest.hex) == (
        GIT_BLOB_SHA1, git_blob_sha1(b"{}")
    )  # fmt: skip
    stat = manifest_stat(manifest, REPO.with_path("a.bin"))
    assert stat.content_digest is not None
    assert stat.content_digest.hex == hashlib.sha256(b"x" * 10).hexdigest()
    entries = manifest_entries(manifest, REPO.with_path("sub"))
    assert [(e.path, dict(e.params)["hf_revision"]) for e in entries] == [("m.pt", manifest.commit)]


def test_local_dir_metadata_names_the_commit_and_is_checked(tmp_path: Path) -> None:
    write(tmp_path, {"c.json": b"{}"})
    meta = tmp_path / ".cache/huggingface/download/c.json.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text(f"{COMMIT}\n{git_blob_sha1(b'{}')}\n1.0\n")
    manifest, stand_in = manifest_from_directory(tmp_path, REPO, "main")
    assert (manifest.commit, stand_in, [f.path for f in manifest.files]) == (
        COMMIT, False, ["c.json"]
    )  # fmt: skip
    meta.write_text(f"{COMMIT}\n{'b' * 40}\n1.0\n")
    with pytest.raises(UsageError, match="do not match the ETag"):
        manifest_from_directory(tmp_path, REPO, "main")


def test_a_manifest_round_trips_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"c.json": b"{}"})
    manifest, _ = manifest_from_directory(tmp_path, REPO, COMMIT)
    assert manifest.commit == COMMIT
    assert parse_manifest(manifest.to_bytes(), REPO) == manifest
    with pytest.raises(SourceProtocolError, match="another repo"):
        parse_manifest(manifest.to_bytes(), parse_url("hf://acme/other"))
    pointer = pointer_bytes(manifest.sha256, 123)
    assert parse_pointer(pointer, REPO) == (manifest.sha256, 123)
    with pytest.raises(SourceProtocolError):
        parse_pointer(pointer[:-1], REPO)
