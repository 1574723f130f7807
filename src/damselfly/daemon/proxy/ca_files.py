"""The proxy CA's files at a daemon's start, made and checked without ``cryptography`` here.

A daemon runs for weeks; ``cryptography`` would stay in its memory (~9 MiB, a tenth of a node
daemon's) from the moment it is imported, though a proxy only needs it to issue a leaf at its
first interception. So ``prepare`` leaves the reading to that moment and, at the start, gives
the same guarantees as reading the CA there (``ProxyCA.load_or_create``): the node's own CA
exists afterwards and a CA that cannot be read stops the start with the same ``ConfigError``.

- The node's own CA, already there (every start but the first): ``ssl`` loading the pair
  (both PEM, the key unencrypted and matching the certificate) is the check; it was written
  by ``ca_certs.create_ca``. A pair ``ssl`` refuses gets the full check below.
- Otherwise (the first start, a configured CA such as the cluster's, which may hold any key
  type, or an own CA ``ssl`` refused): ``ca_certs`` runs as a command in a child interpreter
  (``python -m damselfly.daemon.proxy.ca_certs``, ~0.1 s of CPU): it creates the node's CA
  if asked and reads the pair as ``load_or_create`` would; its one-line error becomes ours.

In a process that has imported ``cryptography`` anyway (tests, a node with mTLS) the child
would save nothing: the same work is done in-process.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

from damselfly.core.errors import ConfigError

CHILD_TIMEOUT = 60.0  # seconds; an interpreter start and one key pair on a loaded machine


def prepare(cert_path: Path, key_path: Path, *, own: bool) -> None:
    """Make sure the CA can be read at the first interception; create the node's own first
    (``own``) if it does not exist. ``ConfigError`` when it cannot be read."""
    if own and cert_path.exists() and ssl_accepts(cert_path, key_path):
        return
    if "cryptography" in sys.modules or not sys.executable:
        from damselfly.daemon.proxy import ca_certs

        ca_certs.ensure_ca(cert_path, key_path, create=own)
        return
    _ensure_in_child(cert_path, key_path, create=own)


def ssl_accepts(cert_path: Path, key_path: Path) -> bool:
    """Whether ``ssl`` loads the pair: PEM, the key unencrypted and the certificate's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # an encrypted key gets an empty password (no prompt on the terminal): refused
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False
    return True


def _ensure_in_child(cert_path: Path, key_path: Path, *, create: bool) -> None:
    argv = [sys.executable, "-m", "damselfly.daemon.proxy.ca_certs", str(cert_path)]
    argv += [str(key_path), *(["--create"] if create else [])]
    try:
        done = subprocess.run(
            argv,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"proxy CA {cert_path}: cannot check it: {exc}") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ConfigError(lines[-1] if lines else f"proxy CA {cert_path}: check failed")


def _child_env() -> dict[str, str]:
    """This environment, with this process's ``damselfly`` first on the child's path."""
    here = str(Path(__file__).resolve().parents[3])  # .../damselfly/daemon/proxy/ca_files.py
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, path] if path else [here])}
