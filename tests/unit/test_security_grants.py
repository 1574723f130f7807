"""Grants for private tasks: only the cluster's scheduler can make one, and one is good only
for its task, its host and its lifetime."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from damselfly.daemon.servers.private_access import PrivateAccess, PrivateTasks
from damselfly.security.errors import AccessDeniedError
from damselfly.security.files import read_material
from damselfly.security.grants import GrantVerifier, issue_grant
from damselfly.security.roles import Caller, Role
from damselfly.testing.pki import TestPki

TASK = "ab" * 32
_CLOCK = {"now": 0.0}
OTHER = "cd" * 32


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    made = TestPki(tmp_path / "pki")
    _CLOCK["now"] = time.time() + 1.0  # after every certificate of this test is valid
    return made


def now(offset: float = 0.0) -> float:
    return _CLOCK["now"] + offset


def verifier(pki: TestPki, offset: float = 0.0) -> GrantVerifier:
    ca = pki.ca.cert_pem
    return GrantVerifier(lambda: ca, clock=lambda: now(offset))


def scheduler_grant(pki: TestPki, host: str = "peer-1", ttl: float = 60.0) -> str:
    material = read_material(pki.node("scheduler-0", Role.SCHEDULER))
    return issue_grant(material, TASK, host, ttl=ttl, clock=now)


def test_a_scheduler_grant_lets_its_host_fetch_its_task(pki):
    grant = verifier(pki).check(scheduler_grant(pki), TASK, "peer-1")
    assert (grant.task_id, grant.host_id) == (TASK, "peer-1")


@pytest.mark.parametrize(
    ("task_id", "host_id", "offset", "reason"),
    [
        (OTHER, "peer-1", 0.0, "another task or host"),
        (TASK, "peer-2", 0.0, "another task or host"),
        (TASK, "peer-1", 61.0, "expired"),
    ],
)
def test_a_grant_is_good_only_for_its_task_host_and_time(pki, task_id, host_id, offset, reason):
    with pytest.raises(AccessDeniedError, match=reason):
        verifier(pki, offset).check(scheduler_grant(pki), task_id, host_id)


def test_grants_from_a_peer_another_cluster_or_tampered_are_refused(pki, tmp_path):
    peer = read_material(pki.node("peer-9", Role.PEER))
    forged = issue_grant(peer, TASK, "peer-1", clock=now)
    with pytest.raises(AccessDeniedError, match="may not grant"):
        verifier(pki).check(forged, TASK, "peer-1")
    rogue = TestPki(tmp_path / "rogue")
    foreign = issue_grant(read_material(rogue.node("scheduler-0", Role.SCHEDULER)), TASK,
                          "peer-1", clock=now)  # fmt: skip
    with pytest.raises(AccessDeniedError, match="not signed by this cluster"):
        verifier(pki).check(foreign, TASK, "peer-1")
    _payload, signature, cert = scheduler_grant(pki, host="peer-2").split(".")
    other_payload = scheduler_grant(pki).split(".")[0]
    with pytest.raises(AccessDeniedError, match="signature"):
        verifier(pki).check(".".join((other_payload, signature, cert)), TASK, "peer-1")
    for junk in ("", "x", "a.b.c"):
        with pytest.raises(AccessDeniedError):
            verifier(pki).check(junk, TASK, "peer-1")


def test_private_tasks_survive_a_restart_and_need_a_grant(pki, tmp_path):
    PrivateTasks(tmp_path / "store").mark(TASK)
    tasks = PrivateTasks(tmp_path / "store")  # a new process
    assert tasks.is_private(TASK)
    assert not tasks.is_private(OTHER)
    access = PrivateAccess(tasks, verifier(pki))
    me = Caller("peer-1", Role.PEER)
    assert access.refusal(OTHER, me, None) is None
    assert "grant is needed" in (access.refusal(TASK, me, None) or "")
    assert access.refusal(TASK, me, scheduler_grant(pki)) is None
    plain = PrivateAccess(tasks, None)
    assert "only over mTLS" in (plain.refusal(TASK, None, scheduler_grant(pki)) or "")
