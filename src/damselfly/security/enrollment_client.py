"""The node's side of enrollment and renewal (``damselfly enroll``, ``damselfly renew``).

First contact is not trust-on-first-use: the operator gives the node the CA's fingerprint
(``--ca-fingerprint sha256:...``, printed by ``damselfly ca init``). The node fetches
``/v1/ca`` over a connection it does not trust yet, refuses a CA whose fingerprint differs, and
from then on talks only over TLS verified against that CA (and the service's host name): the
join token and the CSR never travel before the CA is pinned.

The key is generated on the node and never leaves it. The result lands in the node's
directory as ``tls.crt``/``tls.key``/``ca.crt`` (``files.py``) plus ``enrollment.json`` (the
service URL and CA fingerprint, no secret) so that renewal knows where to go.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from damselfly.security.ca import cert_from_pem, fingerprint_of, key_to_pem, new_private_key
from damselfly.security.certs import IpAddress, make_request
from damselfly.security.enrollment import CA_PATH, ENROLL_PATH, RENEW_PATH
from damselfly.security.errors import EnrollmentError, SecurityError
from damselfly.security.files import (
    CLUSTER_SECRET_NAME,
    PUBLIC_FILE_MODE,
    NodeFiles,
    NodeMaterial,
    read_file,
    read_material,
    write_file,
    write_material,
    write_secret,
)
from damselfly.security.roles import node_id_of
from damselfly.security.tls import client_context

RECORD_NAME = "enrollment.json"
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class EnrollmentRecord:
    """Where a node enrolled: enough to renew later."""

    server: str
    ca_fingerprint: str


def normalize_fingerprint(value: str) -> str:
    """``sha256:AB:CD...`` or ``sha256:abcd...`` -> ``sha256:abcd...``."""
    algorithm, _, digest = value.strip().partition(":")
    digest = digest.replace(":", "").lower()
    if algorithm.lower() != "sha256" or len(digest) != 64 or not _is_hex(digest):
        raise EnrollmentError(f"CA fingerprint {value[:80]!r}: expected sha256:<64 hex digits>")
    return "sha256:" + digest


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def check_server_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise EnrollmentError(f"enrollment server {url!r}: expected https://host:port")
    return url.rstrip("/")


async def fetch_pinned_ca(server: str, fingerprint: str) -> bytes:
    """The CA certificate from ``server``, accepted only if its fingerprint is ``fingerprint``.

    This one request is made without verifying the server: what it returns is checked
    against the pin instead, and nothing secret is sent."""
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # what comes back is checked against the pin
    pem = await _request(server + CA_PATH, unverified, None)
    if not isinstance(pem, bytes):
        raise EnrollmentError(f"{server}{CA_PATH}: no certificate")
    found = fingerprint_of(cert_from_pem(pem, f"{server}{CA_PATH}"))
    if found != normalize_fingerprint(fingerprint):
        raise EnrollmentError(
            f"the CA served by {server} has fingerprint {found}, not the one given: refusing it"
        )
    return pem


async def enroll(
    server: str,
    token: str,
    fingerprint: str,
    directory: Path,
    *,
    node_id: str,
    role: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[IpAddress] = (),
) -> NodeFiles:
    """Join the cluster: a new key here, a certificate from ``server`` for it, saved in
    ``directory``."""
    server = check_server_url(server)
    ca_pem = await fetch_pinned_ca(server, fingerprint)
    key = new_private_key()
    body: dict[str, Any] = {"token": token, "csr": make_request(key, node_id, dns_names,
                            ip_addresses).decode()}  # fmt: skip
    if role is not None:
        body["role"] = role
    context = client_context(None, ca_pem=ca_pem)
    answer = await _request(server + ENROLL_PATH, context, body)
    material = _material(answer, key_to_pem(key), ca_pem)
    files = write_material(directory, material)
    _keep_cluster_secret(answer, directory)
    record = EnrollmentRecord(server, normalize_fingerprint(fingerprint))
    write_file(directory / RECORD_NAME, json.dumps(asdict(record)).encode(), mode=PUBLIC_FILE_MODE)
    return files


async def renew(directory: Path, *, server: str | None = None) -> NodeFiles:
    """Replace the node's certificate (and key) before it expires, authenticated by the
    current certificate; the service is the one recorded at enrollment unless ``server``."""
    files = NodeFiles.in_dir(directory)
    current = read_material(files)
    server = check_server_url(server or read_record(directory).server)
    node_id = node_id_of(cert_from_pem(current.cert_pem, str(files.cert_file)))
    key = new_private_key()
    body = {"csr": make_request(key, node_id).decode()}
    answer = await _request(server + RENEW_PATH, client_context(files), body)
    renewed = write_material(directory, _material(answer, key_to_pem(key), current.ca_pem))
    _keep_cluster_secret(answer, directory)
    return renewed


def _keep_cluster_secret(answer: object, directory: Path) -> None:
    """The cluster's key for private task ids, when the service sent one (0600)."""
    secret = answer.get("cluster_secret") if isinstance(answer, dict) else None
    if isinstance(secret, str) and secret.strip():
        write_secret(directory / CLUSTER_SECRET_NAME, secret.strip().encode() + b"\n")


def read_record(directory: Path) -> EnrollmentRecord:
    path = directory / RECORD_NAME
    try:
        data = json.loads(read_file(path))
        return EnrollmentRecord(str(data["server"]), str(data["ca_fingerprint"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SecurityError(f"{path}: not an enrollment record") from exc


def _material(answer: object, key_pem: bytes, ca_pem: bytes) -> NodeMaterial:
    """Check what the service sent: a certificate for our key, issued by the pinned CA."""
    if not isinstance(answer, dict) or not isinstance(answer.get("certificate"), str):
        raise EnrollmentError("the enrollment service sent no certificate")
    cert_pem = answer["certificate"].encode()
    certificate = cert_from_pem(cert_pem, "the issued certificate")
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as exc:
        raise EnrollmentError("the issued certificate is not signed by the pinned CA") from exc
    key = serialization.load_pem_private_key(key_pem, password=None)
    if certificate.public_key() != key.public_key():
        raise EnrollmentError("the issued certificate is not for our key")
    return NodeMaterial(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


async def _request(url: str, context: ssl.SSLContext, body: dict[str, Any] | None) -> object:
    """GET (no body: raw bytes back) or POST JSON (JSON back); errors as ``EnrollmentError``."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            method = "GET" if body is None else "POST"
            async with session.request(method, url, json=body, ssl=context) as response:
                data = await response.read()
                if response.status != 200:
                    raise EnrollmentError(f"{url}: {response.status}: {_reason(data)}")
                return data if body is None else json.loads(data)
    except aiohttp.ClientError as exc:
        raise EnrollmentError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise EnrollmentError(f"{url}: no answer within {REQUEST_TIMEOUT:g} s") from exc


def _reason(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"])[:300]
    except (ValueError, KeyError, TypeError):
        return data[:200].decode("utf-8", errors="replace")
