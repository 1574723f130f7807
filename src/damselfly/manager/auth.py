"""Users, personal access tokens and the FastAPI dependencies that check them.

A token is ``dfm_`` + 43 random URL-safe characters (256 bits); the database keeps only its
SHA-256, so a stolen database yields no usable token and a plain hash is enough (no salt or
slow hash is needed for a high-entropy secret). A token is shown once, at creation, and may
expire or be revoked. Roles: ``admin`` (everything), ``read-only`` (GET only) and ``member``
(a scheduler, seed or daemon: registration, keepalive, dynamic config, preheat claims).
Missing or unknown token: 401; a valid token whose role may not do this: 403. Tokens are
never logged. The seam for mTLS: ``principal`` is the one place that turns a request into a
``Principal``; a client certificate can become one there later.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from damselfly.manager.db.models import Token, User, utcnow

TOKEN_PREFIX = "dfm_"  # noqa: S105 (a marker, not a secret)
ROLES = ("admin", "read-only", "member")

PRINCIPAL_TTL = 2.0  # seconds a verified token is trusted without the database
_bearer = HTTPBearer(auto_error=False, description="a personal access token (dfm_...)")


@dataclass(frozen=True)
class Principal:
    user_id: int
    name: str
    role: str
    token_id: int


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, user: User, name: str, lifetime: timedelta | None
) -> tuple[Token, str]:
    """A new token row and the token itself (returned once, never stored)."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = None if lifetime is None else utcnow() + lifetime
    row = Token(user_id=user.id, name=name, digest=token_digest(plaintext), expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, plaintext


def find_principal(session: Session, token: str) -> Principal | None:
    found = _lookup(session, token_digest(token))
    return None if found is None else found[0]


class PrincipalCache:
    """Verified tokens for ``ttl`` seconds, keyed by their SHA-256 (never the token itself):
    a keepalive storm then costs no token SELECT per request. A revocation through this
    manager clears it at once; one through another replica on the same database takes at
    most ``ttl``. An expiry is checked on every hit."""

    def __init__(self, ttl: float = PRINCIPAL_TTL) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Principal, datetime | None]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        until, who, expires_at = entry
        if until <= time.monotonic() or (expires_at is not None and expires_at <= utcnow()):
            del self._entries[digest]
            return None
        return who

    def put(self, digest: str, who: Principal, expires_at: datetime | None) -> None:
        if len(self._entries) > 10_000:  # unknown tokens are never kept; this bounds the rest
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self._ttl, who, expires_at)

    def clear(self) -> None:
        self._entries.clear()


def _lookup(session: Session, digest: str) -> tuple[Principal, datetime | None] | None:
    found = session.execute(
        select(Token.id, Token.revoked_at, Token.expires_at, User.id, User.name, User.role)
        .join(User)
        .where(Token.digest == digest)
    ).first()  # columns, not entities: this runs on every cache miss
    if found is None:
        return None
    token_id, revoked_at, expires_at, user_id, name, role = found
    if revoked_at is not None or (expires_at is not None and expires_at <= utcnow()):
        return None
    return Principal(user_id, name, role, token_id), expires_at


# FastAPI dependencies ------------------------------------------------------------------------


async def database_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, opened and closed without a worker thread: opening touches
    no database, closing only returns a connection whose transaction the route ended."""
    with request.app.state.database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(database_session)]


async def principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """On the event loop when the token is cached; the database lookup in a worker thread."""
    found = None
    if credentials is not None:
        cache: PrincipalCache = request.app.state.principals
        digest = token_digest(credentials.credentials)
        found = cache.get(digest)
        if found is None:
            looked_up = await run_in_threadpool(_lookup, session, digest)
            if looked_up is not None:
                found = looked_up[0]
                cache.put(digest, *looked_up)
    if found is None:
        raise HTTPException(
            401, "a valid token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return found


def _requiring(*roles: str) -> object:
    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role not in roles:
            raise HTTPException(403, f"role {who.role} may not do this")
        return who  # async: no worker thread for a comparison

    return check


Reader = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(_requiring("admin"))]
MemberWriter = Annotated[Principal, Depends(_requiring("admin", "member"))]
