"""Origins that do not announce a length (chunked, generated on the fly).

Without a length there are no pieces to name, so such a body is not cached or shared: it is
streamed into a hidden temp file beside the output, checked against ``--digest`` as it goes,
and renamed into place only when complete.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from damselfly.backends.base import open_stream
from damselfly.core.digests import new_hasher
from damselfly.core.errors import DiskFullError, FileDigestError
from damselfly.download.jobs import DownloadContext, FileJob, FileResult
from damselfly.storage.output import DeliveryMethod, deliver_file


async def stream_without_length(job: FileJob, ctx: DownloadContext, started: float) -> FileResult:
    tmp, fd = _temp_beside(job.output)
    ctx.observer.file_started(job.display_name, None, 0)
    try:
        with os.fdopen(fd, "wb") as sink:
            received = await _copy_body(job, ctx, sink)
        deliver_file(tmp, job.output, overwrite=job.overwrite, hard_link=True)
    finally:
        tmp.unlink(missing_ok=True)
    ctx.observer.file_finished(job.display_name)
    elapsed = time.monotonic() - started
    return FileResult(job, "", received, received, 0, DeliveryMethod.COPY, elapsed)


def _temp_beside(output: Path) -> tuple[Path, int]:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    return Path(name), fd


async def _copy_body(job: FileJob, ctx: DownloadContext, sink: BinaryIO) -> int:
    hasher = new_hasher(job.expected_digest.algorithm) if job.expected_digest else None
    received = 0
    backend = ctx.registry.for_url(job.url)
    async with open_stream(backend, job.url, None, job.options) as chunks:
        async for chunk in chunks:
            if hasher is not None:
                hasher.update(chunk)
            await asyncio.to_thread(_write, sink, chunk, job.output)
            received += len(chunk)
            ctx.observer.bytes_received(job.display_name, len(chunk))
    if hasher is not None and job.expected_digest is not None:
        actual = hasher.hexdigest()
        if actual != job.expected_digest.hex:
            expected = str(job.expected_digest)
            actual_text = f"{job.expected_digest.algorithm}:{actual}"
            raise FileDigestError(job.url.redacted(), expected, actual_text)
    return received


def _write(sink: BinaryIO, chunk: bytes, output: Path) -> None:
    try:
        sink.write(chunk)
    except OSError as exc:
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            raise DiskFullError(f"output {output}: disk full") from exc
        raise
