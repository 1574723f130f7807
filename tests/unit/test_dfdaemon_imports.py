"""What a running dfdaemon holds in memory before its first download (issue 15: daemon peak
RSS). A plain node (no proxy, no TLS, no manager) must not load what only those use:
``cryptography`` alone is ~10 MiB of resident memory. Checked in a fresh interpreter, where
nothing is imported yet."""

from __future__ import annotations

import pytest

from damselfly.testing.imports import imported_by

ONLY_WHEN_USED = (
    "cryptography",  # mTLS material, grants, the proxy's CA
    "h11",  # the proxy's listener
    "yaml",  # a settings file (--config); the chart starts the daemon with flags alone
    "damselfly.daemon.proxy.ca_certs",
    "damselfly.daemon.proxy.service",
    "damselfly.daemon.proxy.server",
    "damselfly.security.node_tls",
    "damselfly.security.enrollment_client",
    "damselfly.security.certs",
    "damselfly.protocol.manager",  # the manager link (manager.url), all but the rate limits
    "damselfly.transport.manager_client",
)


@pytest.mark.parametrize("module", ["damselfly.cli.dfdaemon", "damselfly.daemon.app"])
def test_the_daemon_starts_without_the_proxy_or_tls_modules(module: str):
    loaded = imported_by(module)
    assert "damselfly.daemon.engine.peer_filler" in loaded  # the probe itself works
    assert sorted(loaded & set(ONLY_WHEN_USED)) == []


def test_the_modules_a_plain_daemon_skips_still_import_when_used():
    loaded = imported_by("damselfly.daemon.proxy.service, damselfly.security.node_tls")
    assert {"cryptography", "h11", "damselfly.daemon.proxy.ca"} <= loaded
