"""ModelScopeBackend against our ModelScope test hub (real HTTP on loopback)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator

import pytest

from damselfly.backends.base import Entry, RangeNotHonouredError, RequestOptions
from damselfly.backends.modelscope import API_ATTEMPTS, ModelScopeBackend
from damselfly.backends.modelscope_options import resolve_ms_endpoint, resolve_ms_token
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceUnreachableError,
    UsageError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, parse_url
from damselfly.testing.ms_hub import MsRepo, MsTestHub
from damselfly.transport.http_session import create_origin_session, default_ssl_context

WEIGHTS = bytes(range(256)) * 1200  # 307,200 bytes
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"# tiny\n",
    "weights/part-1.bin": WEIGHTS,
    "weights/part-2.bin": WEIGHTS[::-1],
    "weights/nested/x.txt": b"nested\n",
}
TAGGED = {"config.json": b'{"hidden_size": 4}\n', "README.md": b"# old\n"}
SECRET = "ms-secret-0123456789"
ROOT = "modelscope://acme/tiny"
TLS_CONTEXT = default_ssl_context()
REPO_HINT = "repository not found (or private: set --ms-token or MODELSCOPE_API_TOKEN)"


def sha256(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.fixture
async def hub() -> AsyncIterator[MsTestHub]:
    repos = {
        "acme/tiny": MsRepo(TINY, tags={"v1.0": TAGGED}),
        "acme/secret": MsRepo({"model.bin": b"private bytes"}, private=True),
        "acme/wide": {f"d{i}/f{j}.txt": f"{i}-{j}".encode() for i in range(3) for j in range(4)},
    }
    datasets = {"acme/ds": {f"data/part-{i}.csv": f"row,{i}\n".encode() for i in range(7)}}
    async with MsTestHub(repos, datasets=datasets, token=SECRET) as test_hub:
        yield test_hub


@pytest.fixture
async def backend() -> AsyncIterator[ModelScopeBackend]:
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)

    session = create_origin_session(ssl_context=TLS_CONTEXT)  # loading CAs costs ~50 ms
    ms = ModelScopeBackend(session, listing_cap=3000, dataset_page_length=3, sleep=no_sleep)
    yield ms
    await session.close()


def opts(hub: MsTestHub, **params: str) -> RequestOptions:
    return RequestOptions(timeout=5.0).with_params(**{"ms_endpoint": hub.endpoint, **params})


async def fetch(
    ms: ModelScopeBackend, url: str, options: RequestOptions, byte_range: ByteRange | None = None
) -> bytes:
    return b"".join([chunk async for chunk in ms.get(parse_url(url), byte_range, options)])


async def fetch_entry(ms: ModelScopeBackend, entry: Entry, options: RequestOptions) -> bytes:
    pinned = options.with_params(**dict(entry.params))
    return b"".join([chunk async for chunk in ms.get(entry.url, None, pinned)])


# -- listing -------------------------------------------------------------------------------


async def test_list_is_recursive_with_sizes_digests_and_pinned_commits(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    entries = await backend.list(parse_url(ROOT), opts(hub))

    assert [e.path for e in entries] == sorted(TINY)
    master = hub.commit_of("acme/tiny")
    for entry in entries:
        assert entry.url == HubUrl("modelscope", "models", "acme", "tiny", entry.path)
        assert entry.content_length == len(TINY[entry.path])
        assert entry.content_digest == sha256(TINY[entry.path])
        assert entry.params == (("ms_revision", master),)
    assert hub.counters["files"] == 1
    assert hub.requests_for("files")[0].path_qs.endswith("?Revision=master&Recursive=True")


async def test_list_subfolder_gives_paths_relative_to_it(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    entries = await backend.list(parse_url(f"{ROOT}/weights"), opts(hub))

    assert [e.path for e in entries] == ["nested/x.txt", "part-1.bin", "part-2.bin"]
    assert [e.url.path for e in entries if isinstance(e.url, HubUrl)] == [
        "weights/nested/x.txt",
        "weights/part-1.bin",
        "weights/part-2.bin",
    ]
    assert hub.requests_for("files")[0].path_qs.endswith("&Recursive=True&Root=weights")


async def test_list_of_a_single_file_names_it(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    entries = await backend.list(parse_url(f"{ROOT}/weights/part-2.bin"), opts(hub))

    assert [(e.path, e.content_length) for e in entries] == [("part-2.bin", len(WEIGHTS))]


async def test_list_at_a_tag_pins_the_tags_commit(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    entries = await backend.list(parse_url(ROOT), opts(hub, ms_revision="v1.0"))

    assert [e.path for e in entries] == sorted(TAGGED)
    assert {e.params for e in entries} == {(("ms_revision", hub.commit_of("acme/tiny", "v1.0")),)}
    assert [await fetch_entry(backend, e, opts(hub)) for e in entries] == [
        TAGGED[e.path] for e in entries
    ]


async def test_files_stay_on_their_commit_when_the_branch_moves(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    entries = await backend.list(parse_url(ROOT), opts(hub))
    hub.push("acme/tiny", {**TINY, "config.json": b'{"hidden_size": 16}\n'})

    config = next(e for e in entries if e.path == "config.json")
    assert await fetch_entry(backend, config, opts(hub)) == TINY["config.json"]
    assert await fetch(backend, f"{ROOT}/config.json", opts(hub)) == b'{"hidden_size": 16}\n'
    # Unchanged files keep the commit that last changed them.
    relisted = {e.path: e.params for e in await backend.list(parse_url(ROOT), opts(hub))}
    assert relisted["README.md"] == next(e.params for e in entries if e.path == "README.md")
    assert relisted["config.json"] == (("ms_revision", hub.commit_of("acme/tiny")),)


async def test_a_truncated_listing_is_walked_per_directory(hub: MsTestHub) -> None:
    hub.listing_cap = 5
    session = create_origin_session(ssl_context=TLS_CONTEXT)
    ms = ModelScopeBackend(session, listing_cap=5)
    try:
        entries = await ms.list(parse_url("modelscope://acme/wide"), opts(hub))
    finally:
        await session.close()

    assert len(entries) == 12
    assert [e.path for e in entries] == sorted(f"d{i}/f{j}.txt" for i in range(3) for j in range(4))
    assert hub.counters["files"] == 1 + 1 + 3  # truncated, shallow root, one per directory


async def test_a_directory_the_hub_cannot_list_whole_is_an_error(hub: MsTestHub) -> None:
    hub.listing_cap = 3
    session = create_origin_session(ssl_context=TLS_CONTEXT)
    ms = ModelScopeBackend(session, listing_cap=3)
    try:
        with pytest.raises(SourceProtocolError) as caught:
            await ms.list(parse_url("modelscope://acme/wide/d0"), opts(hub))
    finally:
        await session.close()

    assert str(caught.value) == (
        "modelscope://acme/wide: directory 'd0' holds 3 or more entries; cannot list it all"
    )


async def test_dataset_listing_is_paginated(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    entries = await backend.list(parse_url("modelscope://datasets/acme/ds/data"), opts(hub))

    assert [e.path for e in entries] == [f"part-{i}.csv" for i in range(7)]
    pages = [r.path_qs for r in hub.requests_for("tree")]
    assert len(pages) == 3
    assert pages[2].startswith("/api/v1/datasets/acme/ds/repo/tree?Revision=master")
    assert pages[2].endswith("&Root=data&PageNumber=3&PageSize=3")
    body = await fetch_entry(backend, entries[4], opts(hub))
    assert body == b"row,4\n"
    assert hub.requests_for("file")[0].path_qs.startswith("/api/v1/datasets/acme/ds/repo?")


# -- stat / get ----------------------------------------------------------------------------


async def test_stat_reports_size_digest_ranges_and_pinned_commit(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    stat = await backend.stat(parse_url(f"{ROOT}/weights/part-1.bin"), opts(hub))

    assert stat.content_length == len(WEIGHTS)
    assert stat.content_digest == sha256(WEIGHTS)
    assert stat.supports_ranges is True
    assert stat.etag == sha256(WEIGHTS).hex
    assert stat.extras == {"ms_revision": hub.commit_of("acme/tiny")}
    assert hub.requests_for("files")[0].path_qs.endswith("&Recursive=False&Root=weights")
    assert hub.bytes_served == 0


async def test_exists(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    assert await backend.exists(parse_url(f"{ROOT}/README.md"), opts(hub)) is True
    assert await backend.exists(parse_url(f"{ROOT}/weights/none.bin"), opts(hub)) is False


async def test_get_whole_file_sends_the_sdk_download_url(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    body = await fetch(backend, f"{ROOT}/weights/part-2.bin", opts(hub))

    assert body == WEIGHTS[::-1]
    request = hub.requests_for("file")[0]
    assert request.path_qs == (
        "/api/v1/models/acme/tiny/repo?Revision=master&FilePath=weights%2Fpart-2.bin"
    )
    assert request.range is None
    assert hub.bytes_served == len(WEIGHTS)


@pytest.mark.parametrize("ranged_status", [206, 200])
@pytest.mark.parametrize(
    ("start", "length"), [(0, 1), (0, 4096), (100_000, 65_536), (len(WEIGHTS) - 7, 7)]
)
async def test_get_ranges_are_exact(
    hub: MsTestHub, backend: ModelScopeBackend, ranged_status: int, start: int, length: int
) -> None:
    hub.ranged_status = ranged_status  # 200 + Content-Range is what the live hub answers
    body = await fetch(backend, f"{ROOT}/weights/part-1.bin", opts(hub), ByteRange(start, length))

    assert body == WEIGHTS[start : start + length]
    assert hub.requests_for("file")[0].range == f"bytes={start}-{start + length - 1}"
    assert hub.bytes_served == length


async def test_a_range_answered_with_the_whole_file_is_refused(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    hub.honour_ranges = False
    with pytest.raises(RangeNotHonouredError) as caught:
        await fetch(backend, f"{ROOT}/weights/part-1.bin", opts(hub), ByteRange(10, 10))

    assert str(caught.value) == f"{ROOT}: the hub ignored Range and sent the whole file"


async def test_a_short_body_is_an_error(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    hub.short_bodies = True
    with pytest.raises(SourceProtocolError) as caught:
        await fetch(backend, f"{ROOT}/weights/part-1.bin", opts(hub), ByteRange(0, 100))

    assert str(caught.value) == f"{ROOT}: body ended after 99 of 100 bytes"


async def test_a_range_past_the_end_is_an_error(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    with pytest.raises(SourceProtocolError, match=r"past the end of 'README\.md'"):
        await fetch(backend, f"{ROOT}/README.md", opts(hub), ByteRange(1000, 10))


# -- untrusted listings ----------------------------------------------------------------------


def listing(*paths: object, size: object = 1, sha: object = "") -> tuple[int, object]:
    files = [{"Path": p, "Type": "blob", "Size": size, "Sha256": sha} for p in paths]
    return 200, {"Code": 200, "Success": True, "Message": "", "Data": {"Files": files}}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (listing("/etc/passwd"), "is absolute: '/etc/passwd'"),
        (listing("../escape"), "has an empty, '.' or '..' segment: '../escape'"),
        (listing("a/../../b"), "has an empty, '.' or '..' segment: 'a/../../b'"),
        (listing("a/./b"), "has an empty, '.' or '..' segment: 'a/./b'"),
        (listing("a//b"), "has an empty, '.' or '..' segment: 'a//b'"),
        (listing("dir/"), "has an empty, '.' or '..' segment: 'dir/'"),
        (listing(""), "missing or non-text path: ''"),
        (listing(7), "missing or non-text path: 7"),
        (listing("a\x00b"), "contains a NUL byte: 'a\\x00b'"),
        (listing("a\\..\\b"), "contains a backslash: 'a\\\\..\\\\b'"),
        (listing("x.bin", "x.bin"), "duplicate path: 'x.bin'"),
        (listing("x.bin", size=-1), "bad Size -1: 'x.bin'"),
        (listing("x.bin", size="12"), "bad Size '12': 'x.bin'"),
        (listing("x.bin", size=True), "bad Size True: 'x.bin'"),
        (listing("x.bin", sha="zz"), "bad Sha256 'zz': 'x.bin'"),
    ],
)
async def test_hostile_listings_are_rejected(
    hub: MsTestHub, backend: ModelScopeBackend, answer: tuple[int, object], expected: str
) -> None:
    hub.listing_overrides[("models", "acme/tiny")] = answer
    with pytest.raises(SourceProtocolError) as caught:
        await backend.list(parse_url(ROOT), opts(hub))

    assert str(caught.value) == f"{ROOT}: untrusted file listing: {expected}"


async def test_paths_outside_the_subfolder_are_rejected(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    hub.listing_overrides[("models", "acme/tiny")] = listing("weights/a.bin", "config.json")
    with pytest.raises(SourceProtocolError) as caught:
        await backend.list(parse_url(f"{ROOT}/weights"), opts(hub))

    assert str(caught.value) == (
        f"{ROOT}: untrusted file listing: path outside the requested folder: 'config.json'"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((200, {"Code": 200, "Data": {"Files": "x"}}), "malformed file listing (no Data.Files"),
        ((200, {"Code": 200, "Data": {"Files": ["x"]}}), "malformed listing entry 'x'"),
        ((200, {"Code": 10010205001, "Success": False, "Message": "busy"}), "refused the request"),
        ((200, ["not", "an", "envelope"]), "hub refused the request"),
    ],
)
async def test_malformed_envelopes_are_rejected(
    hub: MsTestHub, backend: ModelScopeBackend, answer: tuple[int, object], expected: str
) -> None:
    hub.listing_overrides[("models", "acme/tiny")] = answer
    with pytest.raises(SourceProtocolError, match=expected.replace("(", r"\(")):
        await backend.list(parse_url(ROOT), opts(hub))


# -- errors users see ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "params", "error", "message"),
    [
        ("modelscope://acme/missing", {}, SourceNotFoundError, REPO_HINT),
        ("modelscope://datasets/acme/missing", {}, SourceNotFoundError, REPO_HINT),
        ("modelscope://acme/secret", {}, SourceAuthError, REPO_HINT),
        (
            "modelscope://acme/secret",
            {"ms_token": "wrong-token"},
            SourceAuthError,
            "repository not found (or not accessible with the given token)",
        ),
        (ROOT, {"ms_revision": "v9"}, SourceNotFoundError, "revision 'v9' not found"),
        (
            ROOT,
            {"ms_revision": "0123456789abcdef"},
            SourceNotFoundError,
            "revision '0123456789abcdef' not found",
        ),
        (
            f"{ROOT}/no-such-dir",
            {},
            SourceNotFoundError,
            "path 'no-such-dir' not found at revision 'master'",
        ),
    ],
)
async def test_listing_errors_name_the_repo(
    hub: MsTestHub,
    backend: ModelScopeBackend,
    url: str,
    params: dict[str, str],
    error: type[BackendError],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        await backend.list(parse_url(url), opts(hub, **params))

    repo = str(parse_url(url)).removesuffix("/no-such-dir")
    assert str(caught.value) == f"{repo}: {message}"


@pytest.mark.parametrize("operation", ["get", "stat"])
async def test_a_missing_file_is_file_not_found(
    hub: MsTestHub, backend: ModelScopeBackend, operation: str
) -> None:
    url = parse_url(f"{ROOT}/weights/none.bin")
    call = (
        fetch(backend, str(url), opts(hub)) if operation == "get" else backend.stat(url, opts(hub))
    )
    with pytest.raises(SourceNotFoundError) as caught:
        await call

    assert isinstance(caught.value, FileNotFoundError)
    assert str(caught.value) == f"{ROOT}: file 'weights/none.bin' not found at revision 'master'"


async def test_get_at_a_missing_revision(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    with pytest.raises(SourceNotFoundError) as caught:
        await fetch(backend, f"{ROOT}/README.md", opts(hub, ms_revision="dev"))

    assert str(caught.value) == f"{ROOT}: revision 'dev' not found"


async def test_an_unreachable_hub(backend: ModelScopeBackend) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    options = RequestOptions(timeout=2.0).with_params(ms_endpoint=endpoint, ms_token=SECRET)
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.list(parse_url(ROOT), options)

    text = str(caught.value)
    assert text.startswith(f"{ROOT}: hub {endpoint} unreachable: ")
    assert "\n" not in text
    assert SECRET not in text


async def test_a_failing_hub_is_retried_then_reported(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    hub.listing_overrides[("models", "acme/tiny")] = (503, {"Code": 503, "Message": "overloaded"})
    with pytest.raises(SourceStatusError) as caught:
        await backend.list(parse_url(ROOT), opts(hub))

    assert caught.value.status == 503
    assert str(caught.value) == f"{ROOT}: hub answered HTTP 503 (overloaded)"
    assert hub.counters["files"] == API_ATTEMPTS


@pytest.mark.parametrize(
    ("url", "params", "error", "message"),
    [
        (ROOT, {"ms_endpoint": "ftp://hub"}, UsageError, "'ftp://hub': expected an http(s) URL"),
        ("hf://acme/tiny", {}, SourceProtocolError, "hf://acme/tiny: not a modelscope:// URL"),
        ("https://hub/x", {}, SourceProtocolError, "https://hub/x: not a modelscope:// URL"),
    ],
)
async def test_bad_requests_are_refused_before_any_traffic(
    hub: MsTestHub,
    backend: ModelScopeBackend,
    url: str,
    params: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        await backend.list(parse_url(url), opts(hub, **params))

    assert message in str(caught.value)
    assert hub.requests == []


async def test_the_repository_root_is_not_a_file(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    with pytest.raises(SourceProtocolError, match="the repository root is not a file"):
        await fetch(backend, ROOT, opts(hub))
    with pytest.raises(SourceProtocolError, match="the repository root is not a file"):
        await backend.stat(parse_url(ROOT), opts(hub))


# -- tokens ------------------------------------------------------------------------------------


async def test_private_repo_with_the_token_sends_it_like_the_sdk(
    hub: MsTestHub, backend: ModelScopeBackend
) -> None:
    options = opts(hub, ms_token=SECRET)
    entries = await backend.list(parse_url("modelscope://acme/secret"), options)
    body = await fetch_entry(backend, entries[0], options)

    assert body == b"private bytes"
    for request in hub.requests:
        assert request.authorization == f"Bearer {SECRET}"
        assert request.session_cookie == SECRET


async def test_no_token_means_no_credentials(hub: MsTestHub, backend: ModelScopeBackend) -> None:
    await fetch(backend, f"{ROOT}/README.md", opts(hub))

    assert [(r.authorization, r.session_cookie) for r in hub.requests] == [(None, None)]


async def test_the_token_never_follows_a_redirect_to_another_host(
    backend: ModelScopeBackend,
) -> None:
    async with MsTestHub({"acme/big": {"w.bin": WEIGHTS}}, redirect_lfs=True) as hub:
        hub.lfs_threshold = 1000
        options = opts(hub, ms_token=SECRET)
        body = await fetch(backend, "modelscope://acme/big/w.bin", options, ByteRange(5, 50))

    assert body == WEIGHTS[5:55]
    api, cdn = hub.requests_for("file")[0], hub.requests_for("cdn")[0]
    assert (api.authorization, api.session_cookie) == (f"Bearer {SECRET}", SECRET)
    assert (cdn.authorization, cdn.session_cookie, cdn.range) == (None, None, "bytes=5-54")
    assert api.host != cdn.host


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("modelscope://acme/secret", {"ms_token": SECRET + "-wrong"}),
        ("modelscope://acme/missing", {}),
        (ROOT, {"ms_revision": "v9"}),
        (f"{ROOT}/weights/none.bin", {}),
    ],
)
async def test_the_token_is_never_in_error_text(
    hub: MsTestHub, backend: ModelScopeBackend, url: str, params: dict[str, str]
) -> None:
    options = opts(hub, **{"ms_token": SECRET, **params})
    is_file = url.endswith(".bin")
    call = fetch(backend, url, options) if is_file else backend.list(parse_url(url), options)
    with pytest.raises(BackendError) as caught:
        await call

    error: BaseException | None = caught.value
    while error is not None:
        assert SECRET not in f"{error} {error!r} {error.args!r}"
        error = error.__cause__ or error.__context__
    assert SECRET not in repr(options)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("http://mirror:8080/ms/", {"MODELSCOPE_ENDPOINT": "https://x"}, "http://mirror:8080/ms"),
        (None, {"MODELSCOPE_ENDPOINT": "https://ms.example/", "MODELSCOPE_DOMAIN": "d"}, None),
        (None, {"MODELSCOPE_DOMAIN": "www.modelscope.ai"}, "https://www.modelscope.ai"),
        (None, {"MODELSCOPE_DOMAIN": "http://intranet:81"}, "http://intranet:81"),
        ("", {"MODELSCOPE_ENDPOINT": " "}, "https://modelscope.cn"),
        (None, {}, "https://modelscope.cn"),
    ],
)
def test_resolve_ms_endpoint(
    explicit: str | None, env: dict[str, str], expected: str | None
) -> None:
    assert resolve_ms_endpoint(explicit, env) == (expected or "https://ms.example")


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("flag-token", {"MODELSCOPE_API_TOKEN": "env-token"}, "flag-token"),
        (None, {"MODELSCOPE_API_TOKEN": "env-token"}, "env-token"),
        ("", {"MODELSCOPE_API_TOKEN": ""}, None),
        (None, {}, None),
    ],
)
def test_resolve_ms_token(explicit: str | None, env: dict[str, str], expected: str | None) -> None:
    assert resolve_ms_token(explicit, env) == expected
