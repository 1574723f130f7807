"""A real PostgreSQL server for tests: Debian's binaries, a temporary cluster, a unix socket.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
and the commands run through ``runuser``. It listens on no TCP port at all (only a socket in
its own directory); ``fresh_database`` hands out an empty database per test.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES_USER = "postgres"


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb``, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


class PostgresServer:
    def __init__(self, bin_dir: Path, data_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self._names = itertools.count(1)

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}@/{database}?host={self.socket_dir}"

    def fresh_database(self) -> str:
        """Create an empty database; answers its SQLAlchemy URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        dsn = f"host={self.socket_dir} user={POSTGRES_USER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="damselfly-pg-"))
    data_dir = root / "data"
    prefix = _as_postgres_user(root)
    try:
        _run([*prefix, str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust",
              "-U", POSTGRES_USER, "--no-sync", "-E", "UTF8"])  # fmt: skip
        options = f"-k {data_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options,
              "-l", str(root / "log"), "-w", "start"])  # fmt: skip
        try:
            yield PostgresServer(bin_dir, data_dir)
        finally:
            _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate",
                  "-w", "stop"])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_postgres_user(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    account = pwd.getpwnam(POSTGRES_USER)
    os.chown(root, account.pw_uid, account.pw_gid)
    return ["runuser", "-u", POSTGRES_USER, "--"]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[-1]).name}: {done.stderr.strip()[-2000:]}")
