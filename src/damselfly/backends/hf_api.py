"""The Hugging Face Hub's HTTP API as pure functions: URLs, tokens, header values (no I/O
except reading the token file).

Routes (``{type}`` is ``models``, ``datasets`` or ``spaces``; the file route has no type prefix
for models)::

    GET  {endpoint}/api/{type}/{owner}/{repo}/revision/{quote(rev, safe="")}   -> {"sha": ...}
    GET  {endpoint}/api/{type}/{owner}/{repo}/tree/{commit}[/{quote(path, safe="")}]
             ?recursive=true&expand=false                 (paginated: Link rel="next")
    HEAD|GET {endpoint}/[datasets/|spaces/]{owner}/{repo}/resolve/{commit}/{quote(path)}

The revision and tree path are quoted the way huggingface_hub quotes them, so ``refs/pr/1``
travels as ``refs%2Fpr%2F1``. An endpoint with a path prefix (a mirror under
``https://host/hf``) keeps its prefix in every route.

Token order (``resolve_hf_token``), as huggingface_hub: the explicit value (``--hf-token``),
then ``HF_TOKEN`` (``HUGGING_FACE_HUB_TOKEN`` is its old name), then the file at
``HF_TOKEN_PATH``, else ``$HF_HOME/token`` (``HF_HOME`` defaults to
``$XDG_CACHE_HOME/huggingface``, i.e. ``~/.cache/huggingface``), read at call time. A token
file that group or others may read is refused with one line, as ssh refuses such a key
(huggingface_hub's ``login`` writes it 0600); a missing one means no token.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from damselfly.config.secret_files import read_secret_text
from damselfly.core.errors import InvalidUrlError
from damselfly.core.urls import HubUrl

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"

_COMMIT_RE = re.compile(r"^[0-9a-fA-F]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def normalize_endpoint(raw: str | None) -> str:
    """``--hf-base-url`` / ``HF_ENDPOINT`` as given, checked, without a trailing slash."""
    text = (raw or DEFAULT_ENDPOINT).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrlError(text, "hf endpoint", "expected http(s)://host[:port][/prefix]")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrlError(parts.hostname, "hf endpoint", "credentials belong in --hf-token")
    if parts.query or parts.fragment:
        raise InvalidUrlError(text, "hf endpoint", "query strings and fragments are not allowed")
    return text


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port: what 'same host' means."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def host_label(url: str) -> str:
    """``host[:port]`` of a URL, for messages about hosts whose URLs are secrets (CDN)."""
    return urlsplit(url).netloc.rpartition("@")[2]


@dataclass(frozen=True)
class HubRoutes:
    """The URLs of one repository on one endpoint."""

    endpoint: str
    repo_type: str  # models | datasets | spaces
    repo_id: str

    @classmethod
    def for_url(cls, endpoint: str, url: HubUrl) -> HubRoutes:
        return cls(endpoint, url.repo_type, url.repo_id)

    def revision_info(self, revision: str) -> str:
        rev = quote(revision, safe="")
        return f"{self.endpoint}/api/{self.repo_type}/{self.repo_id}/revision/{rev}"

    def tree(self, commit: str, path: str) -> str:
        sub = "/" + quote(path, safe="") if path else ""
        base = f"{self.endpoint}/api/{self.repo_type}/{self.repo_id}/tree/{quote(commit, safe='')}"
        return f"{base}{sub}?recursive=true&expand=false"

    def resolve(self, commit: str, path: str) -> str:
        prefix = "" if self.repo_type == "models" else f"{self.repo_type}/"
        rev = quote(commit, safe="")
        return f"{self.endpoint}/{prefix}{self.repo_id}/resolve/{rev}/{quote(path)}"


def repo_label(url: HubUrl) -> str:
    """How messages name a repo: ``owner/repo``, with ``datasets/`` / ``spaces/`` if not a
    model (the way the user wrote it in the hf:// URL)."""
    return url.repo_id if url.repo_type == "models" else f"{url.repo_type}/{url.repo_id}"


def is_commit(revision: str) -> bool:
    return _COMMIT_RE.match(revision) is not None


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256_RE.match(value) is not None


def is_git_oid(value: object) -> bool:
    return isinstance(value, str) and _SHA1_RE.match(value) is not None


def normalize_etag(value: str | None) -> str | None:
    """``W/"abc"`` / ``"abc"`` / ``abc`` -> ``abc`` (lower-case); empty -> ``None``."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip().strip('"').strip().lower()
    return text or None


def parse_size(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() else None


def signed_url_expiry(url: str) -> float | None:
    """When a signed CDN URL stops working (UNIX time), if its query says.

    CloudFront style ``Expires=<unix>``; S3 SigV4 style ``X-Amz-Date=YYYYMMDDTHHMMSSZ`` plus
    ``X-Amz-Expires=<seconds>``. Anything else -> ``None`` (the caller picks a default).
    """
    query = parse_qs(urlsplit(url).query)
    expires = query.get("Expires", [""])[0]
    if expires.isdigit():
        return float(expires)
    amz_date, amz_expires = query.get("X-Amz-Date", [""])[0], query.get("X-Amz-Expires", [""])[0]
    if amz_expires.isdigit():
        try:
            signed = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return signed.timestamp() + int(amz_expires)
    return None


def hf_option_values(
    *,
    token: str | None,
    revision: str | None,
    endpoint: str | None,
    env: Mapping[str, str],
    cache: bool = False,
) -> dict[str, str | bool | None]:
    """hf:// options as ``HfOptions`` writes them in a request's JSON (the token in clear: it
    goes to the local daemon only), resolved without the model: explicit values, else the
    environment, else the defaults (module doc)."""
    base = endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return {
        "token": resolve_hf_token(token, env),
        "revision": revision or DEFAULT_REVISION,
        "endpoint": base.rstrip("/"),
        "cache": cache,
    }


def resolve_hf_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """The token to use: explicit, else ``HF_TOKEN``, else the token file (see module doc)."""
    for candidate in (explicit, env.get("HF_TOKEN"), env.get("HUGGING_FACE_HUB_TOKEN")):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        text = read_secret_text(token_path(env))  # refused if group or others may read it
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def token_path(env: Mapping[str, str]) -> Path:
    if env.get("HF_TOKEN_PATH"):
        return Path(env["HF_TOKEN_PATH"]).expanduser()
    return hf_home(env) / "token"


def hf_home(env: Mapping[str, str]) -> Path:
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(_home(env) / ".cache")
    return Path(cache).expanduser() / "huggingface"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def token_fingerprint(token: str | None) -> str:
    """A non-secret stand-in for a token in cache keys (never the token itself)."""
    if not token:
        return ""
    return hashlib.sha256(b"damselfly-hf-token\0" + token.encode()).hexdigest()[:32]
