"""The ``manager:`` section shared by dfdaemon and the scheduler: where the control plane is.

Optional: with ``url`` empty no link is built and the member works as without a manager. The
token is never a setting (settings are printed and logged): it comes from ``token_file`` or
from the environment variable named by ``token_env``, read where the service hands its
environment over (``read_token``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from damselfly.config.base import Seconds, Section
from damselfly.config.secret_files import read_secret_text
from damselfly.core.errors import ConfigError

DEFAULT_TOKEN_ENV = "DAMSELFLY_MANAGER_TOKEN"  # noqa: S105 (a variable name)
DYNCONFIG_FILE = "dynconfig.json"


class ManagerLinkSettings(Section):
    """The manager this member registers with and polls."""

    url: str = Field(
        "", description="Manager base URL (http://host:8080); empty: no manager, as before."
    )
    token_file: str = Field(
        "",
        description="File holding the member's token (role member; mode 0600, else refused); "
        "read at start.",
    )
    token_env: str = Field(
        DEFAULT_TOKEN_ENV,
        description="Environment variable holding the token when token_file is empty.",
    )
    interval: Seconds = Field(
        0.0,
        ge=0,
        description="Poll the dynamic config at least this often (seconds); 0: at the "
        "manager's config_interval.",
    )
    cache_file: str = Field(
        "",
        description="Where the last dynamic config is kept (mode 0600); empty: dynconfig.json "
        "in the store directory (dfdaemon) or the working directory (scheduler).",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.url)


def read_token(settings: ManagerLinkSettings, env: Mapping[str, str]) -> str:
    """The member's token: the file's text (refused if group or others may read it), else the
    environment variable ("" if none)."""
    if settings.token_file:
        try:
            return read_secret_text(Path(settings.token_file).expanduser())
        except OSError as exc:
            raise ConfigError(f"manager.token_file {settings.token_file}: {exc.strerror}") from exc
    return env.get(settings.token_env, "").strip()
