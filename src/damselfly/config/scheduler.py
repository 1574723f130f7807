"""Settings of ``damselfly scheduler``: one YAML file, ``DAMSELFLY_SCHEDULER_*`` overrides.

``load(path, env)`` reads, merges and validates (``config/base.py``);
``damselfly scheduler --print-example-config`` prints ``example_yaml(SchedulerSettings)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from damselfly.config.base import (
    Bytes,
    ListenAddress,
    Seconds,
    Section,
    ServiceSettings,
)
from damselfly.config.manager_link import ManagerLinkSettings
from damselfly.config.security import TlsSettings, load_cluster_member
from damselfly.protocol.messages import MAX_PIECE_COUNT

ENV_PREFIX = "DAMSELFLY_SCHEDULER_"
MiB = 1024 * 1024


def _weight(default: float, what: str) -> Any:
    return Field(default, ge=0.0, le=10.0, description=f"Weight of {what} in a parent's score.")


class ScoreWeights(Section):
    """Weights of the default parent evaluator (docs/p2p.md, "Parent selection")."""

    upload: float = _weight(0.5, "free upload capacity (slots and bandwidth)")
    pieces: float = _weight(0.2, "the share of the task's pieces the parent holds")
    idc: float = _weight(0.15, "being in the child's idc")
    location: float = _weight(0.05, "the common prefix of the location paths (a|b|c)")
    host_type: float = _weight(0.1, "being a normal peer rather than a seed (spares seeds)")
    spread: float = _weight(0.2, "having few children already (1 / (1 + children))")
    failure_penalty: float = _weight(
        0.3, "the penalty for failures recently reported against the parent (subtracted)"
    )


class CapsSettings(Section):
    """Caps on the scheduler's state (``scheduler/admission.py``): refused beyond with
    RESOURCE_EXHAUSTED, so one client cannot fill the scheduler's memory."""

    max_hosts: int = Field(10_000, ge=1, description="Hosts known at once.")
    max_tasks: int = Field(100_000, ge=1, description="Tasks known at once.")
    max_peers: int = Field(1_000_000, ge=1, description="Peers (host x task) known at once.")
    max_hosts_per_client: int = Field(
        4, ge=1, description="Hosts one certificate may announce (mTLS only)."
    )
    max_peers_per_host: int = Field(20_000, ge=1, description="Tasks one host may register.")
    host_registrations_per_second: float = Field(
        20.0, gt=0, description="New hosts per second from one client (certificate or IP)."
    )
    host_registration_burst: int = Field(
        200, ge=1, description="New hosts one client may announce at once before the rate applies."
    )


class SchedulerSettings(ServiceSettings):
    """damselfly scheduler settings."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX)

    listen: ListenAddress = Field(
        "127.0.0.1:8002",
        description="gRPC address daemons connect to (host:port). Use 0.0.0.0:8002 to serve "
        "other machines; port 0 picks a free port.",
    )
    metrics_listen: ListenAddress = Field(
        "127.0.0.1:8004",
        description="HTTP address of /metrics (Prometheus) and /healthz (host:port).",
    )
    log_level: Literal["error", "warn", "info", "debug"] = Field(
        "info", description="Logging level on stderr."
    )
    host_ttl: Seconds = Field(
        20.0, gt=0, description="A host not announced for this long is dropped with its peers."
    )
    expiry_interval: Seconds = Field(
        2.0, gt=0, description="How often silent hosts are looked for (seconds)."
    )
    max_parents: int = Field(4, ge=1, le=64, description="Parents proposed to a peer at most.")
    bad_parent_ttl: Seconds = Field(
        60.0,
        gt=0,
        description="A parent a child reported bad is not proposed to it again for this long.",
    )
    failure_half_life: Seconds = Field(
        60.0, gt=0, description="Failures reported against a parent weigh half after this long."
    )
    reader_timeout: Seconds = Field(
        30.0,
        gt=0,
        description="An origin reader (seed) without progress for this long is no longer "
        "waited for: the next peer asking reads the origin itself.",
    )
    restart_grace: Seconds = Field(
        10.0,
        ge=0,
        description="After start, a peer that already holds pieces of a task this scheduler "
        "does not know waits this long for the task's origin reader to announce itself again "
        "(a restart) before it is told to read the origin.",
    )
    reader_children: int = Field(
        4,
        ge=1,
        le=1024,
        description="Children an origin reader (seed) still downloading serves at most; the "
        "others get its pieces from those children.",
    )
    digest_page_size: int = Field(
        4096, ge=1, le=MAX_PIECE_COUNT, description="Piece digests per GetPieceDigests answer."
    )
    max_message_length: Bytes = Field(
        16 * MiB, ge=MiB, le=256 * MiB, description="Largest gRPC message accepted or sent."
    )
    shutdown_grace: Seconds = Field(
        5.0,
        gt=0,
        description="On SIGTERM/SIGINT, time left to running calls before they are cancelled.",
    )
    weights: ScoreWeights = Field(
        default_factory=ScoreWeights, description="Weights of the parent evaluator."
    )
    caps: CapsSettings = Field(
        default_factory=lambda: CapsSettings(),
        description="How much the scheduler holds, and how fast one client may add to it.",
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="mTLS on the gRPC port: client certificates from the cluster CA required, "
        "each RPC checked against the caller's role (also on with DAMSELFLY_TLS_DIR).",
    )

    manager: ManagerLinkSettings = Field(
        default_factory=ManagerLinkSettings, description="Control plane."
    )

    @model_validator(mode="after")
    def _expiry_faster_than_ttl(self) -> SchedulerSettings:
        if self.expiry_interval >= self.host_ttl:
            raise ValueError("expiry_interval must be shorter than host_ttl")
        return self


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SchedulerSettings:
    """The layers of ``load_cluster_member``, with ``DAMSELFLY_SCHEDULER_*``."""
    return load_cluster_member(SchedulerSettings, path, env, ENV_PREFIX, overrides)
