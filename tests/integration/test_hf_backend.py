"""HfBackend against our test Hugging Face hub and its separate CDN (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from damselfly.backends.base import Entry, RangeNotHonouredError, RequestOptions
from damselfly.backends.bodies import open_body
from damselfly.backends.hf import HfBackend
from damselfly.backends.http_responses import ResponseBody
from damselfly.core.digests import GIT_BLOB_SHA1, Digest, git_blob_sha1
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, parse_url
from damselfly.demo.hub_repos import HubRepo, lfs_pointer
from damselfly.testing.hf_hub import HfTestHub

WEIGHTS = hashlib.sha256(b"seed").digest() * 10_000  # 320,000 bytes: an LFS file
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"# tiny\n",
    "model.safetensors": WEIGHTS,
    "sub/b.txt": b"b\n",
    "sub/dir/a.txt": b"a\n",
    "empty.txt": b"",
}
DEV = {"config.json": b'{"hidden_size": 4}\n'}
PR = {"config.json": b'{"hidden_size": 2}\n'}
MANY = {f"shards/f{i:03}.txt": f"{i}\n".encode() for i in range(250)} | {"top.txt": b"t"}
PRIVATE = {"model.bin": WEIGHTS[::-1], "config.json": b"{}"}
PRIVATE_TOKEN = "hf_private_0123456789abcdef"
GATED_TOKEN = "hf_gated_0123456789abcdef"
OTHER_TOKEN = "hf_other_0123456789abcdef"
TOKENS = (PRIVATE_TOKEN, GATED_TOKEN, OTHER_TOKEN)
REPO_HINT = "repository not found (or private: set --hf-token or HF_TOKEN)"
GATED_HINT = "gated repository: accept its terms on the hub and set --hf-token or HF_TOKEN"
PIECE = 64 * 1024


def declared_repos() -> list[HubRepo]:
    small = 1024  # files of at least 1 KiB are LFS
    return [
        HubRepo(
            "acme/tiny",
            TINY,
            branches={"dev": DEV, "refs/pr/1": PR},
            tags={"v1.0": "dev"},
            lfs_threshold=small,
        ),
        HubRepo("acme/many", MANY, lfs_threshold=small),
        HubRepo(
            "acme/data",
            {"data/train.csv": b"a,b\n", "data/big.bin": WEIGHTS},
            repo_type="datasets",
            lfs_threshold=small,
        ),
        HubRepo("acme/app", {"app.py": b"print(1)\n"}, repo_type="spaces", lfs_threshold=small),
        HubRepo(
            "acme/private",
            PRIVATE,
            private=True,
            allowed_tokens=frozenset({PRIVATE_TOKEN}),
            lfs_threshold=small,
        ),
        HubRepo(
            "acme/gated",
            {"model.bin": WEIGHTS},
            gated=True,
            allowed_tokens=frozenset({GATED_TOKEN}),
            lfs_threshold=small,
        ),
    ]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    async with HfTestHub(declared_repos(), page_size=3, tokens={OTHER_TOKEN}) as test_hub:
        yield test_hub


@pytest.fixture
async def backend() -> AsyncIterator[HfBackend]:
    hf = HfBackend()
    yield hf
    await hf.aclose()


def opts(hub: HfTestHub, **params: str) -> RequestOptions:
    return RequestOptions(timeout=5.0).with_params(hf_endpoint=hub.endpoint, **params)


def hf(url: str) -> HubUrl:
    parsed = parse_url(url)
    assert isinstance(parsed, HubUrl)
    return parsed


async def read(
    backend: HfBackend, url: str, options: RequestOptions, byte_range: ByteRange | None = None
) -> bytes:
    async with aclosing(backend.get(hf(url), byte_range, options)) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def read_in_pieces(backend: HfBackend, url: str, options: RequestOptions, size: int) -> bytes:
    ranges = [ByteRange(start, min(PIECE, size - start)) for start in range(0, size, PIECE)]
    parts = await asyncio.gather(*(read(backend, url, options, r) for r in ranges))
    return b"".join(parts)


def commit_of(hub: HfTestHub, repo_id: str, revision: str = "main") -> str:
    return next(r for r in declared_repos() if r.repo_id == repo_id).refs[revision]


# -- revisions -------------------------------------------------------------------------------


async def test_branch_resolves_to_a_commit_once(hub, backend):
    options = opts(hub)
    entries = await backend.list(hf("hf://acme/tiny"), options)
    for entry in entries:
        await backend.stat(entry.url, options)
    assert await read(backend, "hf://acme/tiny/config.json", options) == TINY["config.json"]
    assert hub.stats.requests["GET /api/revision"] == 1
    commit = commit_of(hub, "acme/tiny")
    assert all(dict(e.params)["hf_revision"] == commit for e in entries)
    resolve_paths = [r.path for r in hub.stats.log if r.path.endswith(("/config.json", ".md"))]
    assert resolve_paths
    assert all(f"/resolve/{commit}/" in path for path in resolve_paths)


@pytest.mark.parametrize(
    ("revision", "expected"),
    [("v1.0", DEV), ("dev", DEV), ("refs/pr/1", PR), ("main", TINY)],
)
async def test_tag_branch_and_pr_revisions(hub, backend, revision, expected):
    options = opts(hub, hf_revision=revision)
    assert await read(backend, "hf://acme/tiny/config.json", options) == expected["config.json"]
    revision_requests = [r.path for r in hub.stats.log if "/revision/" in r.path]
    assert revision_requests == [f"/api/models/acme/tiny/revision/{revision.replace('/', '%2F')}"]


async def test_commit_revision_needs_no_revision_call(hub, backend):
    commit = commit_of(hub, "acme/tiny", "dev")
    options = opts(hub, hf_revision=commit.upper())
    assert await backend.resolve_revision(hf("hf://acme/tiny"), options) == commit
    assert await read(backend, "hf://acme/tiny/config.json", options) == DEV["config.json"]
    assert hub.stats.requests["GET /api/revision"] == 0


async def test_revision_cache_expires(hub):
    clock = FakeClock()
    backend = HfBackend(clock=clock, revision_ttl=60.0)
    try:
        for advance in (0.0, 30.0, 31.0):
            clock.now += advance
            await backend.resolve_revision(hf("hf://acme/tiny"), opts(hub))
    finally:
        await backend.aclose()
    assert hub.stats.requests["GET /api/revision"] == 2


# -- listing -----------------------------------------------------------------------------------


async def test_list_recursive_root(hub, backend):
    entries = await backend.list(hf("hf://acme/tiny"), opts(hub))
    assert [e.path for e in entries] == sorted(TINY)
    by_path = {e.path: e for e in entries}
    lfs = by_path["model.safetensors"]
    assert lfs.content_length == len(WEIGHTS)
    assert lfs.content_digest == Digest("sha256", hashlib.sha256(WEIGHTS).hexdigest())
    pointer = lfs_pointer(hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))
    assert dict(lfs.params)["hf_blob_oid"] == git_blob_sha1(pointer)  # the pointer's, as listed
    small = by_path["config.json"]
    assert small.content_digest == Digest(GIT_BLOB_SHA1, git_blob_sha1(TINY["config.json"]))
    assert small.content_length == len(TINY["config.json"])
    assert dict(small.params)["hf_blob_oid"] == git_blob_sha1(TINY["config.json"])
    assert small.url == hf("hf://acme/tiny/config.json")


async def test_list_subfolder_gives_relative_paths(hub, backend):
    entries = await backend.list(hf("hf://acme/tiny/sub"), opts(hub))
    assert [(e.path, str(e.url)) for e in entries] == [
        ("b.txt", "hf://acme/tiny/sub/b.txt"),
        ("dir/a.txt", "hf://acme/tiny/sub/dir/a.txt"),
    ]
    tree = [r.path for r in hub.stats.log if "/tree/" in r.path]
    assert tree[0].endswith("/tree/" + commit_of(hub, "acme/tiny") + "/sub")


async def test_list_follows_every_page_without_a_cap(hub, backend):
    entries = await backend.list(hf("hf://acme/many"), opts(hub))
    assert len(entries) == 251
    assert [e.path for e in entries] == sorted(MANY)
    listed_items = 251 + 1  # files and the "shards" directory
    assert hub.stats.requests["GET /api/tree"] == math.ceil(listed_items / 3)


async def test_a_large_listing_page_is_read_whole(backend):
    files = {f"d{i // 100}/file-{i:05}.txt": b"x" for i in range(4000)}  # ~0.5 MB of JSON
    async with HfTestHub([HubRepo("acme/big", files)], page_size=10_000) as big:
        entries = await backend.list(hf("hf://acme/big"), opts(big))
    assert len(entries) == 4000
    assert big.stats.requests["GET /api/tree"] == 1


async def test_list_dataset_and_space(hub, backend):
    data = await backend.list(hf("hf://datasets/acme/data/data"), opts(hub))
    assert [e.path for e in data] == ["big.bin", "train.csv"]
    assert await read(backend, "hf://datasets/acme/data/data/train.csv", opts(hub)) == b"a,b\n"
    big = await read_in_pieces(backend, "hf://datasets/acme/data/data/big.bin", opts(hub), 320_000)
    assert big == WEIGHTS
    app = await backend.list(hf("hf://spaces/acme/app"), opts(hub))
    assert [e.path for e in app] == ["app.py"]
    assert await read(backend, "hf://spaces/acme/app/app.py", opts(hub)) == b"print(1)\n"


def _file(path: object, **extra: object) -> dict[str, object]:
    return {"type": "file", "path": path, "size": 1, "oid": "a" * 40, **extra}


MALICIOUS = [
    ([_file("../x")], "'../x'"),
    ([_file("/abs")], "'/abs'"),
    ([_file("a/./b")], "'a/./b'"),
    ([_file("a//b")], "'a//b'"),
    ([_file("a\\b")], "'a\\\\b'"),
    ([_file("a\x00b")], "'a\\x00b'"),
    ([_file("ok.txt"), _file("ok.txt")], "'ok.txt' twice"),
    ([_file("ok.txt", oid="zz")], "'ok.txt'"),
    ([_file("ok.txt", lfs={"oid": "nothex", "size": 1})], "'ok.txt'"),
    ([_file(7)], "without a path"),
    ({"not": "a list"}, "not a JSON list"),
]


@pytest.mark.parametrize(("listing", "named"), MALICIOUS)
async def test_untrusted_listing_is_rejected(backend, listing, named):
    repo = HubRepo("evil/repo", {"ok.txt": b"x"})
    repo.tree_override = listing
    async with HfTestHub([repo]) as evil:
        with pytest.raises(SourceProtocolError) as caught:
            await backend.list(hf("hf://evil/repo"), opts(evil))
    assert str(caught.value).startswith("evil/repo: ")
    assert named in str(caught.value)


async def test_listing_outside_the_subfolder_is_rejected(backend):
    repo = HubRepo("evil/repo", {"sub/ok.txt": b"x"})
    repo.tree_override = [_file("sub/ok.txt"), _file("other/x.txt")]
    async with HfTestHub([repo]) as evil:
        with pytest.raises(SourceProtocolError, match=r"'other/x\.txt'.*not under") as caught:
            await backend.list(hf("hf://evil/repo/sub"), opts(evil))
    assert str(caught.value).startswith("evil/repo: ")


# -- stat and get ------------------------------------------------------------------------------


async def test_stat_small_file(hub, backend):
    stat = await backend.stat(hf("hf://acme/tiny/config.json"), opts(hub))
    blob = git_blob_sha1(TINY["config.json"])
    assert (stat.content_length, stat.etag) == (19, blob)
    assert stat.content_digest == Digest(GIT_BLOB_SHA1, blob)
    assert stat.supports_ranges
    assert stat.extras["hf_blob_oid"] == blob
    assert stat.extras["hf_served_by"] == "hub"
    assert stat.extras["hf_commit"] == commit_of(hub, "acme/tiny")


async def test_stat_lfs_file_uses_the_linked_etag(hub, backend):
    stat = await backend.stat(hf("hf://acme/tiny/model.safetensors"), opts(hub))
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert (stat.content_length, stat.etag) == (len(WEIGHTS), sha)
    assert stat.content_digest == Digest("sha256", sha)
    assert stat.supports_ranges
    assert stat.extras["hf_served_by"] == "cdn"
    assert "hf_blob_oid" not in stat.extras


async def test_exists(hub, backend):
    assert await backend.exists(hf("hf://acme/tiny/README.md"), opts(hub))
    assert not await backend.exists(hf("hf://acme/tiny/nope.md"), opts(hub))


async def test_ranged_download_resolves_each_file_once(hub, backend):
    options = opts(hub)
    url = "hf://acme/tiny/model.safetensors"
    await backend.stat(hf(url), options)
    assert await read_in_pieces(backend, url, options, len(WEIGHTS)) == WEIGHTS
    assert hub.stats.resolve_hits["model.safetensors"] == 1
    assert hub.stats.cdn_hits["model.safetensors"] == math.ceil(len(WEIGHTS) / PIECE)
    assert hub.stats.bytes_served["cdn"] == len(WEIGHTS)


async def test_concurrent_pieces_share_one_resolution(hub, backend):
    url = "hf://acme/tiny/model.safetensors"
    assert await read_in_pieces(backend, url, opts(hub), len(WEIGHTS)) == WEIGHTS
    assert hub.stats.resolve_hits["model.safetensors"] == 1


async def test_token_never_reaches_the_cdn(hub, backend):
    options = opts(hub, hf_token=PRIVATE_TOKEN)
    url = "hf://acme/private/model.bin"
    data = await read_in_pieces(backend, url, options, len(PRIVATE["model.bin"]))
    assert data == PRIVATE["model.bin"]
    assert await read(backend, "hf://acme/private/config.json", options) == b"{}"
    cdn = [r for r in hub.stats.log if r.server == "cdn"]
    hub_side = [r for r in hub.stats.log if r.server == "hub"]
    assert cdn
    assert not any(r.authorized for r in cdn)
    assert hub_side
    assert all(r.authorized for r in hub_side)
    assert hub.stats.cdn_authorization_rejected == 0


async def test_private_repo_works_with_token_and_is_cached_per_token(hub, backend):
    url = "hf://acme/private/model.bin"
    await backend.stat(hf(url), opts(hub, hf_token=PRIVATE_TOKEN))
    pinned = opts(hub, hf_revision=commit_of(hub, "acme/private"))
    with pytest.raises(SourceNotFoundError, match=re.escape(REPO_HINT)):
        await read(backend, url, pinned, ByteRange(0, 10))  # no token: no cached CDN URL
    assert hub.stats.requests["HEAD /resolve"] == 2  # the anonymous one was refused
    assert hub.stats.requests["GET cdn"] == 0


async def test_whole_file_and_empty_file(hub, backend):
    options = opts(hub)
    assert await read(backend, "hf://acme/tiny/model.safetensors", options) == WEIGHTS
    assert await read(backend, "hf://acme/tiny/empty.txt", options) == b""
    part = await read(backend, "hf://acme/tiny/config.json", options, ByteRange(2, 5))
    assert part == TINY["config.json"][2:7]


async def test_stale_cdn_url_is_resolved_again_once(hub, backend):
    url, options = "hf://acme/tiny/model.safetensors", opts(hub)
    assert await read(backend, url, options, ByteRange(0, 100)) == WEIGHTS[:100]
    hub.cdn.rotate_key()
    assert await read(backend, url, options, ByteRange(100, 100)) == WEIGHTS[100:200]
    assert await read(backend, url, options, ByteRange(200, 100)) == WEIGHTS[200:300]
    assert hub.stats.resolve_hits["model.safetensors"] == 2
    assert hub.stats.requests["GET cdn"] == 4  # one refused, three served


async def test_cdn_url_reused_until_it_expires():
    clock = FakeClock()
    async with HfTestHub(declared_repos(), cdn_url_ttl=100.0, clock=clock) as hub:
        backend = HfBackend(clock=clock)
        try:
            for advance in (0.0, 50.0, 30.0):  # the URL is dropped 30 s before it expires
                clock.now += advance
                await read(backend, "hf://acme/tiny/model.safetensors", opts(hub), ByteRange(0, 9))
        finally:
            await backend.aclose()
    assert hub.stats.resolve_hits["model.safetensors"] == 2
    assert hub.stats.requests["GET cdn"] == 3


async def test_cdn_refusing_fresh_urls_is_an_auth_error(backend):
    async with HfTestHub(declared_repos(), cdn_url_ttl=-10.0) as hub:  # born expired
        with pytest.raises(SourceAuthError) as caught:
            await read(backend, "hf://acme/tiny/model.safetensors", opts(hub), ByteRange(0, 9))
        cdn_host = hub.cdn.base_url.removeprefix("http://")
    message = f"acme/tiny: CDN {cdn_host} answered HTTP 403 for model.safetensors"
    assert str(caught.value) == message
    assert hub.stats.resolve_hits["model.safetensors"] == 2  # one fresh URL, then give up
    assert hub.stats.requests["GET cdn"] == 2


async def test_server_ignoring_range_is_an_error(backend):
    async with HfTestHub(declared_repos(), ignore_ranges=True) as hub:
        with pytest.raises(RangeNotHonouredError, match="acme/tiny: asked for bytes 1-2"):
            await read(backend, "hf://acme/tiny/README.md", opts(hub), ByteRange(1, 2))
        whole = await read(backend, "hf://acme/tiny/README.md", opts(hub), ByteRange(0, 7))
    assert whole == TINY["README.md"]


async def test_endpoint_with_a_path_prefix(backend):
    async with HfTestHub(declared_repos(), prefix="/mirror/hf") as hub:
        assert hub.endpoint.endswith("/mirror/hf")
        entries = await backend.list(hf("hf://acme/tiny/sub"), opts(hub))
        data = await read(backend, "hf://acme/tiny/model.safetensors", opts(hub))
    assert len(entries) == 2
    assert data == WEIGHTS
    assert all(r.path.startswith("/mirror/hf/") for r in hub.stats.log if r.server == "hub")


async def test_command_line_hub_serves_a_directory(backend, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.bin").write_bytes(WEIGHTS)
    (tmp_path / "config.json").write_bytes(b"{}")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "damselfly.testing.hf_hub", "--repo-dir", str(tmp_path)),
        *("--repo-id", "local/dir", "--lfs-threshold", "1000"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        options = RequestOptions(timeout=5.0).with_params(hf_endpoint=banner.split()[1].decode())
        entries = await backend.list(hf("hf://local/dir"), options)
        weights = await read_in_pieces(backend, "hf://local/dir/sub/weights.bin", options, 320_000)
    finally:
        process.terminate()
        await process.wait()
    assert [(e.path, e.content_length) for e in entries] == [
        ("config.json", 2),
        ("sub/weights.bin", len(WEIGHTS)),
    ]
    assert weights == WEIGHTS
    assert process.returncode == 0


# -- errors ------------------------------------------------------------------------------------

ERRORS = [
    ("hf://acme/nope/x.bin", {}, SourceNotFoundError, f"acme/nope: {REPO_HINT}"),
    ("hf://acme/private/model.bin", {}, SourceNotFoundError, f"acme/private: {REPO_HINT}"),
    (
        "hf://acme/private/model.bin",
        {"hf_token": OTHER_TOKEN},
        SourceNotFoundError,
        f"acme/private: {REPO_HINT}",
    ),
    ("hf://acme/gated/model.bin", {}, SourceAuthError, f"acme/gated: {GATED_HINT}"),
    (
        "hf://acme/gated/model.bin",
        {"hf_token": OTHER_TOKEN},
        SourceAuthError,
        f"acme/gated: {GATED_HINT}",
    ),
    (
        "hf://acme/tiny/config.json",
        {"hf_revision": "nope"},
        SourceNotFoundError,
        "acme/tiny: revision nope not found",
    ),
    (
        "hf://acme/tiny/missing.txt",
        {},
        SourceNotFoundError,
        "acme/tiny: file missing.txt not found at main",
    ),
    (
        "hf://datasets/acme/data/x.csv",
        {},
        SourceNotFoundError,
        "datasets/acme/data: file x.csv not found at main",
    ),
    (
        "hf://acme/tiny/config.json",
        {"hf_token": "hf_unknown_0123456789"},
        SourceAuthError,
        "acme/tiny: the hub rejected the token (invalid credentials): check --hf-token or HF_TOKEN",
    ),
]


@pytest.mark.parametrize(("url", "params", "kind", "message"), ERRORS)
async def test_errors_name_the_repo(hub, backend, url, params, kind, message):
    with pytest.raises(kind) as caught:
        await backend.stat(hf(url), opts(hub, **params))
    assert str(caught.value) == message
    _assert_no_token(caught.value)


async def test_gated_repo_lists_but_does_not_serve(hub, backend):
    entries = await backend.list(hf("hf://acme/gated"), opts(hub))
    assert [e.path for e in entries] == ["model.bin"]
    with pytest.raises(SourceAuthError, match="gated repository"):
        await read(backend, "hf://acme/gated/model.bin", opts(hub), ByteRange(0, 10))
    data = await read(backend, "hf://acme/gated/model.bin", opts(hub, hf_token=GATED_TOKEN))
    assert data == WEIGHTS


async def test_missing_subfolder_and_revision_in_listing(hub, backend):
    with pytest.raises(SourceNotFoundError, match=r"^acme/tiny: folder nope not found at main$"):
        await backend.list(hf("hf://acme/tiny/nope"), opts(hub))
    with pytest.raises(SourceNotFoundError, match=r"^acme/tiny: revision v9 not found$"):
        await backend.list(hf("hf://acme/tiny"), opts(hub, hf_revision="v9"))


async def test_unreachable_hub(backend):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = RequestOptions(timeout=2.0).with_params(hf_endpoint=endpoint, hf_token=OTHER_TOKEN)
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.stat(hf("hf://acme/tiny/config.json"), options)
    assert str(caught.value).startswith(f"acme/tiny: hub {endpoint} unreachable: cannot connect")
    _assert_no_token(caught.value)


async def test_token_appears_in_no_error_or_repr(hub, backend):
    failures: list[BaseException] = []
    for token in TOKENS:
        options = opts(hub, hf_token=token)
        for url in ("hf://acme/nope/x", "hf://acme/gated/model.bin", "hf://acme/tiny/zz"):
            try:
                await read(backend, url, options, ByteRange(0, 1))
            except BackendError as exc:
                failures.append(exc)
        resolved = await backend.resolve_file(hf("hf://acme/tiny/model.safetensors"), options)
        assert token not in repr(options)
        assert token not in repr(resolved)
    assert len(failures) >= 6
    for failure in failures:
        _assert_no_token(failure)


def _assert_no_token(error: BaseException) -> None:
    seen: BaseException | None = error
    while seen is not None:
        for token in (*TOKENS, "hf_unknown_0123456789"):
            assert token not in str(seen)
            assert token not in repr(seen)
            assert "Signature=" not in str(seen)
        seen = seen.__cause__ or seen.__context__


def test_entry_params_merge_into_per_file_options():
    entry = Entry(hf("hf://o/r/a"), "a", 1, None, (("hf_revision", "c" * 40),))
    merged = RequestOptions(params=(("hf_revision", "main"), ("hf_token", "t"))).with_params(
        **dict(entry.params)
    )
    assert merged.param("hf_revision") == "c" * 40
    assert merged.param("hf_token") == "t"


@pytest.mark.parametrize(
    ("path", "byte_range"),
    [("model.safetensors", None), ("model.safetensors", ByteRange(1000, 200_000)),
     ("config.json", None)],
    ids=["lfs-whole", "lfs-range", "small"],
)  # fmt: skip
async def test_open_body_reads_the_files_bytes(hub, backend, path, byte_range) -> None:
    """The body read into one reused buffer (``bodies.open_body``; an LFS file through the
    CDN redirect, taken from its connection) holds the file's bytes."""
    buffer, parts = bytearray(65_536), []
    url = hf(f"hf://acme/tiny/{path}")
    async with open_body(backend, url, byte_range, opts(hub)) as body:
        assert isinstance(body, ResponseBody)
        assert body.adopted
        while count := await body.read_into(memoryview(buffer)):
            parts.append(bytes(buffer[:count]))
    whole = TINY[path]
    assert b"".join(parts) == (whole if byte_range is None else whole[1000:201_000])
