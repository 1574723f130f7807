"""Anonymous pull tokens of OCI registries (the distribution "token" auth protocol).

A registry with token auth (docker.io, ghcr.io, a ``docker-registry`` with ``auth: token``)
answers a request without a token with ``401`` and ``WWW-Authenticate: Bearer
realm="https://auth.example/token",service="registry.example",scope="repository:org/img:pull"``.
A client then asks the realm for a token (``GET realm?service=...&scope=...``), with its own
credentials or, for a public repository, with none: an *anonymous* token, which anybody gets.

This module holds what both the http backend (a seed or peer reading a public blob) and the
proxy's registry mirror (is this blob anonymously readable?) need: parsing the challenge,
checking the realm URL, reading the realm's answer, and a cache of anonymous tokens per realm,
service and scope until they expire. It does no I/O itself: the caller passes ``fetch``, a
``GET`` of a URL without any credential that follows no redirect. An anonymous token holds no
secret of anybody's, but it is still treated as a credential: never logged, never stored.

Rules for the realm (``realm_problem``): ``https``, or ``http`` only when the registry itself
is ``http``; a host; no userinfo; an internal address (loopback, private, link-local such as
a cloud metadata service, by its literal name) only for a registry that is internal too.
Redirects from the realm are not followed (so never to another scheme). The realm is chosen
by the registry the client named; the request to it carries nothing but ``service`` and
``scope``, and its answer is only read as a token.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]  # url -> (status, body)
Clock = Callable[[], float]

DEFAULT_LIFETIME = 60.0  # seconds, when the realm gives no expires_in (the protocol's default)
EXPIRY_MARGIN = 0.1  # share of a token's lifetime it is not used for (clock skew, slow pulls)
MAX_TOKEN_LENGTH = 16 * 1024
MAX_ANSWER_LENGTH = 64 * 1024  # bytes of a realm's answer read at most
MAX_ENTRIES = 1024
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: safe in a header


@dataclass(frozen=True)
class BearerChallenge:
    realm: str
    service: str | None = None
    scope: str | None = None

    def token_url(self) -> str:
        query = [(k, v) for k, v in (("service", self.service), ("scope", self.scope)) if v]
        separator = "&" if "?" in self.realm else "?"
        return self.realm + (separator + urlencode(query) if query else "")


def parse_challenge(value: str | None) -> BearerChallenge | None:
    """The ``Bearer`` challenge of a ``WWW-Authenticate`` value, or None (Basic, junk)."""
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}
    realm = params.get("realm")
    if not realm:
        return None
    return BearerChallenge(realm, params.get("service") or None, params.get("scope") or None)


def realm_problem(realm: str, registry_url: str) -> str | None:
    """Why the node must not ask ``realm`` for a token of ``registry_url``; None when it may."""
    try:
        parts = urlsplit(realm)
        registry_scheme = urlsplit(registry_url).scheme
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "the token realm is not a valid URL"
    allowed = ("https", "http") if registry_scheme == "http" else ("https",)
    if parts.scheme not in allowed:
        return f"the token realm's scheme {parts.scheme or '(none)'} is not allowed"
    if not parts.hostname or "@" in parts.netloc:
        return "the token realm names no host, or carries credentials"
    if _internal(parts.hostname) and not _internal(urlsplit(registry_url).hostname or ""):
        return "the token realm is an internal address and the registry is not"
    return None


def _internal(host: str) -> bool:
    """Loopback, private, link-local (cloud metadata) or unspecified: by its literal name."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or (address.is_unspecified or address.is_reserved)
    )


async def read_answer(read: Callable[[int], Awaitable[bytes]]) -> bytes:
    """A realm's whole answer through ``read(n)`` (e.g. aiohttp's ``content.read``); an
    answer over ``MAX_ANSWER_LENGTH`` reads as empty (unusable)."""
    body = b""
    while chunk := await read(MAX_ANSWER_LENGTH + 1 - len(body)):
        body += chunk
        if len(body) > MAX_ANSWER_LENGTH:
            return b""
    return body


def read_token_answer(body: bytes) -> tuple[str, float] | None:
    """(token, lifetime in seconds) from the realm's JSON answer, or None if unusable."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict):
        return None
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    if not _TOKEN_CHARS.match(token):
        return None
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME
    return token, float(lifetime)


class AnonymousTokens:
    """Anonymous tokens by (realm, service, scope), each kept until shortly before it expires."""

    def __init__(self, *, clock: Clock = time.monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._tokens: dict[BearerChallenge, tuple[str, float]] = {}
        self.fetches = 0  # requests sent to realms, for tests

    def __len__(self) -> int:
        return len(self._tokens)

    async def token(
        self, challenge: BearerChallenge, registry_url: str, fetch: Fetch
    ) -> str | None:
        """A valid anonymous token for ``challenge``, from the cache or the realm; None when
        the realm is not allowed or gives none (the registry then wants real credentials)."""
        if realm_problem(challenge.realm, registry_url) is not None:
            return None
        cached = self._tokens.get(challenge)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        self.fetches += 1
        status, body = await fetch(challenge.token_url())
        answer = read_token_answer(body) if status == 200 else None
        if answer is None:
            return None
        token, lifetime = answer
        self._remember(challenge, token, now + lifetime * (1 - EXPIRY_MARGIN))
        return token

    def _remember(self, challenge: BearerChallenge, token: str, until: float) -> None:
        if len(self._tokens) >= self._max_entries:
            now = self._clock()
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            if len(self._tokens) >= self._max_entries:
                self._tokens.pop(next(iter(self._tokens)))
        self._tokens[challenge] = (token, until)


def is_registry_path(path: str) -> bool:
    """A distribution API path (``/v2/...``): where a Bearer challenge means a registry."""
    return path == "/v2" or path.startswith("/v2/")
