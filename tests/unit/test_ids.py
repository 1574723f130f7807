"""Task identity: stable, free of credentials and signatures; by content when a digest is known."""

from __future__ import annotations

import pytest

from damselfly.core.digests import Digest
from damselfly.core.ids import canonical_url, task_id, task_id_for_content, task_id_for_location
from damselfly.core.pieces import MiB
from damselfly.core.urls import parse_url

PIECE = 4 * MiB
SHA = Digest("sha256", "ab" * 32)


def location_id(raw: str, **kwargs: object) -> str:
    kwargs.setdefault("piece_length", PIECE)
    return task_id(parse_url(raw), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://h/x", "https://alice:secret@h/x"),
        ("https://h/x", "HTTPS://H:443/x"),
        ("https://h/x", "https://h/x#fragment"),
        ("https://h/x?a=1&b=2", "https://h/x?b=2&a=1"),
        (
            "https://h/x?a=1",
            "https://h/x?a=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F1"
            "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok",
        ),
        ("https://h/x", "https://h/x?x-amz-signature=lowercase"),
        ("https://h/x", "https://h/x?X-Goog-Signature=1&GoogleAccessId=2"),
        ("https://h/x", "https://h/x?sv=2020&sig=abc&se=2030"),
        ("https://h/x", "https://h/x?Expires=1&Signature=2&Key-Pair-Id=3"),
        ("https://h/x", "https://h/x?OSSAccessKeyId=1&x-oss-signature=2"),
        ("https://h/x?token=1", "https://h/x?token=1&access_token=2"),
        ("https://h/x?a=1+2", "https://h/x?a=1%202"),
    ],
)
def test_location_id_ignores_credentials_signatures_and_order(a: str, b: str) -> None:
    assert location_id(a) == location_id(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # generic names are content selectors unless the URL is signed with a key id / SAS
        ("https://h/x?Signature=1", "https://h/x?Signature=2"),
        ("https://h/x?Expires=1", "https://h/x?Expires=2"),
        ("https://h/x?sp=1", "https://h/x?sp=2"),
        ("https://h/x?st=a&se=b", "https://h/x?st=c&se=b"),
        ("https://h/x?token=1", "https://h/x?token=2"),
    ],
)
def test_location_id_keeps_generic_params_of_unsigned_urls(a: str, b: str) -> None:
    assert location_id(a) != location_id(b)


def test_location_id_is_stable() -> None:
    first = location_id("https://h/x?b=2&a=1", tag="t", application="app", version='"e1"')
    second = location_id("https://h/x?a=1&b=2", tag="t", application="app", version='"e1"')
    assert first == second
    assert len(first) == 64
    assert int(first, 16) >= 0


BASE = {"tag": "", "application": "", "version": "", "piece_length": PIECE}


@pytest.mark.parametrize(
    "change",
    [
        {"tag": "t"},
        {"application": "app"},
        {"version": '"etag-2"'},
        {"piece_length": 8 * MiB},
    ],
    ids=lambda c: next(iter(c)),
)
def test_location_id_changes_with_each_input(change: dict[str, object]) -> None:
    assert location_id("https://h/x", **{**BASE, **change}) != location_id("https://h/x", **BASE)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://h/x", "http://h/x"),
        ("https://h/x", "https://h:8443/x"),
        ("https://h/x", "https://h/y"),
        ("https://h/x?rev=1", "https://h/x?rev=2"),
        ("https://h/x", "https://g/x"),
        ("s3://bucket/k", "gs://bucket/k"),
        ("hf://o/r/f", "hf://datasets/o/r/f"),
    ],
)
def test_location_id_differs_for_different_objects(a: str, b: str) -> None:
    assert location_id(a) != location_id(b)


def test_fields_cannot_run_into_each_other() -> None:
    assert location_id("https://h/x", tag="ab", application="c") != location_id(
        "https://h/x", tag="a", application="bc"
    )


def test_user_filtered_query_params_are_dropped() -> None:
    a = location_id("https://h/x?session=1&v=2", filtered_query_params=["Session"])
    b = location_id("https://h/x?v=2&session=9", filtered_query_params=["session"])
    assert a == b
    assert a != location_id("https://h/x?v=2&session=9")


def test_canonical_url() -> None:
    url = parse_url("http://u:p@Example.com:80/x?b=2&a=1&X-Amz-Signature=abc#f")
    assert canonical_url(url) == "http://example.com/x?a=1&b=2"
    assert canonical_url(parse_url("s3://bucket/k")) == "s3://bucket/k"


def test_content_id_is_equal_for_two_urls_with_the_same_sha256() -> None:
    a = location_id("https://mirror-a/x", content_digest=SHA, tag="t1", version="v1")
    b = location_id("s3://bucket/other/name", content_digest=SHA, tag="t2", version="v2")
    assert a == b == task_id_for_content(SHA, PIECE)


def test_content_id_depends_on_digest_and_piece_length() -> None:
    other = Digest("sha256", "cd" * 32)
    assert task_id_for_content(SHA, PIECE) != task_id_for_content(other, PIECE)
    assert task_id_for_content(SHA, PIECE) != task_id_for_content(SHA, 8 * MiB)


def test_content_id_differs_from_location_id() -> None:
    url = parse_url("https://h/x")
    assert task_id(url, piece_length=PIECE, content_digest=SHA) != task_id_for_location(
        url, piece_length=PIECE
    )


def test_weak_digest_falls_back_to_location() -> None:
    weak = Digest("crc32", "deadbeef")
    url = parse_url("https://h/x")
    assert task_id(url, piece_length=PIECE, content_digest=weak) == task_id_for_location(
        url, piece_length=PIECE
    )
    with pytest.raises(ValueError, match="crc32 is too weak"):
        task_id_for_content(weak, PIECE)
