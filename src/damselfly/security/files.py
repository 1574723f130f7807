"""Secret files and a node's TLS material on disk.

A node's material is a directory laid out like a Kubernetes ``kubernetes.io/tls`` Secret with
the CA added (what cert-manager writes): ``tls.crt`` (the node's certificate, PEM), ``tls.key``
(its private key, PEM, mode 0600) and ``ca.crt`` (the cluster CA). ``damselfly enroll`` writes
exactly that, so a mounted Secret and an enrolled directory are the same thing to every loader
(mount Secrets with ``defaultMode: 0400``: a group- or world-readable key is refused).

Writes are atomic (a temporary file in the same directory, then rename) so a reader never sees
a half-written certificate while a renewal replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from damselfly.config import secret_files
from damselfly.config.security import CA_NAME, CERT_NAME, KEY_NAME, TlsSettings
from damselfly.security.errors import KeyFileModeError, SecurityError

SECRET_FILE_MODE = 0o600
CLUSTER_SECRET_NAME = "cluster.secret"  # noqa: S105 - a file name; the key for private task ids
PRIVATE_DIR_MODE = 0o700
PUBLIC_FILE_MODE = 0o644


@dataclass(frozen=True)
class NodeFiles:
    """Where one node's certificate, key and cluster CA are."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def in_dir(cls, directory: Path) -> NodeFiles:
        return cls(directory / CA_NAME, directory / CERT_NAME, directory / KEY_NAME)


@dataclass(frozen=True)
class NodeMaterial:
    """The bytes of a node's material, read together (PEM)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) and make it 0700."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(PRIVATE_DIR_MODE)


def write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Atomically replace ``path`` with ``data``; the file has ``mode`` from its creation."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)  # the umask may have removed bits we asked for
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_secret(path: Path, data: bytes) -> None:
    write_file(path, data, mode=SECRET_FILE_MODE)


def check_secret_mode(path: Path) -> None:
    """Refuse a secret file that group or others may read (follows symlinks, as Kubernetes
    Secret mounts are symlinks into ``..data/``)."""
    try:
        secret_files.check_secret_mode(path)
    except secret_files.SecretFileModeError as exc:
        raise KeyFileModeError(exc.path, exc.mode) from None
    except OSError as exc:
        raise SecurityError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_secret(path: Path) -> bytes:
    check_secret_mode(path)
    return read_file(path)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecurityError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_material(files: NodeFiles) -> NodeMaterial:
    return NodeMaterial(
        ca_pem=read_file(files.ca_file),
        cert_pem=read_file(files.cert_file),
        key_pem=read_secret(files.key_file),
    )


def write_material(directory: Path, material: NodeMaterial) -> NodeFiles:
    """Write a node's material into ``directory`` (made 0700), each file atomically.

    Between the renames a reader may see a new key with the old certificate: loaders treat a
    pair that does not match as "not yet" and keep what they had (``tls.ReloadingFiles``)."""
    make_private_dir(directory)
    files = NodeFiles.in_dir(directory)
    write_file(files.ca_file, material.ca_pem, mode=PUBLIC_FILE_MODE)
    write_secret(files.key_file, material.key_pem)
    write_file(files.cert_file, material.cert_pem, mode=PUBLIC_FILE_MODE)
    return files


def files_stamp(files: NodeFiles) -> tuple[tuple[int, int, int], ...]:
    """What changes when any of the files is replaced (inode, size, mtime): cheap to poll."""
    stamps = []
    for path in (files.ca_file, files.cert_file, files.key_file):
        try:
            info = path.stat()
        except OSError:
            stamps.append((0, 0, 0))
            continue
        stamps.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def node_files_from(settings: TlsSettings) -> NodeFiles:
    """The files a ``tls`` settings section names (it validated that all three are known)."""
    ca_file, cert_file, key_file = settings.paths()
    if ca_file is None or cert_file is None or key_file is None:
        raise SecurityError("tls: needs dir, or ca_file, cert_file and key_file")
    return NodeFiles(ca_file, cert_file, key_file)
