"""The backend contract against ``HttpBackend`` and a real ``OriginServer`` on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.backends.http import HttpBackend
from damselfly.core.urls import SourceUrl, parse_url
from damselfly.testing.backend_contract import BackendContract
from damselfly.testing.origin import OriginServer


@dataclass
class HttpCase:
    backend: HttpBackend
    origin: OriginServer
    options: RequestOptions = field(default_factory=RequestOptions)
    supports_list: bool = False

    async def put(self, path: str, data: bytes) -> SourceUrl:
        return parse_url(self.origin.put(path, data))

    def missing_url(self) -> SourceUrl:
        return parse_url(self.origin.url("/no/such/object.bin"))

    def dir_url(self, prefix: str) -> SourceUrl:
        return parse_url(self.origin.url(prefix + "/"))


class TestHttpContract(BackendContract):
    @pytest.fixture
    async def contract_case(self) -> AsyncIterator[HttpCase]:
        async with OriginServer() as origin:
            backend = HttpBackend()
            try:
                yield HttpCase(backend, origin)
            finally:
                await backend.aclose()


class TestHttpContractFromDirectory(BackendContract):
    """The same contract when the origin serves files from disk (sendfile path)."""

    @pytest.fixture
    async def contract_case(self, tmp_path: Path) -> AsyncIterator[HttpCase]:
        async with OriginServer(root=tmp_path) as origin:
            backend = HttpBackend()
            try:
                yield _DiskHttpCase(backend, origin, root=tmp_path)
            finally:
                await backend.aclose()


@dataclass
class _DiskHttpCase(HttpCase):
    root: Path = field(default_factory=Path)

    async def put(self, path: str, data: bytes) -> SourceUrl:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return parse_url(self.origin.url(path))
