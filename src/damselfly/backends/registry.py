"""Choose a backend by URL scheme, and the typed options a scheme's requests carry.

The registry maps each scheme to a factory and creates each backend lazily, once, so a process
that only downloads over https never imports OpenDAL. ``default_registry()`` knows every
built-in backend; tests build registries of their own (e.g. with a memory backend).

A scheme's typed options are its ``OptionsSpec`` in ``options_catalog()``
(``backends/option_specs.py``). A new scheme adds its factory here and its spec there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from damselfly.backends.base import Backend
from damselfly.core.errors import UnsupportedSchemeError
from damselfly.core.urls import OBJECT_STORE_SCHEMES, SourceUrl

BackendFactory = Callable[[], Backend]


@dataclass(frozen=True)
class BackendSettings:
    """Process-wide settings the built-in backends are created with."""

    request_attempts: int = 5  # tries of one origin request before giving up


class BackendRegistry:
    def __init__(self, factories: Mapping[str, BackendFactory]) -> None:
        self._factories = dict(factories)
        self._instances: dict[BackendFactory, Backend] = {}

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(self._factories)

    def for_url(self, url: SourceUrl) -> Backend:
        factory = self._factories.get(url.scheme)
        if factory is None:
            raise UnsupportedSchemeError(url.redacted(), f"no backend for {url.scheme}://")
        backend = self._instances.get(factory)
        if backend is None:
            backend = self._instances[factory] = factory()
        return backend

    async def aclose(self) -> None:
        instances, self._instances = list(self._instances.values()), {}
        for backend in instances:
            await backend.aclose()


class WrappingRegistry(BackendRegistry):
    """Another registry's backends, each passed once through ``wrap`` (which may return it
    unchanged): how a service adds a concern (a bandwidth limit, a fallback) to every scheme
    or to one."""

    def __init__(
        self, inner: BackendRegistry, wrap: Callable[[SourceUrl, Backend], Backend]
    ) -> None:
        super().__init__({})
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[int, Backend] = {}

    @property
    def schemes(self) -> frozenset[str]:
        return self._inner.schemes

    def for_url(self, url: SourceUrl) -> Backend:
        backend = self._inner.for_url(url)
        wrapped = self._wrapped.get(id(backend))
        if wrapped is None:
            wrapped = self._wrapped[id(backend)] = self._wrap(url, backend)
        return wrapped

    async def aclose(self) -> None:
        self._wrapped.clear()
        await self._inner.aclose()


def _http(settings: BackendSettings) -> Backend:
    from damselfly.backends.http import HttpBackend, RetryPolicy

    return HttpBackend(retry=RetryPolicy(max_attempts=settings.request_attempts))


def _file(settings: BackendSettings) -> Backend:
    from damselfly.backends.file import FileBackend

    return FileBackend()


def _object_store(settings: BackendSettings) -> Backend:
    from damselfly.backends.objectstore import ObjectStoreBackend

    return ObjectStoreBackend()


def _hf(settings: BackendSettings) -> Backend:
    from damselfly.backends.hf import HfBackend

    return HfBackend()


def _modelscope(settings: BackendSettings) -> Backend:
    from damselfly.backends.modelscope import ModelScopeBackend

    return ModelScopeBackend()


def default_factories(settings: BackendSettings | None = None) -> dict[str, BackendFactory]:
    settings = settings or BackendSettings()

    def bind(factory: Callable[[BackendSettings], Backend]) -> BackendFactory:
        return lambda: factory(settings)

    http, file, object_store = bind(_http), bind(_file), bind(_object_store)
    factories: dict[str, BackendFactory] = {"http": http, "https": http, "file": file}
    factories.update({scheme: object_store for scheme in OBJECT_STORE_SCHEMES | {"hdfs"}})
    factories.update({"hf": bind(_hf), "modelscope": bind(_modelscope)})
    return factories


def default_registry(settings: BackendSettings | None = None) -> BackendRegistry:
    return BackendRegistry(default_factories(settings))
