"""``damselfly manager create-admin`` migrates an empty database (SQLite and PostgreSQL) and
prints the only copy of the token; there is no second admin of the same name."""

from __future__ import annotations

import subprocess
import sys

from damselfly.manager.auth import TOKEN_PREFIX, find_principal
from damselfly.manager.db.database import open_database


def _create_admin(database_url: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "damselfly.cli.damselfly", "manager",
            "--database-url", database_url, "create-admin", "--name", "ops"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_create_admin_on_an_empty_database(database_url: str) -> None:
    first = _create_admin(database_url)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token.startswith(TOKEN_PREFIX)
    assert token not in first.stderr
    database = open_database(database_url)
    try:
        with database.session() as session:
            found = find_principal(session, token)
        assert found is not None
        assert (found.name, found.role) == ("ops", "admin")
    finally:
        database.close()
    again = _create_admin(database_url)
    assert (again.returncode, again.stdout) == (2, "")
    assert again.stderr == "damselfly manager: error: user ops exists\n"
