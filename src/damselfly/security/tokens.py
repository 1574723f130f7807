"""One-time join tokens: how a new node proves to the enrollment service that an operator let
it join, and with which role.

``damselfly ca token --role peer --ttl 1h`` prints ``dfjt_<43 url-safe characters>`` (256 random
bits) once. Only its SHA-256 is kept, in ``<ca dir>/tokens/<hash>.json`` (0600, directory 0700)
with the role, the expiry and optionally the node id it is meant for, so a stolen CA directory
backup does not yield usable tokens. Redeeming renames the file away first: of two concurrent
redemptions (even in two processes) exactly one wins; the token is gone either way, expired
ones too. The token itself is never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from damselfly.security.errors import SecurityError, TokenRefusedError
from damselfly.security.files import make_private_dir, write_secret
from damselfly.security.roles import Role, parse_role

TOKEN_PREFIX = "dfjt_"  # noqa: S105 (a prefix that makes tokens greppable, not a secret)
TOKENS_DIR = "tokens"
MAX_TTL_SECONDS = 30 * 86400


@dataclass(frozen=True)
class TokenGrant:
    """What a redeemed token allows: one enrollment with ``role`` (as ``node_id`` if set)."""

    role: Role
    node_id: str | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    ca_dir: Path,
    role: Role,
    ttl_seconds: float,
    *,
    node_id: str | None = None,
    now: float | None = None,
) -> str:
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise SecurityError(f"token ttl {ttl_seconds:g} s: expected up to 30 days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = (time.time() if now is None else now) + ttl_seconds
    record = {"role": role.value, "expires_at": expires_at, "node_id": node_id}
    directory = ca_dir / TOKENS_DIR
    make_private_dir(directory)
    write_secret(directory / f"{token_hash(token)}.json", json.dumps(record).encode())
    return token


def redeem_token(ca_dir: Path, token: str, *, now: float | None = None) -> TokenGrant:
    """Use ``token`` up; refuses an unknown, already used or expired one."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise TokenRefusedError("not a join token")
    path = ca_dir / TOKENS_DIR / f"{token_hash(token)}.json"
    taken = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(path, taken)  # atomic: only one redemption can take the file
    except FileNotFoundError:
        raise TokenRefusedError("unknown or already used join token") from None
    try:
        record = json.loads(taken.read_text(encoding="utf-8"))
    finally:
        taken.unlink(missing_ok=True)
    if record["expires_at"] <= (time.time() if now is None else now):
        raise TokenRefusedError("expired join token")
    return TokenGrant(parse_role(record["role"]), record.get("node_id"))


DENIED_NAME = "denied-nodes"


def deny_node(ca_dir: Path, node_id: str) -> None:
    """Refuse every later enrollment and renewal of ``node_id`` (its certificate then dies
    within its lifetime: there is no CRL)."""
    denied = denied_nodes(ca_dir) | {node_id}
    write_secret(ca_dir / DENIED_NAME, "".join(f"{n}\n" for n in sorted(denied)).encode())


def denied_nodes(ca_dir: Path) -> frozenset[str]:
    try:
        text = (ca_dir / DENIED_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def prune_expired(ca_dir: Path, *, now: float | None = None) -> int:
    """Delete expired tokens' records; how many went."""
    directory = ca_dir / TOKENS_DIR
    moment = time.time() if now is None else now
    gone = 0
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            expired = json.loads(path.read_text(encoding="utf-8"))["expires_at"] <= moment
        except (OSError, ValueError, KeyError):
            continue
        if expired:
            path.unlink(missing_ok=True)
            gone += 1
    return gone
