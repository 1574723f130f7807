"""What the hub said about a file before the client fetched it from the CDN.

huggingface_hub sends ``HEAD /{repo}/resolve/{rev}/{path}`` to the hub, reads the 302's
``X-Linked-Etag`` (the file's sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, then ``GET``s
the signed CDN URL from ``Location``. That GET alone names nothing stable (the signature
changes per request), so the proxy remembers each redirect it passed through and hands the
matching ``LinkedFile`` to the ``MeshFetcher``: the engine can then name the task by content
(the hub-vouched sha256), the same task ``dfget hf://`` creates for that file at that commit.
Entries expire with the signed URLs (``ttl``) and the memo is bounded (``capacity``).

Each entry also keeps whether the client asked the hub with credentials (``authorized``): a
redirect the hub gave to an anonymous client is public content (anyone can get the same
answer), one it gave to a token holder may be private (``content_jobs.py`` decides by that).
A token holder's redirect is public content too when the hub gives an anonymous client the
same one (``same_link``: the same sha256, size and commit; the ``Forwarder`` asks with a
``HEAD`` on ``resolve`` without credentials before the content GET). ``PublicLinks`` remembers
that answer, public or not, for ``ttl`` seconds per file and commit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from damselfly.daemon.proxy.headers import Headers, get

REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class LinkedFile:
    resolve_url: str  # the hub URL the client asked about (no query string)
    sha256: str | None  # X-Linked-Etag, unquoted
    size: int | None  # X-Linked-Size
    commit: str | None  # X-Repo-Commit
    authorized: bool = True  # the client's request to the hub carried credentials


class LinkMemo:
    def __init__(
        self,
        capacity: int = 4096,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.ttl, self.clock = capacity, ttl, clock
        self._entries: OrderedDict[str, tuple[LinkedFile, float]] = OrderedDict()

    def observe(self, url: str, status: int, headers: Headers, *, authorized: bool) -> None:
        """Remember a hub redirect that carries ``X-Linked-*`` headers; ``authorized``: the
        request it answered carried credentials."""
        linked = linked_file(url, status, headers, authorized=authorized)
        location = get(headers, "location")
        if linked is None or location is None:
            return
        self._entries[urljoin(url, location)] = (linked, self.clock() + self.ttl)
        self._entries.move_to_end(urljoin(url, location))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def lookup(self, url: str) -> LinkedFile | None:
        entry = self._entries.get(url)
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]


def linked_file(url: str, status: int, headers: Headers, *, authorized: bool) -> LinkedFile | None:
    """What a hub redirect with ``X-Linked-*`` headers says about the file; else None."""
    location = get(headers, "location")
    linked_etag = get(headers, "x-linked-etag")
    if status not in REDIRECTS or location is None or linked_etag is None:
        return None
    size = get(headers, "x-linked-size")
    return LinkedFile(
        resolve_url=url.split("?", 1)[0],
        sha256=linked_etag.strip().removeprefix("W/").strip('"') or None,
        size=int(size) if size is not None and size.isdigit() else None,
        commit=get(headers, "x-repo-commit"),
        authorized=authorized,
    )


def same_link(linked: LinkedFile, status: int, headers: Headers) -> bool:
    """Whether a hub's answer to an anonymous ``HEAD`` on ``linked.resolve_url`` is the
    redirect it gave the token holder: the same sha256, size and commit (all known)."""
    other = linked_file(linked.resolve_url, status, headers, authorized=False)
    if other is None or None in (linked.sha256, linked.size, linked.commit):
        return False
    mine = (linked.sha256, linked.size, linked.commit)
    return (other.sha256, other.size, other.commit) == mine


class PublicLinks:
    """Whether the hub gives anyone a token holder's redirect, remembered per file."""

    def __init__(
        self,
        capacity: int = 4096,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.ttl, self.clock = capacity, ttl, clock
        self._answers: OrderedDict[tuple[object, ...], tuple[bool, float]] = OrderedDict()

    def lookup(self, linked: LinkedFile) -> bool | None:
        """True: public; False: not; None: not asked lately."""
        entry = self._answers.get(_identity(linked))
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]

    def remember(self, linked: LinkedFile, public: bool) -> None:
        key = _identity(linked)
        self._answers[key] = (public, self.clock() + self.ttl)
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


def _identity(linked: LinkedFile) -> tuple[object, ...]:
    return (linked.resolve_url, linked.sha256, linked.size, linked.commit)
