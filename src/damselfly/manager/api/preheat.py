"""``/preheat``: jobs that have seeds fetch a URL, a hub repo or an image ahead of demand.

The contract with seeds (docs/manager.md, "Preheat"): a seed claims the oldest pending job
(``POST /preheat/claim``; 204 when there is none), fetches it, and reports the per-file
progress and, at the end, ``succeeded`` or ``failed`` (``POST /preheat/{id}/report``). Only
the seed holding a job may report on it; a finished job takes no more reports.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select, update

from damselfly.manager.api.common import RowId, get_or_404, row_values
from damselfly.manager.auth import Admin, MemberWriter, Reader, SessionDep
from damselfly.manager.db.models import Member as MemberRow
from damselfly.manager.db.models import PreheatJob as JobRow
from damselfly.manager.db.models import utcnow
from damselfly.protocol.manager import (
    PreheatClaim,
    PreheatJob,
    PreheatReport,
    PreheatRequest,
    PreheatState,
)

router = APIRouter(tags=["preheat"])
FINISHED = ("succeeded", "failed")
CLAIM_ATTEMPTS = 5


@router.post("/preheat", status_code=201)
def create_job(body: PreheatRequest, session: SessionDep, who: Admin) -> PreheatJob:
    row = JobRow(**body.model_dump(), state="pending", created_by=who.name, files=[])
    session.add(row)
    session.commit()
    return _out(row)


@router.get("/preheat")
def list_jobs(
    session: SessionDep,
    _who: Reader,
    state: Annotated[PreheatState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PreheatJob]:
    query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
    if state is not None:
        query = query.where(JobRow.state == state)
    return [_out(row) for row in session.scalars(query)]


@router.get("/preheat/{job_id}")
def get_job(job_id: RowId, session: SessionDep, _who: Reader) -> PreheatJob:
    return _out(get_or_404(session, JobRow, job_id, "preheat job"))


@router.post("/preheat/claim", responses={204: {"description": "no pending job"}})
def claim_job(body: PreheatClaim, session: SessionDep, _who: MemberWriter) -> Any:
    seed = get_or_404(session, MemberRow, body.member_id, "member")
    if seed.role != "seed":
        raise HTTPException(409, f"member {seed.id} is a {seed.role}, not a seed")
    for _attempt in range(CLAIM_ATTEMPTS):
        row = session.scalar(
            select(JobRow).where(JobRow.state == "pending").order_by(JobRow.id).limit(1)
        )
        if row is None:
            return Response(status_code=204)
        if _take(session, row.id, seed.id):
            session.refresh(row)
            return _out(row)
    raise HTTPException(409, "pending jobs are being claimed by other seeds; try again")


def _take(session: SessionDep, job_id: int, member_id: int) -> bool:
    """A conditional UPDATE: of two seeds racing for one job, exactly one wins."""
    done = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.state == "pending")
        .values(state="running", member_id=member_id, updated_at=utcnow())
    )
    session.commit()
    return bool(getattr(done, "rowcount", 0))


@router.post("/preheat/{job_id}/report")
def report_progress(
    job_id: RowId, body: PreheatReport, session: SessionDep, _who: MemberWriter
) -> PreheatJob:
    row = get_or_404(session, JobRow, job_id, "preheat job")
    if row.member_id != body.member_id or row.state in FINISHED:
        raise HTTPException(409, f"preheat job {job_id} is not running on member {body.member_id}")
    row.files = [file.model_dump(mode="json") for file in body.files] or row.files
    row.state, row.error, row.updated_at = body.state, body.error, utcnow()
    session.commit()
    return _out(row)


def _out(row: JobRow) -> PreheatJob:
    return PreheatJob.model_validate(row_values(row))
