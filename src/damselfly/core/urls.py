"""URL grammar for every source damselfly downloads from; pure parsing, no I/O.

Grammar (what ``parse_url`` accepts)::

    http(s)://[user[:pass]@]host[:port]/path[?query]
    file:///absolute/path                   (file://localhost/... also accepted)
    s3|gs|abs|oss|obs|cos://bucket/key      (key may be empty or end in "/" for listing)
    hdfs://namenode[:port]/path
    hf://[models/|datasets/|spaces/]owner/repo[/path]
    modelscope://[models/|datasets/]owner/repo[/path]

Each scheme parses into a frozen value (``HttpUrl``, ``FileUrl``, ``ObjectUrl``, ``HdfsUrl``,
``HubUrl``). A malformed URL raises ``InvalidUrlError`` naming the part that is wrong.
Userinfo in an http(s) URL is kept (it is the user's credential) but never appears in
``redacted()`` or in task identity.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlsplit

from damselfly.core.errors import InvalidUrlError, quoted
from damselfly.core.schemes import HUB_SCHEMES as HUB_SCHEMES
from damselfly.core.schemes import OBJECT_STORE_SCHEMES as OBJECT_STORE_SCHEMES
from damselfly.core.schemes import SUPPORTED_SCHEMES as SUPPORTED_SCHEMES

HUB_REPO_TYPES = {
    "hf": ("models", "datasets", "spaces"),
    "modelscope": ("models", "datasets"),
}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-_.]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")
MAX_HOST_LENGTH = 253  # RFC 1035: a name of at most 253 characters...
MAX_LABEL_LENGTH = 63  # ...in labels of at most 63
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


@dataclass(frozen=True)
class HttpUrl:
    scheme: str  # "http" | "https"
    host: str  # lower-case; IPv6 without brackets
    port: int | None
    path: str  # percent-encoded as given, at least "/"
    query: str  # raw, without "?"
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        return self.render(with_userinfo=True)

    def redacted(self) -> str:
        return self.render(with_userinfo=False)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def render(self, *, with_userinfo: bool) -> str:
        auth = ""
        if with_userinfo and self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{auth}{self.netloc}{self.path}{query}"


@dataclass(frozen=True)
class FileUrl:
    path: str  # absolute, decoded

    @property
    def scheme(self) -> str:
        return "file"

    def __str__(self) -> str:
        return "file://" + quote(self.path)

    def redacted(self) -> str:
        return str(self)


@dataclass(frozen=True)
class ObjectUrl:
    scheme: str  # one of OBJECT_STORE_SCHEMES
    bucket: str
    key: str  # "" for the bucket root; ends with "/" for a prefix

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def redacted(self) -> str:
        return str(self)

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")


@dataclass(frozen=True)
class HdfsUrl:
    host: str
    port: int | None
    path: str

    @property
    def scheme(self) -> str:
        return "hdfs"

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"hdfs://{self.host}{port}{self.path}"

    def redacted(self) -> str:
        return str(self)


@dataclass(frozen=True)
class HubUrl:
    scheme: str  # "hf" | "modelscope"
    repo_type: str  # "models" | "datasets" | "spaces"
    owner: str
    repo: str
    path: str  # "" for the repo root; never starts or ends with "/"

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}"

    def __str__(self) -> str:
        prefix = "" if self.repo_type == "models" else f"{self.repo_type}/"
        tail = f"/{self.path}" if self.path else ""
        return f"{self.scheme}://{prefix}{self.owner}/{self.repo}{tail}"

    def redacted(self) -> str:
        return str(self)

    def with_path(self, path: str) -> HubUrl:
        return HubUrl(self.scheme, self.repo_type, self.owner, self.repo, path)


SourceUrl = HttpUrl | FileUrl | ObjectUrl | HdfsUrl | HubUrl


UrlParser = Callable[[str], SourceUrl]


def parse_url(raw: str, extra_schemes: Mapping[str, UrlParser] | None = None) -> SourceUrl:
    """Parse ``raw`` into a typed URL, or raise ``InvalidUrlError``. ``extra_schemes``: parsers
    of schemes registered beyond the built-in ones (see ``backends/options.py``)."""
    if not raw or raw.strip() != raw:
        raise InvalidUrlError(raw, "url", "empty or surrounded by whitespace")
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        raise InvalidUrlError(raw, "url", "contains control characters")
    scheme, sep, rest = raw.partition("://")
    if not sep or not scheme:
        raise InvalidUrlError(raw, "scheme", "missing (expected e.g. https://, s3://, hf://)")
    scheme = scheme.lower()
    if extra_schemes and scheme in extra_schemes and scheme not in SUPPORTED_SCHEMES:
        return extra_schemes[scheme](raw)
    if scheme not in SUPPORTED_SCHEMES:
        supported = ", ".join(sorted(SUPPORTED_SCHEMES))
        raise InvalidUrlError(raw, "scheme", f"{quoted(scheme)} is not supported ({supported})")
    if scheme in ("http", "https"):
        return _parse_http(raw, scheme)
    if scheme == "file":
        return _parse_file(raw, rest)
    if scheme in OBJECT_STORE_SCHEMES:
        return _parse_object(raw, scheme, rest)
    if scheme == "hdfs":
        return _parse_hdfs(raw)
    return _parse_hub(raw, scheme, rest)


def _split(raw: str) -> tuple[SplitResult, int | None]:
    """``urlsplit`` plus the port, with its ``ValueError``s named by the part at fault."""
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidUrlError(raw, "host", str(exc)) from exc
    try:
        return parts, parts.port
    except ValueError as exc:
        raise InvalidUrlError(raw, "port", str(exc)) from exc


def _parse_http(raw: str, scheme: str) -> HttpUrl:
    parts, port = _split(raw)
    host = parts.hostname or ""
    if not host:
        raise InvalidUrlError(raw, "host", "missing")
    _check_host(raw, host)
    if port == 0:
        raise InvalidUrlError(raw, "port", "0 is not a usable port")
    default_port = 443 if scheme == "https" else 80
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return HttpUrl(
        scheme=scheme,
        host=host.lower(),
        port=None if port in (None, default_port) else port,
        path=parts.path or "/",
        query=parts.query,
        username=username,
        password=password,
    )


def _check_host(raw: str, host: str) -> None:
    """A host name the resolver can take: the regular expression, then DNS's lengths (an
    IPv6 address has no labels)."""
    if not _HOST_RE.match(host) and not _HOST_RE.match(f"[{host}]"):
        raise InvalidUrlError(raw, "host", f"{quoted(host)} is not a valid host name")
    if ":" in host:
        return
    if len(host) > MAX_HOST_LENGTH:
        reason = f"{len(host)} characters long (at most {MAX_HOST_LENGTH})"
        raise InvalidUrlError(raw, "host", reason)
    labels = host.rstrip(".").split(".")
    if any(not label for label in labels):
        raise InvalidUrlError(raw, "host", f"{quoted(host)} has an empty label")
    longest = max(len(label) for label in labels)
    if longest > MAX_LABEL_LENGTH:
        reason = f"a label of {longest} characters (at most {MAX_LABEL_LENGTH})"
        raise InvalidUrlError(raw, "host", reason)


def _parse_file(raw: str, rest: str) -> FileUrl:
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise InvalidUrlError(raw, "path", "file URLs need an absolute path (file:///path)")
    path = unquote(rest.split("?", 1)[0].split("#", 1)[0])
    if "\x00" in path:
        raise InvalidUrlError(raw, "path", "contains a NUL byte")
    return FileUrl(path=posixpath.normpath(path))


def _parse_object(raw: str, scheme: str, rest: str) -> ObjectUrl:
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidUrlError(raw, "bucket", "missing")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidUrlError(raw, "bucket", f"{quoted(bucket)} is not a valid bucket name")
    if "?" in key or "#" in key:
        key = key.split("?", 1)[0].split("#", 1)[0]
    key = unquote(key)
    _check_relative_path(raw, "key", key, allow_trailing_slash=True)
    return ObjectUrl(scheme=scheme, bucket=bucket, key=key)


def _parse_hdfs(raw: str) -> HdfsUrl:
    parts, port = _split(raw)
    if port == 0:
        raise InvalidUrlError(raw, "port", "0 is not a usable port")
    if not parts.hostname:
        raise InvalidUrlError(raw, "host", "missing (hdfs://namenode:port/path)")
    _check_host(raw, parts.hostname)
    if not parts.path.startswith("/"):
        raise InvalidUrlError(raw, "path", "missing")
    return HdfsUrl(host=parts.hostname, port=port, path=unquote(parts.path))


def _parse_hub(raw: str, scheme: str, rest: str) -> HubUrl:
    if "?" in rest or "#" in rest:
        raise InvalidUrlError(raw, "path", "query strings and fragments are not allowed")
    segments = rest.split("/")
    repo_type = "models"
    if segments and segments[0] in HUB_REPO_TYPES[scheme]:
        repo_type = segments.pop(0)
    elif segments and segments[0] in ("models", "datasets", "spaces"):
        raise InvalidUrlError(raw, "repo type", f"{scheme} has no {segments[0]}")
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise InvalidUrlError(raw, "repository", "expected <owner>/<repo>")
    owner, repo = segments[0], segments[1]
    for part, value in (("owner", owner), ("repository", repo)):
        if not _REPO_PART_RE.match(value) or ".." in value or len(value) > 96:
            raise InvalidUrlError(raw, part, f"{quoted(value)} is not a valid name")
    path = unquote("/".join(segments[2:]).rstrip("/"))
    _check_relative_path(raw, "path", path, allow_trailing_slash=False)
    return HubUrl(scheme=scheme, repo_type=repo_type, owner=owner, repo=repo, path=path)


def _check_relative_path(raw: str, part: str, path: str, *, allow_trailing_slash: bool) -> None:
    if not path:
        return
    if "\x00" in path:
        raise InvalidUrlError(raw, part, "contains a NUL byte")
    if path.startswith("/"):
        raise InvalidUrlError(raw, part, "must not start with '/'")
    body = path[:-1] if allow_trailing_slash and path.endswith("/") else path
    if any(seg in ("", ".", "..") for seg in body.split("/")):
        raise InvalidUrlError(raw, part, "empty, '.' or '..' segments are not allowed")
