"""Keeping a node's certificate fresh: when to renew (sans-IO) and the loop that does it.

A node certificate lives 24 h by default. The node renews at ``fraction`` (2/3) of its
lifetime, i.e. with a third of it left, so a renewal service that is down for hours does not
take the node out of the cluster: failures are retried every ``retry_interval`` until the
certificate expires. After expiry mTLS renewal is impossible by design; the node must enroll
again with a new join token (the loop says so once and stops).

``RenewalPolicy.decide(not_before, not_after, now)`` is pure and unit-tested with a fake clock;
``RenewalLoop`` reads the certificate, sleeps until the decision says, calls ``renew`` (the
mTLS request of ``enrollment_client.renew``) and starts over. Servers and clients of the node
pick the new files up by themselves (``tls.ReloadingFiles``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from damselfly.core.errors import DamselflyError
from damselfly.security.ca import cert_from_pem, utc_now
from damselfly.security.files import NodeFiles, read_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenewalDecision:
    """``renew_now``, else ``wait`` seconds before asking again; ``expired``: too late."""

    renew_now: bool
    wait: float
    expired: bool = False


@dataclass(frozen=True)
class RenewalPolicy:
    fraction: float = 2 / 3
    retry_interval: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ValueError("renewal fraction must be in [0, 1)")

    def renew_at(
        self, not_before: datetime.datetime, not_after: datetime.datetime
    ) -> datetime.datetime:
        return not_before + (not_after - not_before) * self.fraction

    def decide(
        self,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
        now: datetime.datetime,
    ) -> RenewalDecision:
        if now >= not_after:
            return RenewalDecision(renew_now=False, wait=0.0, expired=True)
        due = self.renew_at(not_before, not_after)
        if now >= due:
            return RenewalDecision(renew_now=True, wait=0.0)
        return RenewalDecision(renew_now=False, wait=(due - now).total_seconds())

    def after_failure(self, not_after: datetime.datetime, now: datetime.datetime) -> float:
        """Seconds before retrying a failed renewal: the retry interval, never past expiry."""
        left = (not_after - now).total_seconds()
        return max(0.0, min(self.retry_interval, left))


Renew = Callable[[Path], Awaitable[object]]
Now = Callable[[], datetime.datetime]


class RenewalLoop:
    """Renews the certificate in ``directory`` for as long as ``run`` runs."""

    def __init__(
        self,
        directory: Path,
        renew: Renew,
        *,
        policy: RenewalPolicy | None = None,
        now: Now = utc_now,
    ) -> None:
        self.directory = directory
        self.policy = policy or RenewalPolicy()
        self._renew = renew
        self._now = now
        self.renewals = 0
        self.failures = 0
        self.renewed = asyncio.Event()  # set after each renewal (tests, logs)

    def _validity(self) -> tuple[datetime.datetime, datetime.datetime]:
        files = NodeFiles.in_dir(self.directory)
        certificate = cert_from_pem(read_file(files.cert_file), str(files.cert_file))
        return certificate.not_valid_before_utc, certificate.not_valid_after_utc

    async def run(self) -> None:
        """Until cancelled, or until the certificate expired (then enrollment is needed)."""
        while True:
            not_before, not_after = self._validity()
            decision = self.policy.decide(not_before, not_after, self._now())
            if decision.expired:
                log.error("certificate in %s expired at %s: enroll again with a join token",
                          self.directory, not_after.isoformat())  # fmt: skip
                return
            if not decision.renew_now:
                await asyncio.sleep(decision.wait)
                continue
            await self._attempt(not_after)

    async def _attempt(self, not_after: datetime.datetime) -> None:
        try:
            await self._renew(self.directory)
        except DamselflyError as exc:
            self.failures += 1
            wait = self.policy.after_failure(not_after, self._now())
            log.warning("certificate renewal failed (retrying in %.0f s): %s", wait, exc)
            await asyncio.sleep(wait)
            return
        self.renewals += 1
        self.renewed.set()
        log.info("certificate in %s renewed", self.directory)
