"""The forward proxy over plain HTTP: absolute-form forwarding, keep-alive, limits, errors.

A real aiohttp origin on loopback echoes what it received; clients are raw sockets (to see
the exact bytes) and aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from damselfly.config.proxy import ProxyRule, ProxySettings
from damselfly.daemon.proxy.mesh import MeshRequest, MeshResponse, MeshUnavailableError
from damselfly.daemon.proxy.service import ProxyService
from damselfly.daemon.proxy.upstream import DirectFetcher
from damselfly.testing.proxy import RecordingMeshFetcher

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    seen = {"method": request.method, "path": request.path_qs, "body": body.decode()}
    seen["headers"] = [[k, v] for k, v in request.headers.items()]
    return web.json_response(seen, headers={"X-Origin": "yes"})


async def _payload(request: web.Request) -> web.StreamResponse:
    headers = {"ETag": '"p1"'}
    if request.http_range.start is None:
        return web.Response(body=PAYLOAD, headers=headers)
    first, stop = request.http_range.start, request.http_range.stop
    headers["Content-Range"] = f"bytes {first}-{stop - 1}/{len(PAYLOAD)}"
    return web.Response(status=206, body=PAYLOAD[first:stop], headers=headers)


@pytest.fixture
async def origin():
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/files/payload", _payload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def origin_gate():
    """An origin whose ``/gate`` answers only once 200 requests are waiting."""
    arrived: list[int] = []
    everyone = asyncio.Event()

    async def gate(request: web.Request) -> web.Response:
        arrived.append(1)
        if len(arrived) >= 200:
            everyone.set()
        await everyone.wait()
        return web.Response(text=request.query["i"])

    app = web.Application()
    app.router.add_get("/gate", gate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=512).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _settings(origin: str, **overrides) -> ProxySettings:
    rules = [ProxyRule(regx=f"^{origin}/files/", name="files")]
    return ProxySettings(listen="127.0.0.1:0", proxies=rules, **overrides)


@pytest.fixture
async def proxy(origin, tmp_path):
    service = ProxyService(_settings(origin), data_dir=tmp_path)
    service.use_mesh(RecordingMeshFetcher(DirectFetcher(service.upstream)))
    async with service:
        yield service


async def _settled(service: ProxyService, requests: int) -> None:
    """The proxy counts a request just after its last byte went out: let it catch up."""
    async with asyncio.timeout(5):
        while sum(service.statistics.requests.values()) < requests:
            await asyncio.sleep(0.01)


def _url(service: ProxyService) -> str:
    assert service.proxy is not None
    return f"http://127.0.0.1:{service.proxy.port}"


async def _raw(service: ProxyService, data: bytes, reads: int = 1) -> bytes:
    assert service.proxy is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", service.proxy.port)
    writer.write(data)
    received = b""
    try:
        for _ in range(reads):
            received += await _read_response(reader)
    finally:
        writer.close()
    return received


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + await reader.readexactly(length)


async def test_absolute_form_get_is_forwarded_without_hop_by_hop_headers(proxy, origin):
    async with aiohttp.ClientSession() as session:
        headers = {
            "X-Custom": "kept",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "Connection": "keep-alive, X-Drop",
            "X-Drop": "dropped",
            "Keep-Alive": "timeout=5",
        }
        async with session.get(f"{origin}/echo?q=1", proxy=_url(proxy), headers=headers) as resp:
            seen = await resp.json()
            assert resp.status == 200
            assert resp.headers["X-Origin"] == "yes"
    names = {name.lower(): value for name, value in seen["headers"]}
    assert seen["path"] == "/echo?q=1"
    assert names["x-custom"] == "kept"
    for gone in ("proxy-authorization", "x-drop", "keep-alive"):
        assert gone not in names


async def test_post_body_and_head_are_forwarded(proxy, origin):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{origin}/echo", data=b"hello", proxy=_url(proxy)) as resp:
            assert (await resp.json())["body"] == "hello"
        async with session.head(f"{origin}/files/payload", proxy=_url(proxy)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(PAYLOAD))
    assert proxy.forwarder.mesh.records == []  # a HEAD is metadata: never the mesh


async def test_rule_matched_get_goes_through_the_mesh_with_ranges(proxy, origin):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/files/payload", proxy=_url(proxy)) as resp:
            assert await resp.read() == PAYLOAD
            assert resp.headers["ETag"] == '"p1"'
        ranged = {"Range": "bytes=10-19"}
        async with session.get(
            f"{origin}/files/payload", proxy=_url(proxy), headers=ranged
        ) as resp:
            assert resp.status == 206
            assert await resp.read() == PAYLOAD[10:20]
            assert resp.headers["Content-Range"] == f"bytes 10-19/{len(PAYLOAD)}"
    mesh = proxy.forwarder.mesh
    assert [r.byte_range for r in mesh.records] == [None, (10, 19)]
    assert mesh.bytes_served == len(PAYLOAD) + 10
    await _settled(proxy, 2)
    registry = CollectorRegistry()
    registry.register(proxy.collector())
    labels = {"rule": "files", "outcome": "mesh"}
    assert registry.get_sample_value("damselfly_proxy_requests_total", labels) == 2
    assert registry.get_sample_value("damselfly_proxy_bytes_total", labels) == len(PAYLOAD) + 10
    assert "damselfly_proxy_open_connections" in generate_latest(registry).decode()


async def test_keep_alive_serves_several_requests_on_one_connection(proxy, origin):
    request = f"GET {origin}/echo HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    answer = await _raw(proxy, request * 3, reads=3)
    assert answer.count(b"HTTP/1.1 200 ") == 3


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nHost x\r\n\r\n",
        b"CONNECT nohost HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400_and_the_proxy_keeps_serving(proxy, origin, request_bytes):
    answer = await _raw(proxy, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 ")
    follow_up = await _raw(proxy, f"GET {origin}/echo HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert follow_up.startswith(b"HTTP/1.1 200 ")


async def test_unreachable_origin_is_502(proxy):
    answer = await _raw(proxy, b"GET http://127.0.0.1:9/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 ")


async def test_a_silent_client_is_dropped_after_the_header_timeout(origin, tmp_path):
    settings = _settings(origin, header_timeout=0.2, idle_timeout=0.2)
    async with ProxyService(settings, data_dir=tmp_path) as service:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.proxy.port)
        writer.write(b"GET http://127.0.0.1/ HTTP/1.1\r\n")  # never finished
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()


async def test_connections_beyond_the_cap_get_503(origin, tmp_path):
    async with ProxyService(_settings(origin, max_connections=1), data_dir=tmp_path) as service:
        _, holder = await asyncio.open_connection("127.0.0.1", service.proxy.port)
        while service.statistics.open_connections < 1:
            await asyncio.sleep(0.01)
        answer = await _raw(service, b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert service.statistics.rejected_connections == 1
        holder.close()


async def test_200_concurrent_connections_complete(proxy, origin_gate):
    """The origin answers none until all 200 requests are in: they are open at once."""

    async def one(index: int) -> bytes:
        data = f"GET {origin_gate}/gate?i={index} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        return await _raw(proxy, data)

    answers = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    assert {answer.rsplit(b"\r\n", 1)[1] for answer in answers} == {
        str(i).encode() for i in range(200)
    }


async def test_listens_on_loopback_only_by_default(tmp_path):
    assert ProxySettings().listen == "127.0.0.1:65001"
    settings = ProxySettings(listen="127.0.0.1:0")
    async with ProxyService(settings, data_dir=tmp_path) as service:
        assert {host for host, _ in service.proxy.addresses} == {"127.0.0.1"}
        other = _non_loopback_address()
        if other is not None:
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(other, service.proxy.port)


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, found without sending a packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.18.0.1", 9))  # UDP connect: routing only, nothing is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_authorization_reaches_the_origin_but_no_log(proxy, origin, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Bearer hf_secret_token_value"
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{origin}/echo", proxy=_url(proxy), headers={"Authorization": secret}
        ) as resp:
            seen = await resp.json()
        async with session.get(
            f"{origin}/files/payload", proxy=_url(proxy), headers={"Authorization": secret}
        ) as resp:
            assert await resp.read() == PAYLOAD
    assert ["Authorization", secret] in seen["headers"]
    assert "hf_secret_token_value" not in caplog.text
    mesh = proxy.forwarder.mesh
    assert mesh.authorized_requests == 1
    assert "hf_secret_token_value" not in repr(mesh.records)


async def test_an_oversized_request_head_is_refused(origin, tmp_path):
    async with ProxyService(
        _settings(origin, max_header_length=1024), data_dir=tmp_path
    ) as service:
        head = f"GET {origin}/echo HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 4096}\r\n\r\n"
        answer = await _raw(service, head.encode())
        assert answer.startswith(b"HTTP/1.1 431 ")


class BreakingMesh:
    """A mesh whose body stops with an error after its first megabyte (a fill failing)."""

    async def fetch(self, request: MeshRequest) -> MeshResponse:
        async def body() -> AsyncIterator[bytes]:
            yield PAYLOAD
            raise MeshUnavailableError("proxy", "piece 1 never arrived")

        headers = [("Content-Length", str(2 * len(PAYLOAD)))]
        return MeshResponse(200, headers, body())


async def test_a_body_breaking_mid_way_reaches_the_client_short_and_closed(origin, tmp_path):
    """Never a clean end after a failure: the client sees fewer bytes than announced, then
    the connection closing, and the proxy keeps serving."""
    async with ProxyService(_settings(origin), data_dir=tmp_path) as service:
        service.use_mesh(BreakingMesh())
        reader, writer = await asyncio.open_connection("127.0.0.1", service.proxy.port)
        writer.write(f"GET {origin}/files/payload HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            rest = await reader.read(-1)  # until the proxy closes the connection
        writer.close()
        assert f"content-length: {2 * len(PAYLOAD)}".encode() in head.lower()
        assert rest == PAYLOAD
        follow_up = await _raw(service, f"GET {origin}/echo HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert follow_up.startswith(b"HTTP/1.1 200 ")
