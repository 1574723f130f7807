"""The dynamic config a member polls: schedulers, seeds, blocklist, rate limits.

Its ``version`` is a hash of its content, so it is also the ETag: a member that sends it back
in ``If-None-Match`` gets 304 while nothing changed (a keepalive changes nothing; a member
turning dead, a rule added or expiring does). Only live members and active rules are listed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from damselfly.config.manager import ManagerSettings
from damselfly.manager.db.models import BlockRule, Member, RateLimit, utcnow
from damselfly.protocol.manager import (
    BlockRuleWire,
    DynamicConfig,
    EffectiveRateLimits,
    MemberEndpoint,
)
from damselfly.protocol.rate_limits import RateLimitValues


def alive_since(settings: ManagerSettings, now: datetime) -> datetime:
    """Members seen at or after this instant count as alive."""
    return now - timedelta(seconds=settings.keepalive_interval * settings.alive_intervals)


def build(session: Session, settings: ManagerSettings, host: str) -> DynamicConfig:
    now = utcnow()
    content = {
        "config_interval": settings.config_interval,
        "keepalive_interval": settings.keepalive_interval,
        "schedulers": _endpoints(session, "scheduler", alive_since(settings, now)),
        "seeds": _endpoints(session, "seed", alive_since(settings, now)),
        "blocklist": active_rules(session, now),
        "rate_limits": _rate_limits(session, host),
    }
    probe = DynamicConfig(version="", **content)
    canonical = json.dumps(probe.model_dump(mode="json"), sort_keys=True).encode()
    return probe.model_copy(update={"version": hashlib.sha256(canonical).hexdigest()[:32]})


def active_rules(session: Session, now: datetime) -> list[BlockRuleWire]:
    rows = session.scalars(
        select(BlockRule)
        .where(or_(BlockRule.until.is_(None), BlockRule.until > now))
        .order_by(BlockRule.id)
    )
    return [BlockRuleWire.model_validate(row, from_attributes=True) for row in rows]


def _endpoints(session: Session, role: str, since: datetime) -> list[MemberEndpoint]:
    rows = session.scalars(
        select(Member).where(Member.role == role, Member.last_seen >= since).order_by(Member.id)
    )
    return [MemberEndpoint.model_validate(row, from_attributes=True) for row in rows]


def _rate_limits(session: Session, host: str) -> EffectiveRateLimits:
    cluster = session.scalar(select(RateLimit).where(RateLimit.scope == "cluster"))
    own = None
    if host:
        own = session.scalar(
            select(RateLimit).where(RateLimit.scope == "host", RateLimit.host == host)
        )
    return EffectiveRateLimits(cluster=_values(cluster), host=_values(own))


def _values(row: RateLimit | None) -> RateLimitValues | None:
    return None if row is None else RateLimitValues.model_validate(row, from_attributes=True)
