"""``/blocklist``: rules that stop downloads; every change lands in the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import or_, select

from damselfly.core.blocklist import validate_pattern
from damselfly.manager import audit
from damselfly.manager.api.common import RowId, get_or_404, row_values
from damselfly.manager.auth import Admin, Reader, SessionDep
from damselfly.manager.db.models import BlockRule, utcnow
from damselfly.protocol.manager import RuleKind

router = APIRouter(tags=["blocklist"])


class RuleCreate(BaseModel):
    kind: RuleKind
    pattern: str = Field(min_length=1, max_length=2048)
    reason: str = Field("", max_length=2048)
    until: datetime | None = Field(None, description="expiry (ISO 8601); none: until removed")

    @model_validator(mode="after")
    def _valid_pattern(self) -> RuleCreate:
        problem = validate_pattern(self.kind, self.pattern)
        if problem is not None:
            raise ValueError(problem)
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("until must carry a time zone (e.g. 2026-12-31T00:00:00Z)")
        return self


class RuleUpdate(BaseModel):
    reason: str | None = Field(None, max_length=2048)
    until: datetime | None = None
    clear_until: bool = False


class RuleOut(RuleCreate):
    id: int
    author: str
    created_at: datetime
    active: bool


@router.post("/blocklist", status_code=201)
def add_rule(body: RuleCreate, session: SessionDep, who: Admin) -> RuleOut:
    row = BlockRule(**body.model_dump(), author=who.name)
    session.add(row)
    session.flush()
    audit.record(session, "blocklist", row.id, "create", who.name, None, audit.snapshot(row))
    session.commit()
    return _out(row)


@router.get("/blocklist")
def list_rules(
    session: SessionDep, _who: Reader, include_expired: Annotated[bool, Query()] = False
) -> list[RuleOut]:
    query = select(BlockRule).order_by(BlockRule.id)
    if not include_expired:
        query = query.where(or_(BlockRule.until.is_(None), BlockRule.until > utcnow()))
    return [_out(row) for row in session.scalars(query)]


@router.get("/blocklist/{rule_id}")
def get_rule(rule_id: RowId, session: SessionDep, _who: Reader) -> RuleOut:
    return _out(get_or_404(session, BlockRule, rule_id, "blocklist rule"))


@router.patch("/blocklist/{rule_id}")
def update_rule(rule_id: RowId, body: RuleUpdate, session: SessionDep, who: Admin) -> RuleOut:
    row = get_or_404(session, BlockRule, rule_id, "blocklist rule")
    if body.until is not None and body.until.tzinfo is None:
        raise HTTPException(422, "until must carry a time zone")
    before = audit.snapshot(row)
    if body.reason is not None:
        row.reason = body.reason
    if body.until is not None or body.clear_until:
        row.until = None if body.clear_until else body.until
    session.flush()
    audit.record(session, "blocklist", row.id, "update", who.name, before, audit.snapshot(row))
    session.commit()
    return _out(row)


@router.delete("/blocklist/{rule_id}", status_code=204)
def remove_rule(rule_id: RowId, session: SessionDep, who: Admin) -> Response:
    row = get_or_404(session, BlockRule, rule_id, "blocklist rule")
    before = audit.snapshot(row)
    session.delete(row)
    audit.record(session, "blocklist", rule_id, "delete", who.name, before, None)
    session.commit()
    return Response(status_code=204)


def _out(row: BlockRule) -> RuleOut:
    active = row.until is None or row.until > utcnow()
    return RuleOut.model_validate({**row_values(row), "active": active})
