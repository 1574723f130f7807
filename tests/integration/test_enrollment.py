"""Enrollment and renewal against a real enrollment service (HTTPS on 127.0.0.1:0, in this
process): one-time tokens, expiry, the CA pinned by fingerprint, roles from the token,
renewal authenticated by the current certificate, and the renewal loop."""

from __future__ import annotations

import asyncio
import datetime
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from damselfly.security.ca import ClusterCA, init_ca
from damselfly.security.enrollment import EnrollmentService, serve_enrollment
from damselfly.security.enrollment_client import enroll, read_record, renew
from damselfly.security.errors import EnrollmentError, SecurityError
from damselfly.security.files import NodeFiles, read_material
from damselfly.security.renewal import RenewalLoop, RenewalPolicy
from damselfly.security.roles import Role, role_of
from damselfly.security.tokens import TOKENS_DIR, create_token
from damselfly.testing.pki import TestPki


def certificate(files: NodeFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files.cert_file.read_bytes())


@pytest.fixture
def ca(tmp_path: Path) -> ClusterCA:
    return init_ca(tmp_path / "ca")


@pytest.fixture
async def server(ca: ClusterCA) -> AsyncIterator[str]:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    service = EnrollmentService(ca)
    task = asyncio.create_task(
        serve_enrollment(service, "127.0.0.1:0", [], stop=stop, on_ready=ready.set_result)
    )
    await asyncio.wait([ready, task], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    yield ready.result()
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_token_enrolls_a_node_once(ca: ClusterCA, server: str, tmp_path: Path) -> None:
    token = create_token(ca.directory, Role.SEED, 3600)
    files = await enroll(
        server, token, ca.fingerprint, tmp_path / "node", node_id="seed-1", role="seed"
    )
    issued = certificate(files)
    assert role_of(issued) is Role.SEED
    issued.verify_directly_issued_by(ca.certificate)
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key_file.parent.stat().st_mode) == 0o700
    assert files.ca_file.read_bytes() == ca.cert_pem
    assert read_record(tmp_path / "node").server == server
    assert token not in (tmp_path / "node" / "enrollment.json").read_text()
    with pytest.raises(EnrollmentError, match="403: unknown or already used"):
        await enroll(server, token, ca.fingerprint, tmp_path / "again", node_id="seed-2")
    assert not (tmp_path / "again").exists()
    assert list((ca.directory / TOKENS_DIR).iterdir()) == []


async def test_an_expired_token_is_refused(ca: ClusterCA, server: str, tmp_path: Path) -> None:
    token = create_token(ca.directory, Role.PEER, 60, now=time.time() - 120)
    with pytest.raises(EnrollmentError, match="403: expired join token"):
        await enroll(server, token, ca.fingerprint, tmp_path / "node", node_id="p")


async def test_the_client_refuses_a_ca_with_another_fingerprint(
    ca: ClusterCA, server: str, tmp_path: Path
) -> None:
    token = create_token(ca.directory, Role.PEER, 3600)
    other = init_ca(tmp_path / "other").fingerprint
    with pytest.raises(EnrollmentError, match=r"has fingerprint sha256:[0-9a-f]{64}, not the one"):
        await enroll(server, token, other, tmp_path / "node", node_id="p")
    assert not (tmp_path / "node").exists()
    # the token never left the node: it still works against the right CA
    upper = "SHA256:" + ":".join(ca.fingerprint[7 + i : 9 + i].upper() for i in range(0, 64, 2))
    files = await enroll(server, token, upper, tmp_path / "node", node_id="p")
    assert role_of(certificate(files)) is Role.PEER


async def test_the_role_comes_from_the_token(ca: ClusterCA, server: str, tmp_path: Path) -> None:
    token = create_token(ca.directory, Role.PEER, 3600)
    with pytest.raises(EnrollmentError, match="for role peer, not seed"):
        await enroll(server, token, ca.fingerprint, tmp_path / "n", node_id="p", role="seed")
    bound = create_token(ca.directory, Role.PEER, 3600, node_id="peer-9")
    with pytest.raises(EnrollmentError, match="for node peer-9"):
        await enroll(server, bound, ca.fingerprint, tmp_path / "n", node_id="peer-8")


async def test_renewal_with_the_current_certificate(
    ca: ClusterCA, server: str, tmp_path: Path
) -> None:
    token = create_token(ca.directory, Role.SEED, 3600)
    directory = tmp_path / "node"
    files = await enroll(
        server, token, ca.fingerprint, directory, node_id="seed-1", dns_names=["seed.example"]
    )
    before, old_key = certificate(files), read_material(files).key_pem
    await renew(directory)
    after = certificate(files)
    assert after.serial_number != before.serial_number
    assert read_material(files).key_pem != old_key  # a fresh key with each renewal
    assert after.subject == before.subject
    assert role_of(after) is Role.SEED
    sans = x509.SubjectAlternativeName
    assert after.extensions.get_extension_for_class(sans) == (
        before.extensions.get_extension_for_class(sans)
    )


async def test_renewal_needs_a_certificate_of_this_cluster(
    ca: ClusterCA, server: str, tmp_path: Path
) -> None:
    stranger = TestPki(tmp_path / "elsewhere").node("peer-1", Role.PEER)
    with pytest.raises(EnrollmentError):
        await renew(stranger.cert_file.parent, server=server)
    expired = TestPki(tmp_path / "x")
    expired.ca = ca  # our CA, but a certificate that ran out
    old = expired.node(
        "peer-2",
        Role.PEER,
        validity=datetime.timedelta(minutes=1),
        now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
    )
    with pytest.raises(EnrollmentError):
        await renew(old.cert_file.parent, server=server)


async def test_the_renewal_loop_renews_when_due(ca: ClusterCA, server: str, tmp_path: Path) -> None:
    token = create_token(ca.directory, Role.PEER, 3600)
    files = await enroll(server, token, ca.fingerprint, tmp_path / "n", node_id="peer-1")
    serial = certificate(files).serial_number
    loop = RenewalLoop(files.cert_file.parent, renew, policy=RenewalPolicy(fraction=0.0))
    running = asyncio.create_task(loop.run())
    await asyncio.wait_for(loop.renewed.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert loop.renewals >= 1
    assert certificate(files).serial_number != serial


async def test_a_malformed_request_is_refused_without_using_the_token(
    ca: ClusterCA, server: str
) -> None:
    import aiohttp

    from damselfly.security.tls import client_context

    token = create_token(ca.directory, Role.PEER, 3600)
    context = client_context(None, ca_pem=ca.cert_pem)
    async with aiohttp.ClientSession() as session:
        body = {"token": token, "csr": "not a csr"}
        async with session.post(f"{server}/v1/enroll", json=body, ssl=context) as response:
            assert response.status == 400
        async with session.post(f"{server}/v1/enroll", data=b"[1]", ssl=context) as response:
            assert response.status == 400
        async with session.post(f"{server}/v1/renew", json={"csr": "x"}, ssl=context) as response:
            assert response.status == 401
    assert len(list((ca.directory / TOKENS_DIR).iterdir())) == 1


def test_a_loose_token_file_is_refused(tmp_path: Path) -> None:
    from damselfly.security.files import read_secret

    path = tmp_path / "token"
    path.write_text("dfjt_x")
    path.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        read_secret(path)


async def test_a_denied_node_can_neither_renew_nor_enroll(
    ca: ClusterCA, server: str, tmp_path: Path
) -> None:
    from damselfly.security.tokens import deny_node

    token = create_token(ca.directory, Role.PEER, 3600)
    files = await enroll(server, token, ca.fingerprint, tmp_path / "n", node_id="peer-1")
    deny_node(ca.directory, "peer-1")
    with pytest.raises(EnrollmentError, match="node peer-1 is denied"):
        await renew(files.cert_file.parent)
    again = create_token(ca.directory, Role.PEER, 3600)
    with pytest.raises(EnrollmentError, match="node peer-1 is denied"):
        await enroll(server, again, ca.fingerprint, tmp_path / "m", node_id="peer-1")


async def test_a_node_cannot_ask_for_a_role_name(
    ca: ClusterCA, server: str, tmp_path: Path
) -> None:
    token = create_token(ca.directory, Role.PEER, 3600)
    with pytest.raises(EnrollmentError, match=r"400: scheduler\.role\.damselfly\.internal"):
        await enroll(
            server, token, ca.fingerprint, tmp_path / "n", node_id="p",
            dns_names=["scheduler.role.damselfly.internal"],
        )  # fmt: skip
    assert len(list((ca.directory / TOKENS_DIR).iterdir())) == 1  # not used up


async def test_the_service_certificate_is_reissued(ca: ClusterCA, tmp_path: Path) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    service = EnrollmentService(ca)
    task = asyncio.create_task(
        serve_enrollment(
            service, "127.0.0.1:0", ["ca.example"], stop=stop, on_ready=ready.set_result,
            refresh_interval=0.05,
        )
    )  # fmt: skip
    await asyncio.wait_for(ready, 5)
    files = NodeFiles.in_dir(ca.directory / "enrollment-service")
    first = certificate(files)
    assert (
        x509.DNSName("ca.example")
        in first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    with pytest.raises(SecurityError, match="names 0 damselfly roles"):
        role_of(first)
    async with asyncio.timeout(5):
        while certificate(files).serial_number == first.serial_number:
            await asyncio.sleep(0.01)
    token = create_token(ca.directory, Role.PEER, 3600)  # still serving, with the new one
    await enroll(ready.result(), token, ca.fingerprint, tmp_path / "n", node_id="p")
    stop.set()
    await asyncio.wait_for(task, 5)
