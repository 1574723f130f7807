"""Hub layouts on a real filesystem (tmp_path): where each listed file goes, what is skipped,
what ``finish`` leaves behind, and every way an untrusted listing is refused."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from damselfly.backends.base import Entry, ObjectStat
from damselfly.core.digests import GIT_BLOB_SHA1, Digest, git_blob_sha1
from damselfly.core.errors import OutputError, SourceProtocolError, UsageError
from damselfly.core.urls import HubUrl, parse_url
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    ModelScopeCacheLayout,
    default_hf_cache_dir,
    default_ms_cache_dir,
    entry_from_stat,
)
from damselfly.download.jobs import FileJob

COMMIT = "c" * 40
OTHER_COMMIT = "d" * 40
REPO = parse_url("hf://acme/tiny")
assert isinstance(REPO, HubUrl)


def hf_entry(
    path: str,
    data: bytes,
    *,
    lfs: bool = False,
    commit: str = COMMIT,
    listed: str | None = None,
    repo: HubUrl = REPO,
) -> Entry:
    """An entry as ``HfBackend.list`` makes it; ``listed`` is the folder the listing was of."""
    digest = (
        Digest("sha256", hashlib.sha256(data).hexdigest())
        if lfs
        else Digest(GIT_BLOB_SHA1, git_blob_sha1(data))
    )
    relative = path[len(listed) + 1 :] if listed else path
    params = (("hf_revision", commit),)
    return Entry(repo.with_path(path), relative, len(data), digest, params)


def etag(entry: Entry) -> str:
    assert entry.content_digest is not None
    return entry.content_digest.hex


def place(layout, entry: Entry, data: bytes) -> None:
    """What download_file would do for a path output_for returned."""
    out = layout.output_for(entry)
    assert out is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


# -- HfCacheLayout -----------------------------------------------------------------------


def test_hf_cache_blobs_symlinks_and_ref(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    files = {"config.json": b"{}", "a/b/c/deep.bin": b"x" * 100, "a/w.bin": b"w" * 50}
    entries = [hf_entry(p, d, lfs=p.endswith(".bin")) for p, d in files.items()]
    for entry, data in zip(entries, files.values(), strict=True):
        assert layout.output_for(entry) == (tmp_path / "models--acme--tiny" / "blobs" / etag(entry))
        place_at(layout, entry, data)
    layout.finish(entries)

    repo = tmp_path / "models--acme--tiny"
    snapshot = repo / "snapshots" / COMMIT
    assert layout.snapshot_dir == snapshot
    assert os.readlink(snapshot / "config.json") == f"../../blobs/{etag(entries[0])}"
    assert os.readlink(snapshot / "a/b/c/deep.bin") == f"../../../../../blobs/{etag(entries[1])}"
    assert os.readlink(snapshot / "a/w.bin") == f"../../../blobs/{etag(entries[2])}"
    assert {p: (snapshot / p).read_bytes() for p in files} == files
    assert (repo / "refs" / "main").read_bytes() == COMMIT.encode()
    assert layout.location("a/w.bin") == snapshot / "a/w.bin"
    assert layout.location("") == snapshot


def place_at(layout, entry: Entry, data: bytes) -> None:
    out = layout.repo_dir / "blobs" / etag(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


def test_hf_cache_skips_blobs_present_with_the_right_size_and_shares_equal_content(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    present, stale = hf_entry("present.txt", b"abc"), hf_entry("stale.bin", b"abcdef", lfs=True)
    place_at(layout, present, b"abc")
    place_at(layout, stale, b"abc")  # truncated: must be fetched again
    twin = hf_entry("twin.txt", b"same")
    twin_again = hf_entry("dir/twin.txt", b"same")

    assert layout.output_for(present) is None
    assert layout.output_for(stale) == layout.repo_dir / "blobs" / etag(stale)
    assert layout.output_for(twin) is not None
    assert layout.output_for(twin_again) is None  # one blob, fetched once
    place_at(layout, twin, b"same")
    layout.finish([twin, twin_again])
    snapshot = layout.repo_dir / "snapshots" / COMMIT
    assert (snapshot / "dir/twin.txt").read_bytes() == (snapshot / "twin.txt").read_bytes()


@pytest.mark.parametrize(
    ("revision", "ref"),
    [("main", "refs/main"), ("refs/pr/1", "refs/refs/pr/1"), ("v1.0", "refs/v1.0")],
)
def test_hf_cache_ref_names_the_commit(tmp_path, revision, ref):
    layout = HfCacheLayout(tmp_path, REPO, revision)
    layout.finish([hf_entry("a.txt", b"a")])
    assert (tmp_path / "models--acme--tiny" / ref).read_bytes() == COMMIT.encode()


def test_hf_cache_no_ref_when_the_commit_was_asked_for(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, COMMIT.upper())
    layout.finish([hf_entry("a.txt", b"a")])
    assert not (tmp_path / "models--acme--tiny" / "refs").exists()


def test_hf_cache_adopt_commit_when_nothing_was_listed(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    layout.finish([])
    assert layout.location("") is None
    layout.adopt_commit(COMMIT)
    assert (tmp_path / "models--acme--tiny/refs/main").read_text() == COMMIT
    assert layout.location("x") == tmp_path / "models--acme--tiny/snapshots" / COMMIT / "x"


@pytest.mark.parametrize(
    ("text", "folder"),
    [
        ("hf://datasets/acme/data", "datasets--acme--data"),
        ("hf://spaces/acme/app", "spaces--acme--app"),
        ("hf://acme/tiny", "models--acme--tiny"),
    ],
)
def test_hf_cache_repo_folder_per_type(tmp_path, text, folder):
    url = parse_url(text)
    assert isinstance(url, HubUrl)
    assert HfCacheLayout(tmp_path, url, "main").repo_dir == tmp_path / folder


def test_hf_cache_existing_links_are_kept_or_replaced(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    entry = hf_entry("a/x.txt", b"x")
    link = layout.repo_dir / "snapshots" / COMMIT / "a/x.txt"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../../blobs/wrong")
    layout.finish([entry])
    assert os.readlink(link) == f"../../../blobs/{etag(entry)}"
    inode = link.lstat().st_ino
    layout.finish([entry])
    assert link.lstat().st_ino == inode  # already right: left alone
    assert sorted(p.name for p in link.parent.iterdir()) == ["x.txt"]  # no temp files


def test_hf_cache_subfolder_listing_mirrors_repo_paths(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO.with_path("sub"), "main")
    entry = hf_entry("sub/dir/f.txt", b"f", listed="sub")
    assert entry.path == "dir/f.txt"
    layout.finish([entry])
    assert layout.location("sub") == tmp_path / "models--acme--tiny/snapshots" / COMMIT / "sub"
    assert (layout.repo_dir / "snapshots" / COMMIT / "sub/dir/f.txt").is_symlink()


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (hf_entry("../evil", b"x"), SourceProtocolError),
        (hf_entry("a/../../evil", b"x"), SourceProtocolError),
        (hf_entry("/etc/evil", b"x"), SourceProtocolError),
        (hf_entry("nul\x00.txt", b"x"), SourceProtocolError),
        (hf_entry("a.txt", b"x", commit="main"), SourceProtocolError),
        (Entry(REPO.with_path("a.txt"), "a.txt", 1, None, (("hf_revision", COMMIT),)), None),
        (
            Entry(
                REPO.with_path("a.txt"),
                "a.txt",
                1,
                Digest("sha256", "../../x"),
                (("hf_revision", COMMIT),),
            ),
            None,
        ),
    ],
)
def test_hf_cache_refuses_untrusted_entries(tmp_path, entry, error):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    with pytest.raises(error or SourceProtocolError):
        layout.output_for(entry)
    with pytest.raises(error or SourceProtocolError):
        layout.finish([entry])
    assert list(tmp_path.iterdir()) == []


def test_hf_cache_refuses_mixed_commits(tmp_path):
    layout = HfCacheLayout(tmp_path, REPO, "main")
    layout.output_for(hf_entry("a.txt", b"a"))
    with pytest.raises(SourceProtocolError, match="mixes commits"):
        layout.output_for(hf_entry("b.txt", b"b", commit=OTHER_COMMIT))


@pytest.mark.parametrize(("path", "words"), [("a/x.txt", "symlink"), ("a/b/x.txt", "escapes")])
def test_hf_cache_never_writes_through_a_symlinked_snapshot_dir(tmp_path, path, words):
    outside = tmp_path / "outside"
    (outside / "b").mkdir(parents=True)
    layout = HfCacheLayout(tmp_path / "cache", REPO, "main")
    snapshot = layout.repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "a").symlink_to(outside)
    with pytest.raises(OutputError, match=words):
        layout.finish([hf_entry(path, b"x")])
    assert [p.name for p in outside.iterdir()] == ["b"]
    assert list((outside / "b").iterdir()) == []


@pytest.mark.parametrize("revision", ["", "../x", "a/../../b", "/abs", "a//b", "x\\y"])
def test_revision_names_that_cannot_be_directories(tmp_path, revision):
    with pytest.raises(UsageError):
        HfCacheLayout(tmp_path, REPO, revision)
    with pytest.raises(UsageError):
        ModelScopeCacheLayout(tmp_path, REPO, revision)


# -- HfLocalDirLayout ------------------------------------------------------------------------


def test_local_dir_writes_huggingface_hub_metadata(tmp_path):
    layout = HfLocalDirLayout(tmp_path, REPO)
    entry = hf_entry("sub/w.bin", b"w" * 10, lfs=True)
    place(layout, entry, b"w" * 10)
    before = time.time()
    layout.finish([entry])
    metadata = tmp_path / ".cache/huggingface/download/sub/w.bin.metadata"
    commit, tag, stamp = metadata.read_text().splitlines()
    assert (commit, tag) == (COMMIT, etag(entry))
    assert before <= float(stamp) <= time.time()
    assert (tmp_path / ".cache/huggingface/.gitignore").read_text() == "*"
    assert layout.output_for(entry) is None  # current now


def test_local_dir_refetches_when_etag_or_file_changed(tmp_path):
    layout = HfLocalDirLayout(tmp_path, REPO)
    entry = hf_entry("a.txt", b"one")
    place(layout, entry, b"one")
    layout.finish([entry])
    changed = hf_entry("a.txt", b"two")
    assert layout.output_for(changed) == tmp_path / "a.txt"
    later = time.time() + 10
    os.utime(tmp_path / "a.txt", (later, later))  # edited after the metadata was written
    assert layout.output_for(entry) == tmp_path / "a.txt"


def test_local_dir_subfolder_downloads_write_no_metadata(tmp_path):
    layout = HfLocalDirLayout(tmp_path, REPO.with_path("sub"))
    entry = hf_entry("sub/a.txt", b"a", listed="sub")
    assert layout.output_for(entry) == tmp_path / "a.txt"
    place(layout, entry, b"a")
    layout.finish([entry])
    assert not (tmp_path / ".cache").exists()


# -- ModelScopeCacheLayout -------------------------------------------------------------------


def ms_entry(path: str, data: bytes, *, repo: str = "modelscope://acme/tiny") -> Entry:
    url = parse_url(repo)
    assert isinstance(url, HubUrl)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    return Entry(url.with_path(path), path, len(data), digest, (("ms_revision", "abc1234"),))


def test_modelscope_cache_paths_and_reuse(tmp_path):
    url = parse_url("modelscope://acme/tiny")
    assert isinstance(url, HubUrl)
    layout = ModelScopeCacheLayout(tmp_path, url, "master")
    snapshot = tmp_path / "models/acme--tiny/snapshots/master"
    fresh, kept, stale = ms_entry("a/b.txt", b"b"), ms_entry("k.txt", b"kk"), ms_entry("s", b"ss")
    for path, data in (("k.txt", b"kk"), ("s", b"zz")):  # same size, other bytes: stale
        (snapshot / path).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / path).write_bytes(data)
    assert layout.output_for(fresh) == snapshot / "a/b.txt"
    assert layout.output_for(kept) is None
    assert layout.output_for(stale) == snapshot / "s"
    assert layout.location("") == snapshot
    layout.finish([fresh, kept, stale])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_modelscope_cache_datasets_and_tags(tmp_path):
    url = parse_url("modelscope://datasets/acme/ds")
    assert isinstance(url, HubUrl)
    layout = ModelScopeCacheLayout(tmp_path, url, "v1.0")
    assert layout.location("x.csv") == tmp_path / "datasets/acme--ds/snapshots/v1.0/x.csv"
    with pytest.raises(SourceProtocolError):
        layout.output_for(ms_entry("../x", b"x", repo="modelscope://datasets/acme/ds"))


# -- cache directories -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HF_HUB_CACHE": "/c", "HF_HOME": "/h"}, "/c"),
        ({"HUGGINGFACE_HUB_CACHE": "/old", "HF_HOME": "/h"}, "/old"),
        ({"HF_HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/h/hub"),
        ({"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, "/x/huggingface/hub"),
        ({"HOME": "/home/u"}, "/home/u/.cache/huggingface/hub"),
        ({"HF_HUB_CACHE": "~/c", "HOME": "/home/u"}, "/home/u/c"),
    ],
)
def test_default_hf_cache_dir(env, expected):
    assert default_hf_cache_dir(env) == Path(expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MODELSCOPE_CACHE": "/m", "HOME": "/home/u"}, "/m"),
        ({"HOME": "/home/u"}, "/home/u/.cache/modelscope"),
    ],
)
def test_default_ms_cache_dir(env, expected):
    assert default_ms_cache_dir(env) == Path(expected)


# -- one file, from a stat ------------------------------------------------------------------


def test_entry_from_stat_pins_the_commit():
    url = REPO.with_path("dir/a.bin")
    digest = Digest("sha256", "0" * 64)
    stat = ObjectStat(5, True, content_digest=digest, extras={"hf_commit": COMMIT})
    entry = entry_from_stat(FileJob(url=url, output=Path("/x")), stat)
    assert entry == Entry(url, "dir/a.bin", 5, digest, (("hf_revision", COMMIT),))
    ms = parse_url("modelscope://acme/tiny/a.bin")
    stat = ObjectStat(5, True, content_digest=digest, extras={"ms_revision": "abc1234"})
    assert entry_from_stat(FileJob(url=ms, output=Path("/x")), stat).params == (
        ("ms_revision", "abc1234"),
    )
    with pytest.raises(UsageError):
        entry_from_stat(FileJob(url=REPO, output=Path("/x")), stat)
