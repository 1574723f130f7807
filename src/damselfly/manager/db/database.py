"""Engine, sessions and migrations: ``open_database(url)`` migrates to the newest schema.

Alembic runs programmatically at start (``damselfly manager`` on an empty database creates
every table); its scripts ship inside the package (``db/migrations``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from damselfly.core.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_POOL_SIZE = 40  # anyio's default worker threads, which run the sync endpoints


class Database:
    """The engine and a session factory for one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    """Connect to ``url`` and bring its schema to the newest revision."""
    engine = _engine(url)
    migrate(engine)
    return Database(engine)


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"database_url: not a database URL ({type(exc).__name__})") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except ImportError as exc:
            raise ConfigError(
                f"database_url: no driver for {parsed.drivername} "
                "(PostgreSQL: pip install 'damselfly[postgres]')"
            ) from exc
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": 30},
        # one kept connection per worker thread: a connection made per request (the default
        # pool keeps 5 and closes the rest) costs a connect and the pragmas each time
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_SIZE,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
