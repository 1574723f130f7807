"""The node's proxy CA: created once (key 0600), described, and issuing verifiable leaves;
a daemon's proxy makes and checks it at its start without ``cryptography`` in its memory."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import stat
import subprocess
import sys

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from damselfly.config.proxy import ProxySettings
from damselfly.core.errors import ConfigError
from damselfly.daemon.proxy.ca import ProxyCA, describe_ca
from damselfly.testing.imports import imported_by


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


# A daemon's proxy starts in a process without ``cryptography`` (~9 MiB it would keep): the CA
# is made and checked in a child interpreter, or (already there) by ``ssl``, and read at the
# first interception. ``@DIR@`` is the data directory.
PROXY_STARTS = """
import stat, sys
from pathlib import Path
from damselfly.config.proxy import ProxySettings
from damselfly.daemon.proxy.service import ProxyService
data = Path(@DIR@)
first = ProxyService(ProxySettings(), data_dir=data).ca
assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
made = first.path.read_bytes()
again = ProxyService(ProxySettings(), data_dir=data).ca
assert again.path.read_bytes() == made  # the second start reuses it
assert "cryptography" not in sys.modules
assert again.server_context("hub.example.test") is again.server_context("hub.example.test")
assert "cryptography" in sys.modules
"""


def test_a_starting_proxy_makes_its_ca_without_reading_it_until_it_intercepts(tmp_path):
    loaded = imported_by("sys", then=PROXY_STARTS.replace("@DIR@", repr(str(tmp_path))))
    assert "damselfly.daemon.proxy.ca_files" in loaded
    ca = ProxyCA.load_or_create(ProxySettings(), tmp_path)
    assert ca.cert.subject.rfc4514_string().startswith("CN=damselfly proxy CA")


CHECK_AT_START = """
import sys
from pathlib import Path
from damselfly.config.proxy import ProxySettings
from damselfly.core.errors import ConfigError
from damselfly.daemon.proxy.ca import ProxyCA
settings = ProxySettings.model_validate_json(sys.argv[1])
try:
    ProxyCA.for_proxy(settings, Path(sys.argv[2]))
except ConfigError as exc:
    sys.exit(f"ConfigError: {exc} {'cryptography' in sys.modules}")
"""


@pytest.mark.parametrize("configured", [True, False])
def test_a_ca_that_cannot_be_read_stops_the_start_with_the_same_error(tmp_path, configured):
    """A configured pair, or the node's own made unreadable: the child's check fails the start
    with what reading it here says, and ``cryptography`` stays out of the daemon."""
    settings = ProxySettings()
    if configured:
        cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
        key.write_text("not a key")
        settings = ProxySettings(ca_cert=cert, ca_key=key)
    else:
        ProxyCA.load_or_create(settings, tmp_path)
        cert = tmp_path / "proxy" / "ca.crt"
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError) as here:
        ProxyCA.load_or_create(settings, tmp_path)
    argv = [sys.executable, "-c", CHECK_AT_START, settings.model_dump_json(), str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.stderr.strip() == f"ConfigError: {here.value} False"


def test_a_certificate_that_is_not_the_keys_stops_the_start(tmp_path):
    ProxyCA.load_or_create(ProxySettings(), tmp_path / "one")
    ProxyCA.load_or_create(ProxySettings(), tmp_path / "two")
    cert, key = tmp_path / "one" / "proxy" / "ca.crt", tmp_path / "two" / "proxy" / "ca.key"
    settings = ProxySettings(ca_cert=cert, ca_key=key)
    with pytest.raises(ConfigError, match="not the certificate of"):
        ProxyCA.load_or_create(settings, tmp_path)
    argv = [sys.executable, "-c", CHECK_AT_START, settings.model_dump_json(), str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert "not the certificate of" in done.stderr
    assert done.stderr.strip().endswith("False")  # cryptography never loaded there


def test_the_first_interception_reads_the_bytes_checked_at_the_start(tmp_path):
    """Files swapped after the start (a secret remounted) are not read half-way: the proxy
    signs with the CA it checked until it starts again."""
    ca = ProxyCA.for_proxy(ProxySettings(), tmp_path)
    checked = ca.path.read_bytes()
    ProxyCA.load_or_create(ProxySettings(), tmp_path / "other")
    for name in ("ca.crt", "ca.key"):
        other = (tmp_path / "other" / "proxy" / name).read_bytes()
        (tmp_path / "proxy" / name).write_bytes(other)
    assert ca.cert == x509.load_pem_x509_certificate(checked)


PLANTED_START = """
import sys
from pathlib import Path
from damselfly.config.proxy import ProxySettings
from damselfly.daemon.proxy.ca import ProxyCA
ProxyCA.for_proxy(ProxySettings(), Path(sys.argv[1]))
"""


def test_the_ca_check_never_imports_from_the_working_directory(tmp_path):
    """The daemon (a console script) does not import from where it was started; neither does
    the child that checks its CA (a ``cryptography`` planted there would read the key)."""
    planted = tmp_path / "cwd" / "cryptography"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("raise SystemExit('planted module ran')\n")
    argv = [sys.executable, "-P", "-c", PLANTED_START, str(tmp_path / "data")]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=planted.parent)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "proxy" / "ca.crt").exists()
