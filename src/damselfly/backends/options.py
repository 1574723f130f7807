"""Per-scheme request options: each backend's typed model, its flags and its resolution.

A backend that needs more than headers (a hub token and revision, object-store credentials)
describes it in an ``OptionsSpec``: the pydantic model of its options (a ``SourceOptions``),
the dfget flags it adds, and ``resolve``, which turns those flags plus the caller's environment
into the model, once, in the caller's process (a daemon may not read the caller's token file).
The model travels inside ``DownloadRequest.source`` (over the daemon's local API as JSON) and
becomes ``RequestOptions.params`` only at the backend's door (``request_params``).

The registry (``backends/registry.py``) collects the specs in an ``OptionsCatalog``; nothing
above ``backends/`` names a scheme's options. Secrets are ``Secret`` (``SecretStr``): masked in
``repr`` and logs, written in clear only into the JSON sent over the local socket.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, PlainSerializer, SecretStr

from damselfly.core.urls import SourceUrl, UrlParser, parse_url

Secret = Annotated[
    SecretStr, PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json")
]
Params = tuple[tuple[str, str], ...]


class SourceOptions(BaseModel):
    """Base of every backend's options: frozen, strict, unknown fields refused."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    def request_params(self, url: SourceUrl) -> Params:
        """The ``RequestOptions.params`` this backend reads for ``url``."""
        return ()

    @property
    def cache_requested(self) -> bool:
        """Whether the download goes into the source's own cache layout (a hub's cache)."""
        return False

    @property
    def token_may_be_unneeded(self) -> bool:
        """Whether these options carry a credential that the origin may not need for a given
        file (a hub token, sent for gated or private repos, for public ones too): the
        download then asks the origin without it (``download/public_files.py``)."""
        return False


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class FlagDefaults(Protocol):
    """Where a flag's default comes from (dfget: ``DFGET_<FLAG>`` environment variables)."""

    def text(self, dest: str, default: str | None = None) -> str | None: ...

    def flag(self, dest: str) -> bool: ...


Flags = Mapping[str, Any]  # parsed flags by dest (``vars(argparse.Namespace)``)
AddFlags = Callable[[argparse.ArgumentParser, FlagDefaults], None]
Resolve = Callable[[Flags, Mapping[str, str], str], SourceOptions]  # flags, env, scheme


def _no_flags(parser: argparse.ArgumentParser, defaults: FlagDefaults) -> None:
    return None


@dataclass(frozen=True)
class OptionsSpec:
    """What a scheme's backend brings to a request (see the module docstring)."""

    name: str  # the sub-request's name: hf, modelscope, object_storage
    schemes: frozenset[str]
    model: type[SourceOptions]
    resolve: Resolve
    add_flags: AddFlags = _no_flags
    env_names: frozenset[str] = frozenset()  # environment variables ``resolve`` reads
    env_prefixes: tuple[str, ...] = ()
    # for a scheme ``core/urls.py`` does not know: its URLs in one of the core URL shapes
    url_parser: UrlParser | None = None


def flag_group(parser: argparse.ArgumentParser, title: str) -> Any:
    """The parser's argument group called ``title``, created on first use (hubs share one)."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


class OptionsCatalog:
    """The ``OptionsSpec`` of every scheme that has one."""

    def __init__(self, specs: Iterable[OptionsSpec]) -> None:
        self._specs: list[OptionsSpec] = list(specs)

    def spec_for(self, scheme: str) -> OptionsSpec | None:
        return next((s for s in self._specs if scheme.lower() in s.schemes), None)

    def add_flags(self, parser: argparse.ArgumentParser, defaults: FlagDefaults) -> None:
        for spec in self._specs:
            spec.add_flags(parser, defaults)

    def resolve(self, url: str, flags: Flags, env: Mapping[str, str]) -> SourceOptions | None:
        """The options of ``url``'s scheme from the flags and environment (``None``: none)."""
        scheme = scheme_of(url)
        spec = self.spec_for(scheme)
        return spec.resolve(flags, env, scheme) if spec is not None else None

    def parse_url(self, url: str) -> SourceUrl:
        """``core.urls.parse_url``, also for the schemes registered with a ``url_parser``."""
        extra = {
            s: spec.url_parser for spec in self._specs if spec.url_parser for s in spec.schemes
        }
        return parse_url(url, extra)

    def env_name_allowed(self, name: str) -> bool:
        return any(name in s.env_names or name.startswith(s.env_prefixes) for s in self._specs)

    @contextlib.contextmanager
    def registered(self, spec: OptionsSpec) -> Iterator[OptionsSpec]:
        """``spec`` known for the duration of the block (a test's own scheme)."""
        self._specs.append(spec)
        try:
            yield spec
        finally:
            self._specs.remove(spec)


def scheme_of(url: str) -> str:
    """The scheme of a URL as typed, lower case, without parsing the rest."""
    return url.partition("://")[0].lower()
