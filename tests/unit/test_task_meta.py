"""What the daemon tells the scheduler about a task: never a credential."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly.backends.base import ObjectStat, RequestOptions
from damselfly.core.urls import parse_url
from damselfly.daemon.engine.peer_filler import task_meta
from damselfly.download.jobs import FileJob, FillRequest

TASK_ID = "a" * 64


@dataclass
class _Task:  # the three fields task_meta reads from a TaskStorage
    task_id: str = TASK_ID
    content_length: int = 10 << 20
    piece_length: int = 4 << 20


def meta_for(url: str, *, headers=(), params=()):
    job = FileJob(
        url=parse_url(url),
        output=Path("/tmp/x"),
        options=RequestOptions(headers=headers, params=params),
    )
    request = FillRequest(job, _Task(), ObjectStat(10 << 20, True), None, lambda piece: None)
    return task_meta(request)


def test_plain_url_can_go_to_a_seed_with_its_shareable_params():
    meta = meta_for(
        "hf://acme/tiny/model.bin",
        params=(("hf_revision", "c" * 40), ("hf_endpoint", "http://hub")),
    )
    assert meta.needs_credentials is False
    assert dict(meta.params) == {
        "hf_revision": "c" * 40,
        "hf_endpoint": "http://hub",
        "source_version": f"length:{10 << 20}",  # no validator: the length names the version
    }
    assert (meta.task_id, meta.content_length, meta.piece_length) == (TASK_ID, 10 << 20, 4 << 20)


@pytest.mark.parametrize(
    ("url", "headers", "params"),
    [
        ("hf://acme/private/m.bin", (), (("hf_token", "hf_secret"),)),
        ("s3://bucket/key", (), (("s3_secret_access_key", "shh"),)),
        ("https://h/f", (("Authorization", "Bearer t"),), ()),
        ("https://h/f", (("Cookie", "session=1"),), ()),
        ("https://user:pw@h/f", (), ()),
        ("https://h/f?X-Amz-Signature=abc&X-Amz-Credential=k", (), ()),
    ],
)
def test_tasks_needing_credentials_are_marked_and_carry_none(url, headers, params):
    meta = meta_for(url, headers=headers, params=params)
    assert meta.needs_credentials is True
    text = repr(meta) + meta.url + repr(dict(meta.params))
    for secret in ("hf_secret", "shh", "Bearer t", "session=1", "pw@", "abc"):
        assert secret not in text


def test_git_blob_digests_stay_local_and_sha256_travels():
    from damselfly.core.digests import GIT_BLOB_SHA1, Digest

    job = FileJob(url=parse_url("hf://acme/tiny/config.json"), output=Path("/tmp/x"))
    for digest, wire in [
        (Digest(GIT_BLOB_SHA1, "b" * 40), ""),
        (Digest("sha256", "c" * 64), "sha256:" + "c" * 64),
    ]:
        request = FillRequest(job, _Task(), ObjectStat(1, True), digest, lambda piece: None)
        assert task_meta(request).digest == wire


def test_the_version_named_by_the_task_id_goes_to_the_seed():
    job = FileJob(url=parse_url("https://h/f"), output=Path("/tmp/x"))
    stat = ObjectStat(10 << 20, True, etag='"v1"', last_modified="Mon, 01 Jan 2001 00:00:00 GMT")
    meta = task_meta(FillRequest(job, _Task(), stat, None, lambda piece: None))
    assert dict(meta.params) == {"source_version": '"v1"'}
