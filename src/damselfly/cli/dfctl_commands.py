"""dfctl's cluster commands: one small function per command, each one manager call.

A command answers a ``Shown``: the data (printed as-is with ``--output json``) and the
columns of its table. Messages go to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from damselfly.core.blocklist import validate_pattern
from damselfly.core.errors import DamselflyError, UsageError
from damselfly.core.units import format_size, parse_duration, parse_size
from damselfly.transport.manager_client import ManagerClient


@dataclass
class Shown:
    data: Any
    columns: list[tuple[str, str]] = field(default_factory=list)  # (header, key)
    message: str = ""


Command = Callable[[ManagerClient, argparse.Namespace], Awaitable[Shown]]


def _columns(keys: str) -> list[tuple[str, str]]:
    """``"id back_to_source_bps"`` -> ``[("ID", "id"), ("BACK TO SOURCE", ...)]``."""
    return [(key.removesuffix("_bps").replace("_", " ").upper(), key) for key in keys.split()]


RULE_COLUMNS = _columns("id kind pattern reason until author active")
AUDIT_COLUMNS = _columns("id at actor action entity entity_id note")
LIMIT_COLUMNS = _columns(
    "id scope host download_bps upload_bps back_to_source_bps requests_per_second"
)
JOB_COLUMNS = _columns("id kind url state files created_by updated_at")
FILE_COLUMNS = _columns("url state completed_length length error")
PEER_COLUMNS = _columns("id role hostname ip port idc alive last_seen")


async def blocklist_add(client: ManagerClient, args: argparse.Namespace) -> Shown:
    problem = validate_pattern(args.kind, args.pattern)
    if problem is not None:
        raise UsageError(f"{args.pattern!r}: {problem}")
    body = {"kind": args.kind, "pattern": args.pattern, "reason": args.reason,
            "until": parse_until(args.until)}  # fmt: skip
    _status, rule, _headers = await client.call("POST", "/blocklist", body=body)
    return Shown(rule, RULE_COLUMNS, f"added blocklist rule {rule['id']}")


async def blocklist_ls(client: ManagerClient, args: argparse.Namespace) -> Shown:
    params = {"include_expired": "true"} if args.all else {}
    _status, rules, _headers = await client.call("GET", "/blocklist", params=params)
    return Shown(rules, RULE_COLUMNS)


async def blocklist_rm(client: ManagerClient, args: argparse.Namespace) -> Shown:
    await client.call("DELETE", f"/blocklist/{args.id}")
    return Shown({"removed": args.id}, message=f"removed blocklist rule {args.id}")


async def blocklist_audit(client: ManagerClient, args: argparse.Namespace) -> Shown:
    params = {"limit": str(args.limit)}
    _status, entries, _headers = await client.call("GET", "/audit", params=params)
    return Shown(entries, AUDIT_COLUMNS)


async def blocklist_rollback(client: ManagerClient, args: argparse.Namespace) -> Shown:
    _status, entry, _headers = await client.call("POST", f"/audit/{args.audit_id}/rollback")
    return Shown(entry, AUDIT_COLUMNS, f"rolled back audit entry {args.audit_id}")


async def ratelimit_set(client: ManagerClient, args: argparse.Namespace) -> Shown:
    body: dict[str, Any] = {"scope": "host" if args.host else "cluster", "host": args.host or ""}
    for flag, key in (("download", "download_bps"), ("upload", "upload_bps"),
                      ("back_to_source", "back_to_source_bps")):  # fmt: skip
        value = getattr(args, flag)
        body[key] = None if value is None else parse_size(value, what=f"--{flag}")
    body["requests_per_second"] = args.requests_per_second
    _status, limit, _headers = await client.call("PUT", "/ratelimits", body=body)
    return Shown(limit, LIMIT_COLUMNS, f"rate limits of the {_scope(limit)} set")


async def ratelimit_ls(client: ManagerClient, _args: argparse.Namespace) -> Shown:
    _status, limits, _headers = await client.call("GET", "/ratelimits")
    return Shown(limits, LIMIT_COLUMNS)


async def ratelimit_rm(client: ManagerClient, args: argparse.Namespace) -> Shown:
    await client.call("DELETE", f"/ratelimits/{args.id}")
    return Shown({"removed": args.id}, message=f"removed rate limit {args.id}")


async def preheat_create(client: ManagerClient, args: argparse.Namespace) -> Shown:
    body = {"kind": args.kind or preheat_kind(args.url), "url": args.url,
            "revision": args.revision or "", "include": args.include or [],
            "exclude": args.exclude or []}  # fmt: skip
    _status, job, _headers = await client.call("POST", "/preheat", body=body)
    return Shown(job, JOB_COLUMNS, f"preheat job {job['id']} created")


async def preheat_status(client: ManagerClient, args: argparse.Namespace) -> Shown:
    _status, job, _headers = await client.call("GET", f"/preheat/{args.id}")
    return Shown(job, FILE_COLUMNS, f"preheat job {job['id']}: {job['state']} {job['error']}")


async def jobs_ls(client: ManagerClient, args: argparse.Namespace) -> Shown:
    params = {"state": args.state} if args.state else {}
    _status, jobs, _headers = await client.call("GET", "/preheat", params=params)
    return Shown(jobs, JOB_COLUMNS)


async def peers_ls(client: ManagerClient, args: argparse.Namespace) -> Shown:
    params = {"role": args.role} if args.role else {}
    _status, members, _headers = await client.call("GET", "/members", params=params)
    return Shown(members, PEER_COLUMNS)


# Values --------------------------------------------------------------------------------------


def parse_until(text: str | None, now: datetime | None = None) -> str | None:
    """``2026-12-31``, an ISO 8601 time, or a duration from now (``30d``, ``12h``)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            seconds = parse_duration(text, what="--until")
        except DamselflyError as exc:
            raise UsageError(f"--until {text!r}: expected a date, a time or a duration") from exc
        moment = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def preheat_kind(url: str) -> str:
    if url.startswith(("hf://", "modelscope://")):
        return "repo"
    return "url" if "://" in url else "image"


def cell(key: str, value: Any) -> str:
    """One table cell: sizes readable, lists counted, nothing as ``-``."""
    if value is None or value == "":
        return "-"
    if key.endswith("_bps"):
        return f"{format_size(value)}/s"
    if key in ("completed_length", "length"):
        return format_size(value)
    if isinstance(value, list):
        return str(len(value))
    return str(value)


def _scope(limit: dict[str, Any]) -> str:
    return f"host {limit['host']}" if limit["scope"] == "host" else "cluster"
