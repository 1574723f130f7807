"""Manager API fixtures: every API test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from damselfly.testing.manager import ManagerHarness, manager_harness
from damselfly.testing.postgres import PostgresServer, postgres_bin, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL binaries absent (Debian package postgresql; make setup)")
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'manager.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.fresh_database()


@pytest.fixture
def harness(database_url: str) -> Iterator[ManagerHarness]:
    found = manager_harness(database_url, keepalive_interval=0.5, alive_intervals=2)
    yield found
    found.database.close()


@pytest.fixture
def client(harness: ManagerHarness) -> Iterator[TestClient]:
    with TestClient(harness.app) as test_client:
        yield test_client
