"""Which downloads are private, and the ids private tasks go by (download/credentials.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.core.urls import parse_url
from damselfly.download.credentials import needs_credentials, private_task_id
from damselfly.download.jobs import FileJob

PUBLIC_ID = "ab" * 32


def job(url: str, **options: object) -> FileJob:
    return FileJob(parse_url(url), Path("out"), options=RequestOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("made", "private"),
    [
        (job("https://o.example/f"), False),
        (job("https://o.example/f", headers=(("Accept", "x"),)), False),
        (job("https://o.example/f", headers=(("Authorization", "Bearer t"),)), True),
        (job("https://o.example/f", headers=(("cookie", "a=b"),)), True),
        (job("hf://acme/private/f.bin", params=(("hf_token", "hf_x"),)), True),
        (job("hf://acme/public/f.bin", params=(("hf_token", ""),)), False),
        (job("https://user:pw@o.example/f"), True),
        (job("https://b.s3.example/f?X-Amz-Signature=abc&X-Amz-Expires=60"), True),
    ],
)
def test_what_makes_a_download_private(made, private):
    assert needs_credentials(made) is private


def test_private_ids_need_the_cluster_key():
    one = private_task_id(PUBLIC_ID, b"k1")
    assert one == private_task_id(PUBLIC_ID, b"k1")  # every node of the cluster agrees
    assert one != PUBLIC_ID
    assert one != private_task_id(PUBLIC_ID, b"k2")  # another key, another id
    assert len(one) == 64
    assert all(c in "0123456789abcdef" for c in one)
