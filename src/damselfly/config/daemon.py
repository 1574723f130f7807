"""Settings of ``dfdaemon``: one YAML file, ``DAMSELFLY_DAEMON_*`` overrides.

``load(path, env)`` reads, merges and validates (``config/base.py``);
``dfdaemon --print-example-config`` prints ``example_yaml(DaemonSettings)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from damselfly.config.base import (
    Bytes,
    ListenAddress,
    Seconds,
    Section,
    ServiceSettings,
)
from damselfly.config.manager_link import ManagerLinkSettings
from damselfly.config.proxy import ProxySettings
from damselfly.config.security import TlsSettings, load_cluster_member

ENV_PREFIX = "DAMSELFLY_DAEMON_"


class UploadSettings(Section):
    """The piece server other daemons download from."""

    listen: ListenAddress = Field(
        "0.0.0.0:4000",
        description="Address of the piece server (host:port); peers must reach it.",
    )
    advertise_ip: str = Field(
        "",
        description="IP other daemons use to reach this one; empty: the listen host, or "
        "127.0.0.1 when listening on all addresses.",
    )
    slots: int = Field(32, ge=1, le=4096, description="Piece responses served at once.")
    rate_limit: Bytes = Field(
        0, ge=0, description="Upload bytes per second for all peers together; 0: unlimited."
    )
    header_timeout: Seconds = Field(
        10.0,
        gt=0,
        description="Seconds a new connection gets to finish its TLS handshake and first "
        "request headers before it is closed.",
    )
    idle_timeout: Seconds = Field(
        60.0, gt=0, description="Seconds an idle kept-alive connection stays open."
    )
    max_connections: int = Field(
        4096, ge=1, le=1_000_000, description="Connections open at once, all peers together."
    )
    max_connections_per_peer: int = Field(
        128, ge=1, le=1_000_000, description="Connections open at once from one IP address."
    )
    requests_per_second_per_peer: float = Field(
        1000.0, gt=0, description="Requests per second from one IP address (429 beyond)."
    )


class DownloadSettings(Section):
    """How this daemon downloads."""

    concurrent_pieces: int = Field(
        8,
        ge=1,
        le=256,
        description="Piece requests to parents in flight per task; each holds up to ~1 MiB "
        "of its piece in memory until that part is written.",
    )
    source_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Range requests in flight per file when this daemon reads an origin. A "
        "piece is served to children only once whole, and parallel requests share the origin's "
        "bandwidth, so few requests make pieces available early and steadily; more help only "
        "a fast origin far away (one TCP stream limited by its window).",
    )
    piece_timeout: Seconds = Field(
        10.0, gt=0, description="Seconds without a byte before a parent is given up for a piece."
    )
    stall_timeout: Seconds = Field(
        20.0, gt=0, description="Seconds without a new piece before asking for other parents."
    )
    back_to_source: bool = Field(
        True, description="Read the origin when no parent can serve (false: fail instead)."
    )


class DaemonSettings(ServiceSettings):
    """dfdaemon settings."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX)

    schedulers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:8002"],
        description="Scheduler gRPC addresses (host:port); a task's scheduler is chosen by "
        "rendezvous hashing over this list.",
    )
    seed: bool = Field(False, description="Act as a seed peer: read new tasks from origins.")
    storage_dir: str = Field(
        "", description="Piece store directory; empty: the default (see docs/architecture.md)."
    )
    storage_quota: Bytes = Field(0, ge=0, description="Store size limit in bytes; 0: none.")
    storage_max_age: Seconds = Field(
        0, ge=0, description="Evict tasks not used for this long before admitting one; 0: never."
    )
    socket: str = Field("", description="Local API unix socket; empty: the default path.")
    socket_group: str = Field(
        "", description="Group allowed to use the socket (mode 0660); empty: owner only (0600)."
    )
    metrics_listen: ListenAddress = Field(
        "127.0.0.1:4002", description="Address of /metrics and /healthz (host:port)."
    )
    idc: str = Field("", description="This host's IDC, for parent selection.")
    location: str = Field("", description="This host's location path, e.g. country|region|zone.")
    announce_interval: Seconds = Field(
        5.0, gt=0, description="Seconds between announcements to the schedulers."
    )
    log_level: Literal["error", "warn", "info", "debug"] = Field(
        "info", description="Logging level on stderr."
    )
    upload: UploadSettings = Field(UploadSettings(), description="Piece server.")
    download: DownloadSettings = Field(DownloadSettings(), description="Download engine.")
    local_api_calls_per_caller: int = Field(
        16, ge=1, le=4096, description="Local API requests in progress at once per calling uid."
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="mTLS with the cluster CA for the scheduler link and the piece port (also "
        "on with DAMSELFLY_TLS_DIR); the certificate's common name is this host's id.",
    )
    manager: ManagerLinkSettings = Field(ManagerLinkSettings(), description="Control plane.")
    proxy: ProxySettings = Field(
        ProxySettings(),
        description="HTTP(S) forward proxy and hub mirror endpoints (docs/proxy.md).",
    )


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DaemonSettings:
    """The layers of ``load_cluster_member``, with ``DAMSELFLY_DAEMON_*``."""
    return load_cluster_member(DaemonSettings, path, env, ENV_PREFIX, overrides)
