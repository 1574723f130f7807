"""``/rollout``: the rollout figures over time, from the members' keepalive counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from damselfly.manager import rollout
from damselfly.manager.auth import Reader, SessionDep
from damselfly.manager.db.models import MemberSample, utcnow
from damselfly.protocol.manager import MemberStats, RolloutPoint

router = APIRouter(tags=["rollout"])
LOOKBACK = timedelta(minutes=10)  # samples before the window: the first step's increments


@router.get("/rollout")
def get_rollout(
    session: SessionDep,
    _who: Reader,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 60,
    step: Annotated[int, Query(ge=10, le=3600, description="seconds per point")] = 60,
) -> list[RolloutPoint]:
    """Cold start p50/p95, origin and peer bytes, hit rate and failed downloads per step."""
    until = utcnow()
    since = until - timedelta(minutes=minutes)
    rows = session.scalars(select(MemberSample).where(MemberSample.at >= since - LOOKBACK))
    samples = [
        rollout.Sample(row.member_id, row.at, MemberStats.model_validate(row.stats)) for row in rows
    ]
    return rollout.points(samples, since, until, timedelta(seconds=step))
