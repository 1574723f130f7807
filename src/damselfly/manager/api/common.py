"""What every router shares: the settings dependency and 404 lookups."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from damselfly.config.manager import ManagerSettings
from damselfly.manager.db.models import Base

RowT = TypeVar("RowT", bound=Base)
MAX_ROW_ID = 2**31 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a row id")]


def settings(request: Request) -> ManagerSettings:
    found: ManagerSettings = request.app.state.settings
    return found


SettingsDep = Annotated[ManagerSettings, Depends(settings)]


def get_or_404(session: Session, model: type[RowT], row_id: int, what: str) -> RowT:
    row = session.get(model, row_id)
    if row is None:
        raise HTTPException(404, f"no {what} {row_id}")
    return row


def row_values(row: Base) -> dict[str, Any]:
    """The row's columns by name (to validate an answer model from)."""
    return {column.key: getattr(row, column.key) for column in inspect(type(row)).columns}
