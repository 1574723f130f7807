"""``dfdaemon``: the per-node daemon (piece server, download engine, local API, seed mode).

Prints one line on stdout when ready (``dfdaemon ready: host=... upload=... socket=...``) and
runs until SIGTERM/SIGINT; exit codes as every damselfly command (0, 1, 2).

``dfdaemon ca show`` prints the path and sha256 fingerprint of the proxy's CA (created if it
does not exist yet), for clients to trust (docs/proxy.md).

Origin requests honour ``HTTPS_PROXY``/``NO_PROXY`` (issue 16) but never this daemon's own
proxy (``transport/origin_proxy.py`` skips it), so nothing loops through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from damselfly._version import __version__
from damselfly.cli.heap import settle_heap
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.base import example_yaml
from damselfly.config.daemon import DaemonSettings, load
from damselfly.config.paths import store_dir
from damselfly.core.errors import EXIT_OK, DamselflyError
from damselfly.daemon.app import RunningDaemon, serve
from damselfly.daemon.proxy.ca import ProxyCA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfdaemon", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--seed", action="store_true", default=None, help="act as a seed peer")
    parser.add_argument("--scheduler", action="append", help="scheduler host:port (repeatable)")
    parser.add_argument("--storage-dir", help="piece store directory")
    parser.add_argument("--socket", help="local API unix socket")
    parser.add_argument("--upload-listen", help="piece server host:port")
    parser.add_argument("--advertise-ip", help="IP other daemons use to reach this one")
    parser.add_argument("--metrics-listen", help="/metrics and /healthz host:port")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        help="mTLS with the node material in this directory (tls.crt, tls.key, ca.crt; "
        "also $DAMSELFLY_TLS_DIR); the certificate's common name becomes the host id",
    )
    parser.add_argument("--proxy-listen", help="HTTP(S) proxy host:port (default 127.0.0.1:65001)")
    parser.add_argument(
        "--no-proxy", action="store_true", default=None, help="do not run the HTTP(S) proxy"
    )
    parser.add_argument("-l", "--log-level", choices=("error", "warn", "info", "debug"))
    parser.add_argument("--print-example-config", action="store_true")
    parser.add_argument("-V", "--version", action="version", version=f"dfdaemon {__version__}")
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    simple = {
        "seed": args.seed,
        "schedulers": args.scheduler,
        "storage_dir": args.storage_dir,
        "socket": args.socket,
        "metrics_listen": args.metrics_listen,
        "log_level": args.log_level,
    }
    values.update({k: v for k, v in simple.items() if v is not None})
    upload = {"listen": args.upload_listen, "advertise_ip": args.advertise_ip}
    if any(v is not None for v in upload.values()):
        values["upload"] = {k: v for k, v in upload.items() if v is not None}
    if args.tls_dir is not None:
        values["tls"] = {"enabled": True, "dir": args.tls_dir}
    proxy = {"listen": args.proxy_listen, "enabled": False if args.no_proxy else None}
    if any(v is not None for v in proxy.values()):
        values["proxy"] = {k: v for k, v in proxy.items() if v is not None}
    return values


def build_ca_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfdaemon ca", description="The proxy's CA.")
    parser.add_argument("action", choices=("show",), help="show: path and sha256 fingerprint")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--storage-dir", help="piece store directory (holds the CA)")
    return parser


def ca_main(argv: Sequence[str]) -> int:
    args = build_ca_parser().parse_args(argv)
    try:
        given = {"storage_dir": args.storage_dir} if args.storage_dir else {}
        settings = load(args.config, os.environ, given)
        data_dir = store_dir(settings.storage_dir, os.environ)
        summary = ProxyCA.load_or_create(settings.proxy, data_dir).summary()
    except DamselflyError as exc:
        return report_failure("dfdaemon", exc, debug=False)
    print("\n".join(summary.lines()))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ca"]:
        return ca_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.print_example_config:
        print(example_yaml(DaemonSettings), end="")
        return EXIT_OK
    try:
        settings = load(args.config, os.environ, overrides(args))
        configure_logging("dfdaemon", settings.log_level, timestamps=True)
        raise_open_file_limit()
        os.environ.update(own_proxy_env(settings, os.environ))
        asyncio.run(_run(settings))
    except DamselflyError as exc:
        return report_failure("dfdaemon", exc, debug=False)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def own_proxy_env(settings: DaemonSettings, env: Mapping[str, str]) -> dict[str, str]:
    """``DAMSELFLY_OWN_PROXY`` naming this daemon's proxy listener too, so the origin
    sessions (which honour ``HTTPS_PROXY`` for a corporate proxy) never send the daemon's
    own requests to itself, on whatever port it listens (``transport/origin_proxy.py``)."""
    listen = settings.proxy.listen
    if not settings.proxy.enabled or listen.endswith(":0"):
        return {}
    own = env.get("DAMSELFLY_OWN_PROXY", "").replace(",", " ").split()
    return {"DAMSELFLY_OWN_PROXY": " ".join(dict.fromkeys([*own, listen]))}


def raise_open_file_limit() -> None:
    """Soft limit of open files up to the hard one: the piece port's connection caps, not
    the process's descriptor table, should be what refuses a flood of connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _run(settings: DaemonSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop=stop, on_ready=_announce_ready)


def _announce_ready(daemon: RunningDaemon) -> None:
    settle_heap()
    proxy = f" proxy={daemon.proxy_address}" if daemon.proxy_address else ""
    if daemon.mirror_addresses:
        proxy += f" mirrors={','.join(daemon.mirror_addresses)}"
    if daemon.registry_addresses:
        proxy += f" registries={','.join(daemon.registry_addresses)}"
    print(
        f"dfdaemon ready: host={daemon.host_id} upload={daemon.upload_url} "
        f"socket={daemon.socket_path} metrics=http://{daemon.metrics_address}{proxy}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
