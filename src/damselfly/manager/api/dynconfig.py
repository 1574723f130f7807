"""``/dynconfig``: what members poll; 304 when the ETag they hold is still current."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from damselfly.manager import dynconfig
from damselfly.manager.api.common import SettingsDep
from damselfly.manager.auth import Reader, SessionDep
from damselfly.protocol.manager import DynamicConfig, MemberRole

router = APIRouter(tags=["dynconfig"])


@router.get("/dynconfig", response_model=DynamicConfig, responses={304: {"description": "same"}})
def get_dynconfig(
    session: SessionDep,
    settings: SettingsDep,
    _who: Reader,
    role: Annotated[MemberRole | None, Query()] = None,
    host: Annotated[str, Query(max_length=255)] = "",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    config = dynconfig.build(session, settings, host)
    etag = f'"{config.version}"'
    if if_none_match is not None and etag in _tags(if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(config.model_dump_json(), media_type="application/json", headers={"ETag": etag})


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]
