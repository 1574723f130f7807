"""The live OpenAPI document: fuzzed by schemathesis (no 5xx), and every mutating operation
refuses a missing token (401) and a read-only one (403). The operation list comes from the
document, so a new endpoint is covered without touching this file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from damselfly.testing.manager import ManagerHarness, manager_harness

OPENAPI = "/api/v1/openapi.json"
MUTATING = ("post", "put", "patch", "delete")


@pytest.fixture
def fuzzed(database_url: str) -> Iterator[ManagerHarness]:
    """A manager on SQLite and one on PostgreSQL (which refuses more, e.g. NUL in text)."""
    harness = manager_harness(database_url)
    yield harness
    harness.database.close()


def test_fuzzed_requests_never_get_a_server_error(fuzzed: ManagerHarness) -> None:
    """schemathesis' cases for every operation, sent with an admin token (so they reach the
    handlers); its pytest plugin is not used (it does not load under our pytest)."""
    schema = schemathesis.openapi.from_asgi(OPENAPI, fuzzed.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        _fuzz(operation, fuzzed.headers("admin"))


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error])

    check()


def _mutating_operations(app: Any) -> list[tuple[str, str]]:
    with TestClient(app) as client:
        document = client.get(OPENAPI).json()
    return [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for path, operations in document["paths"].items()
        for method in operations
        if method in MUTATING
    ]


def test_every_mutating_operation_needs_a_token_and_a_writing_role(
    fuzzed: ManagerHarness,
) -> None:
    operations = _mutating_operations(fuzzed.app)
    assert len(operations) >= 12  # the document really lists the API
    with TestClient(fuzzed.app) as client:
        for method, path in operations:
            anonymous = client.request(method, path, json={})
            assert anonymous.status_code == 401, (method, path)
            reader = client.request(method, path, json={}, headers=fuzzed.headers("read-only"))
            assert reader.status_code == 403, (method, path)
