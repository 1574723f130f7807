"""A manager for tests: migrated database, one token per role, the app to drive in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import FastAPI

from damselfly.config.manager import ManagerSettings
from damselfly.manager.app import create_app, serve
from damselfly.manager.auth import issue_token
from damselfly.manager.db.database import Database, open_database
from damselfly.manager.db.models import User

ROLE_USERS = {"admin": "root", "read-only": "viewer", "member": "node"}


@dataclass
class ManagerHarness:
    database: Database
    app: FastAPI
    tokens: dict[str, str] = field(default_factory=dict)  # role -> token

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def seed_users(database: Database) -> dict[str, str]:
    """One user and one token per role; answers role -> token."""
    tokens = {}
    with database.session() as session:
        for role, name in ROLE_USERS.items():
            user = User(name=name, role=role)
            session.add(user)
            session.flush()
            tokens[role] = issue_token(session, user, "test", timedelta(hours=1))[1]
        session.commit()
    return tokens


def manager_harness(database_url: str, **settings: object) -> ManagerHarness:
    database = open_database(database_url)
    app = create_app(ManagerSettings.model_validate(settings), database)
    return ManagerHarness(database, app, seed_users(database))


@asynccontextmanager
async def serving_manager(database_url: str, **settings: object) -> AsyncIterator[ServedManager]:
    """The real server on a loopback port, in this event loop, with one token per role."""
    database = open_database(database_url)
    tokens = seed_users(database)
    database.close()
    config = ManagerSettings.model_validate(
        {"listen": "127.0.0.1:0", "database_url": database_url, **settings}
    )
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(config, {}, stop=stop, on_ready=lambda running: ready.set_result(running.address))
    )
    try:
        address = await asyncio.wait_for(asyncio.shield(ready), 30)
        yield ServedManager(f"http://{address}", tokens)
    finally:
        stop.set()
        await task


@dataclass
class ServedManager:
    url: str
    tokens: dict[str, str]
