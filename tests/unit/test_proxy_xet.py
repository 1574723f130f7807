"""Xet advertisements taken out of hub answers (``daemon/proxy/xet.py``)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import pytest

from damselfly.daemon.proxy.xet import (
    MAX_JSON,
    api_request_headers,
    is_hub_api,
    without_xet_headers,
    without_xet_json,
    without_xet_links,
)

TREE = [
    {"type": "file", "path": "w.bin", "lfs": {"oid": "ab", "size": 3}, "xetHash": "00" * 32},
    {"type": "file", "path": "c.json", "size": 2},
]


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _read(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


def test_xet_headers_and_the_xet_auth_link_go_the_rest_stays():
    headers = [
        ("X-Xet-Hash", "00" * 32),
        ("X-Xet-Refresh-Route", "https://hub/api/models/a/b/xet-read-token/c"),
        ("x-xet-cas-url", "https://cas"),
        ("X-Linked-Etag", '"ab"'),
        ("Link", '<https://hub/api/models/a/b/xet-read-token/c>; rel="xet-auth"'),
        ("Link", '<https://hub/t?cursor=2>; rel="next", <https://hub/x,y>; rel=xet-auth'),
    ]
    assert without_xet_headers(headers) == [
        ("X-Linked-Etag", '"ab"'),
        ("Link", '<https://hub/t?cursor=2>; rel="next"'),
    ]
    assert without_xet_links('<https://hub/a>; rel="next"') == '<https://hub/a>; rel="next"'


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hub/api/models/a/b/tree/main", True),
        ("http://127.0.0.1:9/prefix/api/datasets/a/b/revision/main", True),
        ("https://hub/a/b/resolve/main/w.bin", False),
        ("https://registry/v2/api/models/manifests/x", False),
        ("https://www.modelscope.cn/api/v1/models/a/b/repo", False),
    ],
)
def test_hub_api_paths(url, expected):
    assert is_hub_api(url) is expected


def test_an_api_request_asks_for_gzip_or_nothing():
    headers = [("Accept-Encoding", "br, zstd"), ("Accept", "*/*")]
    assert api_request_headers(headers) == [("Accept", "*/*"), ("Accept-Encoding", "gzip")]


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_xet_hashes_leave_a_json_answer_and_its_length_is_set_again(encoding):
    raw = json.dumps(TREE).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", "999")]
    if encoding:
        raw = gzip.compress(raw)
        headers.append(("Content-Encoding", encoding))
    kept, body = await without_xet_json(headers, _body(raw[:10], raw[10:]))
    data = await _read(body)
    assert json.loads(data) == [{k: v for k, v in e.items() if k != "xetHash"} for e in TREE]
    assert kept == [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]


@pytest.mark.parametrize(
    ("headers", "raw"),
    [
        ([("Content-Type", "application/json")], json.dumps(TREE[1:]).encode()),  # nothing to do
        ([("Content-Type", "application/json")], b"{not json"),
        ([("Content-Type", "application/octet-stream")], json.dumps(TREE).encode()),
        (
            [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            gzip.compress(json.dumps(TREE[1:]).encode()),
        ),
        ([("Content-Type", "application/json"), ("Content-Encoding", "br")], b"\x0b\x01"),
    ],
)
async def test_other_answers_pass_as_they_came(headers, raw):
    kept, body = await without_xet_json(headers, _body(raw))
    assert (kept, await _read(body)) == (headers, raw)


async def test_an_answer_over_the_limit_passes_as_it_came():
    chunk = b" " * (MAX_JSON // 4)
    chunks = [b'[{"xetHash": "x"}', *[chunk] * 5, b"]"]
    headers = [("Content-Type", "application/json")]
    kept, body = await without_xet_json(headers, _body(*chunks))
    assert kept == headers
    assert await _read(body) == b"".join(chunks)
