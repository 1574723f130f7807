"""The contract every ``Backend`` implementation must pass, shipped as a pytest base class.

Use it by subclassing ``BackendContract`` in a test module and providing one fixture,
``contract_case``, that returns (or yields, for cleanup) an object satisfying ``ContractCase``::

    class TestFileContract(BackendContract):
        @pytest.fixture
        async def contract_case(self, tmp_path):
            backend = FileBackend()
            yield FileCase(backend, tmp_path)
            await backend.aclose()

The fixture protocol (``ContractCase``):

- ``backend``: the ``Backend`` under test.
- ``options``: the ``RequestOptions`` to pass to every call (credentials, endpoint, ...).
- ``async put(path, data) -> SourceUrl``: store ``data`` as an object named by the relative,
  '/'-separated ``path`` (e.g. ``"dir/sub/a.bin"``) and return the URL that reads it back.
  Every ``put`` of a fixture instance writes into the same namespace, so ``list`` sees them.
- ``missing_url() -> SourceUrl``: a URL of an object that does not exist (but whose container
  does: the bucket exists, the server answers).
- ``supports_list``: whether ``list`` works for this backend.
- ``dir_url(prefix) -> SourceUrl``: the URL that lists everything ``put`` stored under
  ``prefix`` (``"dir"`` -> ``file:///tmp/x/dir``, ``s3://bucket/dir/``, ...).

The tests are async (pytest-asyncio); they only use the ``Backend`` protocol, so a pass means
the download engine can use the backend unchanged. Checked: ``stat`` size and range support,
full and ranged ``get`` (first byte, middle, last byte, whole, across the 4 MiB piece
boundary) return exactly those bytes, empty objects, a 9 MiB random object, missing objects
(``SourceNotFoundError`` from ``stat`` and ``get``; ``exists``), ``list`` paths and sizes (or a
``BackendError`` when listing is unsupported), and ranges past the end raising a
``BackendError`` instead of returning wrong bytes.
"""

from __future__ import annotations

import random
from typing import Protocol

import pytest

from damselfly.backends.base import Backend, RequestOptions
from damselfly.core.errors import BackendError, SourceNotFoundError
from damselfly.core.pieces import ByteRange, MiB
from damselfly.core.urls import SourceUrl


class ContractCase(Protocol):
    backend: Backend
    options: RequestOptions
    supports_list: bool

    async def put(self, path: str, data: bytes) -> SourceUrl: ...

    def missing_url(self) -> SourceUrl: ...

    def dir_url(self, prefix: str) -> SourceUrl: ...


RANGE_OBJECT_LENGTH = 5 * MiB + 123
# (name, start, length) over RANGE_OBJECT_LENGTH bytes
RANGES = [
    ("first-byte", 0, 1),
    ("middle", 1_000_003, 65_537),
    ("last-byte", RANGE_OBJECT_LENGTH - 1, 1),
    ("whole", 0, RANGE_OBJECT_LENGTH),
    ("across-4MiB", 4 * MiB - 1000, 2000),
    ("tail-from-4MiB", 4 * MiB, RANGE_OBJECT_LENGTH - 4 * MiB),
]


def random_bytes(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


async def read_all(
    case: ContractCase, url: SourceUrl, byte_range: ByteRange | None = None
) -> bytes:
    chunks = []
    body = case.backend.get(url, byte_range, case.options)
    try:
        async for chunk in body:
            chunks.append(bytes(chunk))
    finally:
        # Backend.get is typed AsyncIterator (no aclose); every real one is a generator.
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    return b"".join(chunks)


class BackendContract:
    """Subclass and provide the ``contract_case`` fixture (see the module docstring)."""

    async def test_stat_reports_size_and_ranges(self, contract_case: ContractCase) -> None:
        data = random_bytes(100_001, seed=1)
        url = await contract_case.put("stat/object.bin", data)
        stat = await contract_case.backend.stat(url, contract_case.options)
        assert stat.content_length == len(data)
        assert stat.supports_ranges is True

    async def test_full_get_returns_every_byte(self, contract_case: ContractCase) -> None:
        data = random_bytes(300_007, seed=2)
        url = await contract_case.put("full/object.bin", data)
        assert await read_all(contract_case, url) == data

    @pytest.mark.parametrize(
        ("start", "length"), [(s, n) for _, s, n in RANGES], ids=[name for name, _, _ in RANGES]
    )
    async def test_ranged_get_returns_exactly_the_range(
        self, contract_case: ContractCase, start: int, length: int
    ) -> None:
        data = random_bytes(RANGE_OBJECT_LENGTH, seed=3)
        url = await contract_case.put("ranges/object.bin", data)
        got = await read_all(contract_case, url, ByteRange(start, length))
        assert len(got) == length
        assert got == data[start : start + length]

    async def test_empty_object(self, contract_case: ContractCase) -> None:
        url = await contract_case.put("empty/object.bin", b"")
        stat = await contract_case.backend.stat(url, contract_case.options)
        assert stat.content_length == 0
        assert await read_all(contract_case, url) == b""

    async def test_nine_mib_object_round_trips(self, contract_case: ContractCase) -> None:
        data = random_bytes(9 * MiB, seed=4)
        url = await contract_case.put("large/nine.bin", data)
        stat = await contract_case.backend.stat(url, contract_case.options)
        assert stat.content_length == len(data)
        assert await read_all(contract_case, url) == data

    async def test_range_past_the_end_is_an_error(self, contract_case: ContractCase) -> None:
        data = random_bytes(1000, seed=5)
        url = await contract_case.put("past-end/object.bin", data)
        with pytest.raises(BackendError):
            await read_all(contract_case, url, ByteRange(990, 20))

    async def test_missing_object_stat(self, contract_case: ContractCase) -> None:
        with pytest.raises(SourceNotFoundError):
            await contract_case.backend.stat(contract_case.missing_url(), contract_case.options)

    async def test_missing_object_get(self, contract_case: ContractCase) -> None:
        with pytest.raises(SourceNotFoundError):
            await read_all(contract_case, contract_case.missing_url())

    async def test_missing_object_error_is_a_file_not_found(
        self, contract_case: ContractCase
    ) -> None:
        with pytest.raises(FileNotFoundError):
            await contract_case.backend.stat(contract_case.missing_url(), contract_case.options)

    async def test_exists(self, contract_case: ContractCase) -> None:
        url = await contract_case.put("exists/object.bin", b"x")
        backend, options = contract_case.backend, contract_case.options
        assert await backend.exists(url, options) is True
        assert await backend.exists(contract_case.missing_url(), options) is False

    async def test_list_returns_every_file_below_the_prefix(
        self, contract_case: ContractCase
    ) -> None:
        files = {
            "a.bin": random_bytes(10, seed=6),
            "sub/b.bin": random_bytes(2000, seed=7),
            "sub/deeper/c.txt": b"",
        }
        for path, data in files.items():
            await contract_case.put(f"tree/{path}", data)
        await contract_case.put("treetop/outside.bin", b"not below tree/")
        await contract_case.put("other/outside.bin", b"not below tree/")
        listing = contract_case.backend.list(contract_case.dir_url("tree"), contract_case.options)
        if not contract_case.supports_list:
            with pytest.raises(BackendError):
                await listing
            return
        entries = await listing
        assert {e.path: e.content_length for e in entries} == {
            path: len(data) for path, data in files.items()
        }
        for entry in entries:
            assert await read_all(contract_case, entry.url) == files[entry.path]
