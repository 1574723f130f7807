"""dfctl's command line: global flags, then one sub-command per cluster noun."""

from __future__ import annotations

import argparse

from damselfly import __version__
from damselfly.cli import dfctl_commands as commands
from damselfly.cli.dfctl_local import add_endpoint_flag, add_local_commands
from damselfly.core.blocklist import RULE_KINDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfctl", description="operate a damselfly cluster")
    parser.add_argument("--version", action="version", version=f"dfctl {__version__}")
    parser.add_argument("--config", help="settings file (default ~/.config/damselfly/dfctl.yaml)")
    parser.add_argument("--manager", help="manager URL (e.g. http://127.0.0.1:8080)")
    parser.add_argument("--token", help="a personal access token (prefer the config file)")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument("-l", "--log-level", choices=["error", "warn", "info", "debug"],
                        default="warn")  # fmt: skip
    nouns = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _config(nouns)
    _blocklist(nouns)
    _ratelimit(nouns)
    _preheat(nouns)
    jobs = nouns.add_parser("jobs", help="list preheat jobs")
    jobs.add_argument("--state", choices=["pending", "running", "succeeded", "failed"])
    jobs.set_defaults(handler=commands.jobs_ls)
    peers = _verbs(nouns, "peers", "cluster members and their health")
    listing = peers.add_parser("ls", help="list members")
    listing.add_argument("--role", choices=["scheduler", "seed", "peer"])
    listing.set_defaults(handler=commands.peers_ls)
    add_local_commands(nouns)
    add_endpoint_flag(parser)
    return parser


def _verbs(nouns: argparse._SubParsersAction, name: str, text: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    noun = nouns.add_parser(name, help=text)
    verbs: argparse._SubParsersAction = noun.add_subparsers(  # type: ignore[type-arg]
        dest=f"{name}_command", required=True, metavar="VERB"
    )
    return verbs


def _config(nouns: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = _verbs(nouns, "config", "dfctl's own settings (manager URL, token)")
    setting = verbs.add_parser("set", help="write the settings file (mode 600)")
    setting.add_argument("--manager", dest="set_manager", help="manager URL to keep")
    setting.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    verbs.add_parser("show", help="show the settings (token masked)")


def _blocklist(nouns: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = _verbs(nouns, "blocklist", "rules that stop downloads")
    add = verbs.add_parser("add", help="add a rule")
    add.add_argument("kind", choices=RULE_KINDS)
    add.add_argument("pattern", help="URL glob, hf://owner/repo, registry/image[:tag], name")
    add.add_argument("--reason", default="", help="why (e.g. CVE-2026-1234)")
    add.add_argument("--until", help="expiry: 2026-12-31, an ISO time, or a duration (30d)")
    add.set_defaults(handler=commands.blocklist_add)
    listing = verbs.add_parser("ls", help="list active rules")
    listing.add_argument("--all", action="store_true", help="also expired rules")
    listing.set_defaults(handler=commands.blocklist_ls)
    remove = verbs.add_parser("rm", help="remove a rule")
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=commands.blocklist_rm)
    audit = verbs.add_parser("audit", help="the change log (newest first)")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(handler=commands.blocklist_audit)
    rollback = verbs.add_parser("rollback", help="undo the change of one audit entry")
    rollback.add_argument("audit_id", type=int)
    rollback.set_defaults(handler=commands.blocklist_rollback)


def _ratelimit(nouns: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = _verbs(nouns, "ratelimit", "bandwidth and request limits")
    setting = verbs.add_parser("set", help="set the cluster's limits, or a host's with --host")
    setting.add_argument("--host", help="a hostname (default: the whole cluster)")
    for flag in ("download", "upload", "back-to-source"):
        setting.add_argument(f"--{flag}", help="bytes per second, e.g. 100MiB (unset: no limit)")
    setting.add_argument("--requests-per-second", type=float)
    setting.set_defaults(handler=commands.ratelimit_set)
    verbs.add_parser("ls", help="list limits").set_defaults(handler=commands.ratelimit_ls)
    remove = verbs.add_parser("rm", help="remove a limit")
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=commands.ratelimit_rm)


def _preheat(nouns: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = _verbs(nouns, "preheat", "have the seeds fetch something ahead of demand")
    create = verbs.add_parser("create", help="create a preheat job")
    create.add_argument("url", help="a URL, hf://owner/repo, modelscope://..., or an image ref")
    create.add_argument("--kind", choices=["url", "repo", "image"], help="default: guessed")
    create.add_argument("--revision", help="hub revision (default: main)")
    create.add_argument("--include", action="append", help="glob of files to fetch (repeat)")
    create.add_argument("--exclude", action="append", help="glob of files to skip (repeat)")
    create.set_defaults(handler=commands.preheat_create)
    status = verbs.add_parser("status", help="a job's state and per-file progress")
    status.add_argument("id", type=int)
    status.set_defaults(handler=commands.preheat_status)
