"""Spot checks: a few pieces of a file got from peers, read again from the origin.

For a file with a whole-file checksum from the origin (hub files, ``--digest``, an S3 ETag
that is an MD5) the download layer checks the whole file. A plain HTTP file has none: every
piece is checked against the digest its *origin reader* reported, so a reader that lies (a
rogue holding a valid seed certificate, serving garbage with digests of that garbage) would
go unnoticed. The defence: a daemon that got a file without an origin checksum from peers
reads ``count`` pieces, chosen at random by *this* daemon (the reader cannot know which), from
the origin with its own request, and compares their BLAKE3 with what it stored. One mismatch
and the file is rejected (``peer_filler.py``: the scheduler is told, the task becomes
origin-only, this daemon re-reads it from the origin).

Cost: ``count`` pieces per node per file from the origin (2 x 4 MiB by default), a few
percent of a large file. A reader that corrupts all pieces is caught by the first node; one
that corrupts a fraction ``f`` of them escapes one node with probability ``(1 - f)^count``,
and every node draws its own sample: the more nodes it poisons, the surer it is caught.
"""

from __future__ import annotations

import asyncio
import logging
import random

import blake3

from damselfly.backends.base import Backend, open_stream
from damselfly.core.digests import PIECE_DIGEST_ALGORITHM
from damselfly.core.pieces import ByteRange
from damselfly.download.jobs import DownloadContext, FillRequest

log = logging.getLogger(__name__)
DEFAULT_SPOT_CHECK_PIECES = 2


async def spot_check(
    request: FillRequest,
    ctx: DownloadContext,
    *,
    count: int = DEFAULT_SPOT_CHECK_PIECES,
    rng: random.Random | None = None,
) -> list[int]:
    """Pieces whose origin bytes differ from the stored ones (empty: all agree)."""
    task = request.task
    held = sorted(task.finished_pieces())
    if count <= 0 or not held:
        return []
    sample = (rng or random.SystemRandom()).sample(held, min(count, len(held)))
    backend = ctx.registry.for_url(request.job.url)
    wrong = []
    for number in sorted(sample):
        meta = task.piece_meta(number)
        if meta is None:
            continue
        origin = await _origin_digest(backend, request, ByteRange(meta.offset, meta.length))
        if origin != meta.digest:
            wrong.append(number)
    if wrong:
        log.warning("task %s: pieces %s from peers differ from the origin's bytes",
                    task.task_id[:12], wrong[:8])  # fmt: skip
    return wrong


async def _origin_digest(backend: Backend, request: FillRequest, byte_range: ByteRange) -> str:
    hasher = blake3.blake3()
    received = 0
    async with open_stream(backend, request.job.url, byte_range, request.job.options) as body:
        async for chunk in body:
            received += len(chunk)
            if received > byte_range.length:
                return "too long"
            hasher.update(chunk)
            await asyncio.sleep(0)
    return f"{PIECE_DIGEST_ALGORITHM}:{hasher.hexdigest()}"
