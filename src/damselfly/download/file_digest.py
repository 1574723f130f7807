"""Check a whole-file digest while the file downloads, not by re-reading it afterwards.

Pieces land out of order; a whole-file hash must see them in order. ``InOrderDigest`` keeps a
cursor at the first piece not yet hashed and, each time a piece lands, hashes every held piece
from the cursor on, reading it back from the page cache it was just written to through one
reused buffer (a new piece-sized ``bytes`` per piece made the kernel zero fresh pages for each
read). The hash thus advances with the download and is ready the moment the last piece lands.

A git blob id (what hubs report for small files) is a SHA-1 over ``blob <size>\\0`` and the
bytes; ``core.digests.GIT_BLOB_SHA1`` asks for that form.
"""

from __future__ import annotations

import asyncio

from damselfly.core.digests import GIT_BLOB_SHA1, Digest, Hasher, new_hasher
from damselfly.core.errors import FileDigestError
from damselfly.storage.store import TaskStorage

_BUFFER_LENGTH = 1024 * 1024


class InOrderDigest:
    def __init__(self, expected: Digest, task: TaskStorage, url: str) -> None:
        self._expected = expected
        self._task = task
        self._url = url
        self._hasher = _hasher_for(expected.algorithm, task.content_length)
        self._next_piece = 0
        self._lock = asyncio.Lock()
        # one thread at a time reads into it (the lock); small files get a small one
        self._buffer = bytearray(max(1, min(_BUFFER_LENGTH, task.content_length)))

    async def advance(self) -> None:
        """Hash every held piece from the cursor on; call after each piece lands."""
        async with self._lock:
            while self._next_piece < self._task.piece_count and self._task.has_piece(
                self._next_piece
            ):
                await asyncio.to_thread(self._hash_piece, self._next_piece)
                self._next_piece += 1

    async def verify(self) -> None:
        """Raise ``FileDigestError`` unless every piece is hashed and the digest matches."""
        await self.advance()
        if self._next_piece != self._task.piece_count:
            raise AssertionError("verify() before every piece was stored")
        actual = self._hasher.hexdigest()
        if actual != self._expected.hex:
            raise FileDigestError(
                self._url, str(self._expected), f"{self._expected.algorithm}:{actual}"
            )

    def _hash_piece(self, number: int) -> None:
        self._task.hash_piece(number, self._hasher, self._buffer)


def _hasher_for(algorithm: str, content_length: int) -> Hasher:
    if algorithm == GIT_BLOB_SHA1:
        hasher = new_hasher("sha1")
        hasher.update(f"blob {content_length}\0".encode())
        return hasher
    return new_hasher(algorithm)
