"""``/members``: schedulers, seeds and daemons register, keep alive and are listed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from damselfly.manager.api.common import RowId, SettingsDep, get_or_404, row_values
from damselfly.manager.auth import Admin, MemberWriter, Reader, SessionDep
from damselfly.manager.db.models import Member as MemberRow
from damselfly.manager.db.models import MemberSample, utcnow
from damselfly.manager.dynconfig import alive_since
from damselfly.manager.rollout import SAMPLE_RETENTION
from damselfly.protocol.manager import (
    KeepaliveBody,
    Member,
    MemberRegistration,
    MemberRole,
    MemberStats,
)

router = APIRouter(tags=["members"])


@router.post("/members", status_code=201)
def register(
    body: MemberRegistration, session: SessionDep, settings: SettingsDep, _who: MemberWriter
) -> Member:
    """Register (or re-register: same role and hostname) a member; answers its id."""
    row = session.scalar(
        select(MemberRow).where(MemberRow.role == body.role, MemberRow.hostname == body.hostname)
    )
    if row is None:
        row = MemberRow(role=body.role, hostname=body.hostname)
        session.add(row)
    for field, value in body.model_dump(exclude={"role", "hostname"}).items():
        setattr(row, field, value)
    row.last_seen = utcnow()
    session.commit()
    return _out(row, settings)


@router.post("/members/{member_id}/keepalive", status_code=204)
def keepalive(
    member_id: RowId, session: SessionDep, _who: MemberWriter, body: KeepaliveBody | None = None
) -> Response:
    """The cheap call: one UPDATE (plus the member's counters, when it sends them, for the
    rollout figures); 404 tells the member to register again."""
    now = utcnow()
    done = session.execute(
        update(MemberRow).where(MemberRow.id == member_id).values(last_seen=now),
        execution_options={"synchronize_session": False},  # nothing loaded to keep in sync
    )
    found = bool(getattr(done, "rowcount", 0))
    if found and body is not None and body.stats is not None:
        _keep_sample(session, member_id, body.stats, now)
    session.commit()
    return Response(status_code=204 if found else 404)


def _keep_sample(session: Session, member_id: int, stats: MemberStats, now: datetime) -> None:
    session.add(MemberSample(member_id=member_id, at=now, stats=stats.model_dump()))
    session.execute(
        delete(MemberSample).where(
            MemberSample.member_id == member_id, MemberSample.at < now - SAMPLE_RETENTION
        ),
        execution_options={"synchronize_session": False},
    )


@router.get("/members")
def list_members(
    session: SessionDep,
    settings: SettingsDep,
    _who: Reader,
    role: Annotated[MemberRole | None, Query()] = None,
) -> list[Member]:
    query = select(MemberRow).order_by(MemberRow.id)
    if role is not None:
        query = query.where(MemberRow.role == role)
    return [_out(row, settings) for row in session.scalars(query)]


@router.delete("/members/{member_id}", status_code=204)
def remove_member(member_id: RowId, session: SessionDep, _who: Admin) -> Response:
    session.delete(get_or_404(session, MemberRow, member_id, "member"))
    session.commit()
    return Response(status_code=204)


def _out(row: MemberRow, settings: SettingsDep) -> Member:
    alive = row.last_seen >= alive_since(settings, utcnow())
    return Member.model_validate({**row_values(row), "alive": alive})
