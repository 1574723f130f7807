"""The audit log: every change of a blocklist rule or a rate limit, and rollback by entry.

An entry keeps the row before and after the change as JSON (``None`` when the row did not
exist / no longer exists). Rolling back entry N re-applies its "before": the row comes back
with its id and values, or is deleted when it did not exist before; the rollback is itself an
audited change, so it can be rolled back too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from damselfly.manager.db.models import AuditEntry, Base, BlockRule, RateLimit, UtcDateTime

AUDITED: dict[str, type[Base]] = {"blocklist": BlockRule, "ratelimit": RateLimit}


def snapshot(row: Base | None) -> dict[str, Any] | None:
    """The row's columns as JSON values (times in ISO 8601)."""
    if row is None:
        return None
    values: dict[str, Any] = {}
    for column in inspect(type(row)).columns:
        value = getattr(row, column.key)
        values[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return values


def record(
    session: Session,
    entity: str,
    entity_id: int,
    action: str,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    note: str = "",
) -> AuditEntry:
    entry = AuditEntry(
        entity=entity, entity_id=entity_id, action=action, actor=actor,
        before=before, after=after, note=note,
    )  # fmt: skip
    session.add(entry)
    session.flush()
    return entry


def rollback(session: Session, entry: AuditEntry, actor: str) -> AuditEntry:
    """Re-apply ``entry.before`` and audit that as a new change."""
    model = AUDITED[entry.entity]
    row = session.get(model, entry.entity_id)
    before = snapshot(row)
    if entry.before is None:
        if row is not None:
            session.delete(row)
        restored = None
    else:
        restored = row or model(id=entry.entity_id)
        _assign(restored, entry.before)
        session.add(restored)
    session.flush()
    return record(
        session, entry.entity, entry.entity_id, "rollback", actor, before,
        snapshot(restored), note=f"rollback of audit entry {entry.id}",
    )  # fmt: skip


def _assign(row: Base, values: dict[str, Any]) -> None:
    for column in inspect(type(row)).columns:
        if column.key not in values:
            continue
        value = values[column.key]
        if isinstance(column.type, UtcDateTime) and isinstance(value, str):
            value = datetime.fromisoformat(value)
        setattr(row, column.key, value)
