"""Which downloads are private, and the ids private tasks go by (download/credentials.py)."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.core.urls import parse_url
from damselfly.daemon.engine.spot_check import sample_ranges
from damselfly.download.credentials import needs_credentials, private_task_id
from damselfly.download.jobs import FileJob
from damselfly.security.ca import cluster_secret, hand_out_cluster_secret
from damselfly.testing.pki import TestPki

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


def test_the_ca_makes_a_cluster_secret_and_hands_it_to_nodes(tmp_path: Path):
    pki = TestPki(tmp_path)
    secret = cluster_secret(pki.ca)
    assert secret is not None
    assert len(secret) == 64
    assert stat.S_IMODE((tmp_path / "ca" / "cluster.secret").stat().st_mode) == 0o600
    node = tmp_path / "node"
    hand_out_cluster_secret(pki.ca, node)
    assert (node / "cluster.secret").read_bytes().strip() == secret
    assert stat.S_IMODE((node / "cluster.secret").stat().st_mode) == 0o600


@pytest.mark.parametrize(("length", "expected"), [(100, 1), (10 * 1024 * 1024, 2)])
def test_spot_check_samples_small_files_whole(length, expected):
    ranges = sample_ranges(length, 2, 64 * 1024, random.Random(7))
    assert len(ranges) == expected
    assert all(r.start >= 0 and r.end <= length for r in ranges)
    if expected == 1:
        assert (ranges[0].start, ranges[0].length) == (0, length)
