"""Which blocklist rule, if any, forbids a download: a pure function over rules and a request.

The manager stores the rules and hands them out in the dynamic config; the scheduler, the
daemons and the seeds evaluate them here, before any byte moves, without importing the
manager. Rule kinds and how each matches:

======== ====================================== ===============================================
kind     pattern                                matches
======== ====================================== ===============================================
url      a shell glob (``fnmatch``: ``*``,      the request's URL, whole, case-sensitive; ``*``
         ``?``, ``[...]``), not a regex         also crosses ``/``
repo     ``hf://owner/repo`` or                 any URL of that repo, any revision and path
         ``modelscope://datasets/owner/repo``   (``hf://owner/repo@rev/file``); owner and repo
                                                compare case-insensitively, as the hubs do
image    ``registry/name`` or                   the request's image reference, or a registry
         ``registry/name:tag`` / ``@digest``    URL ``https://registry/v2/name/...``; without a
                                                tag or digest: every tag of that image
application  an exact application name          the request's application
tag      an exact tag                           the request's tag
======== ====================================== ===============================================

A rule whose ``until`` has passed matches nothing. The first matching rule (lowest id) wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from damselfly.core.errors import shorten

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

RULE_KINDS = ("url", "repo", "image", "application", "tag")
_REGISTRY_PATH_RE = re.compile(r"^https?://([^/]+)/v2/(.+?)/(?:manifests|blobs)/([^/?#]+)")
_HUB_TYPES = ("models", "datasets", "spaces")


@dataclass(frozen=True)
class BlockRule:
    """One rule as the members see it (the manager keeps author and history besides)."""

    id: int
    kind: str
    pattern: str
    reason: str
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True)
class BlockQuery:
    """What a download is about, as far as the blocklist cares."""

    url: str = ""
    application: str = ""
    tag: str = ""
    image: str = ""  # an OCI reference, when the download is an image's (registry mirror)


def find_blocking_rule(
    rules: Iterable[BlockRule], query: BlockQuery, now: datetime | None = None
) -> BlockRule | None:
    """The first active rule (by id) that matches ``query``, or ``None``."""
    now = now or datetime.now(UTC)
    for rule in sorted(rules, key=lambda r: r.id):
        if rule.active(now) and _MATCHERS[rule.kind](rule.pattern, query):
            return rule
    return None


def blocked_message(rule: BlockRule, what: str) -> str:
    """``hf://org/model is blocked by rule 12 (CVE-2026-1234, until 2026-12-31)``: one line
    whatever the URL and reason (both cut to ``QUOTE_LENGTH``, control characters as
    spaces)."""
    reason = shorten(" ".join(_CONTROL.sub(" ", rule.reason).split()))
    details = [reason] if reason else []
    if rule.until is not None:
        details.append(f"until {rule.until.date().isoformat()}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{shorten(_CONTROL.sub(' ', what))} is blocked by rule {rule.id}{suffix}"


def validate_pattern(kind: str, pattern: str) -> str | None:
    """Why ``pattern`` is no valid pattern of ``kind`` (``None`` when it is)."""
    if kind not in RULE_KINDS:
        return f"kind must be one of {', '.join(RULE_KINDS)}"
    if not pattern.strip() or pattern != pattern.strip():
        return "pattern must be non-empty and without surrounding whitespace"
    if kind == "repo" and hub_repo(pattern) is None:
        return "a repo pattern is hf://owner/repo or modelscope://owner/repo"
    if kind == "image" and image_parts(pattern) is None:
        return "an image pattern is registry/name[:tag|@digest]"
    return None


# Matchers ------------------------------------------------------------------------------------


def hub_repo(url: str) -> tuple[str, str, str] | None:
    """``(scheme, repo type, owner/repo lower-cased)`` of a hub URL, revision and path dropped."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("hf", "modelscope"):
        return None
    segments = rest.split("/")
    repo_type = segments.pop(0) if segments and segments[0] in _HUB_TYPES else "models"
    if len(segments) < 2 or not segments[0] or not segments[1]:
        return None
    repo = segments[1].partition("@")[0]
    if not repo:
        return None
    return scheme.lower(), repo_type, f"{segments[0]}/{repo}".lower()


def image_parts(reference: str) -> tuple[str, str] | None:
    """``(registry/name, tag-or-digest)`` of an OCI reference; tag ``""`` when absent."""
    name, at, digest = reference.partition("@")
    if at:
        return (name, digest) if name and digest else None
    head, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        name = head
    else:
        tag = ""
    if not name or "/" not in name.strip("/"):
        return None
    return name.strip("/"), tag


def _image_of(query: BlockQuery) -> tuple[str, str] | None:
    if query.image:
        return image_parts(query.image)
    found = _REGISTRY_PATH_RE.match(query.url)
    if found is None:
        return None
    return f"{found.group(1)}/{found.group(2)}", found.group(3)


def _match_url(pattern: str, query: BlockQuery) -> bool:
    return bool(query.url) and fnmatchcase(query.url, pattern)


def _match_repo(pattern: str, query: BlockQuery) -> bool:
    wanted = hub_repo(pattern)
    return wanted is not None and hub_repo(query.url) == wanted


def _match_image(pattern: str, query: BlockQuery) -> bool:
    wanted, seen = image_parts(pattern), _image_of(query)
    if wanted is None or seen is None or wanted[0] != seen[0]:
        return False
    return not wanted[1] or wanted[1] == seen[1]


def _match_application(pattern: str, query: BlockQuery) -> bool:
    return query.application == pattern


def _match_tag(pattern: str, query: BlockQuery) -> bool:
    return query.tag == pattern


_MATCHERS = {
    "url": _match_url,
    "repo": _match_repo,
    "image": _match_image,
    "application": _match_application,
    "tag": _match_tag,
}
