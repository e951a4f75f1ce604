"""Sign-in, lockout, custom roles, group-limited assignments, audit and log searches (SPEC §8, §9). Tier 2."""

from __future__ import annotations

import json

from liveresponse.server.store.governance import SIGN_IN_MAX_FAILURES, AuditQuery
from tests.server.conftest import World


async def login(world: World, user: str, password: str) -> tuple[int, dict[str, object]]:
    response = await world.http.post("/api/v1/auth/login", json={"user": user, "password": password})
    return response.status_code, response.json()


async def test_login_gives_a_credential(world: World) -> None:
    await world.user("alice", "admin", password="s3cret")
    status, body = await login(world, "alice", "s3cret")
    assert status == 200 and str(body["token"]).startswith("lrt_")
    me = await world.http.get("/api/v1/me", headers={"authorization": f"Bearer {body['token']}"})
    assert me.json()["user"] == "alice"
    stored = await world.store.user_by_name(world.tenant_id, "alice")
    assert stored is not None and str(stored.password_hash).startswith("$argon2id$")


async def test_five_failures_lock_the_account_with_a_clear_message(world: World) -> None:
    await world.user("alice", "admin", password="s3cret")
    for _ in range(SIGN_IN_MAX_FAILURES - 1):
        status, body = await login(world, "alice", "wrong")
        assert (status, body["error"]["message"]) == (401, "unknown user or wrong password")  # type: ignore[index]
    status, body = await login(world, "alice", "wrong")
    error = body["error"]
    assert status == 401
    assert "too many failed sign-ins for user alice: the account is locked until" in error["message"]  # type: ignore[index]
    assert "try again in 300 s" in error["message"]  # type: ignore[index]
    # Locked: even the right password is refused, and says when to retry; the lock is in the store.
    status, body = await login(world, "alice", "s3cret")
    assert status == 401 and body["error"]["retry_after_s"] > 290  # type: ignore[index]
    stored = await world.store.user_by_name(world.tenant_id, "alice")
    assert stored is not None and stored.locked_until is not None
    denied = [r for r in await world.store.audit_records() if r.event == "sign_in" and r.outcome == "denied"]
    assert len(denied) == SIGN_IN_MAX_FAILURES + 1
    assert json.loads(denied[-1].detail_json)["reason"] == "locked"


async def test_a_success_clears_earlier_failures(world: World) -> None:
    await world.user("alice", "admin", password="s3cret")
    for _ in range(SIGN_IN_MAX_FAILURES - 1):
        await login(world, "alice", "wrong")
    assert (await login(world, "alice", "s3cret"))[0] == 200
    for _ in range(SIGN_IN_MAX_FAILURES - 1):
        assert (await login(world, "alice", "wrong"))[0] == 401
    assert (await login(world, "alice", "s3cret"))[0] == 200


async def test_revoked_token_is_refused(world: World) -> None:
    headers = await world.user("alice", "admin")
    assert (await world.http.get("/api/v1/me", headers=headers)).status_code == 200
    user = await world.store.user_by_name(world.tenant_id, "alice")
    assert user is not None
    from liveresponse.server.credentials import token_hash

    await world.store.revoke_token(world.tenant_id, None, token_hash("lrt_alice"), "test")
    response = await world.http.get("/api/v1/me", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


async def test_custom_role_grants_exactly_its_permissions(world: World) -> None:
    await world.store.add_role(world.tenant_id, "auditor", frozenset({"devices.read", "audit.read"}), "test")
    headers = await world.user("olivia", "auditor")
    me = (await world.http.get("/api/v1/me", headers=headers)).json()
    assert me["permissions"] == ["audit.read", "devices.read"]
    assert (await world.http.get("/api/v1/audit", headers=headers)).status_code == 200
    refused = await world.http.get("/api/v1/sessions", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["permission"] == "live_response.basic"


async def test_an_unknown_custom_role_has_nothing(world: World) -> None:
    headers = await world.user("nobody", "no-such-role")
    assert (await world.http.get("/api/v1/devices", headers=headers)).status_code == 403


async def test_assignment_limited_to_device_groups(world: World) -> None:
    lab = await world.store.add_group(world.tenant_id, "lab", "full", "test")
    in_lab = await world.device("lab-host", group_id=lab.id)
    outside = await world.device("prod-host")
    headers = await world.user("gina", "responder", group_ids=[lab.id])
    names = [d["name"] for d in (await world.http.get("/api/v1/devices", headers=headers)).json()]
    assert names == ["lab-host"]
    refused = await world.http.post("/api/v1/sessions", json={"device": outside.id}, headers=headers)
    assert refused.status_code == 403
    assert "limited to other device groups" in refused.json()["error"]["message"]
    ok = await world.http.post("/api/v1/sessions", json={"device": in_lab.id}, headers=headers)
    assert ok.status_code == 200, ok.text
    denials = [r for r in await world.store.audit_records() if r.outcome == "denied" and r.event == "session.open"]
    assert [json.loads(r.detail_json)["device"] for r in denials] == [outside.id]


async def test_group_with_remediation_level_none_cannot_get_a_session(world: World) -> None:
    await world.store.add_group(world.tenant_id, "frozen", "none", "test")
    group = await world.store.group_by_name(world.tenant_id, "frozen")
    assert group is not None
    device = await world.device("frozen-host", group_id=group.id)
    headers = await world.user("alice", "admin")
    refused = await world.http.post("/api/v1/sessions", json={"device": device.id}, headers=headers)
    error = refused.json()["error"]
    assert (refused.status_code, error["setting"]) == (409, "remediation_level")
    assert "lr admin group set frozen --remediation-level semi" in error["message"]
    assert "settings.manage" in error["message"]


async def test_group_device_type_server_is_gated(world: World) -> None:
    group = await world.store.add_group(world.tenant_id, "dc", "full", "test")
    await world.store.set_group(world.tenant_id, "dc", None, "server", "test")
    device = await world.device("dc-1", group_id=group.id)
    headers = await world.user("alice", "admin")
    refused = await world.http.post("/api/v1/sessions", json={"device": device.id}, headers=headers)
    error = refused.json()["error"]
    assert error["setting"] == "live_response_servers_enabled"
    assert "group dc marks its devices as servers" in error["message"]


async def test_audit_search_filters(world: World) -> None:
    alice = await world.user("alice", "admin")
    await world.user("rita", "responder")
    device = await world.device()
    other = await world.device("host-2")
    session = (await world.http.post("/api/v1/sessions", json={"device": device.id}, headers=alice)).json()
    await world.http.delete(f"/api/v1/sessions/{session['id']}", headers=alice)
    rows = (await world.http.get("/api/v1/audit", params={"type": "session"}, headers=alice)).json()
    assert [r["event"] for r in rows] == ["session.open", "session.close"]
    by_device = (await world.http.get("/api/v1/audit", params={"device": device.id}, headers=alice)).json()
    assert {r["event"] for r in by_device} == {"device.enroll", "session.open", "session.close"}
    assert (await world.http.get("/api/v1/audit", params={"device": other.id}, headers=alice)).json()[0][
        "event"
    ] == "device.enroll"
    users = (await world.http.get("/api/v1/audit", params={"user": "test"}, headers=alice)).json()
    assert {r["event"] for r in users} >= {"user.add", "settings.set"}
    later = (await world.http.get("/api/v1/audit", params={"since": "2999-01-01"}, headers=alice)).json()
    assert later == []
    bad = await world.http.get("/api/v1/audit", params={"since": "yesterday"}, headers=alice)
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]["message"]
    records = await world.store.search_audit(AuditQuery(tenant_id=world.tenant_id, event="user.add"))
    assert [json.loads(r.detail_json)["user"] for r in records] == ["alice", "rita"]


async def test_audit_needs_audit_read(world: World) -> None:
    rita = await world.user("rita", "responder")
    response = await world.http.get("/api/v1/audit", headers=rita)
    assert response.status_code == 403 and response.json()["error"]["permission"] == "audit.read"
