"""The proxy CA checked at a daemon's start without ``cryptography`` in the daemon.

A daemon runs for weeks; ``cryptography`` would stay in its memory (~9 MiB, a tenth of a node
daemon's) from the moment it is imported, though a proxy only needs it to issue a leaf at its
first interception. So ``checked_pems`` has a child interpreter do what reading the CA at the
start did (``ca_certs.ensure_ca``: make the node's own CA if it is missing, read the pair,
check the certificate is the key's) and hand back the exact PEM bytes it checked, which the
first interception reads again here. A CA that cannot be read stops the start with the same
one-line ``ConfigError`` (the child's); ~0.1 s of CPU in the child per start.

The child is ``python -I`` (no environment variables, no user site, not the working
directory) with this process's ``sys.path``: it imports exactly what this process would. In
a process that has imported ``cryptography`` anyway (a node with mTLS, tests) or a frozen
build, the same check runs in-process.
"""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
import sys
from pathlib import Path

from damselfly.core.errors import ConfigError

CHILD_TIMEOUT = 60.0  # seconds; an interpreter start and one key pair on a loaded machine
_CHILD = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from damselfly.daemon.proxy.ca_certs import main; sys.exit(main(sys.argv[2:]))"
)


def checked_pems(cert_path: Path, key_path: Path, *, own: bool) -> tuple[bytes, bytes]:
    """The CA's certificate and key as PEM, as checked (``ConfigError`` if they cannot be
    read or are not a pair); the node's own (``own``) is made first if it does not exist."""
    if "cryptography" in sys.modules or getattr(sys, "frozen", False) or not sys.executable:
        from damselfly.daemon.proxy import ca_certs

        checked = ca_certs.ensure_ca(cert_path, key_path, create=own)
        return checked.cert_pem, checked.key_pem
    return _checked_in_child(cert_path, key_path, create=own)


def _checked_in_child(cert_path: Path, key_path: Path, *, create: bool) -> tuple[bytes, bytes]:
    argv = [sys.executable, "-I", "-c", _CHILD, json.dumps(sys.path), str(cert_path)]
    argv += [str(key_path), *(["--create"] if create else [])]
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=CHILD_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"proxy CA {cert_path}: cannot check it: {exc}") from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigError(lines[-1] if lines else f"proxy CA {cert_path}: check failed")
    try:
        pems = json.loads(done.stdout)
        return base64.b64decode(pems["cert"]), base64.b64decode(pems["key"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"proxy CA {cert_path}: check failed: bad answer ({exc})") from exc
