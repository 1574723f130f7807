"""``/ratelimits``: per-cluster and per-host bandwidth and request rates, audited."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import select

from damselfly.manager import audit
from damselfly.manager.api.common import RowId, get_or_404
from damselfly.manager.auth import Admin, Reader, SessionDep
from damselfly.manager.db.models import RateLimit as RateLimitRow
from damselfly.manager.db.models import utcnow
from damselfly.protocol.manager import RateLimit, RateLimitSpec
from damselfly.protocol.rate_limits import RateLimitValues

router = APIRouter(tags=["ratelimits"])


@router.put("/ratelimits")
def set_rate_limit(body: RateLimitSpec, session: SessionDep, who: Admin) -> RateLimit:
    """Create or replace the limits of the cluster or of one host (unset fields: no limit)."""
    host = body.host if body.scope == "host" else ""
    if body.scope == "host" and not host:
        raise HTTPException(422, "scope host needs a host")
    row = session.scalar(
        select(RateLimitRow).where(RateLimitRow.scope == body.scope, RateLimitRow.host == host)
    )
    before = audit.snapshot(row)
    if row is None:
        row = RateLimitRow(scope=body.scope, host=host)
        session.add(row)
    for field in RateLimitValues.model_fields:
        setattr(row, field, getattr(body, field))
    row.updated_at = utcnow()
    session.flush()
    action = "create" if before is None else "update"
    audit.record(session, "ratelimit", row.id, action, who.name, before, audit.snapshot(row))
    session.commit()
    return RateLimit.model_validate(row, from_attributes=True)


@router.get("/ratelimits")
def list_rate_limits(session: SessionDep, _who: Reader) -> list[RateLimit]:
    rows = session.scalars(select(RateLimitRow).order_by(RateLimitRow.id))
    return [RateLimit.model_validate(row, from_attributes=True) for row in rows]


@router.delete("/ratelimits/{limit_id}", status_code=204)
def remove_rate_limit(limit_id: RowId, session: SessionDep, who: Admin) -> Response:
    row = get_or_404(session, RateLimitRow, limit_id, "rate limit")
    before = audit.snapshot(row)
    session.delete(row)
    audit.record(session, "ratelimit", limit_id, "delete", who.name, before, None)
    session.commit()
    return Response(status_code=204)
