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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from damselfly.manager.db.models import Token, User, utcnow

TOKEN_PREFIX = "dfm_"  # noqa: S105 (a marker, not a secret)
ROLES = ("admin", "read-only", "member")

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


def find_principal(session: Session, token: str, now: datetime | None = None) -> Principal | None:
    now = now or utcnow()
    found = session.execute(
        select(Token.id, Token.revoked_at, Token.expires_at, User.id, User.name, User.role)
        .join(User)
        .where(Token.digest == token_digest(token))
    ).first()  # columns, not entities: this runs on every request
    if found is None:
        return None
    token_id, revoked_at, expires_at, user_id, name, role = found
    if revoked_at is not None or (expires_at is not None and expires_at <= now):
        return None
    return Principal(user_id, name, role, token_id)


# FastAPI dependencies ------------------------------------------------------------------------


async def database_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, opened and closed without a worker thread: opening touches
    no database, closing only returns a connection whose transaction the route ended."""
    with request.app.state.database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(database_session)]


def principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    found = None if credentials is None else find_principal(session, credentials.credentials)
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
