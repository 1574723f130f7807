"""What the scheduler learns about private content fetched through the proxy: the daemon's
real engine (``PeerFiller``) under ``EngineFetcher``, a recording scheduler client, and the
test hub with a private repo. Every message the engine sends (registrations, reports, task
holdings) is searched for the client's token and for the CDN URL's signature: neither may
be there, and the task must be marked as needing credentials (never seeded). A client with a
wrong token gets the hub's refusal, not the stored bytes."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest
from pydantic import SecretStr

from damselfly.daemon.engine.peer_filler import PeerFiller
from damselfly.daemon.proxy.engine_fetcher import EngineFetcher
from damselfly.daemon.proxy.links import LinkedFile
from damselfly.daemon.proxy.mesh import MeshRequest, MeshResponse
from damselfly.daemon.proxy.upstream import DirectFetcher, Upstream
from damselfly.demo.hub_repos import HubRepo
from damselfly.storage.store import Store
from damselfly.testing.fake_scheduler import FakeSchedulerClient
from damselfly.testing.hf_hub import HfTestHub
from damselfly.transport.piece_client import PieceClient

SECRET = b"".join(hashlib.sha256(b"p%d" % i).digest() for i in range(8_000))  # 256 kB
TOKEN = "hf_private_scheduler_0123456789"
REPO = HubRepo(
    "acme/private",
    {"model.bin": SECRET},
    lfs_threshold=1024,
    private=True,
    allowed_tokens=frozenset({TOKEN}),
)


@pytest.fixture
async def hub():
    async with HfTestHub([REPO]) as test_hub:
        yield test_hub


@pytest.fixture
async def engine(tmp_path):
    scheduler = FakeSchedulerClient()
    upstream = Upstream()
    await upstream.start()
    try:
        async with PieceClient(connect_timeout=1.0) as pieces:
            with Store(tmp_path / "store") as store:
                filler = PeerFiller(scheduler, "node-a", pieces)
                async with EngineFetcher(store, filler, DirectFetcher(upstream)) as fetcher:
                    yield fetcher, scheduler
    finally:
        await upstream.aclose()


async def _read(response: MeshResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.body])
    finally:
        await response.aclose()


def _sent_to_scheduler(scheduler: FakeSchedulerClient) -> str:
    return repr((scheduler.registrations, scheduler.reports, scheduler.holdings, scheduler.hosts))


async def test_a_private_resolve_download_tells_the_scheduler_no_secret(engine, hub):
    fetcher, scheduler = engine
    url = f"{hub.endpoint}/acme/private/resolve/main/model.bin"
    owner = MeshRequest(url, (), None, SecretStr(f"Bearer {TOKEN}"))
    response = await fetcher.fetch(owner)
    assert (response.status, await _read(response)) == (200, SECRET)
    assert fetcher.outcomes["mesh"] == 1

    assert scheduler.registrations, "the engine registered the task"
    assert all(meta.needs_credentials for _, meta, _ in scheduler.registrations)
    assert TOKEN not in _sent_to_scheduler(scheduler)

    for authorization in (None, SecretStr("Bearer hf_wrong_token_000000")):
        refused = await fetcher.fetch(MeshRequest(url, (), None, authorization))
        body = await _read(refused)
        assert refused.status in (401, 403, 404), refused.status
        assert SECRET[:64] not in body


async def test_a_signed_cdn_url_given_to_a_token_holder_stays_private(engine, hub):
    fetcher, scheduler = engine
    resolve = f"{hub.endpoint}/acme/private/resolve/main/model.bin"
    async with (
        aiohttp.ClientSession() as session,
        session.head(
            resolve, headers={"Authorization": f"Bearer {TOKEN}"}, allow_redirects=False
        ) as redirect,
    ):
        assert redirect.status == 302
        cdn_url = redirect.headers["Location"]
        commit = redirect.headers["X-Repo-Commit"]
    sha256 = hashlib.sha256(SECRET).hexdigest()
    linked = LinkedFile(resolve, sha256, len(SECRET), commit, authorized=True)
    response = await fetcher.fetch(MeshRequest(cdn_url, (), None, None, "cdn", linked))
    assert (response.status, await _read(response)) == (200, SECRET)

    sent = _sent_to_scheduler(scheduler)
    signature = cdn_url.split("?", 1)[1]
    assert signature
    assert signature not in sent
    assert "Signature=" not in sent
    assert all(meta.needs_credentials for _, meta, _ in scheduler.registrations)
