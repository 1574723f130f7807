"""The one interface between the proxy and the rest of the daemon: ``MeshFetcher``.

The proxy decides *which* requests carry file content (``routing.py``); a ``MeshFetcher``
decides *where the bytes come from*. ``DirectFetcher`` (``upstream.py``) reads the origin;
the daemon's engine-backed fetcher reads the P2P mesh. The contract every implementation
keeps:

- ``fetch(request)`` returns once the response head is known; ``MeshResponse.body`` then
  yields the bytes as they arrive (piece by piece for the engine: never after the whole file).
  The proxy closes the response with ``aclose()`` when the client goes away, so the body
  must stop reading promptly.
- ``request.url`` is the URL the client asked for (``https://huggingface.co/x/y/resolve/...``
  or a signed CDN URL); a fetcher follows redirects itself (at most 10, dropping
  ``authorization`` when the origin changes) and answers with the final content.
- ``request.byte_range`` is the client's ``Range`` as ``(first, last)`` (``last`` None: to the
  end; ``first`` None: a suffix of ``last`` bytes) or None. With a range, the answer is
  ``206`` with ``Content-Range: bytes first-last/total`` and exactly those bytes, or ``416``
  with ``Content-Range: bytes */total``; without one, ``200`` with ``Content-Length`` when
  known. Multi-range requests never reach a fetcher (the proxy sends them to the origin).
- The head carries the content's own headers as the origin gave them (``ETag``,
  ``Content-Type``, ``Last-Modified``, ``X-Repo-Commit``, ``X-Linked-*``...); hop-by-hop
  headers are removed by the proxy either way. An origin error (401, 403, 404...) is returned
  as a response with its status, headers and body, not raised: the SDKs read ``X-Error-Code``.
- ``request.linked``, when set, is what the hub said about this (CDN) URL when it redirected
  the client there: the file's sha256, size and commit, and the ``resolve`` URL. A fetcher
  names the task by that content rather than by the signed, expiring URL.
- ``request.authorization`` is the client's credential for the *origin* only: a fetcher may
  send it to the origin (to read it, or to check access before serving cached bytes), and
  must never store it, log it, put it in a task id, or send it to peers or the scheduler.
  A fetcher that serves bytes from the store or from peers checks access first, with the
  client's own credentials against the origin (e.g. a ``HEAD`` of the URL), and answers the
  origin's 401/403/404 instead of content when access is denied.
  It is a ``SecretStr``: ``str()``/``repr()`` print ``**********``; only
  ``get_secret_value()`` reveals it, at the one place that builds the origin request.
  ``request.headers`` never contains it (nor ``Proxy-Authorization``, cookies, or hop-by-hop
  headers): everything in ``headers`` may be persisted.
- Failing to reach anything raises ``MeshUnavailableError`` (the proxy answers 502); a
  fetcher that cannot serve a request it was given may fall back to ``DirectFetcher``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

from damselfly.core.errors import BackendError
from damselfly.daemon.proxy.links import LinkedFile

ByteRange = tuple[int | None, int | None]
"""``(first, last)`` inclusive, as in ``Range: bytes=first-last``."""


class MeshUnavailableError(BackendError):
    """Neither the mesh nor the origin could be reached for a request."""


@dataclass(frozen=True)
class MeshRequest:
    """A content GET, as a fetcher sees it (see the module docstring for what may be kept)."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    byte_range: ByteRange | None = None
    authorization: SecretStr | None = field(default=None, repr=False)
    rule: str = ""  # the matched rule's label, for metrics and logs
    linked: LinkedFile | None = None  # what the hub said about this CDN URL (``links.py``)


@dataclass
class MeshResponse:
    """Status and headers of the final response; ``body`` streams its bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    on_close: Callable[[], Coroutine[Any, Any, None]] | None = None
    source: str = "mesh"  # "mesh" | "origin": where the bytes come from, for metrics

    async def aclose(self) -> None:
        await close_body(self.body, self.on_close)


async def close_body(
    body: AsyncIterator[bytes], on_close: Callable[[], Coroutine[Any, Any, None]] | None
) -> None:
    """Close a streamed body (if it can be closed), then run its owner's ``on_close``."""
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
    if on_close is not None:
        await on_close()


class MeshFetcher(Protocol):
    """Fetch one content GET from wherever it is cheapest (see the module docstring)."""

    async def fetch(self, request: MeshRequest) -> MeshResponse: ...


def parse_range(header: str | None) -> ByteRange | str | None:
    """``Range`` header -> ``(first, last)``; None when absent; ``"multi"`` when it is not a
    single ``bytes=`` range the fetchers understand (the proxy then asks the origin)."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return "multi"
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return "multi"
    if first == "" and last == "":
        return "multi"
    start = int(first) if first else None
    end = int(last) if last else None
    if start is not None and end is not None and end < start:
        return "multi"
    return (start, end)
