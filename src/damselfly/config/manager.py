"""Settings of ``damselfly manager``: one YAML file, ``DAMSELFLY_MANAGER_*`` overrides.

``load(path, env)`` reads, merges and validates (``config/base.py``);
``damselfly manager --print-example-config`` prints ``example_yaml(ManagerSettings)``.
The database is a SQLite file under ``data_dir`` unless ``database_url`` names another
(``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from damselfly.config.base import ListenAddress, Seconds, ServiceSettings, load_settings

ENV_PREFIX = "DAMSELFLY_MANAGER_"
SYSTEM_DATA_DIR = Path("/var/lib/damselfly/manager")
DATABASE_NAME = "manager.sqlite3"


def default_data_dir(env: Mapping[str, str], uid: int | None = None) -> Path:
    """``/var/lib/damselfly/manager`` for root, else ``$XDG_DATA_HOME`` or ``~/.local/share``."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return SYSTEM_DATA_DIR
    data_home = env.get("XDG_DATA_HOME", "")
    if data_home and os.path.isabs(data_home):
        return Path(data_home) / "damselfly" / "manager"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "damselfly" / "manager"


class ManagerSettings(ServiceSettings):
    """damselfly manager settings."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX)

    listen: ListenAddress = Field(
        "127.0.0.1:8080",
        description="HTTP address of the REST API, /metrics and /healthz (host:port); port 0 "
        "picks a free port.",
    )
    data_dir: Path | None = Field(
        None,
        description="Where the embedded SQLite database lives (default /var/lib/damselfly/"
        "manager for root, else ~/.local/share/damselfly/manager).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the database; empty: the SQLite file "
        "<data_dir>/manager.sqlite3. PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    log_level: Literal["error", "warn", "info", "debug"] = Field(
        "info", description="Logging level on stderr."
    )
    keepalive_interval: Seconds = Field(
        10.0, gt=0, description="How often members are asked to keep alive (seconds)."
    )
    alive_intervals: int = Field(
        3,
        ge=1,
        le=100,
        description="A member without a keepalive for this many intervals is shown as dead "
        "and left out of the dynamic config.",
    )
    config_interval: Seconds = Field(
        30.0, gt=0, description="How often members poll the dynamic config (seconds)."
    )
    token_lifetime: Seconds = Field(
        90 * 86400.0,
        gt=0,
        description="Default lifetime of a new personal access token (seconds).",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if url and not url.startswith(("sqlite", "postgresql")):
            raise ValueError("expected sqlite:///... or postgresql+psycopg://...")
        return url

    def resolved_database_url(self, env: Mapping[str, str]) -> str:
        """The URL to connect to; the embedded SQLite file by default."""
        if self.database_url:
            return self.database_url
        data_dir = self.data_dir or default_data_dir(env)
        return f"sqlite:///{data_dir / DATABASE_NAME}"


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ManagerSettings:
    """Defaults < ``path`` (YAML) < ``env`` (``DAMSELFLY_MANAGER_*``) < ``overrides``."""
    return load_settings(
        ManagerSettings, path, env or {}, env_prefix=ENV_PREFIX, overrides=overrides
    )
