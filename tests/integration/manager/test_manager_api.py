"""The manager's REST API on SQLite and on a real PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import inspect

from damselfly.testing.manager import ManagerHarness

V1 = "/api/v1"


def test_migrations_create_every_table_from_empty(harness: ManagerHarness) -> None:
    tables = set(inspect(harness.database.engine).get_table_names())
    assert {"users", "tokens", "members", "block_rules", "audit_log", "rate_limits",
            "preheat_jobs", "member_samples", "alembic_version"} <= tables  # fmt: skip


def test_tokens_are_checked_shown_once_and_revocable(
    client: TestClient, harness: ManagerHarness
) -> None:
    assert client.get(f"{V1}/users").status_code == 401
    bogus = {"Authorization": "Bearer dfm_nope"}
    assert client.get(f"{V1}/users", headers=bogus).status_code == 401
    created = client.post(
        f"{V1}/tokens", json={"user": "viewer", "name": "ci"}, headers=harness.headers("admin")
    )
    assert created.status_code == 201
    token = created.json()["token"]
    mine = {"Authorization": f"Bearer {token}"}
    listed = client.get(f"{V1}/tokens", headers=mine).json()
    assert all("token" not in row for row in listed)
    assert client.get(f"{V1}/users", headers=mine).status_code == 200
    assert client.get(f"{V1}/me", headers=mine).json()["name"] == "viewer"
    revoked = client.delete(f"{V1}/tokens/{created.json()['id']}", headers=harness.headers("admin"))
    assert revoked.status_code == 204
    assert client.get(f"{V1}/users", headers=mine).status_code == 401


def test_read_only_and_member_roles_are_refused_writes(
    client: TestClient, harness: ManagerHarness
) -> None:
    rule = {"kind": "tag", "pattern": "nightly"}
    for role in ("read-only", "member"):
        answer = client.post(f"{V1}/blocklist", json=rule, headers=harness.headers(role))
        assert answer.status_code == 403, role
    registration = {"role": "peer", "hostname": "h1"}
    answer = client.post(f"{V1}/members", json=registration, headers=harness.headers("read-only"))
    assert answer.status_code == 403


def test_keepalive_counters_become_rollout_figures(
    client: TestClient, harness: ManagerHarness
) -> None:
    node = harness.headers("member")
    member = client.post(f"{V1}/members", json={"role": "peer", "hostname": "p1"}, headers=node)
    keepalive = f"{V1}/members/{member.json()['id']}/keepalive"
    bounds = [1.0, 10.0]
    for stats in (
        {"source_bytes": 100, "peer_bytes": 0, "duration_bounds": bounds,
         "duration_counts": [1, 0, 0]},
        {"source_bytes": 150, "peer_bytes": 900, "cache_hits": 2, "task_failures": 1,
         "duration_bounds": bounds, "duration_counts": [1, 2, 0]},
    ):  # fmt: skip
        answer = client.post(keepalive, json={"stats": stats}, headers=node)
        assert answer.status_code == 204
    refused = client.post(keepalive, json={"stats": {"peer_bytes": -1}}, headers=node)
    assert refused.status_code == 422
    points = client.get(f"{V1}/rollout?minutes=5&step=300", headers=node).json()
    assert len(points) == 1
    point = points[0]
    assert (point["origin_bytes"], point["peer_bytes"], point["downloads"]) == (50, 900, 2)
    assert (point["cache_hits"], point["failed_downloads"]) == (2, 1)
    assert point["hit_rate"] == 0.4
    assert 1.0 < point["cold_start_p50"] <= point["cold_start_p95"] <= 10.0
    assert client.get(f"{V1}/rollout?step=1", headers=node).status_code == 422


def test_members_register_keep_alive_and_turn_dead(
    client: TestClient, harness: ManagerHarness
) -> None:
    node = harness.headers("member")
    body = {"role": "seed", "hostname": "seed-1", "ip": "127.0.0.1", "port": 4000}
    first = client.post(f"{V1}/members", json=body, headers=node).json()
    again = client.post(f"{V1}/members", json={**body, "port": 4001}, headers=node).json()
    assert again["id"] == first["id"]
    assert again["port"] == 4001
    assert client.post(f"{V1}/members/{first['id']}/keepalive", headers=node).status_code == 204
    assert client.post(f"{V1}/members/999/keepalive", headers=node).status_code == 404
    listed = client.get(f"{V1}/members", headers=node).json()
    assert [(m["hostname"], m["alive"]) for m in listed] == [("seed-1", True)]
    _age_members(harness, seconds=5)
    listed = client.get(f"{V1}/members", headers=node).json()
    assert [m["alive"] for m in listed] == [False]


def test_dynconfig_lists_live_members_rules_limits_and_answers_304(
    client: TestClient, harness: ManagerHarness
) -> None:
    node, admin = harness.headers("member"), harness.headers("admin")
    client.post(f"{V1}/members", json={"role": "scheduler", "hostname": "s", "port": 8002},
                headers=node)  # fmt: skip
    first = client.get(f"{V1}/dynconfig", params={"host": "h1"}, headers=node)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert [s["hostname"] for s in first.json()["schedulers"]] == ["s"]
    unchanged = client.get(f"{V1}/dynconfig?host=h1", headers={**node, "If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    client.post(f"{V1}/blocklist", json={"kind": "repo", "pattern": "hf://o/m"}, headers=admin)
    client.put(f"{V1}/ratelimits", json={"scope": "cluster", "download_bps": 1000}, headers=admin)
    client.put(f"{V1}/ratelimits", json={"scope": "host", "host": "h1", "upload_bps": 5},
               headers=admin)  # fmt: skip
    changed = client.get(f"{V1}/dynconfig?host=h1", headers={**node, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    config = changed.json()
    assert [r["pattern"] for r in config["blocklist"]] == ["hf://o/m"]
    assert config["rate_limits"]["cluster"]["download_bps"] == 1000
    assert config["rate_limits"]["host"]["upload_bps"] == 5
    other = client.get(f"{V1}/dynconfig?host=h2", headers=node).json()
    assert other["rate_limits"]["host"] is None


def test_blocklist_changes_are_audited_and_rolled_back(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin = harness.headers("admin")
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    rule = {"kind": "repo", "pattern": "hf://org/model", "reason": "CVE-2026-1234", "until": until}
    added = client.post(f"{V1}/blocklist", json=rule, headers=admin).json()
    assert added["author"] == "root"
    assert added["active"] is True
    assert client.delete(f"{V1}/blocklist/{added['id']}", headers=admin).status_code == 204
    assert client.get(f"{V1}/blocklist", headers=admin).json() == []
    log = client.get(f"{V1}/audit", headers=admin).json()
    assert [(e["action"], e["actor"]) for e in log] == [("delete", "root"), ("create", "root")]
    assert log[0]["before"]["reason"] == "CVE-2026-1234"
    assert log[0]["after"] is None
    undone = client.post(f"{V1}/audit/{log[0]['id']}/rollback", headers=admin)
    assert undone.status_code == 201
    assert undone.json()["action"] == "rollback"
    restored = client.get(f"{V1}/blocklist", headers=admin).json()
    assert [(r["id"], r["pattern"], r["reason"]) for r in restored] == [
        (added["id"], "hf://org/model", "CVE-2026-1234")
    ]
    client.post(f"{V1}/audit/{log[1]['id']}/rollback", headers=admin)  # undo the creation
    assert client.get(f"{V1}/blocklist", headers=admin).json() == []


def test_blocklist_refuses_bad_patterns_and_hides_expired_rules(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin = harness.headers("admin")
    bad = client.post(f"{V1}/blocklist", json={"kind": "repo", "pattern": "org"}, headers=admin)
    assert bad.status_code == 422
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    old = {"kind": "tag", "pattern": "t", "until": past}
    assert client.post(f"{V1}/blocklist", json=old, headers=admin).status_code == 201
    assert client.get(f"{V1}/blocklist", headers=admin).json() == []
    everything = client.get(f"{V1}/blocklist?include_expired=true", headers=admin).json()
    assert [r["active"] for r in everything] == [False]


def test_rate_limits_upsert_delete_and_rollback(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin = harness.headers("admin")
    body = {"scope": "host", "host": "h1", "back_to_source_bps": 1 << 33}
    first = client.put(f"{V1}/ratelimits", json=body, headers=admin).json()
    second = client.put(f"{V1}/ratelimits", json={**body, "back_to_source_bps": 7}, headers=admin)
    assert second.json()["id"] == first["id"]
    assert second.json()["back_to_source_bps"] == 7
    assert client.put(f"{V1}/ratelimits", json={"scope": "host"}, headers=admin).status_code == 422
    update = client.get(f"{V1}/audit?entity=ratelimit", headers=admin).json()[0]
    client.post(f"{V1}/audit/{update['id']}/rollback", headers=admin)
    listed = client.get(f"{V1}/ratelimits", headers=admin).json()
    assert [r["back_to_source_bps"] for r in listed] == [1 << 33]


def test_preheat_jobs_are_claimed_and_reported_by_seeds(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin, node = harness.headers("admin"), harness.headers("member")
    job = {"kind": "repo", "url": "hf://org/model", "revision": "main", "include": ["*.json"]}
    created = client.post(f"{V1}/preheat", json=job, headers=admin).json()
    assert created["state"] == "pending"
    assert created["created_by"] == "root"
    peer = client.post(f"{V1}/members", json={"role": "peer", "hostname": "p"}, headers=node)
    refused = client.post(f"{V1}/preheat/claim", json={"member_id": peer.json()["id"]},
                          headers=node)  # fmt: skip
    assert refused.status_code == 409
    seed = client.post(f"{V1}/members", json={"role": "seed", "hostname": "s"}, headers=node)
    claim = {"member_id": seed.json()["id"]}
    claimed = client.post(f"{V1}/preheat/claim", json=claim, headers=node)
    assert claimed.json()["id"] == created["id"]
    assert claimed.json()["state"] == "running"
    assert client.post(f"{V1}/preheat/claim", json=claim, headers=node).status_code == 204
    files = [{"url": "hf://org/model/config.json", "length": 10, "completed_length": 10,
              "state": "succeeded"}]  # fmt: skip
    report = {**claim, "files": files, "state": "succeeded"}
    done = client.post(f"{V1}/preheat/{created['id']}/report", json=report, headers=node)
    assert done.json()["state"] == "succeeded"
    assert done.json()["files"][0]["length"] == 10
    late = client.post(f"{V1}/preheat/{created['id']}/report", json=report, headers=node)
    assert late.status_code == 409
    assert client.get(f"{V1}/preheat?state=succeeded", headers=admin).json()[0]["id"] == 1


def test_metrics_count_requests_and_database_gauges(
    client: TestClient, harness: ManagerHarness
) -> None:
    client.post(f"{V1}/members", json={"role": "peer", "hostname": "p"},
                headers=harness.headers("member"))  # fmt: skip
    client.get(f"{V1}/users")
    text = client.get("/metrics").text
    assert 'damselfly_manager_members{alive="true",role="peer"} 1.0' in text
    assert 'route="/api/v1/members",status="201"' in text
    assert 'route="/api/v1/users",status="401"' in text
    assert client.get("/healthz").text == "ok\n"


def _age_members(harness: ManagerHarness, seconds: float) -> None:
    from sqlalchemy import update

    from damselfly.manager.db.models import Member

    with harness.database.session() as session:
        past = datetime.now(UTC) - timedelta(seconds=seconds)
        session.execute(update(Member).values(last_seen=past))
        session.commit()


def test_expired_tokens_are_refused(client: TestClient, harness: ManagerHarness) -> None:
    from sqlalchemy import update

    from damselfly.manager.db.models import Token

    with harness.database.session() as session:
        session.execute(update(Token).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    assert client.get(f"{V1}/users", headers=harness.headers("admin")).status_code == 401


def test_rule_updates_are_audited_and_dead_members_leave_the_dynconfig(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin, node = harness.headers("admin"), harness.headers("member")
    rule = client.post(f"{V1}/blocklist", json={"kind": "tag", "pattern": "t"}, headers=admin)
    until = "2099-01-01T00:00:00Z"
    patched = client.patch(f"{V1}/blocklist/{rule.json()['id']}",
                           json={"reason": "why", "until": until}, headers=admin)  # fmt: skip
    assert patched.json()["reason"] == "why"
    assert patched.json()["until"] == until
    entry = client.get(f"{V1}/audit", headers=admin).json()[0]
    assert (entry["action"], entry["before"]["reason"], entry["after"]["reason"]) == (
        "update", "", "why",
    )  # fmt: skip
    client.post(f"{V1}/members", json={"role": "seed", "hostname": "s"}, headers=node)
    assert len(client.get(f"{V1}/dynconfig", headers=node).json()["seeds"]) == 1
    _age_members(harness, seconds=5)
    assert client.get(f"{V1}/dynconfig", headers=node).json()["seeds"] == []


def test_values_postgresql_cannot_store_are_refused_not_a_server_error(
    client: TestClient, harness: ManagerHarness
) -> None:
    admin = harness.headers("admin")
    rule = client.post(f"{V1}/blocklist", json={"kind": "tag", "pattern": "a\x00b"}, headers=admin)
    audit = client.get(f"{V1}/audit", params={"entity": "a\x00b"}, headers=admin)
    if harness.database.engine.dialect.name == "postgresql":
        assert (rule.status_code, audit.status_code) == (422, 422)
        assert "NUL" in rule.json()["detail"]
    else:  # SQLite stores a NUL character like any other
        assert (rule.status_code, audit.status_code) == (201, 200)
