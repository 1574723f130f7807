"""What the download layer is asked to do and what it answers: jobs, results, context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from damselfly.backends.base import ObjectStat, RequestOptions
from damselfly.backends.registry import BackendRegistry
from damselfly.core.digests import Digest
from damselfly.core.urls import SourceUrl
from damselfly.download.events import DownloadObserver
from damselfly.download.source_fetcher import FetchPolicy, SourceFetcher
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import Store, TaskStorage

if TYPE_CHECKING:
    from damselfly.download.public_files import PublicFiles


@dataclass(frozen=True)
class FileJob:
    """One file to fetch, as dfget (or the recursive lister) describes it."""

    url: SourceUrl
    output: Path
    options: RequestOptions = field(default_factory=RequestOptions)
    name: str = ""  # shown in progress; defaults to the output's name
    expected_digest: Digest | None = None  # --digest, or the digest a hub listing gave
    expected_length: int | None = None  # from a listing; checked against the origin
    piece_length: int | None = None  # --piece-length
    tag: str = ""
    application: str = ""
    filtered_query_params: tuple[str, ...] = ()
    overwrite: bool = False
    hard_link: bool = True  # the output may be the store's file (False: --no-hard-link)
    require_hard_link: bool = False  # --force-hard-link: fail rather than copy
    identity_text: str | None = None  # --content-for-calculating-task-id replaces the URL
    task_id: str | None = None  # given by a scheduler (seed jobs): used as is, not computed
    back_to_source: bool = True  # False (--disable-back-to-source): parents only, never the origin
    # False: no seed may be sent to the origin for it (the scheduler is told it needs
    # credentials): tasks only peers hold, such as an imported repo's manifest
    seedable: bool = True
    # True: credentials that the origin may not need for this file (a hub token): asked once
    # more without them, the file is a public task when it serves the same bytes to anyone
    # (``public_files.py``)
    try_public: bool = False

    @property
    def display_name(self) -> str:
        return self.name or self.output.name


@dataclass(frozen=True)
class FileResult:
    job: FileJob
    task_id: str
    content_length: int
    source_bytes: int  # read from the origin by this run
    reused_bytes: int  # already in the store (resume or cache hit)
    delivery: DeliveryMethod
    elapsed: float


@dataclass(frozen=True)
class FilledTask:
    """A task whose every piece is in the store, verified."""

    task_id: str
    content_length: int
    source_bytes: int  # read from the origin by this run
    reused_bytes: int  # already in the store


@dataclass(frozen=True)
class FillRequest:
    """One task to fill: everything a ``PieceFiller`` needs to know."""

    job: FileJob
    task: TaskStorage
    stat: ObjectStat
    content_digest: Digest | None  # the whole-file digest, when known
    on_piece: Callable[[PieceMeta], None]  # call once per piece stored
    # only these pieces (others are being fetched elsewhere); None: every missing piece
    pieces: frozenset[int] | None = None
    # where a reader streams from (the proxy): fetch from that piece on first; None: the
    # engine picks a random start, so peers that start together trade different pieces
    first_piece: int | None = None


class PieceFiller(Protocol):
    """Fills a task's missing pieces: from the origin (standalone, seeds) or from parents
    (``daemon``). Returns the bytes it read from the origin."""

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int: ...


class SourceFiller:
    """Every missing piece from the origin, by parallel range requests, each held to the
    version ``stat`` described. An origin that gives no validator (no ETag, no date) and no
    digest is read in one stream: separate requests could not be told apart from two
    versions."""

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        job = request.job
        backend = ctx.registry.for_url(job.url)
        version = request.stat.version
        fetcher = SourceFetcher(
            backend,
            job.url,
            job.options.expecting(version),
            request.task,
            policy=ctx.policy,
            on_piece=request.on_piece,
        )
        checkable = version.has_validator or request.content_digest is not None
        ranged = request.stat.supports_ranges and checkable
        await fetcher.run(supports_ranges=ranged, only=request.pieces)
        return fetcher.source_bytes


@dataclass(frozen=True)
class DownloadContext:
    """What every file download of one run shares."""

    store: Store
    registry: BackendRegistry
    observer: DownloadObserver
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    filler: PieceFiller = field(default_factory=SourceFiller)
    # the cluster's key for private task ids (download/credentials.py); None: ids as public
    private_task_key: bytes | None = None
    # decides whether a ``try_public`` job's file is public (``public_files.py``); None: it
    # stays private (standalone dfget: no task is shared, the extra question would be waste)
    public_files: PublicFiles | None = None
