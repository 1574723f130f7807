"""Settings of ``damselfly injector``: one YAML file, ``DAMSELFLY_INJECTOR_*`` overrides.

The ``policy`` section is what the sans-IO mutation reads (``injector/mutation.py``); the rest
is how the HTTPS server runs. Defaults match the Helm chart (``deploy/helm/damselfly``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from damselfly.config.base import ListenAddress, Section, ServiceSettings, load_settings

ENV_PREFIX = "DAMSELFLY_INJECTOR_"
DEFAULT_NO_PROXY = [
    "localhost",
    "127.0.0.1",
    "::1",
    ".svc",
    ".cluster.local",
    "10.0.0.0/8",
]


class CaBundle(Section):
    """Where injected Pods find the CA bundle that trusts the daemon's proxy."""

    source: Literal["configMap", "secret", "hostPath", "none"] = Field(
        "configMap",
        description="Volume kind holding the bundle. configMap and secret must exist in the "
        "Pod's namespace; hostPath reads it from the node; none: inject no CA.",
    )
    name: str = Field(
        "damselfly-ca", description="ConfigMap or Secret name, or the host directory."
    )
    key: str = Field("ca.crt", description="File (key) of the PEM bundle in that volume.")
    mount_path: str = Field(
        "/etc/damselfly/ca", description="Directory the bundle is mounted at in containers."
    )


class InjectionPolicy(Section):
    """Which Pods are changed, and how."""

    namespaces: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Namespaces whose Pods may be injected; '*' for all (minus excluded).",
    )
    excluded_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease"],
        description="Namespaces never injected, whatever 'namespaces' says.",
    )
    proxy: bool = Field(
        True,
        description="Set HTTPS_PROXY/HTTP_PROXY/NO_PROXY to the node's dfdaemon proxy; false "
        "when the daemons run no proxy (the socket and model fetchers are still injected).",
    )
    proxy_port: int = Field(
        65001, ge=1, le=65535, description="Port of the node's dfdaemon proxy (a hostPort)."
    )
    no_proxy: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NO_PROXY),
        description="NO_PROXY entries: cluster suffixes, loopback and cluster CIDRs.",
    )
    ca: CaBundle = Field(CaBundle(), description="CA bundle volume and variables.")
    socket_host_dir: str = Field(
        "/var/run/damselfly",
        description="Node directory holding the daemon's unix socket (empty: no socket volume).",
    )
    socket_mount_path: str = Field(
        "/var/run/damselfly", description="Where that directory appears in containers."
    )
    models_mount_path: str = Field(
        "/models", description="Where the shared volume of damselfly.io/models is mounted."
    )
    models_size_limit: str = Field(
        "", description="sizeLimit of the models emptyDir (e.g. 100Gi); empty: none."
    )
    max_models: int = Field(16, ge=1, le=64, description="Most models one Pod may list.")
    image: str = Field(
        "ghcr.io/damselfly/damselfly:0.1.0",
        description="Image of the model-fetching init container.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of that init container."
    )
    failure_policy: Literal["ignore", "fail"] = Field(
        "ignore",
        description="When a Pod cannot be injected: ignore admits it unchanged (fail open), "
        "fail rejects it (fail closed).",
    )


class InjectorSettings(ServiceSettings):
    """damselfly injector settings."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX)

    listen: ListenAddress = Field(
        "127.0.0.1:9443", description="HTTPS address of /mutate, /healthz and /metrics."
    )
    tls_cert: str = Field("", description="PEM certificate file of the HTTPS server.")
    tls_key: str = Field("", description="PEM private key file of the HTTPS server.")
    log_level: Literal["error", "warn", "info", "debug"] = Field(
        "info", description="Logging level on stderr."
    )
    policy: InjectionPolicy = Field(InjectionPolicy(), description="What is injected where.")


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> InjectorSettings:
    """Defaults < ``path`` (YAML) < ``env`` (``DAMSELFLY_INJECTOR_*``) < ``overrides``."""
    return load_settings(
        InjectorSettings, path, env or {}, env_prefix=ENV_PREFIX, overrides=overrides
    )
