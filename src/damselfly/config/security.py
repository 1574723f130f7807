"""The ``tls`` section every service's settings share, and the one cluster-wide switch.

mTLS for the whole cluster is one setting: ``DAMSELFLY_TLS_DIR=<dir>`` in a node's environment
(a directory holding ``tls.crt``, ``tls.key`` and ``ca.crt``: what ``damselfly enroll`` writes,
or a mounted Kubernetes TLS Secret) turns TLS on for every service started with it. In a YAML
file the same is ``tls: {enabled: true, dir: <dir>}``; ``ca_file``/``cert_file``/``key_file``
name the three files one by one when they are not in one directory (each wins over ``dir``).

Without TLS every service says so once at start (``PLAINTEXT_WARNING``): plain text is for a
single trusted host.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from damselfly.config.base import Section, SettingsT, load_settings

CLUSTER_TLS_DIR_ENV = "DAMSELFLY_TLS_DIR"
PLAINTEXT_WARNING = "running without TLS: any process that reaches this port is trusted"
CA_NAME, CERT_NAME, KEY_NAME = "ca.crt", "tls.crt", "tls.key"


class TlsSettings(Section):
    """Mutual TLS with the cluster CA (docs/security.md)."""

    enabled: bool = Field(False, description="Serve and call over mTLS with the cluster CA.")
    dir: Path | None = Field(
        None,
        description="Directory with tls.crt, tls.key (mode 0600) and ca.crt: an enrolled node "
        "(damselfly enroll) or a mounted Kubernetes TLS Secret.",
    )
    ca_file: Path | None = Field(None, description="The cluster CA certificate (PEM).")
    cert_file: Path | None = Field(None, description="This node's certificate (PEM).")
    key_file: Path | None = Field(None, description="This node's private key (PEM, 0600).")
    server_name: str | None = Field(
        None,
        description="Name checked in the server's certificate when this node dials an address "
        "its certificate does not list (clients only).",
    )

    @model_validator(mode="after")
    def _files_known_when_enabled(self) -> TlsSettings:
        if self.enabled and None in self.paths():
            raise ValueError("tls.enabled needs tls.dir or all of ca_file, cert_file, key_file")
        return self

    def paths(self) -> tuple[Path | None, Path | None, Path | None]:
        """(ca, certificate, key): each named file, else its name in ``dir``."""
        return (
            self.ca_file or (self.dir / CA_NAME if self.dir else None),
            self.cert_file or (self.dir / CERT_NAME if self.dir else None),
            self.key_file or (self.dir / KEY_NAME if self.dir else None),
        )


def cluster_tls(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings layer ``DAMSELFLY_TLS_DIR`` stands for (empty when unset): it sits above
    the YAML file and below the service's own ``DAMSELFLY_<SERVICE>_TLS__*`` variables."""
    directory = env.get(CLUSTER_TLS_DIR_ENV, "").strip()
    return {"tls": {"enabled": True, "dir": directory}} if directory else {}


def load_cluster_member(
    model: type[SettingsT],
    path: Path | None,
    env: Mapping[str, str] | None,
    env_prefix: str,
    overrides: Mapping[str, Any] | None,
) -> SettingsT:
    """``load_settings`` for a service that joins the cluster's mTLS: defaults < ``path``
    (YAML) < ``DAMSELFLY_TLS_DIR`` < ``env`` (``<env_prefix>*``) < ``overrides``."""
    env = env or {}
    return load_settings(
        model, path, env, env_prefix=env_prefix, overrides=overrides, cluster=cluster_tls(env)
    )
