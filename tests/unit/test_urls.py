"""parse_url: every scheme parses to its typed value; every malformed URL names its wrong part."""

from __future__ import annotations

import pytest

from damselfly.core.errors import InvalidUrlError, UsageError
from damselfly.core.urls import (
    SUPPORTED_SCHEMES,
    FileUrl,
    HdfsUrl,
    HttpUrl,
    HubUrl,
    ObjectUrl,
    parse_url,
)

VALID = [
    ("https://example.com", HttpUrl("https", "example.com", None, "/", "")),
    ("HTTPS://Example.COM:443/a?b=1#frag", HttpUrl("https", "example.com", None, "/a", "b=1")),
    ("http://example.com:80/x", HttpUrl("http", "example.com", None, "/x", "")),
    ("http://example.com:443/x", HttpUrl("http", "example.com", 443, "/x", "")),
    ("https://h:8443/a%20b?q=%2F", HttpUrl("https", "h", 8443, "/a%20b", "q=%2F")),
    ("http://[::1]:8080/x", HttpUrl("http", "::1", 8080, "/x", "")),
    ("http://10.0.0.1/x", HttpUrl("http", "10.0.0.1", None, "/x", "")),
    (
        "http://user:p%40ss@host/x",
        HttpUrl("http", "host", None, "/x", "", username="user", password="p@ss"),
    ),
    ("http://user@host/", HttpUrl("http", "host", None, "/", "", username="user")),
    ("file:///data/model.bin", FileUrl("/data/model.bin")),
    ("file://localhost/data/a%20b", FileUrl("/data/a b")),
    ("file:///data/x/../y", FileUrl("/data/y")),
    ("s3://bucket/dir/key.bin", ObjectUrl("s3", "bucket", "dir/key.bin")),
    ("s3://bucket", ObjectUrl("s3", "bucket", "")),
    ("S3://bucket/prefix/", ObjectUrl("s3", "bucket", "prefix/")),
    ("gs://my-bucket/a%20b", ObjectUrl("gs", "my-bucket", "a b")),
    ("abs://container/k", ObjectUrl("abs", "container", "k")),
    ("oss://bucket/k?versionId=1", ObjectUrl("oss", "bucket", "k")),
    ("obs://bucket/k", ObjectUrl("obs", "bucket", "k")),
    ("cos://bucket-1250000000/k", ObjectUrl("cos", "bucket-1250000000", "k")),
    ("hdfs://namenode:8020/data/x", HdfsUrl("namenode", 8020, "/data/x")),
    ("hdfs://nn/", HdfsUrl("nn", None, "/")),
    ("hf://owner/repo", HubUrl("hf", "models", "owner", "repo", "")),
    ("hf://owner/repo/", HubUrl("hf", "models", "owner", "repo", "")),
    ("hf://models/owner/repo/a/b.json", HubUrl("hf", "models", "owner", "repo", "a/b.json")),
    (
        "hf://datasets/o/r/data/train.parquet",
        HubUrl("hf", "datasets", "o", "r", "data/train.parquet"),
    ),
    ("hf://spaces/o/r/app.py", HubUrl("hf", "spaces", "o", "r", "app.py")),
    ("modelscope://Qwen/Qwen2-0.5B", HubUrl("modelscope", "models", "Qwen", "Qwen2-0.5B", "")),
    ("modelscope://datasets/o/r/x", HubUrl("modelscope", "datasets", "o", "r", "x")),
]


@pytest.mark.parametrize(("raw", "expected"), VALID, ids=[raw for raw, _ in VALID])
def test_valid_urls_parse(raw: str, expected: object) -> None:
    assert parse_url(raw) == expected


def test_every_supported_scheme_has_a_valid_example() -> None:
    assert {parse_url(raw).scheme for raw, _ in VALID} == SUPPORTED_SCHEMES


@pytest.mark.parametrize("raw", [raw for raw, _ in VALID if not raw.startswith("file://localhost")])
def test_rendering_parses_back_to_the_same_value(raw: str) -> None:
    url = parse_url(raw)
    assert parse_url(str(url)) == url


INVALID = [
    ("example.com/x", "scheme"),
    ("://x", "scheme"),
    ("ftp://host/x", "scheme"),
    ("file:/x", "scheme"),
    ("", "url"),
    (" http://h/x", "url"),
    ("http://h/x\n", "url"),
    ("http://h/a\x00b", "url"),
    ("http://h/\x7f", "url"),
    ("http:///path", "host"),
    ("http://:80/", "host"),
    ("http://exa mple.com/", "host"),
    ("http://-bad.com/", "host"),
    ("http://host:99999/", "port"),
    ("http://host:abc/", "port"),
    ("http://host:0/", "port"),
    ("hdfs://nn:abc/p", "port"),
    ("hdfs:///p", "host"),
    ("file://relative/x", "path"),
    ("file:///a%00b", "path"),
    ("s3:///key", "bucket"),
    ("s3://BadBucket/x", "bucket"),
    ("s3://ab/x", "bucket"),
    ("s3://bu..cket/x", "bucket"),
    ("s3://bucket/a/../b", "key"),
    ("s3://bucket/a/./b", "key"),
    ("s3://bucket/a//b", "key"),
    ("s3://bucket//x", "key"),
    ("s3://bucket/a%00", "key"),
    ("hf://owner", "repository"),
    ("hf://owner/", "repository"),
    ("hf://datasets/owner", "repository"),
    ("hf://o//r", "repository"),
    ("modelscope://spaces/o/r", "repo type"),
    ("hf://.o/r", "owner"),
    ("hf://o/r..x", "repository"),
    ("hf://o/r/../x", "path"),
    ("hf://o/r/a/./b", "path"),
    ("hf://o/r/a%00b", "path"),
    ("hf://o/r?revision=main", "path"),
    ("hf://o/r/x#frag", "path"),
]


@pytest.mark.parametrize(("raw", "part"), INVALID, ids=[repr(raw) for raw, _ in INVALID])
def test_malformed_urls_name_the_wrong_part(raw: str, part: str) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        parse_url(raw)
    assert caught.value.part == part
    assert caught.value.url == raw
    assert str(caught.value).startswith(f"invalid URL {raw!r}: {part}: ")


def test_invalid_url_error_is_a_usage_error_and_a_value_error() -> None:
    with pytest.raises(InvalidUrlError) as caught:
        parse_url("nope")
    assert isinstance(caught.value, UsageError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.exit_code == 2


def test_malformed_ipv6_host_is_reported_as_host() -> None:
    with pytest.raises(InvalidUrlError) as caught:
        parse_url("http://[::1/x")
    assert caught.value.part == "host"


def test_malformed_hdfs_host_raises_invalid_url_error() -> None:
    with pytest.raises(InvalidUrlError) as caught:
        parse_url("hdfs://[::1/x")
    assert caught.value.part == "host"


def test_hdfs_port_zero_is_refused() -> None:
    with pytest.raises(InvalidUrlError) as caught:
        parse_url("hdfs://nn:0/x")
    assert caught.value.part == "port"


# --- rendering and redaction ---


def test_userinfo_is_kept_but_never_redacted() -> None:
    url = parse_url("https://alice:s%3Acret@Host:8443/p?q=1")
    assert isinstance(url, HttpUrl)
    assert (url.username, url.password) == ("alice", "s:cret")
    assert str(url) == "https://alice:s%3Acret@host:8443/p?q=1"
    assert url.redacted() == "https://host:8443/p?q=1"


@pytest.mark.parametrize(
    ("raw", "netloc"),
    [("http://h/x", "h"), ("http://h:81/x", "h:81"), ("http://[::1]:81/x", "[::1]:81")],
)
def test_netloc(raw: str, netloc: str) -> None:
    url = parse_url(raw)
    assert isinstance(url, HttpUrl)
    assert url.netloc == netloc


@pytest.mark.parametrize(
    ("raw", "rendered"),
    [
        ("file:///a%20b/c", "file:///a%20b/c"),
        ("s3://bucket/k", "s3://bucket/k"),
        ("hdfs://nn:8020/p", "hdfs://nn:8020/p"),
        ("hf://datasets/o/r/f.txt", "hf://datasets/o/r/f.txt"),
        ("hf://models/o/r", "hf://o/r"),
    ],
)
def test_non_http_urls_render_canonically(raw: str, rendered: str) -> None:
    url = parse_url(raw)
    assert str(url) == rendered
    assert url.redacted() == rendered


@pytest.mark.parametrize(
    ("raw", "is_prefix"),
    [
        ("s3://bucket", True),
        ("s3://bucket/", True),
        ("s3://bucket/d/", True),
        ("s3://bucket/k", False),
    ],
)
def test_object_url_prefix(raw: str, is_prefix: bool) -> None:
    url = parse_url(raw)
    assert isinstance(url, ObjectUrl)
    assert url.is_prefix is is_prefix


def test_hub_url_helpers() -> None:
    url = parse_url("hf://datasets/owner/repo")
    assert isinstance(url, HubUrl)
    assert url.repo_id == "owner/repo"
    child = url.with_path("data/x.parquet")
    assert child == HubUrl("hf", "datasets", "owner", "repo", "data/x.parquet")
    assert str(child) == "hf://datasets/owner/repo/data/x.parquet"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("a" * 64 + ".example", "a label is longer than 63 characters"),
        (".".join(["a" * 50] * 6), "longer than 253 characters"),
    ],
)
def test_dns_length_limits_are_url_errors(host: str, reason: str) -> None:
    with pytest.raises(InvalidUrlError) as info:
        parse_url(f"http://{host}/f")
    assert info.value.part == "host"
    assert info.value.reason == reason


def test_a_label_of_63_characters_is_fine() -> None:
    assert parse_url(f"http://{'a' * 63}.example/f").host == "a" * 63 + ".example"
