"""Which forward proxy, if any, an origin request goes through: the environment's
``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case; curl's rules), or
``DAMSELFLY_ORIGIN_PROXY`` which overrides them for damselfly's origin traffic only (``none``:
no proxy at all).

Used for origin and hub requests only (``http_session.create_origin_session``); peer traffic
(piece client, scheduler) never goes through a proxy. A proxy that is this node's own dfdaemon
proxy (a loopback address on ``OWN_PROXY_PORTS``, or ``DAMSELFLY_OWN_PROXY``) is skipped: users
point their tools at the daemon with ``HTTPS_PROXY``, and the daemon must not send its own
outbound traffic back to itself.

``NO_PROXY``: comma- or space-separated; ``*`` matches every host; ``example.com`` and
``.example.com`` match the domain and its subdomains; an IP address or CIDR block matches
addresses; ``host:port`` matches that port only.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

log = logging.getLogger("damselfly.transport")

OWN_PROXY_PORTS = frozenset({65001})  # the dfdaemon proxy's default port
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _get(env: Mapping[str, str], name: str) -> str:
    return (env.get(name.lower()) or env.get(name.upper()) or "").strip()


@dataclass(frozen=True)
class OriginProxies:
    https: str = ""
    http: str = ""
    no_proxy: tuple[str, ...] = ()
    own: tuple[str, ...] = ()  # host:port of this node's own proxy, never used

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OriginProxies:
        override = env.get("DAMSELFLY_ORIGIN_PROXY", "").strip()
        own = tuple(p for p in env.get("DAMSELFLY_OWN_PROXY", "").replace(",", " ").split() if p)
        if override:
            chosen = "" if override.lower() == "none" else override
            return cls(https=chosen, http=chosen, no_proxy=_no_proxy(env), own=own)
        every = _get(env, "all_proxy")
        https = _get(env, "https_proxy") or every
        http = _get(env, "http_proxy") or every
        return cls(https=https, http=http, no_proxy=_no_proxy(env), own=own)

    def proxy_for(self, url: URL) -> URL | None:
        """The proxy for ``url``, or ``None``: go direct."""
        raw = self.https if url.scheme in ("https", "wss") else self.http
        if not raw or url.host is None or self._bypassed(url):
            return None
        proxy = URL(raw if "://" in raw else f"http://{raw}")
        if self._is_own(proxy):
            log.debug("skipping %s: it is this node's own dfdaemon proxy", proxy.with_user(None))
            return None
        return proxy

    def _is_own(self, proxy: URL) -> bool:
        address = f"{proxy.host}:{proxy.port}"
        return address in self.own or (_loopback(proxy.host) and proxy.port in OWN_PROXY_PORTS)

    def _bypassed(self, url: URL) -> bool:
        host = (url.host or "").lower().rstrip(".")
        return any(_matches(entry, host, url.port) for entry in self.no_proxy)


def _no_proxy(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(env, "no_proxy").replace(",", " ")
    return tuple(entry.lower() for entry in raw.split() if entry)


def _matches(entry: str, host: str, port: int | None) -> bool:
    if entry == "*":
        return True
    name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
    if entry_port and str(port) != entry_port:
        return False
    name = name.strip("[]").lstrip("*").rstrip(".")
    try:
        network = ipaddress.ip_network(name, strict=False)
        return ipaddress.ip_address(host.strip("[]")) in network
    except ValueError:
        pass
    domain = name.lstrip(".")
    return bool(domain) and (host == domain or host.endswith(f".{domain}"))


def _has_port(entry: str) -> bool:
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (not head.count(":") or head.endswith("]"))


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
