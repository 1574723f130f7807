"""Spot checks: a few small ranges of a file got from peers, read again from the origin.

For a file with a whole-file checksum from the origin (hub files, ``--digest``, an S3 ETag
that is an MD5) the download layer checks the whole file. A plain HTTP file has none: every
piece is checked against the digest its *origin reader* reported, so a reader that lies (a
rogue holding a valid seed certificate, serving garbage with digests of that garbage) would
go unnoticed. The defence, with mTLS (in plain text every process is trusted anyway): a
daemon that got a file without an origin checksum from peers reads ``count`` ranges of
``length`` bytes (2 x 64 KiB by default) at offsets drawn at random by *this* daemon (the
reader cannot know which) from the origin, with its own request, and compares them with the
bytes it stored. One difference and the file is rejected (``peer_filler.py``: the scheduler is
told, the task becomes origin-only, this daemon re-reads the file from the origin).

Cost: 128 KiB from the origin per node per file (0.2 % of a 64 MiB file; a file smaller than
that is read whole). These bytes are *not* the node's ``source_bytes`` (what benchmarks and
dfget's summary read as "from the origin" for the download itself): they are counted apart,
as ``damselfly_daemon_spot_check_bytes_total``. A reader that garbles whole pieces is caught
by the first node whose sample falls in one; one that garbles a fraction ``f`` of the bytes
escapes one node with probability about ``(1 - f)^count``, and every node draws its own
sample.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

from damselfly.backends.base import Backend, open_stream
from damselfly.core.pieces import ByteRange
from damselfly.download.jobs import DownloadContext, FillRequest

log = logging.getLogger(__name__)
DEFAULT_SPOT_CHECKS = 2
DEFAULT_SPOT_CHECK_LENGTH = 64 * 1024


@dataclass
class SpotCheck:
    """What one spot check found, and what it cost."""

    wrong: list[ByteRange] = field(default_factory=list)  # origin bytes differ from ours
    origin_bytes: int = 0  # body bytes read from the origin for the check

    @property
    def failed(self) -> bool:
        return bool(self.wrong)


async def spot_check(
    request: FillRequest,
    ctx: DownloadContext,
    *,
    count: int = DEFAULT_SPOT_CHECKS,
    length: int = DEFAULT_SPOT_CHECK_LENGTH,
    rng: random.Random | None = None,
) -> SpotCheck:
    """Sample the origin; ``wrong`` empty when every sampled range agrees."""
    task = request.task
    found = SpotCheck()
    if count <= 0 or task.content_length == 0 or not task.is_complete:
        return found
    backend = ctx.registry.for_url(request.job.url)
    for byte_range in sample_ranges(task.content_length, count, length, rng):
        held = await asyncio.to_thread(task.read_range, byte_range.start, byte_range.length)
        origin = await _origin_bytes(backend, request, byte_range, found)
        if origin is not None and origin != held:
            found.wrong.append(byte_range)
    if found.wrong:
        log.warning("task %s: bytes from peers differ from the origin's at offset %d",
                    task.task_id[:12], found.wrong[0].start)  # fmt: skip
    return found


def sample_ranges(
    content_length: int, count: int, length: int, rng: random.Random | None = None
) -> list[ByteRange]:
    """``count`` ranges of up to ``length`` bytes at random offsets; the whole content when it
    is no longer than the sample."""
    if content_length <= count * length:
        return [ByteRange(0, content_length)]
    draw = rng or random.SystemRandom()
    starts = sorted(draw.randrange(0, content_length - length + 1) for _ in range(count))
    return [ByteRange(start, length) for start in starts]


async def _origin_bytes(
    backend: Backend, request: FillRequest, byte_range: ByteRange, found: SpotCheck
) -> bytes | None:
    """The range from the origin; None when it ignored the range (no cheap check there).
    Every body byte received is added to ``found.origin_bytes``."""
    chunks = []
    received = 0
    async with open_stream(backend, request.job.url, byte_range, request.job.options) as body:
        async for chunk in body:
            received += len(chunk)
            found.origin_bytes += len(chunk)
            if received > byte_range.length:
                return None
            chunks.append(chunk)
    return b"".join(chunks)
