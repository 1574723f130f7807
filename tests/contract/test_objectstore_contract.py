"""The backend contract against ``ObjectStoreBackend`` (OpenDAL s3) and a real moto_server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.backends.objectstore import ObjectStoreBackend
from damselfly.core.urls import ObjectUrl, SourceUrl
from damselfly.testing.backend_contract import BackendContract
from damselfly.testing.moto import MotoServer

_bucket_numbers = itertools.count()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@dataclass
class S3Case:
    backend: ObjectStoreBackend
    moto: MotoServer
    bucket: str
    options: RequestOptions
    supports_list: bool = True

    async def put(self, path: str, data: bytes) -> SourceUrl:
        self.moto.put_object(self.bucket, path, data)
        return ObjectUrl("s3", self.bucket, path)

    def missing_url(self) -> SourceUrl:
        return ObjectUrl("s3", self.bucket, "no/such/object.bin")

    def dir_url(self, prefix: str) -> SourceUrl:
        return ObjectUrl("s3", self.bucket, prefix + "/")


class TestObjectStoreContract(BackendContract):
    @pytest.fixture
    async def contract_case(self, moto: MotoServer) -> AsyncIterator[S3Case]:
        bucket = f"contract-{next(_bucket_numbers)}"  # a fresh namespace per test
        moto.create_bucket(bucket)
        # No dummy keys in the environment: the backend gets them from params only.
        backend = ObjectStoreBackend(environ={})
        try:
            yield S3Case(backend, moto, bucket, moto.request_options())
        finally:
            await backend.aclose()
