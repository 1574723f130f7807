"""``/tokens``: personal access tokens, shown once at creation, listed without the secret."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from damselfly.manager.api.common import RowId, SettingsDep, get_or_404
from damselfly.manager.auth import Admin, Reader, SessionDep, issue_token
from damselfly.manager.db.models import Token, User, utcnow

router = APIRouter(tags=["tokens"])


class TokenCreate(BaseModel):
    user: str = Field(min_length=1, max_length=255, description="the user the token acts as")
    name: str = Field("", max_length=255, description="what the token is for")
    lifetime: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="seconds; default: the manager's"
    )


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown only in this answer")


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenCreate, session: SessionDep, settings: SettingsDep, _who: Admin
) -> TokenCreated:
    user = session.scalar(select(User).where(User.name == body.user))
    if user is None:
        raise HTTPException(404, f"no user {body.user}")
    lifetime = timedelta(seconds=body.lifetime or settings.token_lifetime)
    row, plaintext = issue_token(session, user, body.name, lifetime)
    session.commit()
    return TokenCreated(**_out(row, user.name).model_dump(), token=plaintext)


@router.get("/tokens")
def list_tokens(session: SessionDep, who: Reader) -> list[TokenOut]:
    query = select(Token, User).join(User).order_by(Token.id)
    if who.role != "admin":
        query = query.where(Token.user_id == who.user_id)
    return [_out(row, user.name) for row, user in session.execute(query)]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: RowId, request: Request, session: SessionDep, _who: Admin) -> Response:
    row = get_or_404(session, Token, token_id, "token")
    row.revoked_at = row.revoked_at or utcnow()
    session.commit()
    request.app.state.principals.clear()  # refused at once here; other replicas within the TTL
    return Response(status_code=204)


def _out(row: Token, user: str) -> TokenOut:
    return TokenOut(
        id=row.id, user=user, name=row.name, created_at=row.created_at,
        expires_at=row.expires_at, revoked_at=row.revoked_at,
    )  # fmt: skip
