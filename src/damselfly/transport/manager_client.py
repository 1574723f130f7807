"""The members' link to the manager: register, keep alive, poll the dynamic config.

``ManagerClient`` is a thin aiohttp client for the REST API (``call`` serves dfctl too);
``DynconfigCache`` keeps the last dynamic config on disk (written atomically, mode 0600) so
that a manager outage changes nothing and a restarted member starts with the last known
config; ``ManagerLink`` joins them: ``refresh()`` asks with the ETag it holds (a 304 costs
nothing), keeps the old config on any failure, and persists each new one. The manager is
optional: a member without one never builds a link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError

from damselfly.core.errors import DamselflyError
from damselfly.protocol.manager import (
    API_PREFIX,
    DynamicConfig,
    Member,
    MemberRegistration,
    MemberStats,
)

log = logging.getLogger("damselfly.manager_client")
CACHE_MODE = 0o600
DEFAULT_INTERVAL = 10.0  # seconds, until the first config names the manager's intervals
MIN_INTERVAL = 0.01


class ManagerError(DamselflyError):
    """The manager is unreachable or refused a call; ``status`` 0 when nothing answered."""

    http_status = 503

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ManagerClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One API call; answers (status, parsed JSON or None, headers); errors for >= 400."""
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            async with self._client().request(
                method, url, json=body, params=params, headers={**self._headers, **(headers or {})}
            ) as response:
                text = await response.text()
                payload = json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise ManagerError(f"manager {self.base_url}: {_describe(exc)}") from exc
        if response.status >= 400:
            raise ManagerError(_refusal(response.status, payload), response.status)
        return response.status, payload, response.headers

    async def register(self, registration: MemberRegistration) -> Member:
        _status, payload, _headers = await self.call(
            "POST", "/members", body=registration.model_dump()
        )
        return Member.model_validate(payload)

    async def keepalive(self, member_id: int, stats: MemberStats | None = None) -> bool:
        """``False`` when the manager no longer knows the member (register again). ``stats``:
        the member's counters, for the rollout figures."""
        body = None if stats is None else {"stats": stats.model_dump()}
        try:
            await self.call("POST", f"/members/{member_id}/keepalive", body=body)
        except ManagerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def fetch_dynconfig(
        self, role: str, host: str, etag: str = ""
    ) -> tuple[DynamicConfig | None, str]:
        """(config, etag); config ``None`` when the manager answered 304 Not Modified."""
        conditional = {"If-None-Match": etag} if etag else {}
        status, payload, headers = await self.call(
            "GET", "/dynconfig", params={"role": role, "host": host}, headers=conditional
        )
        if status == 304:
            return None, etag
        try:
            config = DynamicConfig.model_validate(payload)
        except ValidationError as exc:
            raise ManagerError(f"manager {self.base_url}: malformed dynamic config") from exc
        return config, headers.get("ETag", "")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session


class DynconfigCache:
    """The last dynamic config, on disk: atomic replace, owner-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DynamicConfig | None:
        try:
            return DynamicConfig.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.warning("ignoring the cached dynamic config %s: %s", self.path, type(exc).__name__)
            return None

    def save(self, config: DynamicConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), CACHE_MODE)
                file.write(config.model_dump_json().encode())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class ManagerLink:
    """What a member holds: the current dynamic config, refreshed when asked or by ``run``."""

    def __init__(
        self,
        client: ManagerClient,
        cache: DynconfigCache,
        role: str,
        host: str,
        on_change: Callable[[DynamicConfig], None] | None = None,
        max_interval: float | None = None,
    ) -> None:
        self.client = client
        self.max_interval = max_interval  # poll at least this often, whatever the config says
        self.cache = cache
        self.role = role
        self.host = host
        self.on_change = on_change
        self.config = cache.load()
        self.member_id: int | None = None
        self.stats: Callable[[], MemberStats] | None = None  # sent with every keepalive
        self._etag = f'"{self.config.version}"' if self.config is not None else ""

    async def run(self, registration: MemberRegistration) -> None:
        """Register, then keep alive and poll the config, each at the interval the config
        names, until cancelled. Failures are logged and retried at the next interval."""
        await self.refresh()  # the intervals come with the config
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_alive(registration))
            group.create_task(self._poll())

    async def _keep_alive(self, registration: MemberRegistration) -> None:
        while True:
            try:
                stats = None if self.stats is None else self.stats()
                if self.member_id is None or not await self.client.keepalive(self.member_id, stats):
                    self.member_id = (await self.client.register(registration)).id
            except ManagerError as exc:
                log.warning("manager keepalive failed: %s", exc)
            await asyncio.sleep(self._interval("keepalive_interval"))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval("config_interval"))
            await self.refresh()

    def _interval(self, name: str) -> float:
        named = DEFAULT_INTERVAL if self.config is None else float(getattr(self.config, name))
        if self.max_interval is not None:
            named = min(named, self.max_interval)
        return max(MIN_INTERVAL, named)

    async def refresh(self) -> bool:
        """Poll once; ``True`` when the config changed. A failure keeps the last config."""
        try:
            config, etag = await self.client.fetch_dynconfig(self.role, self.host, self._etag)
        except ManagerError as exc:
            log.warning("dynamic config not refreshed, keeping the last one: %s", exc)
            return False
        if config is None:
            return False
        self.cache.save(config)
        self.config, self._etag = config, etag
        if self.on_change is not None:
            self.on_change(config)
        return True


def _refusal(status: int, payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):  # a validation error: say which field
        detail = "; ".join(_field_problem(item) for item in detail)
    return f"manager answered {status}: {detail or 'no detail'}"


def _field_problem(item: Any) -> str:
    where = ".".join(str(part) for part in item.get("loc", [])[1:]) or "body"
    return f"{where}: {str(item.get('msg', 'invalid')).removeprefix('Value error, ')}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, json.JSONDecodeError):
        return "answered something that is not JSON"
    return str(exc) or type(exc).__name__
