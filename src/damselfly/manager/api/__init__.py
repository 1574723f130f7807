"""The REST API under ``/api/v1``: one router per noun."""

from __future__ import annotations

from fastapi import APIRouter

from damselfly.manager.api import (
    audit,
    blocklist,
    dynconfig,
    members,
    preheat,
    ratelimits,
    rollout,
    tokens,
    users,
)
from damselfly.protocol.manager import API_PREFIX


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    for module in (users, tokens, members, dynconfig, blocklist, audit, ratelimits, preheat,
                   rollout):  # fmt: skip
        router.include_router(module.router)
    return router
