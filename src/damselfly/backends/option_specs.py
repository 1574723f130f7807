"""Which schemes carry options of their own, their dfget flags, and the catalogue of them.

Pure declarations, without pydantic: dfget builds its parser and hands a plain download to the
daemon without importing any options model (issue 15: a small file through the daemon in
under 150 ms, interpreter start-up included). A spec names its model by a loader
(``load_model``), and its ``resolve`` imports the model's module when a URL of its scheme is
resolved; the models themselves are in ``backends/options.py`` and each backend's
``*_options.py``.

``options_catalog()`` is the process's catalogue of the built-in specs (``option_flags.py``);
nothing above ``backends/`` names a scheme's options.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from damselfly.backends.options import SourceOptions
    from damselfly.core.urls import SourceUrl, UrlParser


class FlagDefaults(Protocol):
    """Where a flag's default comes from (dfget: ``DFGET_<FLAG>`` environment variables)."""

    def text(self, dest: str, default: str | None = None) -> str | None: ...

    def flag(self, dest: str) -> bool: ...


Flags = Mapping[str, Any]  # parsed flags by dest (``vars(argparse.Namespace)``)
AddFlags = Callable[[argparse.ArgumentParser, FlagDefaults], None]
Resolve = Callable[[Flags, Mapping[str, str], str], "SourceOptions"]  # flags, env, scheme
PlainResolve = Callable[[Flags, Mapping[str, str], str], dict[str, Any]]  # the model's JSON


def _no_flags(parser: argparse.ArgumentParser, defaults: FlagDefaults) -> None:
    return None


class OptionsSpec(NamedTuple):
    """What a scheme's backend brings to a request: its options model (loaded on first use),
    the flags it adds to dfget, and ``resolve``, which turns those flags plus the caller's
    environment into the model, once, in the caller's process. (A ``NamedTuple``: dfget
    builds its parser from these, and ``dataclasses`` is ~7 ms of its start-up.)"""

    name: str  # the sub-request's name: hf, modelscope, object_storage
    schemes: frozenset[str]
    load_model: Callable[[], type[SourceOptions]]
    resolve: Resolve
    add_flags: AddFlags = _no_flags
    env_names: frozenset[str] = frozenset()  # environment variables ``resolve`` reads
    env_prefixes: tuple[str, ...] = ()
    # for a scheme ``core/urls.py`` does not know: its URLs in one of the core URL shapes
    url_parser: UrlParser | None = None
    # ``resolve`` without the model: the JSON it would write (dfget hands a file of this scheme
    # to its daemon without importing pydantic); None: only the model
    resolve_plain: PlainResolve | None = None

    @property
    def model(self) -> type[SourceOptions]:
        return self.load_model()


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

    def resolve_plain(
        self, url: str, flags: Flags, env: Mapping[str, str]
    ) -> SourceOptions | dict[str, Any] | None:
        """``resolve``, as the model's JSON where the scheme's spec can give it without the
        model (``OptionsSpec.resolve_plain``), else as the model."""
        scheme = scheme_of(url)
        spec = self.spec_for(scheme)
        if spec is not None and spec.resolve_plain is not None:
            return spec.resolve_plain(flags, env, scheme)
        return self.resolve(url, flags, env)

    def parse_url(self, url: str) -> SourceUrl:
        """``core.urls.parse_url``, also for the schemes registered with a ``url_parser``."""
        from damselfly.core.urls import parse_url

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


_CATALOG: list[OptionsCatalog] = []


def options_catalog() -> OptionsCatalog:
    """The process's catalogue of scheme options (built on first use)."""
    if not _CATALOG:
        from damselfly.backends.option_flags import BUILT_IN_SPECS

        _CATALOG.append(OptionsCatalog(BUILT_IN_SPECS))
    return _CATALOG[0]
