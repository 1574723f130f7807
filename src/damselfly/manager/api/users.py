"""``/users``: who may use the API, with which role (admins create them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from damselfly.manager.auth import Admin, Reader, SessionDep
from damselfly.manager.db.models import User

router = APIRouter(tags=["users"])


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    role: Literal["admin", "read-only", "member"]


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime


@router.post("/users", status_code=201)
def create_user(body: UserCreate, session: SessionDep, _who: Admin) -> UserOut:
    if session.scalar(select(User).where(User.name == body.name)) is not None:
        raise HTTPException(409, f"user {body.name} exists")
    user = User(name=body.name, role=body.role)
    session.add(user)
    session.commit()
    return UserOut.model_validate(user, from_attributes=True)


class Me(BaseModel):
    name: str
    role: str
    token_id: int


@router.get("/me")
def whoami(who: Reader) -> Me:
    """Who the token acts as (the console shows it; a cheap token check for scripts)."""
    return Me(name=who.name, role=who.role, token_id=who.token_id)


@router.get("/users")
def list_users(session: SessionDep, _who: Reader) -> list[UserOut]:
    rows = session.scalars(select(User).order_by(User.id))
    return [UserOut.model_validate(row, from_attributes=True) for row in rows]
