"""The node's proxy CA: created once (key 0600), described, and issuing verifiable leaves."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import stat

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from damselfly.config.proxy import ProxySettings
from damselfly.core.errors import ConfigError
from damselfly.daemon.proxy.ca import ProxyCA, describe_ca


def test_first_start_creates_the_ca_with_a_private_key(tmp_path):
    ca = ProxyCA.load_or_create(ProxySettings(), tmp_path)
    key = tmp_path / "proxy" / "ca.key"
    assert ca.path == tmp_path / "proxy" / "ca.crt"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = ProxyCA.load_or_create(ProxySettings(), tmp_path)
    assert again.cert == ca.cert  # not re-created


def test_describe_prints_path_and_sha256_fingerprint(tmp_path):
    ca = ProxyCA.load_or_create(ProxySettings(), tmp_path)
    summary = describe_ca(ProxySettings(), tmp_path)
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert summary.sha256.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert summary.lines()[0] == f"path: {ca.path}"


def test_describe_without_a_ca_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        describe_ca(ProxySettings(), tmp_path)


def test_a_configured_ca_is_used_and_none_is_created(tmp_path):
    cluster = trustme.CA()
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    cluster.cert_pem.write_to_path(str(cert))
    cluster.private_key_pem.write_to_path(str(key))
    settings = ProxySettings(ca_cert=cert, ca_key=key)
    ca = ProxyCA.load_or_create(settings, tmp_path / "data")
    assert ca.cert == x509.load_pem_x509_certificate(cert.read_bytes())
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("host", ["hub.example.test", "127.0.0.1"])
async def test_leaf_certificates_verify_against_the_ca(tmp_path, host):
    ca = ProxyCA.load_or_create(ProxySettings(), tmp_path)
    server_context = ca.server_context(host)
    assert ca.server_context(host) is server_context  # cached per host

    async def answer(reader, writer):
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca.path))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname=host
    )
    assert await reader.read() == b"ok"
    writer.close()
    server.close()
    await server.wait_closed()
