"""The cluster CA, node certificates and their files: modes on disk, the role read back from a
certificate, CSR signing rules, refusals of loose key files, Kubernetes Secret layouts."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from damselfly.config.security import TlsSettings
from damselfly.security.ca import fingerprint_of, init_ca, key_from_pem, load_ca, new_private_key
from damselfly.security.certs import (
    NodeIdentity,
    identity_of,
    issue,
    make_request,
    parse_ips,
    read_request,
    sign,
)
from damselfly.security.errors import EnrollmentError, KeyFileModeError, SecurityError
from damselfly.security.files import NodeFiles, node_files_from, read_material, write_material
from damselfly.security.roles import (
    PERMISSIONS,
    Action,
    Role,
    caller_of_der,
    caller_of_pem,
    may,
    role_of,
)
from damselfly.security.tls import check_material
from damselfly.testing.pki import TestPki

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_init_writes_a_private_key_in_a_private_directory(tmp_path: Path) -> None:
    os.umask(0o022)
    ca = init_ca(tmp_path / "ca", validity_years=2, now=NOW)
    assert (mode(tmp_path / "ca"), mode(tmp_path / "ca/ca.key"), mode(tmp_path / "ca/ca.crt")) == (
        0o700,
        0o600,
        0o644,
    )
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert ca.certificate.not_valid_after_utc - NOW > datetime.timedelta(days=2 * 365 - 1)
    assert ca.fingerprint.startswith("sha256:")
    assert len(ca.fingerprint) == 7 + 64
    assert load_ca(tmp_path / "ca").fingerprint == ca.fingerprint


def test_ca_init_refuses_to_overwrite_and_load_refuses_a_readable_key(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    with pytest.raises(SecurityError, match="already exists"):
        init_ca(tmp_path / "ca")
    (tmp_path / "ca/ca.key").chmod(0o640)
    with pytest.raises(KeyFileModeError, match="chmod 600"):
        load_ca(tmp_path / "ca")


@pytest.mark.parametrize("role", list(Role))
def test_the_role_is_read_back_from_pem_and_der(tmp_path: Path, role: Role) -> None:
    ca = init_ca(tmp_path / "ca")
    identity = NodeIdentity("node-1", role, ("node1.example",), parse_ips(["10.0.0.7"]))
    material = issue(ca, identity)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    assert role_of(cert) is role
    assert caller_of_pem(material.cert_pem).role is role
    der = cert.public_bytes(serialization.Encoding.DER)
    assert caller_of_der(der).node_id == "node-1"
    assert identity_of(cert, role) == identity
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"damselfly://role/{role.value}"
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


def test_node_certificates_are_short_lived_and_signed_by_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    material = issue(ca, NodeIdentity("p", Role.PEER), now=NOW)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(hours=24)
    cert.verify_directly_issued_by(ca.certificate)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    check_material(material)


def test_a_certificate_without_or_with_two_roles_is_refused(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    key = new_private_key()
    base = x509.CertificateBuilder().subject_name(x509.Name([]))
    base = base.issuer_name(ca.certificate.subject).public_key(key.public_key())
    base = base.serial_number(1).not_valid_before(NOW).not_valid_after(NOW)
    from cryptography.hazmat.primitives import hashes

    bare = base.sign(ca.key, hashes.SHA256())
    with pytest.raises(SecurityError, match="no damselfly role"):
        role_of(bare)
    two = x509.SubjectAlternativeName(
        [
            x509.UniformResourceIdentifier("damselfly://role/peer"),
            x509.UniformResourceIdentifier("damselfly://role/seed"),
        ]
    )
    with pytest.raises(SecurityError, match="2 damselfly roles"):
        role_of(base.add_extension(two, critical=False).sign(ca.key, hashes.SHA256()))
    odd = x509.SubjectAlternativeName([x509.UniformResourceIdentifier("damselfly://role/root")])
    with pytest.raises(SecurityError, match="unknown role"):
        role_of(base.add_extension(odd, critical=False).sign(ca.key, hashes.SHA256()))


def test_a_signing_request_proposes_names_but_the_ca_decides_the_role(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    key = new_private_key()
    csr = make_request(key, "peer-7", ["p7.example"], parse_ips(["::1"]))
    request = read_request(csr)
    assert (request.node_id, request.dns_names) == ("peer-7", ("p7.example",))
    identity = NodeIdentity(request.node_id, Role.PEER, request.dns_names, request.ip_addresses)
    cert = sign(ca, request.public_key, identity)
    assert role_of(cert) is Role.PEER
    assert cert.public_key() == key.public_key()


def test_a_tampered_signing_request_is_refused() -> None:
    csr = make_request(new_private_key(), "peer-7")
    with pytest.raises(EnrollmentError, match="not a PEM"):
        read_request(b"garbage")
    body = csr.replace(b"-----BEGIN CERTIFICATE REQUEST-----\n", b"")
    flipped = body[:40] + (b"A" if body[40:41] != b"A" else b"B") + body[41:]
    with pytest.raises(EnrollmentError):
        read_request(b"-----BEGIN CERTIFICATE REQUEST-----\n" + flipped)


@pytest.mark.parametrize("bad", ["../x", "", "a b", "x" * 129])
def test_node_ids_are_checked(bad: str) -> None:
    with pytest.raises(SecurityError):
        NodeIdentity(bad, Role.PEER)


def test_node_material_on_disk_and_loose_keys_refused(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    files = pki.node("peer-1", Role.PEER)
    assert mode(files.key_file) == 0o600
    assert mode(files.cert_file.parent) == 0o700
    material = read_material(files)
    key_from_pem(material.key_pem, "tls.key")
    files.key_file.chmod(0o644)
    with pytest.raises(KeyFileModeError, match=r"tls\.key.*0644"):
        read_material(files)


def test_a_kubernetes_tls_secret_mount_is_node_material(tmp_path: Path) -> None:
    """A Secret volume: files are symlinks into a timestamped ``..data`` directory."""
    pki = TestPki(tmp_path)
    source = pki.node("seed-1", Role.SEED)
    mount = tmp_path / "secret"
    data = mount / "..2026_01_01"
    data.mkdir(parents=True)
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (data / name).write_bytes((source.cert_file.parent / name).read_bytes())
        (data / name).chmod(0o400)
    (mount / "..data").symlink_to(data.name)
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (mount / name).symlink_to(f"..data/{name}")
    settings = TlsSettings(enabled=True, dir=mount)
    files = node_files_from(settings)
    assert files == NodeFiles.in_dir(mount)
    assert caller_of_pem(read_material(files).cert_pem).role is Role.SEED


def test_tls_settings_need_files_when_enabled(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tls\.enabled needs"):
        TlsSettings(enabled=True)
    one_by_one = TlsSettings(
        enabled=True, dir=tmp_path, key_file=tmp_path / "other.key", ca_file=tmp_path / "c.pem"
    )
    assert one_by_one.paths() == (tmp_path / "c.pem", tmp_path / "tls.crt", tmp_path / "other.key")


def test_write_material_replaces_files_atomically(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    files = pki.node("peer-1", Role.PEER)
    before = files.cert_file.stat().st_ino
    fresh = issue(pki.ca, NodeIdentity("peer-1", Role.PEER))
    write_material(files.cert_file.parent, fresh)
    assert files.cert_file.stat().st_ino != before
    assert read_material(files) == fresh
    assert sorted(p.name for p in files.cert_file.parent.iterdir()) == [
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]


def test_the_permission_table() -> None:
    assert may(Role.PEER, Action.REGISTER)
    assert may(Role.SEED, Action.REGISTER)
    assert not may(Role.PEER, Action.ACT_AS_SEED)
    assert not may(Role.PEER, Action.REPORT_ORIGIN_DIGESTS)
    assert may(Role.SEED, Action.REPORT_ORIGIN_DIGESTS)
    assert not may(Role.CLIENT, Action.REGISTER)
    assert not may(Role.SCHEDULER, Action.FETCH_PIECES)
    assert {role for role in Role if may(role, Action.ADMIN)} == {Role.MANAGER}
    assert set(PERMISSIONS) == set(Action)


def test_fingerprint_is_of_the_der_certificate(tmp_path: Path) -> None:
    import hashlib

    ca = init_ca(tmp_path / "ca")
    der = ca.certificate.public_bytes(serialization.Encoding.DER)
    assert fingerprint_of(ca.certificate) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_role_names_are_given_by_the_ca_only(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    material = issue(ca, NodeIdentity("s1", Role.SCHEDULER, ("sched.example",)))
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "scheduler.role.damselfly.internal",
        "sched.example",
    ]
    assert identity_of(cert, Role.SCHEDULER).dns_names == ("sched.example",)
    with pytest.raises(SecurityError, match="are the CA's"):
        NodeIdentity("p1", Role.PEER, ("Scheduler.Role.Damselfly.Internal.",))
    csr = make_request(new_private_key(), "p1", ["scheduler.role.damselfly.internal"])
    with pytest.raises(EnrollmentError, match="are the CA's"):
        read_request(csr)


def test_the_caller_from_a_grpc_auth_context(tmp_path: Path) -> None:
    from damselfly.security.roles import Caller, caller_of_auth_context

    material = issue(init_ca(tmp_path / "ca"), NodeIdentity("seed-3", Role.SEED))
    context = {"transport_security_type": [b"ssl"], "x509_pem_cert": [material.cert_pem]}
    assert caller_of_auth_context(context) == Caller("seed-3", Role.SEED)
    assert caller_of_auth_context({"transport_security_type": [b"insecure"]}) is None
