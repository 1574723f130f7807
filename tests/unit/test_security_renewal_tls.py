"""When to renew (sans-IO, fake clock), one-time tokens racing, and TLS material reloaded from
disk: a half-replaced pair is not taken, a renewed certificate is served from the next
handshake on (real TLS 1.3 handshakes over a socket pair)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from damselfly.security.certs import NodeIdentity, issue, parse_ips
from damselfly.security.errors import TokenRefusedError
from damselfly.security.files import NodeMaterial, read_material, write_material, write_secret
from damselfly.security.renewal import RenewalDecision, RenewalPolicy
from damselfly.security.roles import Role
from damselfly.security.tls import ReloadingFiles, client_context, reloading_server_context
from damselfly.security.tokens import create_token, prune_expired, redeem_token
from damselfly.testing.pki import TestPki

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    ("hours_in", "decision"),
    [
        (0, RenewalDecision(renew_now=False, wait=16 * 3600)),
        (10, RenewalDecision(renew_now=False, wait=6 * 3600)),
        (16, RenewalDecision(renew_now=True, wait=0.0)),
        (23.5, RenewalDecision(renew_now=True, wait=0.0)),
        (24, RenewalDecision(renew_now=False, wait=0.0, expired=True)),
    ],
)
def test_renew_at_two_thirds_of_the_lifetime(hours_in: float, decision: RenewalDecision) -> None:
    policy = RenewalPolicy()
    assert policy.decide(T0, T0 + 24 * HOUR, T0 + hours_in * HOUR) == decision


def test_a_failed_renewal_is_retried_but_never_after_expiry() -> None:
    policy = RenewalPolicy(retry_interval=60)
    assert policy.after_failure(T0 + HOUR, T0) == 60
    assert policy.after_failure(T0 + datetime.timedelta(seconds=20), T0) == 20
    assert policy.after_failure(T0, T0 + HOUR) == 0
    with pytest.raises(ValueError, match="fraction"):
        RenewalPolicy(fraction=1.0)


def test_a_token_races_and_only_one_redemption_wins(tmp_path: Path) -> None:
    token = create_token(tmp_path, Role.PEER, 60)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        try:
            results.append(redeem_token(tmp_path, token).role)
        except TokenRefusedError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(Role.PEER) == 1
    assert results.count("unknown or already used join token") == 7


def test_tokens_are_stored_hashed_and_expired_ones_pruned(tmp_path: Path) -> None:
    token = create_token(tmp_path, Role.SEED, 60, now=1000.0)
    create_token(tmp_path, Role.PEER, 3600, now=1000.0)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "tokens").iterdir())
    assert token.encode() not in stored
    assert token.removeprefix("dfjt_").encode() not in stored
    assert prune_expired(tmp_path, now=1100.0) == 1
    with pytest.raises(TokenRefusedError, match="not a join token"):
        redeem_token(tmp_path, "hello")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reloading_files_waits_for_a_matching_pair(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    files = pki.node("peer-1", Role.PEER)
    clock = FakeClock()
    source = ReloadingFiles(files, poll_interval=1.0, clock=clock)
    first = source.material()
    fresh = issue(pki.ca, NodeIdentity("peer-1", Role.PEER))
    write_secret(files.key_file, fresh.key_pem)  # the key is replaced, the certificate not yet
    clock.now = 5.0
    assert source.material() == first
    assert source.generation == 0
    write_material(files.cert_file.parent, fresh)
    clock.now = 5.5  # polled at most once a second
    assert source.material() == first
    clock.now = 6.0
    assert source.material() == fresh
    assert source.generation == 1


def _serial_seen_by_client(
    server: ssl.SSLContext, client: ssl.SSLContext, server_errors: list[str] | None = None
) -> int:
    left, right = socket.socketpair()
    seen: list[int] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.sendall(b"x")
        except (ssl.SSLError, OSError) as exc:
            (server_errors if server_errors is not None else []).append(str(exc))
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            seen.append(x509.load_der_x509_certificate(der).serial_number)
            assert tls.recv(1) == b"x"
    finally:
        thread.join()
    return seen[0]


def test_a_renewed_certificate_is_served_from_the_next_handshake(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    server_files = pki.node("scheduler-1", Role.SCHEDULER)
    client = client_context(pki.node("peer-1", Role.PEER))
    source = ReloadingFiles(server_files, poll_interval=0.0)
    context = reloading_server_context(source)
    first = _serial_seen_by_client(context, client)
    assert _serial_seen_by_client(context, client) == first
    renewed = _renewed(pki, "scheduler-1")
    write_material(server_files.cert_file.parent, renewed)
    second = _serial_seen_by_client(context, client)
    assert second != first
    assert second == x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
    assert read_material(server_files) == renewed


def _renewed(pki: TestPki, node_id: str) -> NodeMaterial:
    identity = NodeIdentity(node_id, Role.SCHEDULER, ("localhost",), parse_ips(["127.0.0.1"]))
    return issue(pki.ca, identity)


def test_a_client_without_a_certificate_fails_the_handshake(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    source = ReloadingFiles(pki.node("scheduler-1", Role.SCHEDULER))
    server = reloading_server_context(source)
    anonymous = client_context(None, ca_pem=pki.ca.cert_pem)
    errors: list[str] = []
    with pytest.raises((ssl.SSLError, OSError)):  # TLS 1.3: the client learns it on reading
        _serial_seen_by_client(server, anonymous, errors)
    assert len(errors) == 1
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in errors[0]
