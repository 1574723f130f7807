"""``damselfly enroll`` (join the cluster with a one-time token) and ``damselfly renew``.

``damselfly enroll --server https://ca-host:8005 --ca-fingerprint sha256:... --role peer
--dir /etc/damselfly/tls`` reads the join token from ``--token-file``, ``DAMSELFLY_JOIN_TOKEN``
or ``--token`` (visible to every user in the process list: prefer the other two), makes a key
in ``--dir``, and stores the certificate the service signs. Point a node at the directory
with ``DAMSELFLY_TLS_DIR`` to turn mTLS on.

``damselfly renew --dir D`` renews the certificate with the current one (no token);
``--loop`` keeps doing so at 2/3 of each certificate's lifetime until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
from pathlib import Path

from damselfly.cli.reporting import configure_logging
from damselfly.core.errors import EXIT_OK, UsageError
from damselfly.security.certs import parse_ips
from damselfly.security.enrollment_client import enroll, renew
from damselfly.security.files import read_secret
from damselfly.security.renewal import RenewalLoop
from damselfly.security.roles import Role

TOKEN_ENV = "DAMSELFLY_JOIN_TOKEN"  # noqa: S105 (the variable name, not a token)


def add_enroll_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--server", required=True, help="enrollment service, https://host:port")
    parser.add_argument(
        "--ca-fingerprint", required=True, help="sha256:... of the cluster CA (ca init prints it)"
    )
    parser.add_argument("--dir", type=Path, required=True, help="where to store the material")
    parser.add_argument("--role", choices=[r.value for r in Role], help="expected role")
    parser.add_argument("--node-id", help="node id (default: this host's name)")
    parser.add_argument("--dns", action="append", default=[], help="a DNS name this node serves as")
    parser.add_argument("--ip", action="append", default=[], help="an IP address it serves on")
    parser.add_argument("--token-file", type=Path, help="file holding the join token (mode 0600)")
    parser.add_argument(
        "--token",
        help=f"the join token; visible in the process list: prefer --token-file or ${TOKEN_ENV}",
    )
    return parser


def add_renew_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dir", type=Path, required=True, help="the node's TLS directory")
    parser.add_argument("--server", help="enrollment service (default: the one enrolled with)")
    parser.add_argument("--loop", action="store_true", help="keep renewing until interrupted")
    parser.add_argument("-l", "--log-level", choices=["error", "warn", "info", "debug"])
    return parser


def run_enroll(args: argparse.Namespace) -> int:
    files = asyncio.run(
        enroll(
            args.server, _token(args), args.ca_fingerprint, args.dir,
            node_id=args.node_id or default_node_id(), role=args.role,
            dns_names=args.dns, ip_addresses=parse_ips(args.ip),
        )
    )  # fmt: skip
    print(files.cert_file.parent)
    return EXIT_OK


def run_renew(args: argparse.Namespace) -> int:
    if not args.loop:
        asyncio.run(renew(args.dir, server=args.server))
        return EXIT_OK
    configure_logging("damselfly renew", args.log_level or "info", timestamps=True)
    loop = RenewalLoop(args.dir, lambda directory: renew(directory, server=args.server))
    asyncio.run(loop.run())
    return EXIT_OK


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        token = read_secret(args.token_file).decode("utf-8", errors="replace").strip()
    else:
        token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UsageError(f"a join token is needed: --token-file, ${TOKEN_ENV} or --token")
    return token


def default_node_id() -> str:
    """This host's name, reduced to the characters a node id may hold."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:128]
    return name or "node"
