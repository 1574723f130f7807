"""Settings of dfdaemon's HTTP(S) proxy and hub mirror endpoints (docs/proxy.md).

The rules keep the YAML shape users paste from Dragonfly articles, accepted as written::

    proxies:
      - regx: ^https://huggingface\\.co/.*
        use_https: true
        direct: false
        certs:
          hosts: [huggingface.co]

``certs`` may also be a list of ``{hosts: [...]}`` mappings (the article's variant); both mean
"intercept CONNECTs to these hosts". Rules are ordered and the first whose ``regx`` matches
the request URL decides: ``direct: true`` sends the request to the origin, otherwise file
content goes through the mesh. ``ProxySettings`` is a ``Section``: the daemon settings hang it
under ``proxy:``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from damselfly.config.base import ListenAddress, Seconds, Section


class ProxyCerts(Section):
    """Hosts whose CONNECTs the proxy terminates with a certificate from its CA."""

    hosts: list[str] = Field(default_factory=list, description="Host names (no port).")

    @field_validator("hosts")
    @classmethod
    def _lower(cls, hosts: list[str]) -> list[str]:
        return [host.strip().lower() for host in hosts if host.strip()]


class ProxyRule(Section):
    """One rule: which URLs it matches and how they are served."""

    regx: str = Field(description="Python regular expression searched in the full request URL.")
    use_https: bool = Field(
        False, description="Reach the origin over https even when the client asked for http."
    )
    direct: bool = Field(False, description="Send matching requests to the origin, not the mesh.")
    certs: ProxyCerts = Field(ProxyCerts(), description="Hosts intercepted for this rule.")
    name: str = Field("", description="Label in metrics; empty: the rule's regx.")

    @field_validator("regx")
    @classmethod
    def _compiles(cls, regx: str) -> str:
        try:
            re.compile(regx)
        except re.error as exc:
            raise ValueError(f"regx {regx!r} is not a regular expression: {exc}") from exc
        return regx

    @field_validator("certs", mode="before")
    @classmethod
    def _merge_cert_lists(cls, value: Any) -> Any:
        if isinstance(value, list):
            hosts = [host for item in value for host in (item or {}).get("hosts", [])]
            return {"hosts": hosts}
        return value

    @property
    def label(self) -> str:
        return self.name or self.regx


class HubMirror(Section):
    """A hub endpoint (``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT``) served by the daemon."""

    listen: ListenAddress = Field("127.0.0.1:65002", description="Address (host:port).")
    upstream: str = Field("https://huggingface.co", description="The hub it stands in for.")
    hub: Literal["huggingface", "modelscope"] = Field(
        "huggingface", description="Which hub's URL layout the endpoint speaks."
    )


class RegistryMirror(Section):
    """An OCI registry mirror (the distribution API's pull path) served by the daemon."""

    listen: ListenAddress = Field("127.0.0.1:65004", description="Address (host:port).")
    upstream: str = Field(
        "https://registry-1.docker.io",
        description="The registry asked when a request names none (no ?ns=).",
    )
    namespaces: dict[str, str] = Field(
        default_factory=lambda: {"docker.io": "https://registry-1.docker.io"},
        description="?ns= value (as containerd sends it) -> registry URL; any other ns "
        "is asked at https://<ns>.",
    )


HF_HOSTS = ["huggingface.co", "hf.co"]
HF_CDN_HOSTS = [
    "cdn-lfs.huggingface.co",
    "cdn-lfs.hf.co",
    "cdn-lfs-us-1.huggingface.co",
    "cdn-lfs-us-1.hf.co",
    "cdn-lfs-eu-1.hf.co",
    "cas-bridge.xethub.hf.co",
]
MODELSCOPE_HOSTS = ["modelscope.cn", "www.modelscope.cn"]


def default_rules() -> list[ProxyRule]:
    """Hugging Face (hub + LFS and Xet-bridge CDNs) and ModelScope through the mesh.

    The Xet CAS hosts (``cas-server``/``transfer.xethub.hf.co``), which ``hf_xet`` talks to,
    are not intercepted: their traffic is tunnelled (docs/proxy.md, "Xet").
    """
    return [
        ProxyRule(
            regx=r"^https://(huggingface\.co|hf\.co)/",
            use_https=True,
            certs=ProxyCerts(hosts=HF_HOSTS),
            name="huggingface",
        ),
        ProxyRule(
            regx=r"^https://(cdn-lfs[a-z0-9-]*\.(huggingface\.co|hf\.co)|cas-bridge\.xethub\.hf\.co)/",
            use_https=True,
            certs=ProxyCerts(hosts=HF_CDN_HOSTS),
            name="huggingface-cdn",
        ),
        ProxyRule(
            regx=r"^https://(www\.)?modelscope\.cn/",
            use_https=True,
            certs=ProxyCerts(hosts=MODELSCOPE_HOSTS),
            name="modelscope",
        ),
    ]


class ProxySettings(Section):
    """dfdaemon's forward proxy and hub mirror endpoints."""

    enabled: bool = Field(True, description="Run the forward proxy.")
    listen: ListenAddress = Field(
        "127.0.0.1:65001", description="Address of the proxy (host:port); loopback by default."
    )
    proxies: list[ProxyRule] = Field(
        default_factory=default_rules, description="Ordered rules; the first match decides."
    )
    ca_cert: Path | None = Field(
        None,
        description="CA certificate (PEM) that signs intercepted hosts; empty: the "
        "node's own CA, created on first start in the data directory.",
    )
    ca_key: Path | None = Field(None, description="Private key (PEM) of ca_cert.")
    upstream_ca_bundle: Path | None = Field(
        None, description="CA bundle origins are verified against; empty: the system trust."
    )
    leaf_lifetime: Seconds = Field(
        86400.0, gt=60, description="Seconds an intercepted host's certificate is valid."
    )
    header_timeout: Seconds = Field(
        30.0, gt=0, description="Seconds a client has to send a request's headers."
    )
    idle_timeout: Seconds = Field(
        60.0, gt=0, description="Seconds a kept-alive client connection may stay silent."
    )
    upstream_timeout: Seconds = Field(
        30.0, gt=0, description="Seconds to connect to an origin and receive its headers."
    )
    max_connections: int = Field(
        1024, ge=1, le=65536, description="Client connections served at once; more get 503."
    )
    max_header_length: int = Field(
        65536, ge=1024, description="Largest request head (bytes) a client may send."
    )
    mirrors: list[HubMirror] = Field(
        default_factory=list,
        description="Hub endpoints to serve, e.g. [{listen: 127.0.0.1:65002, upstream: "
        "https://huggingface.co}].",
    )
    registry_mirrors: list[RegistryMirror] = Field(
        default_factory=list,
        description="OCI registry mirrors to serve (docs/proxy.md), e.g. [{listen: "
        "127.0.0.1:65004}]; blobs through the mesh by digest, manifests passed through.",
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> ProxySettings:
        if (self.ca_key is None) != (self.ca_cert is None):
            raise ValueError("ca_cert and ca_key are given together or not at all")
        return self
