"""What a member (daemon, seed, scheduler) knows of the control plane, and its link to it.

``ControlPlane`` holds the dynamic config in force: the blocklist it checks every download
against (``check``) and the effective rate limits (the smaller of the cluster's and this
host's), with listeners told of each change so limits apply live. It starts from the config
cached on disk, so a restarted member enforces the last known blocklist before the manager
answers, and keeps it through any outage. Without a manager it holds nothing and allows
everything.

``member_link`` builds the ``ManagerLink`` from the ``manager:`` settings (``None`` without a
manager); its ``run`` is the member's loop: register, keep alive, poll, apply. The link and
the manager's wire models are imported only when a manager is configured (~0.5 MiB of a node
daemon's memory otherwise).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from damselfly._version import __version__
from damselfly.config.manager_link import ManagerLinkSettings, read_token
from damselfly.core.blocklist import BlockQuery, BlockRule, blocked_message, find_blocking_rule
from damselfly.core.errors import BlockedError
from damselfly.protocol.rate_limits import RateLimitValues

if TYPE_CHECKING:  # imported where a manager is configured: a member without one never is
    from damselfly.protocol.manager import DynamicConfig, MemberRegistration
    from damselfly.transport.manager_client import ManagerLink

log = logging.getLogger(__name__)
LimitsListener = Callable[[RateLimitValues], None]
_LIMIT_FIELDS = ("download_bps", "upload_bps", "back_to_source_bps", "requests_per_second")


class ControlPlane:
    def __init__(self, config: DynamicConfig | None = None) -> None:
        self.config: DynamicConfig | None = None
        self.rules: list[BlockRule] = []
        self.limits = RateLimitValues()
        self._listeners: list[LimitsListener] = []
        if config is not None:
            self.apply(config)

    def apply(self, config: DynamicConfig) -> None:
        """Take a new dynamic config (from the cache at start, then from each poll)."""
        self.config = config
        self.rules = config.block_rules()
        limits = effective_limits(config)
        changed = limits != self.limits
        self.limits = limits
        log.info("dynamic config %s: %d blocklist rules", config.version[:12], len(self.rules))
        if changed:
            for listener in self._listeners:
                listener(limits)

    def on_limits(self, listener: LimitsListener) -> None:
        """Call ``listener`` now and after every change of the effective limits."""
        self._listeners.append(listener)
        listener(self.limits)

    def blocking_rule(self, query: BlockQuery) -> BlockRule | None:
        return find_blocking_rule(self.rules, query) if self.rules else None

    def check(self, query: BlockQuery, shown: str = "") -> None:
        """Raise ``BlockedError`` when a rule forbids ``query`` (``shown``: the URL to print)."""
        rule = self.blocking_rule(query)
        if rule is not None:
            raise BlockedError(blocked_message(rule, shown or query.url))


def effective_limits(config: DynamicConfig) -> RateLimitValues:
    """Per field, the smaller of the cluster's and the host's value (``None``: no limit)."""
    sources = [v for v in (config.rate_limits.cluster, config.rate_limits.host) if v is not None]
    values: dict[str, float | int | None] = {}
    for name in _LIMIT_FIELDS:
        present = [getattr(v, name) for v in sources if getattr(v, name) is not None]
        values[name] = min(present) if present else None
    return RateLimitValues.model_validate(values)


def member_link(
    settings: ManagerLinkSettings,
    env: Mapping[str, str],
    *,
    role: str,
    default_cache: Path,
    plane: ControlPlane,
    host: str | None = None,
) -> ManagerLink | None:
    """The link for ``settings`` (``None`` without a manager); ``plane`` gets the cached
    config now and every new one later."""
    if not settings.enabled:
        return None
    from damselfly.transport.manager_client import DynconfigCache, ManagerClient, ManagerLink

    cache = DynconfigCache(Path(settings.cache_file) if settings.cache_file else default_cache)
    client = ManagerClient(settings.url, read_token(settings, env))
    link = ManagerLink(
        client,
        cache,
        role,
        host or hostname(),
        on_change=plane.apply,
        max_interval=settings.interval or None,
    )
    if link.config is not None:
        plane.apply(link.config)
    return link


def registration(
    role: str, *, ip: str = "", port: int = 0, idc: str = "", location: str = ""
) -> MemberRegistration:
    from damselfly.protocol.manager import MemberRegistration

    return MemberRegistration(
        role=role,
        hostname=hostname(),
        ip=ip,
        port=port,
        idc=idc,
        location=location,
        version=__version__[:64],
    )


def hostname() -> str:
    return socket.gethostname()[:255] or "localhost"
