"""Is a file asked for with a token public anyway (``download/public_files.py``), and does the
hub give anyone a token holder's redirect (``daemon/proxy/links.py``)?"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.backends.base import Entry, ObjectStat, RequestOptions
from damselfly.backends.registry import BackendRegistry
from damselfly.core.digests import Digest
from damselfly.core.errors import SourceAuthError, SourceNotFoundError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl, parse_url
from damselfly.daemon.proxy.links import LinkedFile, PublicLinks, same_link
from damselfly.download.jobs import FileJob
from damselfly.download.public_files import PublicFiles, anonymous_job

SHA = "ab" * 32
STAT = ObjectStat(
    content_length=100,
    supports_ranges=True,
    etag=SHA,
    content_digest=Digest("sha256", SHA),
    extras={"hf_commit": "c" * 40},
)
PARAMS = (("hf_endpoint", "https://hub.test"), ("hf_revision", "main"), ("hf_token", "hf_x"))


class TwoFacedHub:
    """A backend answering ``stat`` with one answer for a token holder, another for anyone."""

    def __init__(self, anonymous: ObjectStat | Exception) -> None:
        self.anonymous = anonymous
        self.asked: list[RequestOptions] = []

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        self.asked.append(options)
        if options.param("hf_token"):
            return STAT
        if isinstance(self.anonymous, Exception):
            raise self.anonymous
        return self.anonymous

    def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return True

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        return []

    async def aclose(self) -> None:
        pass


def _job(**changes: object) -> FileJob:
    job = FileJob(
        url=parse_url("hf://acme/m/w.bin"),
        output=Path("/dev/null"),
        options=RequestOptions(params=PARAMS),
        try_public=True,
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def _registry(hub: TwoFacedHub) -> BackendRegistry:
    return BackendRegistry({"hf": lambda: hub})


@pytest.mark.parametrize(
    ("anonymous", "public"),
    [
        (STAT, True),
        (SourceAuthError("hf://acme/m/w.bin", 401, "a gated repo"), False),
        (SourceNotFoundError("hf://acme/m/w.bin", 404, "a private repo"), False),
        (dataclasses.replace(STAT, etag="cd" * 32), False),  # another version
        (dataclasses.replace(STAT, content_digest=Digest("sha256", "cd" * 32)), False),
        (dataclasses.replace(STAT, content_length=99), False),
        (dataclasses.replace(STAT, extras={"hf_commit": "d" * 40}), False),  # another commit
    ],
)
async def test_public_only_when_anyone_gets_the_same_file(anonymous, public):
    hub = TwoFacedHub(anonymous)
    job, stat = await PublicFiles().choose(_job(), STAT, _registry(hub))
    assert len(hub.asked) == 1
    assert hub.asked[0].param("hf_token") is None
    assert hub.asked[0].param("hf_revision") == "main"
    if public:
        assert job.options.param("hf_token") is None
        assert not job.try_public
        assert stat == anonymous
    else:
        assert job == _job()
        assert stat is STAT


@pytest.mark.parametrize(
    "job",
    [
        _job(try_public=False),
        _job(task_id="t" * 64),  # named by a scheduler
        _job(options=RequestOptions(params=PARAMS[:2])),  # no token: nothing to remove
        _job(url=parse_url("https://hub.test/f?X-Amz-Signature=abc")),  # a signed URL
    ],
)
async def test_not_asked(job):
    hub = TwoFacedHub(STAT)
    assert anonymous_job(job) is None
    assert await PublicFiles().choose(job, STAT, _registry(hub)) == (job, STAT)
    assert hub.asked == []


async def test_an_origin_that_vouches_for_no_bytes_is_not_asked():
    weak = ObjectStat(content_length=100, supports_ranges=True, etag='W/"x"')
    hub = TwoFacedHub(weak)
    assert await PublicFiles().choose(_job(), weak, _registry(hub)) == (_job(), weak)
    assert hub.asked == []


async def test_answers_are_remembered_for_a_while():
    now = [0.0]
    files = PublicFiles(ttl=60.0, clock=lambda: now[0])
    hub = TwoFacedHub(SourceAuthError("hf://acme/m/w.bin", 401, "gated"))
    for _ in range(3):
        assert (await files.choose(_job(), STAT, _registry(hub)))[0] == _job()
    assert files.asked == 1
    now[0] = 61.0
    hub.anonymous = STAT  # the repo went public meanwhile
    job, _ = await files.choose(_job(), STAT, _registry(hub))
    assert job.options.param("hf_token") is None
    assert files.asked == 2
    other = _job(url=parse_url("hf://acme/m/other.bin"))
    await files.choose(other, STAT, _registry(hub))
    assert files.asked == 3  # per file, never per repo


LINKED = LinkedFile("https://hub.test/acme/m/resolve/main/w.bin", SHA, 100, "c" * 40)


def _redirect(sha: str = SHA, size: str = "100", commit: str = "c" * 40) -> list:
    return [
        ("Location", "https://cdn.test/" + sha + "?sig=1"),
        ("X-Linked-Etag", f'"{sha}"'),
        ("X-Linked-Size", size),
        ("X-Repo-Commit", commit),
    ]


@pytest.mark.parametrize(
    ("status", "headers", "same"),
    [
        (302, _redirect(), True),
        (401, [("X-Error-Code", "GatedRepo")], False),
        (200, [("ETag", f'"{SHA}"'), ("X-Repo-Commit", "c" * 40)], False),
        (302, _redirect(sha="cd" * 32), False),
        (302, _redirect(size="99"), False),
        (302, _redirect(commit="d" * 40), False),
    ],
)
def test_same_link(status, headers, same):
    assert same_link(LINKED, status, headers) is same


def test_same_link_needs_everything_known():
    assert not same_link(dataclasses.replace(LINKED, commit=None), 302, _redirect())


def test_public_links_expire():
    now = [0.0]
    links = PublicLinks(ttl=60.0, clock=lambda: now[0])
    assert links.lookup(LINKED) is None
    links.remember(LINKED, False)
    assert links.lookup(LINKED) is False
    assert links.lookup(dataclasses.replace(LINKED, commit="d" * 40)) is None
    now[0] = 61.0
    assert links.lookup(LINKED) is None
