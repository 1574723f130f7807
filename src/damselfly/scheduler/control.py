"""The scheduler's side of the control plane: its manager link and the blocklist check of
``RegisterPeer``.

A peer registering a task the blocklist forbids is refused with ``PERMISSION_DENIED`` and
the details ``blocked: <message>``; the daemon's scheduler client turns that back into the
``BlockedError`` dfget prints (``transport/scheduler/channels.py``). The scheduler sees only
the task's canonical URL (no application or tag), so ``url``, ``repo`` and ``image`` rules
apply here; the daemons check the rest before they ever register. The last dynamic config is
kept on disk like the daemons' (``manager.cache_file``; default
``<store dir>/scheduler-dynconfig.json``), so a restarted scheduler enforces it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from damselfly.config.paths import default_store_dir
from damselfly.config.scheduler import SchedulerSettings
from damselfly.core.blocklist import BlockQuery, blocked_message
from damselfly.core.errors import BLOCKED_DETAIL_PREFIX, BlockedError
from damselfly.protocol.messages import TaskMeta
from damselfly.transport.control_plane import ControlPlane, member_link, registration

log = logging.getLogger(__name__)
CACHE_NAME = "scheduler-dynconfig.json"


class SchedulerControl:
    def __init__(self, settings: SchedulerSettings, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.plane = ControlPlane()
        self.link = member_link(
            settings.manager,
            env,
            role="scheduler",
            default_cache=default_store_dir(env) / CACHE_NAME,
            plane=self.plane,
        )

    def admit(self, task: TaskMeta) -> None:
        """Raise ``BlockedError`` (details ``blocked: ...``) for a blocked task."""
        rule = self.plane.blocking_rule(BlockQuery(url=task.url))
        if rule is not None:
            raise BlockedError(BLOCKED_DETAIL_PREFIX + blocked_message(rule, task.url))

    async def run(self, grpc_address: str) -> None:
        """The manager link until cancelled (returns at once without a manager)."""
        if self.link is None:
            return
        host, _, port = grpc_address.rpartition(":")
        member = registration("scheduler", ip=host.strip("[]"), port=int(port or 0))
        try:
            await self.link.run(member)
        except asyncio.CancelledError:
            await self.link.client.aclose()
            raise
