"""dfctl's settings: the manager's URL and a token, in ``~/.config/damselfly/dfctl.yaml``.

The file holds a secret, so dfctl writes it with mode 0600 and refuses to read one that its
group or the world can read (as ssh does with keys). Flags and ``DFCTL_MANAGER`` /
``DFCTL_TOKEN`` override the file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from damselfly.core.errors import ConfigError

FILE_MODE = 0o600


class DfctlSettings(BaseModel):
    """dfctl settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manager: str = Field("http://127.0.0.1:8080", description="URL of the manager")
    token: str = Field("", description="a personal access token (dfm_...)", repr=False)


def default_config_path(env: Mapping[str, str]) -> Path:
    config_home = env.get("XDG_CONFIG_HOME", "")
    if config_home and os.path.isabs(config_home):
        return Path(config_home) / "damselfly" / "dfctl.yaml"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "damselfly" / "dfctl.yaml"


def load(path: Path, env: Mapping[str, str]) -> DfctlSettings:
    """Defaults < the file (when present) < ``DFCTL_MANAGER`` / ``DFCTL_TOKEN``."""
    values = _read(path)
    for key in ("manager", "token"):
        if env.get(f"DFCTL_{key.upper()}"):
            values[key] = env[f"DFCTL_{key.upper()}"]
    try:
        return DfctlSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"config {path}: {problems}") from exc


def save(path: Path, settings: DfctlSettings) -> None:
    """Write atomically with mode 0600 (the directory 0700 when created)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            yaml.safe_dump(settings.model_dump(), file, sort_keys=False)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict[str, object]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"config {path}: readable by others (mode {stat.S_IMODE(mode):o}); "
            f"it holds a token: chmod 600 {path}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config {path}: cannot read: {type(exc).__name__}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    return data
