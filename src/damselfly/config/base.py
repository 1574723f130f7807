"""Settings shared by every service: one YAML file, environment overrides, frozen models.

Each service has one settings model (a ``ServiceSettings`` subclass with its own
``env_prefix``), loaded in three steps by ``load_settings``:

1. **read**: the YAML file when one is given (nothing is read at import time, and the
   environment is a mapping the caller passes, normally ``os.environ``);
2. **merge**: defaults < file < environment (``<PREFIX><FIELD>``, nested sections with
   ``__``: ``DAMSELFLY_SCHEDULER_WEIGHTS__IDC=0.3``) < explicit overrides (command-line flags);
3. **validate**: pydantic; any problem is one ``ConfigError`` naming the field and the file.

Every field has a default and a description; ``example_yaml`` renders a commented example
config from the model, so the example can never drift from the code.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from damselfly.core.errors import ConfigError, DamselflyError
from damselfly.core.units import parse_duration, parse_size

SettingsT = TypeVar("SettingsT", bound="ServiceSettings")


class Section(BaseModel):
    """A nested group of settings (a YAML mapping)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceSettings(BaseSettings):
    """Base of every service's settings: frozen, unknown keys refused, values only from
    ``load_settings`` (never straight from ``os.environ``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment parsing over a mapping the caller chose."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str], prefix: str):
        self._mapping = env  # read by _load_env_vars, which the base __init__ calls
        super().__init__(
            settings_cls, case_sensitive=False, env_prefix=prefix, env_nested_delimiter="__"
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._mapping, False, self.env_ignore_empty, self.env_parse_none_str)


def load_settings(
    model: type[SettingsT],
    path: Path | None,
    env: Mapping[str, str],
    *,
    env_prefix: str,
    overrides: Mapping[str, Any] | None = None,
    cluster: Mapping[str, Any] | None = None,
) -> SettingsT:
    """``cluster`` is a layer between the file and the service's environment (settings every
    service takes from one variable, e.g. ``DAMSELFLY_TLS_DIR``: ``config/security.py``)."""
    where = str(path) if path is not None else "defaults"
    values = _read_yaml(path) if path is not None else {}
    values = _merge(values, dict(cluster or {}))
    try:
        values = _merge(values, _MappingEnvSource(model, env, env_prefix)())
    except (ValueError, TypeError) as exc:  # a malformed JSON value for a nested field
        raise ConfigError(f"config from environment ({env_prefix}*): {exc}") from exc
    values = _merge(values, dict(overrides or {}))
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(f"config {where}: {_describe(exc)}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # here: a service started with flags alone never loads it (~1 MiB resident)

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top)"
        problems.append(f"{location}: {error['msg']}")
    return "; ".join(problems)


# Field types ---------------------------------------------------------------------------------


def _duration(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DamselflyError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _size(value: object) -> object:
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            return parse_size(value)
        except DamselflyError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _listen_address(value: object) -> object:
    if isinstance(value, str):
        split_host_port(value)
    return value


Seconds = Annotated[float, BeforeValidator(_duration)]
"""A duration in seconds; also ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``."""
Bytes = Annotated[int, BeforeValidator(_size)]
"""A size in bytes; also ``"16MiB"``, ``"4k"``."""
ListenAddress = Annotated[str, BeforeValidator(_listen_address)]
"""``host:port`` (``[::1]:8002`` for IPv6); port 0 picks a free port."""


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r}: expected host:port, e.g. 127.0.0.1:8002")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


# Example configs -----------------------------------------------------------------------------


def example_yaml(model: type[BaseModel]) -> str:
    """A commented YAML file with every field at its default."""
    title = (model.__doc__ or model.__name__).strip().splitlines()[0]
    lines = [f"# {title}", "# Every key is optional; the values shown are the defaults.", ""]
    _emit(model, model.model_validate({}).model_dump(mode="json"), lines, "")
    return "\n".join(lines) + "\n"


def _emit(model: type[BaseModel], values: Mapping[str, Any], lines: list[str], pad: str) -> None:
    import yaml

    for name, info in model.model_fields.items():
        for line in textwrap.wrap(info.description or "", 96 - len(pad)):
            lines.append(f"{pad}# {line}")
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{name}:")
            _emit(annotation, values[name], lines, pad + "  ")
            continue
        dumped = yaml.safe_dump({name: values[name]}, default_flow_style=True, sort_keys=False)
        lines.append(pad + dumped.strip().removeprefix("{").removesuffix("}"))
