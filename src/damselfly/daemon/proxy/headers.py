"""Header hygiene at the proxy's edges: what crosses a hop, and what is a credential.

A forward proxy must not pass on the headers that describe one connection (RFC 9110
section 7.6.1: ``Connection`` and the names it lists, ``Keep-Alive``, ``Transfer-Encoding``,
``TE``, ``Trailer``, ``Upgrade``, ``Proxy-*``): h11 frames each side itself. Credentials are
split off before a request reaches a ``MeshFetcher``, so nothing it may persist can hold them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
CREDENTIALS = frozenset({"authorization", "cookie"})
SECRET_HEADERS = CREDENTIALS | {"proxy-authorization", "set-cookie"}


def decode(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """``headers`` without the hop-by-hop ones (and those ``Connection`` names)."""
    headers = list(headers)
    listed = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in listed]


def without(headers: Iterable[tuple[str, str]], names: Iterable[str]) -> Headers:
    drop = {name.lower() for name in names}
    return [(n, v) for n, v in headers if n.lower() not in drop]


def get(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    return next((v for n, v in headers if n.lower() == name), None)


def split_credentials(headers: Iterable[tuple[str, str]]) -> tuple[Headers, SecretStr | None]:
    """(headers that may be persisted, the client's ``Authorization`` as a secret)."""
    headers = list(headers)
    authorization = get(headers, "authorization")
    secret = SecretStr(authorization) if authorization is not None else None
    return without(headers, CREDENTIALS), secret


def loggable(headers: Iterable[tuple[str, str]]) -> Headers:
    """For debug logs: secret values replaced."""
    return [(n, "<redacted>" if n.lower() in SECRET_HEADERS else v) for n, v in headers]
