"""``/audit``: the change log of blocklist rules and rate limits; rollback by entry id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from damselfly.manager import audit
from damselfly.manager.api.common import RowId, get_or_404
from damselfly.manager.auth import Admin, Reader, SessionDep
from damselfly.manager.db.models import AuditEntry

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: int
    entity: str
    entity_id: RowId
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    note: str


@router.get("/audit")
def list_audit(
    session: SessionDep,
    _who: Reader,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    return [AuditOut.model_validate(row, from_attributes=True) for row in session.scalars(query)]


@router.post("/audit/{entry_id}/rollback", status_code=201)
def rollback(entry_id: RowId, session: SessionDep, who: Admin) -> AuditOut:
    """Re-apply the entry's "before"; answers the new audit entry of that rollback."""
    entry = get_or_404(session, AuditEntry, entry_id, "audit entry")
    done = audit.rollback(session, entry, who.name)
    session.commit()
    return AuditOut.model_validate(done, from_attributes=True)
