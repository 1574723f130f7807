"""The backend contract against the ``MemoryBackend`` fake (so fakes stay honest)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from damselfly.backends.base import RangeNotHonouredError, RequestOptions
from damselfly.core.errors import SourceProtocolError, SourceUnreachableError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl, parse_url
from damselfly.testing.backend_contract import BackendContract
from damselfly.testing.memory_backend import MemoryBackend

BASE = "https://memory.test/bucket"


@dataclass
class MemoryCase:
    backend: MemoryBackend
    options: RequestOptions = field(default_factory=RequestOptions)
    supports_list: bool = True

    async def put(self, path: str, data: bytes) -> SourceUrl:
        return self.backend.put(f"{BASE}/{path}", data)

    def missing_url(self) -> SourceUrl:
        return parse_url(f"{BASE}/no/such/object.bin")

    def dir_url(self, prefix: str) -> SourceUrl:
        return parse_url(f"{BASE}/{prefix}")


class TestMemoryContract(BackendContract):
    @pytest.fixture
    def contract_case(self) -> MemoryCase:
        return MemoryCase(MemoryBackend(chunk_length=64 * 1024))


# --- MemoryBackend failure injection and bookkeeping ---

URL = f"{BASE}/object.bin"
OPTIONS = RequestOptions()


async def read(backend: MemoryBackend, url: str, byte_range: ByteRange | None = None) -> bytes:
    chunks = [c async for c in backend.get(parse_url(url), byte_range, OPTIONS)]
    return b"".join(chunks)


async def test_injected_failure_fires_the_given_number_of_times() -> None:
    backend = MemoryBackend.with_objects({URL: b"data"})
    error = SourceUnreachableError(URL, "connection reset")
    backend.fail(URL, error, times=2)
    for _ in range(2):
        with pytest.raises(SourceUnreachableError) as caught:
            await backend.stat(parse_url(URL), OPTIONS)
        assert caught.value is error
    assert await read(backend, URL) == b"data"
    assert backend.call_count("stat", URL) == 2
    assert backend.call_count("get") == 1


async def test_ignore_ranges_raises_for_partial_ranges_only() -> None:
    backend = MemoryBackend()
    backend.put(URL, b"0123456789", ignore_ranges=True)
    with pytest.raises(RangeNotHonouredError):
        await read(backend, URL, ByteRange(2, 3))
    assert await read(backend, URL, ByteRange(0, 10)) == b"0123456789"
    assert (await backend.stat(parse_url(URL), OPTIONS)).supports_ranges is False


async def test_truncation_yields_the_prefix_then_fails() -> None:
    backend = MemoryBackend(chunk_length=3)
    backend.put(URL, b"0123456789", truncate_at=5)
    body = backend.get(parse_url(URL), ByteRange(2, 8), OPTIONS)
    assert await anext(body) == b"234"
    with pytest.raises(SourceProtocolError, match="expected 8 bytes, got 3"):
        await anext(body)
    assert backend.bytes_served[URL] == 3


async def test_keys_ignore_userinfo_and_calls_are_recorded() -> None:
    backend = MemoryBackend()
    backend.put("https://user:pw@memory.test/bucket/x", b"abc", etag='"v1"')
    stat = await backend.stat(parse_url(f"{BASE}/x"), OPTIONS)
    assert (stat.content_length, stat.etag) == (3, '"v1"')
    assert backend.calls[-1].url == f"{BASE}/x"
    backend.remove(f"{BASE}/x")
    assert await backend.exists(parse_url(f"{BASE}/x"), OPTIONS) is False
    await backend.aclose()
    assert backend.closed is True
