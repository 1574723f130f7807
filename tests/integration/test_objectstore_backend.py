"""``ObjectStoreBackend`` (OpenDAL) against a real moto_server, a fake WebHDFS and dead ports.

moto enforces signatures only after ``MotoServer.enforce_auth()``; an unsigned request to a
missing key then crashes moto (HTTP 500, a moto bug), so the anonymous case below reads an
existing key, which moto answers with 403 as S3 does.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from damselfly.backends.base import RequestOptions
from damselfly.backends.objectstore import ObjectStoreBackend
from damselfly.core.errors import (
    ConfigError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange, MiB
from damselfly.core.urls import HdfsUrl, ObjectUrl, SourceUrl, parse_url
from damselfly.testing.moto import MotoServer

BUCKET = "fixtures"
WEIGHTS = os.urandom(3 * MiB + 17)
OBJECTS = {
    "models/bert/config.json": b'{"hidden_size": 768}',
    "models/bert/weights.bin": WEIGHTS,
    "models/bert/sub/deeper/vocab.txt": b"[PAD]\n[UNK]\n",
    "models/bertish/other.bin": b"a sibling prefix, not below models/bert/",
    "top.bin": b"top",
}
_bucket_numbers = itertools.count()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        server.create_bucket(BUCKET)
        server.put_objects(BUCKET, OBJECTS)
        yield server


@pytest.fixture
async def backend() -> AsyncIterator[ObjectStoreBackend]:
    backend = ObjectStoreBackend(environ={})
    yield backend
    await backend.aclose()


@pytest.fixture
def options(moto: MotoServer) -> RequestOptions:
    return moto.request_options()


def s3(key: str, bucket: str = BUCKET) -> ObjectUrl:
    return ObjectUrl("s3", bucket, key)


async def read_all(
    backend: ObjectStoreBackend,
    url: SourceUrl,
    options: RequestOptions,
    byte_range: ByteRange | None = None,
) -> list[bytes]:
    async with contextlib.aclosing(backend.get(url, byte_range, options)) as body:
        return [bytes(chunk) async for chunk in body]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line(exc: BaseException, *parts: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for part in parts:
        assert part in text


# --- stat / get ----------------------------------------------------------------------------


async def test_stat_reports_what_s3_reports(
    moto: MotoServer, backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    head = moto.client().head_object(Bucket=BUCKET, Key="models/bert/weights.bin")
    stat = await backend.stat(s3("models/bert/weights.bin"), options)
    assert stat.content_length == len(WEIGHTS)
    assert stat.supports_ranges is True
    assert stat.etag == head["ETag"]
    assert stat.last_modified is not None
    assert email.utils.parsedate_to_datetime(stat.last_modified) == head["LastModified"]
    assert stat.content_type == head["ContentType"]
    assert stat.content_digest is None  # S3 only vouches for MD5-ish ETags here


async def test_get_streams_the_whole_object_in_bounded_chunks(
    moto: MotoServer, options: RequestOptions
) -> None:
    backend = ObjectStoreBackend(environ={}, read_chunk_length=256 * 1024)
    chunks = await read_all(backend, s3("models/bert/weights.bin"), options)
    assert b"".join(chunks) == WEIGHTS
    assert len(chunks) >= 13
    assert max(len(chunk) for chunk in chunks) <= 256 * 1024


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 1), (MiB - 1, 2), (len(WEIGHTS) - 1, 1), (123_457, 2 * MiB), (0, len(WEIGHTS))],
)
async def test_ranged_get_returns_exactly_the_range(
    backend: ObjectStoreBackend, options: RequestOptions, start: int, length: int
) -> None:
    chunks = await read_all(
        backend, s3("models/bert/weights.bin"), options, ByteRange(start, length)
    )
    assert b"".join(chunks) == WEIGHTS[start : start + length]


async def test_empty_range_reads_nothing(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    assert await read_all(backend, s3("top.bin"), options, ByteRange(1, 0)) == []


async def test_range_past_the_end_is_a_protocol_error(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    with pytest.raises(SourceProtocolError) as caught:
        await read_all(backend, s3("top.bin"), options, ByteRange(1, 10))
    assert_one_line(caught.value, "s3://fixtures/top.bin")


async def test_range_starting_after_the_end_is_an_error(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    with pytest.raises(SourceProtocolError) as caught:
        await read_all(backend, s3("top.bin"), options, ByteRange(100, 10))
    assert_one_line(caught.value, "s3://fixtures/top.bin", "range not satisfiable")


async def test_stat_and_get_of_a_prefix_are_refused(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    with pytest.raises(SourceProtocolError, match="list it instead"):
        await backend.stat(s3("models/bert/"), options)
    with pytest.raises(SourceProtocolError, match="list it instead"):
        await read_all(backend, s3("models/bert/"), options)


# --- list ----------------------------------------------------------------------------------


async def test_list_is_recursive_and_relative_to_the_prefix(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    entries = await backend.list(s3("models/bert/"), options)
    assert [(e.path, e.content_length) for e in entries] == [
        ("config.json", len(OBJECTS["models/bert/config.json"])),
        ("sub/deeper/vocab.txt", len(OBJECTS["models/bert/sub/deeper/vocab.txt"])),
        ("weights.bin", len(WEIGHTS)),
    ]
    assert [e.url for e in entries] == [
        s3("models/bert/config.json"),
        s3("models/bert/sub/deeper/vocab.txt"),
        s3("models/bert/weights.bin"),
    ]


async def test_list_without_a_trailing_slash_means_the_directory(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    entries = await backend.list(s3("models/bert"), options)
    assert {e.path for e in entries} == {"config.json", "sub/deeper/vocab.txt", "weights.bin"}


async def test_list_of_the_bucket_root_gives_full_keys(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    entries = await backend.list(s3(""), options)
    assert {e.path for e in entries} == set(OBJECTS)
    assert all(e.url == s3(e.path) for e in entries)


async def test_list_of_an_empty_prefix_is_empty(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    assert await backend.list(s3("nothing/here/"), options) == []


async def test_listed_urls_download_their_object(
    backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    for entry in await backend.list(s3("models/"), options):
        assert isinstance(entry.url, ObjectUrl)
        assert b"".join(await read_all(backend, entry.url, options)) == OBJECTS[entry.url.key]


@pytest.mark.parametrize("key", ["a/../escape", "a/./x", "a//x", "../up", "a/b\\c"])
async def test_listing_with_an_unsafe_key_is_refused(
    moto: MotoServer, backend: ObjectStoreBackend, options: RequestOptions, key: str
) -> None:
    bucket = f"unsafe-{next(_bucket_numbers)}"
    moto.create_bucket(bucket)
    moto.put_objects(bucket, {"fine.bin": b"ok", key: b"evil"})
    with pytest.raises(SourceProtocolError) as caught:
        await backend.list(s3("", bucket), options)
    assert_one_line(caught.value, f"s3://{bucket}/", "unsafe key", repr(key))


# --- missing things ------------------------------------------------------------------------


async def test_missing_key(backend: ObjectStoreBackend, options: RequestOptions) -> None:
    url = s3("models/bert/missing.bin")
    with pytest.raises(SourceNotFoundError) as caught:
        await backend.stat(url, options)
    assert caught.value.status == 404
    assert isinstance(caught.value, FileNotFoundError)
    assert_one_line(caught.value, "s3://fixtures/models/bert/missing.bin", "not found")
    with pytest.raises(SourceNotFoundError, match="NoSuchKey"):
        await read_all(backend, url, options)


async def test_exists(backend: ObjectStoreBackend, options: RequestOptions) -> None:
    assert await backend.exists(s3("top.bin"), options) is True
    assert await backend.exists(s3("nope.bin"), options) is False
    assert await backend.exists(s3("models/bert/"), options) is True
    assert await backend.exists(s3("models/bart/"), options) is False


async def test_missing_bucket(backend: ObjectStoreBackend, options: RequestOptions) -> None:
    with pytest.raises(SourceNotFoundError) as caught:
        await backend.stat(s3("k.bin", "no-such-bucket"), options)
    assert_one_line(caught.value, "s3://no-such-bucket/k.bin")
    with pytest.raises(SourceNotFoundError) as caught:
        await backend.list(s3("", "no-such-bucket"), options)
    assert_one_line(caught.value, "s3://no-such-bucket/", "NoSuchBucket")
    with pytest.raises(SourceNotFoundError, match="NoSuchBucket"):
        await read_all(backend, s3("k.bin", "no-such-bucket"), options)


# --- credentials ---------------------------------------------------------------------------


async def test_credentials_when_moto_enforces_them(
    moto: MotoServer, backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    with moto.enforce_auth() as (key_id, secret):
        good = options.with_params(s3_access_key_id=key_id, s3_secret_access_key=secret)
        assert (await backend.stat(s3("top.bin"), good)).content_length == 3
        assert b"".join(await read_all(backend, s3("top.bin"), good)) == b"top"

        wrong_secret = good.with_params(s3_secret_access_key="wrong-secret-0123")
        with pytest.raises(SourceAuthError) as caught:
            await backend.list(s3("models/"), wrong_secret)
        assert caught.value.status == 403
        assert_one_line(caught.value, "s3://fixtures/models/", "SignatureDoesNotMatch")
        assert "wrong-secret-0123" not in str(caught.value)

        unknown_key = options.with_params(s3_access_key_id="AKIAUNKNOWN000000000")
        with pytest.raises(SourceAuthError, match="InvalidAccessKeyId"):
            await read_all(backend, s3("top.bin"), unknown_key)

        anonymous = options.with_params(s3_access_key_id=None, s3_secret_access_key=None)
        with pytest.raises(SourceAuthError, match="HTTP 403"):
            await backend.stat(s3("top.bin"), anonymous)


async def test_environment_is_the_fallback_and_params_win(moto: MotoServer) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {
        "AWS_ENDPOINT_URL": dead,
        "AWS_ENDPOINT_URL_S3": moto.endpoint,  # the service-specific variable wins
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
    }
    backend = ObjectStoreBackend(environ=env)
    assert (await backend.stat(s3("top.bin"), RequestOptions())).content_length == 3
    env["AWS_ENDPOINT_URL_S3"] = dead  # read at call time, not at construction
    with pytest.raises(SourceUnreachableError):
        await backend.stat(s3("top.bin"), RequestOptions())
    param = RequestOptions(params=(("s3_endpoint", moto.endpoint),))
    assert (await backend.stat(s3("top.bin"), param)).content_length == 3


def test_the_process_environment_is_never_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dfdaemon's backend serves every local user: its own keys must not answer a request
    that came without any (the caller's variables travel in the request's options)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "daemon-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "daemon-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    config = ObjectStoreBackend().redacted_config(s3("top.bin"), RequestOptions())
    assert "access_key_id" not in config, config
    assert "endpoint" not in config, config
    given = ObjectStoreBackend(environ=dict(os.environ))  # an explicit mapping is read
    config = given.redacted_config(s3("top.bin"), RequestOptions())
    assert (config["access_key_id"], config["secret_access_key"]) == ("daemon-key", "***")


async def test_one_operator_per_configuration(moto: MotoServer, options: RequestOptions) -> None:
    backend = ObjectStoreBackend(environ={}, cache_size=2)
    await backend.stat(s3("top.bin"), options)
    await backend.stat(s3("models/bert/config.json"), options)
    assert backend.cached_operator_count == 1
    await backend.stat(s3("top.bin"), options.with_params(s3_session_token="t1"))
    assert backend.cached_operator_count == 2
    await backend.stat(s3("top.bin"), options.with_params(s3_session_token="t2"))
    assert backend.cached_operator_count == 2  # least recently used dropped
    await backend.aclose()
    assert backend.cached_operator_count == 0


# --- unreachable, slow, misconfigured ------------------------------------------------------


async def test_unreachable_endpoint(backend: ObjectStoreBackend) -> None:
    port = closed_port()
    options = RequestOptions(params=(("s3_endpoint", f"http://127.0.0.1:{port}"),))
    started = time.monotonic()
    for call in (
        backend.stat(s3("top.bin"), options),
        backend.list(s3("models/"), options),
        read_all(backend, s3("top.bin"), options),
    ):
        with pytest.raises(SourceUnreachableError) as caught:
            await call
        assert isinstance(caught.value, ConnectionError)
        assert_one_line(caught.value, "s3://fixtures/", f"cannot reach http://127.0.0.1:{port}")
    with pytest.raises(SourceUnreachableError, match="Connection refused"):
        await backend.stat(s3("top.bin"), options)  # stat keeps OpenDAL's root cause
    assert time.monotonic() - started < 3


async def test_silent_server_times_out(backend: ObjectStoreBackend) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # hold the connection until the client gives up
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = RequestOptions(timeout=0.2, params=(("s3_endpoint", f"http://127.0.0.1:{port}"),))
    async with server:
        with pytest.raises(SourceTimeoutError) as caught:
            await backend.stat(s3("top.bin"), options)
    # OpenDAL's pool may keep the socket open after giving up: close our ends while the loop
    # runs, or their writers are collected after it closed (an unraisable warning, seen in CI)
    for writer in held:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert_one_line(caught.value, "s3://fixtures/top.bin", "0.2s")


async def test_secrets_never_reach_messages(backend: ObjectStoreBackend) -> None:
    port = closed_port()
    secret_params = (
        ("s3_endpoint", f"http://127.0.0.1:{port}"),
        ("s3_access_key_id", "visible-key-id"),
        ("s3_secret_access_key", "SECRET-ACCESS-KEY-42"),
        ("s3_session_token", "SESSION-TOKEN-42"),
    )
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.stat(s3("top.bin"), RequestOptions(params=secret_params))
    for secret in ("SECRET-ACCESS-KEY-42", "SESSION-TOKEN-42"):
        assert secret not in str(caught.value)
    # webhdfs sends its delegation token in the query; OpenDAL's own message carries it.
    hdfs = HdfsUrl("127.0.0.1", port, "/data/file.bin")
    delegation = RequestOptions(params=(("hdfs_delegation", "DELEGATION-TOKEN-42"),))
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.stat(hdfs, delegation)
    assert "DELEGATION-TOKEN-42" in str(caught.value.__cause__)
    assert "DELEGATION-TOKEN-42" not in str(caught.value)
    assert_one_line(caught.value, "hdfs://127.0.0.1")


async def test_invalid_configuration_is_a_config_error(backend: ObjectStoreBackend) -> None:
    with pytest.raises(ConfigError) as caught:
        await backend.stat(parse_url("abs://container/blob.bin"), RequestOptions())
    assert_one_line(caught.value, "abs://container/blob.bin", "abs_endpoint", "abs_account_name")
    not_boolean = RequestOptions(params=(("s3_force_path_style", "maybe"),))
    with pytest.raises(ConfigError, match="s3_force_path_style"):
        await backend.stat(s3("top.bin"), not_boolean)


async def test_non_object_urls_are_refused(backend: ObjectStoreBackend) -> None:
    with pytest.raises(SourceProtocolError):
        await backend.stat(parse_url("https://example.test/x"), RequestOptions())


# --- the configuration table, per store (no network) ---------------------------------------

TABLE_CASES = [
    (
        "s3://bkt/k",
        {},
        {},
        {"service": "s3", "bucket": "bkt", "region": "us-east-1", "skip_signature": "true"},
    ),
    (
        "s3://bkt/k",
        {"s3_force_path_style": "false", "s3_secret_access_key": "s", "s3_access_key_id": "i"},
        {"AWS_DEFAULT_REGION": "eu-west-1"},
        {"enable_virtual_host_style": "true", "secret_access_key": "***", "region": "eu-west-1"},
    ),
    (
        "gs://bkt/k",
        {"gs_endpoint": "http://127.0.0.1:4443"},
        {"GOOGLE_APPLICATION_CREDENTIALS": "/etc/gcs.json"},
        {"service": "gcs", "credential_path": "***", "disable_vm_metadata": "true"},
    ),
    (
        "abs://cont/k",
        {},
        {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "k3y"},
        {
            "service": "azblob",
            "container": "cont",
            "account_key": "***",
            "endpoint": "https://acct.blob.core.windows.net",
        },
    ),
    (
        "oss://bkt/k",
        {"oss_endpoint": "https://oss-cn-hangzhou.aliyuncs.com", "oss_access_key_secret": "x"},
        {"OSS_ACCESS_KEY_ID": "id"},
        {"service": "oss", "access_key_id": "id", "access_key_secret": "***"},
    ),
    (
        "obs://bkt/k",
        {},
        {"OBS_ENDPOINT": "https://obs.example", "OBS_SECRET_ACCESS_KEY": "x"},
        {"service": "obs", "endpoint": "https://obs.example", "secret_access_key": "***"},
    ),
    (
        "cos://bkt/k",
        {},
        {"COS_SECRET_ID": "id", "COS_SECRET_KEY": "x"},
        {"service": "cos", "secret_id": "***", "secret_key": "***"},
    ),
    (
        "hdfs://namenode/data/x",
        {"hdfs_delegation": "tok"},
        {"HADOOP_USER_NAME": "alice"},
        {"service": "webhdfs", "endpoint": "http://namenode:9870", "delegation": "***"},
    ),
]


@pytest.mark.parametrize(("raw", "params", "env", "expected"), TABLE_CASES)
def test_configuration_table(
    raw: str, params: dict[str, str], env: dict[str, str], expected: dict[str, str]
) -> None:
    backend = ObjectStoreBackend(environ=env)
    config = backend.redacted_config(parse_url(raw), RequestOptions(params=tuple(params.items())))
    assert {key: config.get(key) for key in expected} == expected


def test_configuration_table_has_no_anonymous_mode_where_opendal_has_none() -> None:
    config = ObjectStoreBackend(environ={}).redacted_config(
        parse_url("obs://bkt/k"), RequestOptions()
    )
    assert "skip_signature" not in config


# --- hdfs through WebHDFS (a small fake namenode that also serves the data) ----------------

HDFS_FILES = {"/data/m/a.bin": b"0123456789", "/data/m/sub/b.txt": b"hello"}


class FakeWebHdfs:
    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        # no keep-alive: OpenDAL's pooled connection would otherwise outlive the server and
        # its socket be collected unclosed (a ResourceWarning, an error under our settings)
        response.force_close()
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        path = request.path.removeprefix("/webhdfs/v1")
        op = request.query.get("op")
        if op == "GETFILESTATUS":
            return self._status(path)
        if op == "OPEN" and path in HDFS_FILES:
            offset = int(request.query.get("offset", "0"))
            length = int(request.query.get("length", str(len(HDFS_FILES[path]))))
            return web.Response(body=HDFS_FILES[path][offset : offset + length])
        if op == "LISTSTATUS_BATCH":
            statuses = {"FileStatuses": {"FileStatus": self._children(path)}}
            listing = {"partialListing": statuses, "remainingEntries": 0}
            return web.json_response({"DirectoryListing": listing})
        return web.Response(status=400)

    def _status(self, path: str) -> web.Response:
        if path in HDFS_FILES:
            status = {"type": "FILE", "length": len(HDFS_FILES[path]), "pathSuffix": ""}
            return web.json_response({"FileStatus": {**status, "modificationTime": 0}})
        if path == "/" or any(name.startswith(path.rstrip("/") + "/") for name in HDFS_FILES):
            status = {"type": "DIRECTORY", "length": 0, "pathSuffix": "", "modificationTime": 0}
            return web.json_response({"FileStatus": status})
        error = {"exception": "FileNotFoundException", "message": f"File does not exist: {path}"}
        return web.json_response({"RemoteException": error}, status=404)

    def _children(self, path: str) -> list[dict[str, object]]:
        base = path.rstrip("/") + "/"
        children: dict[str, dict[str, object]] = {}
        for name, data in HDFS_FILES.items():
            if name.startswith(base):
                head, _, rest = name[len(base) :].partition("/")
                kind, length = ("DIRECTORY", 0) if rest else ("FILE", len(data))
                children[head] = {"pathSuffix": head, "type": kind, "length": length}
                children[head]["modificationTime"] = 0
        return list(children.values())


@pytest.fixture
async def webhdfs() -> AsyncIterator[tuple[FakeWebHdfs, int]]:
    fake = FakeWebHdfs()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, port
    await runner.cleanup()


async def test_hdfs_through_webhdfs(
    webhdfs: tuple[FakeWebHdfs, int], backend: ObjectStoreBackend
) -> None:
    fake, port = webhdfs
    options = RequestOptions(params=(("hdfs_delegation", "tok-1"),))
    url = parse_url(f"hdfs://127.0.0.1:{port}/data/m/a.bin")
    assert (await backend.stat(url, options)).content_length == 10
    assert b"".join(await read_all(backend, url, options, ByteRange(2, 5))) == b"23456"
    entries = await backend.list(parse_url(f"hdfs://127.0.0.1:{port}/data/m"), options)
    assert [(e.path, e.content_length) for e in entries] == [("a.bin", 10), ("sub/b.txt", 5)]
    assert entries[1].url == HdfsUrl("127.0.0.1", port, "/data/m/sub/b.txt")
    with pytest.raises(SourceNotFoundError):
        await backend.stat(parse_url(f"hdfs://127.0.0.1:{port}/data/nope"), options)
    assert all(query.get("delegation") == "tok-1" for query in fake.queries)
    assert {"op": "OPEN", "delegation": "tok-1", "offset": "2", "length": "5"} in fake.queries


# --- throughput ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_throughput_of_a_256_mib_object(
    moto: MotoServer, backend: ObjectStoreBackend, options: RequestOptions
) -> None:
    data = os.urandom(MiB) * 256
    moto.put_object(BUCKET, "big/256.bin", data)
    digest, received = hashlib.sha256(), 0
    started = time.monotonic()
    async with contextlib.aclosing(backend.get(s3("big/256.bin"), None, options)) as body:
        async for chunk in body:
            digest.update(chunk)
            received += len(chunk)
    elapsed = time.monotonic() - started
    assert received == len(data)
    assert digest.digest() == hashlib.sha256(data).digest()
    print(f"256 MiB from moto in {elapsed:.2f}s: {256 / elapsed:.0f} MiB/s")
    assert elapsed < 60
