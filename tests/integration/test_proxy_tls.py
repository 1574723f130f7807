"""CONNECT through the proxy: a blind tunnel for hosts without a rule, TLS interception for
hosts under ``certs``, and origins always verified."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme
from aiohttp import web

from damselfly.config.proxy import ProxyCerts, ProxyRule, ProxySettings
from damselfly.daemon.proxy.service import ProxyService

BODY = b"secret origin bytes" * 1000


@pytest.fixture(scope="module")
def origin_ca():
    return trustme.CA()


@pytest.fixture
async def tls_origin(origin_ca):
    async def file(request: web.Request) -> web.Response:
        return web.Response(body=BODY, headers={"X-Repo-Commit": "abc"})

    app = web.Application()
    app.router.add_get("/file", file)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    origin_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
def bundle(tmp_path, origin_ca):
    path = tmp_path / "origin-ca.pem"
    origin_ca.cert_pem.write_to_path(str(path))
    return path


def _settings(bundle, intercept: list[str]) -> ProxySettings:
    rules = [ProxyRule(regx=r"^https://127\.0\.0\.1:", certs=ProxyCerts(hosts=intercept))]
    return ProxySettings(listen="127.0.0.1:0", proxies=rules, upstream_ca_bundle=bundle)


async def _connect(service: ProxyService, port: int, trust: list[str]):
    """CONNECT to 127.0.0.1:port through the proxy, then TLS; returns (reader, writer, issuer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.proxy.port)
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    client = ssl.create_default_context()
    client.load_verify_locations(cadata="".join(trust))
    await writer.start_tls(client, server_hostname="127.0.0.1")
    peer = writer.get_extra_info("ssl_object").getpeercert()
    issuer = dict(item[0] for item in peer["issuer"])
    return reader, writer, issuer


async def _get(reader, writer) -> bytes:
    writer.write(b"GET /file HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return await reader.read()


async def test_connect_without_a_rule_is_a_blind_tunnel(tmp_path, tls_origin, origin_ca, bundle):
    async with ProxyService(_settings(bundle, []), data_dir=tmp_path) as service:
        trust = [origin_ca.cert_pem.bytes().decode()]
        reader, writer, issuer = await _connect(service, tls_origin, trust)
        assert issuer["organizationName"].startswith("trustme")  # the origin's own certificate
        assert (await _get(reader, writer)).endswith(BODY)
        writer.close()
        async with asyncio.timeout(5):  # the tunnel is counted once both sides are done
            while not service.statistics.requests:
                await asyncio.sleep(0.01)
    ((rule, outcome),) = service.statistics.requests
    assert outcome == "tunnel"
    assert service.statistics.bytes[(rule, outcome)] > len(BODY)


async def test_connect_to_an_intercepted_host_terminates_tls(tmp_path, tls_origin, bundle):
    async with ProxyService(_settings(bundle, ["127.0.0.1"]), data_dir=tmp_path) as service:
        trust = [service.ca.path.read_text()]
        reader, writer, issuer = await _connect(service, tls_origin, trust)
        assert issuer["organizationName"] == "damselfly"
        answer = await _get(reader, writer)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"X-Repo-Commit: abc" in answer
    assert answer.endswith(BODY)


async def test_an_origin_the_bundle_does_not_vouch_for_is_refused(tmp_path, tls_origin):
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with ProxyService(_settings(other, ["127.0.0.1"]), data_dir=tmp_path) as service:
        reader, writer, _ = await _connect(service, tls_origin, [service.ca.path.read_text()])
        answer = await _get(reader, writer)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert BODY not in answer


async def test_a_malformed_request_inside_an_intercepted_connection_is_400(
    tmp_path, tls_origin, bundle
):
    async with ProxyService(_settings(bundle, ["127.0.0.1"]), data_dir=tmp_path) as service:
        trust = [service.ca.path.read_text()]
        reader, writer, _ = await _connect(service, tls_origin, trust)
        writer.write(b"GET http://elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n")  # not origin-form
        answer = await reader.read()
        writer.close()
        reader, writer, _ = await _connect(service, tls_origin, trust)
        follow_up = await _get(reader, writer)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert follow_up.endswith(BODY)
