"""How dfdaemon turns TLS on: one variable, the certificate's CN as host id, the right role,
and one warning line in plain text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from damselfly.config.daemon import load
from damselfly.daemon.app import node_tls
from damselfly.security.errors import SecurityError
from damselfly.security.roles import Role
from damselfly.testing.pki import TestPki


def test_plain_text_says_so_once(caplog):
    caplog.set_level(logging.WARNING)
    assert node_tls(load(env={})) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("running without TLS: any process that reaches this port")


def test_the_cluster_variable_turns_mtls_on_and_the_cn_is_the_host_id(tmp_path: Path):
    files = TestPki(tmp_path).node("node-7", Role.PEER)
    settings = load(env={"DAMSELFLY_TLS_DIR": str(files.cert_file.parent)})
    tls = node_tls(settings)
    assert tls is not None
    assert (tls.node_id, tls.role) == ("node-7", Role.PEER)
    assert tls.renewal_loop() is None  # issued by hand, not enrolled: nothing to renew


def test_a_seed_daemon_needs_a_seed_certificate(tmp_path: Path):
    files = TestPki(tmp_path).node("node-8", Role.PEER)
    settings = load(
        env={"DAMSELFLY_TLS_DIR": str(files.cert_file.parent)}, overrides={"seed": True}
    )
    with pytest.raises(SecurityError, match="a peer certificate, expected seed"):
        node_tls(settings)


def test_an_enrolled_directory_gets_a_renewal_loop(tmp_path: Path):
    files = TestPki(tmp_path).node("node-9", Role.SEED)
    (files.cert_file.parent / "enrollment.json").write_text(
        '{"server": "https://ca:1", "ca_fingerprint": "x"}'
    )
    tls = node_tls(load(env={"DAMSELFLY_TLS_DIR": str(files.cert_file.parent)}))
    assert tls is not None
    loop = tls.renewal_loop()
    assert loop is not None
    assert loop.directory == files.cert_file.parent
