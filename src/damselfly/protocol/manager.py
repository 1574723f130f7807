"""Wire models of the manager's REST API that its members and dfctl read and write.

The manager serves them (``manager/api``), the members' client (``transport/manager_client``)
and ``dfctl`` parse them; neither side imports the other. Times are ISO 8601 in UTC;
bandwidths are bytes per second; ``None`` means "no limit" / "no expiry". The rate limits
every member holds, manager or not, are in ``rate_limits.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from damselfly.core.blocklist import BlockRule
from damselfly.protocol.rate_limits import MAX_RATE, RateLimitValues, Wire

MemberRole = Literal["scheduler", "seed", "peer"]
PreheatState = Literal["pending", "running", "succeeded", "failed"]
FileState = Literal["pending", "running", "succeeded", "failed"]
RuleKind = Literal["url", "repo", "image", "application", "tag"]
API_PREFIX = "/api/v1"
MAX_ID = 2**31 - 1


# Membership ----------------------------------------------------------------------------------


class MemberRegistration(Wire):
    role: MemberRole
    hostname: str = Field(min_length=1, max_length=255)
    ip: str = Field("", max_length=64)
    port: int = Field(0, ge=0, le=65535, description="gRPC (scheduler) or piece server port")
    idc: str = Field("", max_length=255)
    location: str = Field("", max_length=255)
    version: str = Field("", max_length=64)


class Member(MemberRegistration):
    id: int
    registered_at: datetime
    last_seen: datetime
    alive: bool


MAX_COUNT = 2**62
MAX_BUCKETS = 32


class MemberStats(Wire):
    """A daemon's or seed's download counters since it started, sent with each keepalive;
    the manager turns consecutive samples into the rollout figures (``GET /rollout``)."""

    source_bytes: int = Field(0, ge=0, le=MAX_COUNT, description="bytes read from origins")
    peer_bytes: int = Field(0, ge=0, le=MAX_COUNT, description="bytes received from peers")
    cache_hits: int = Field(0, ge=0, le=MAX_COUNT, description="downloads served by the store")
    task_failures: int = Field(0, ge=0, le=MAX_COUNT)
    # downloads that needed the network, by duration: counts per bucket (upper bounds in
    # seconds; the last count is above the last bound)
    duration_bounds: list[float] = Field(default_factory=list, max_length=MAX_BUCKETS)
    duration_counts: list[int] = Field(default_factory=list, max_length=MAX_BUCKETS + 1)


class KeepaliveBody(Wire):
    stats: MemberStats | None = None


class RolloutPoint(Wire):
    """One step of ``GET /rollout``: what the members did in ``[at, at + step)``."""

    at: datetime
    downloads: int  # finished over the network
    cache_hits: int
    failed_downloads: int
    origin_bytes: int
    peer_bytes: int
    hit_rate: float | None  # cache hits / all downloads
    cold_start_p50: float | None  # seconds, from the members' duration histograms
    cold_start_p95: float | None


class MemberEndpoint(Wire):
    id: int
    hostname: str
    ip: str
    port: int
    idc: str = ""
    location: str = ""


# Rate limits (their values: ``rate_limits.RateLimitValues``) ----------------------------------


class RateLimitSpec(RateLimitValues):
    scope: Literal["cluster", "host"] = "cluster"
    host: str = Field("", max_length=255, description="the hostname, for scope host")


class RateLimit(RateLimitSpec):
    id: int
    updated_at: datetime


class EffectiveRateLimits(Wire):
    cluster: RateLimitValues | None = None
    host: RateLimitValues | None = None


# Blocklist -----------------------------------------------------------------------------------


class BlockRuleWire(Wire):
    id: int
    kind: RuleKind
    pattern: str
    reason: str = ""
    until: datetime | None = None

    def to_rule(self) -> BlockRule:
        return BlockRule(self.id, self.kind, self.pattern, self.reason, self.until)


# Dynamic config ------------------------------------------------------------------------------


class DynamicConfig(Wire):
    """What a member polls; ``version`` is also the ETag of the answer."""

    version: str
    config_interval: float
    keepalive_interval: float
    schedulers: list[MemberEndpoint] = []
    seeds: list[MemberEndpoint] = []
    blocklist: list[BlockRuleWire] = []
    rate_limits: EffectiveRateLimits = EffectiveRateLimits()

    def block_rules(self) -> list[BlockRule]:
        return [rule.to_rule() for rule in self.blocklist]


# Preheat -------------------------------------------------------------------------------------


class PreheatRequest(Wire):
    kind: Literal["url", "repo", "image"]
    url: str = Field(min_length=1, max_length=2048, description="URL, hub repo or image ref")
    revision: str = Field("", max_length=255)
    include: list[str] = []
    exclude: list[str] = []


class PreheatFile(Wire):
    url: str = Field(min_length=1, max_length=2048)
    length: int | None = Field(None, ge=0, le=MAX_RATE)
    completed_length: int = Field(0, ge=0, le=MAX_RATE)
    state: FileState = "pending"
    error: str = Field("", max_length=2048)


class PreheatJob(PreheatRequest):
    id: int
    state: PreheatState
    created_by: str
    created_at: datetime
    updated_at: datetime
    member_id: int | None = None
    error: str = ""
    files: list[PreheatFile] = []


class PreheatClaim(Wire):
    member_id: int = Field(ge=1, le=MAX_ID)


class PreheatReport(Wire):
    member_id: int = Field(ge=1, le=MAX_ID)
    files: list[PreheatFile] = []
    state: Literal["running", "succeeded", "failed"] = "running"
    error: str = Field("", max_length=2048)
