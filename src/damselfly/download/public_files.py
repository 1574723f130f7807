"""Is a file its caller asks for with a token public anyway? Then its task is public.

A request that carries credentials is private by its looks (``credentials.py``): never seeded,
its pieces shared only under a grant, in plain text not at all. A hub token, though, is mostly
there for other files: a cluster sets ``HF_TOKEN`` on every node for its gated models, and
then every *public* model would be read from the hub by every node, never shared. The rule
(``docs/security.md``, as the registry mirror's in ``daemon/proxy/registry.py``): **public is
what the origin serves to anyone**.

A job marked ``try_public`` (a hub file asked with a token, ``request_jobs.py``; a proxied hub
file, ``daemon/proxy/content_jobs.py``) is, once the origin accepted the caller's own
credentials (the ``stat`` that is the access check: a wrong token still fails), asked once
more without them: the same ``stat`` with every secret header and secret param removed. When
that succeeds and describes the same bytes (length, version, whole-file digest, and the
backend's facts, such as the commit a hub revision resolved to), the download goes on as that
anonymous job: its task is the public one (``dfget`` without a token names it the same),
seedable and shared with every peer, and the token is not used for it again. Anything else
(401, 403, 404, a gated or private repo, another commit, an unreachable hub, an origin that
vouches for neither a digest nor a strong ETag) leaves the job private, as it came.

The answer is per file, never inferred for a whole repo from one of its files (nothing
promises that a hub applies one rule to every file of a repo). It is remembered for ``ttl``
seconds per (URL, non-secret params, version the caller saw), public or not, so repeated
requests of one file (a client's ranged GETs, a retry) cost one anonymous ``stat``; a
snapshot of N files costs N (for ``hf://``: one ``HEAD`` on ``resolve`` each, the revision
resolved once per backend instance). Nothing secret is in a key or in a log line.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from damselfly.backends.base import SECRET_HEADERS, ObjectStat, is_secret_name
from damselfly.backends.registry import BackendRegistry
from damselfly.core.errors import DamselflyError
from damselfly.core.ids import canonical_url
from damselfly.download.credentials import needs_credentials
from damselfly.download.jobs import FileJob

log = logging.getLogger(__name__)

PUBLIC_ANSWER_TTL = 60.0  # seconds an answer (public or not) is reused
PUBLIC_ANSWER_CAPACITY = 4096

_Key = tuple[str, tuple[tuple[str, str], ...], str, str, int | None]


class PublicFiles:
    """Decides, and remembers briefly, whether a credentialed job's file is public."""

    def __init__(
        self,
        ttl: float = PUBLIC_ANSWER_TTL,
        capacity: int = PUBLIC_ANSWER_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.capacity, self.clock = ttl, capacity, clock
        self._answers: OrderedDict[_Key, tuple[ObjectStat | None, float]] = OrderedDict()
        self.asked = 0  # anonymous stats sent, for tests and statistics()

    async def choose(
        self, job: FileJob, stat: ObjectStat, registry: BackendRegistry
    ) -> tuple[FileJob, ObjectStat]:
        """``(job, stat)`` as they came, or the job without its credentials and the origin's
        answer to it, when the origin serves the same file to anyone."""
        anonymous = anonymous_job(job)
        if anonymous is None or not vouches_for_bytes(stat):
            return job, stat
        key = _key(anonymous, stat)
        found = self._lookup(key)
        if found is None:
            public = await self._ask(anonymous, stat, registry)
            self._remember(key, public)
        else:
            public = found[0]
        if public is None:
            log.debug("%s: not served to anyone: a private task", job.url.redacted())
            return job, stat
        log.debug("%s: served to anyone: a public task", job.url.redacted())
        return anonymous, public

    async def _ask(
        self, anonymous: FileJob, stat: ObjectStat, registry: BackendRegistry
    ) -> ObjectStat | None:
        self.asked += 1
        try:
            public = await registry.for_url(anonymous.url).stat(anonymous.url, anonymous.options)
        except DamselflyError as exc:
            log.debug("%s: without credentials: %s", anonymous.url.redacted(), type(exc).__name__)
            return None
        return public if same_file(stat, public) else None

    def _lookup(self, key: _Key) -> tuple[ObjectStat | None] | None:
        entry = self._answers.get(key)
        if entry is None or entry[1] < self.clock():
            return None
        return (entry[0],)

    def _remember(self, key: _Key, public: ObjectStat | None) -> None:
        self._answers[key] = (public, self.clock() + self.ttl)
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


def anonymous_job(job: FileJob) -> FileJob | None:
    """The job without its secret headers and params; None when it is not to be tried (not
    marked, named by a scheduler, credentials in its URL, or nothing to remove)."""
    if not job.try_public or job.task_id is not None or not needs_credentials(job):
        return None
    options = job.options
    headers = tuple((n, v) for n, v in options.headers if n.lower() not in SECRET_HEADERS)
    params = tuple((n, v) for n, v in options.params if not is_secret_name(n))
    plain = dataclasses.replace(options, headers=headers, params=params)
    anonymous = dataclasses.replace(job, options=plain, try_public=False)
    return None if needs_credentials(anonymous) else anonymous  # e.g. a signed URL


def vouches_for_bytes(stat: ObjectStat) -> bool:
    """A length and a digest or strong ETag: two answers that agree name the same bytes."""
    has_name = stat.content_digest is not None or stat.version.strong_etag is not None
    return stat.content_length is not None and has_name


def same_file(private: ObjectStat, public: ObjectStat) -> bool:
    """Whether the anonymous answer describes the bytes the credentialed one did."""
    return (
        vouches_for_bytes(public)
        and public.content_length == private.content_length
        and public.content_digest == private.content_digest
        and public.etag == private.etag
        and public.last_modified == private.last_modified
        and dict(public.extras) == dict(private.extras)
    )


def _key(anonymous: FileJob, stat: ObjectStat) -> _Key:
    url = canonical_url(anonymous.url, anonymous.filtered_query_params)
    digest = str(stat.content_digest) if stat.content_digest else ""
    version = stat.version.identity()
    return (url, anonymous.options.params, version, digest, stat.content_length)
