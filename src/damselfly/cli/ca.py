"""``damselfly ca``: the cluster CA (init, fingerprint, issue, token, serve).

Run these where the CA key lives (an operator's machine or the manager's host):

- ``init --dir D``: a new CA; prints its fingerprint (give it to enrolling nodes);
- ``fingerprint --dir D``: print it again;
- ``issue --dir D --role R --node-id ID --out DIR``: issue a node's key and certificate
  directly (for the scheduler, tests, or when the key may be made here);
- ``token --dir D --role R [--ttl 1h]``: print a one-time join token on stdout;
- ``deny --dir D --node-id ID``: refuse every later enrollment and renewal of that node;
- ``serve --dir D [--listen 127.0.0.1:8005] [--san NAME]``: the enrollment service nodes call
  with ``damselfly enroll``; prints ``enrollment listening: https://host:port``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
from pathlib import Path

from damselfly.cli.reporting import configure_logging
from damselfly.core.errors import EXIT_OK
from damselfly.core.units import parse_duration
from damselfly.security.ca import (
    DEFAULT_CA_YEARS,
    hand_out_cluster_secret,
    init_ca,
    load_ca,
    load_ca_certificate,
)
from damselfly.security.ca import fingerprint_of as fingerprint_of_certificate
from damselfly.security.certs import NodeIdentity, issue, parse_ips
from damselfly.security.enrollment import EnrollmentService, serve_enrollment
from damselfly.security.errors import SecurityError
from damselfly.security.files import write_material
from damselfly.security.roles import Role, parse_role
from damselfly.security.tokens import create_token, deny_node

PROG = "damselfly ca"
ROLES = [role.value for role in Role]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    commands = parser.add_subparsers(dest="ca_command", required=True)
    init = _with_dir(commands.add_parser("init", help="create a new cluster CA"))
    init.add_argument("--years", type=int, default=DEFAULT_CA_YEARS, help="CA validity (10)")
    init.add_argument("--name", default="damselfly cluster CA", help="the CA's common name")
    _with_dir(commands.add_parser("fingerprint", help="print the CA's sha256 fingerprint"))
    _issue_arguments(_with_dir(commands.add_parser("issue", help="issue a node certificate")))
    token = _with_dir(commands.add_parser("token", help="print a one-time join token"))
    token.add_argument("--role", choices=ROLES, required=True, help="role of the joining node")
    token.add_argument("--ttl", default="1h", help="validity of the token (default 1h)")
    token.add_argument("--node-id", help="only this node id may use the token")
    deny = _with_dir(commands.add_parser("deny", help="stop renewing a node's certificate"))
    deny.add_argument("--node-id", required=True, help="the node to refuse from now on")
    serve = _with_dir(commands.add_parser("serve", help="run the enrollment service"))
    serve.add_argument("--listen", default="127.0.0.1:8005", help="host:port (127.0.0.1:8005)")
    serve.add_argument(
        "--san", action="append", default=[], help="a name or IP nodes reach the service by"
    )
    serve.add_argument("--validity", default="24h", help="node certificate lifetime (24h)")
    serve.add_argument("-l", "--log-level", choices=["error", "warn", "info", "debug"])
    return parser


def _with_dir(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dir", type=Path, required=True, help="the CA directory")
    return parser


def _issue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=ROLES, required=True, help="the node's role")
    parser.add_argument("--node-id", required=True, help="the node id (certificate CN)")
    parser.add_argument("--dns", action="append", default=[], help="a DNS name it serves as")
    parser.add_argument("--ip", action="append", default=[], help="an IP address it serves on")
    parser.add_argument("--validity", default="24h", help="certificate lifetime (24h)")
    parser.add_argument("--out", type=Path, required=True, help="directory for tls.crt/tls.key")


def run(args: argparse.Namespace) -> int:
    """Errors propagate to the umbrella command, which prints them on one line."""
    handlers = {
        "init": _init, "fingerprint": _fingerprint, "issue": _issue, "token": _token,
        "serve": _serve, "deny": _deny,
    }  # fmt: skip
    try:
        handlers[args.ca_command](args)
    except OSError as exc:  # a directory we may not create, a full disk
        raise SecurityError(f"{exc.filename or args.dir}: {exc.strerror or exc}") from exc
    return EXIT_OK


def _init(args: argparse.Namespace) -> None:
    ca = init_ca(args.dir, name=args.name, validity_years=args.years)
    print(ca.fingerprint)


def _fingerprint(args: argparse.Namespace) -> None:
    print(fingerprint_of_certificate(load_ca_certificate(args.dir / "ca.crt")))


def _issue(args: argparse.Namespace) -> None:
    identity = NodeIdentity(
        args.node_id, parse_role(args.role), tuple(args.dns), parse_ips(args.ip)
    )
    validity = datetime.timedelta(seconds=parse_duration(args.validity, what="--validity"))
    ca = load_ca(args.dir)
    files = write_material(args.out, issue(ca, identity, validity=validity))
    hand_out_cluster_secret(ca, args.out)
    print(files.cert_file.parent)


def _token(args: argparse.Namespace) -> None:
    ttl = parse_duration(args.ttl, what="--ttl")
    load_ca(args.dir)  # refuse to mint tokens next to a missing or loose CA
    print(create_token(args.dir, parse_role(args.role), ttl, node_id=args.node_id))


def _deny(args: argparse.Namespace) -> None:
    load_ca(args.dir)
    deny_node(args.dir, args.node_id)


def _serve(args: argparse.Namespace) -> None:
    configure_logging(PROG, args.log_level or "info", timestamps=True)
    validity = datetime.timedelta(seconds=parse_duration(args.validity, what="--validity"))
    service = EnrollmentService(load_ca(args.dir), validity=validity)
    asyncio.run(_serve_until_signal(service, args.listen, args.san))


async def _serve_until_signal(service: EnrollmentService, listen: str, names: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve_enrollment(
        service, listen, names, stop=stop,
        on_ready=lambda url: print(f"enrollment listening: {url}", flush=True),
    )  # fmt: skip
