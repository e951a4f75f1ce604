"""Identity and governance through the real CLI, server and agent (SPEC §3, §6, §8, §9)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from liveresponse.client.api import Client
from liveresponse.client.config import ClientConfig
from liveresponse.testing.cluster import Cluster, lr_command
from tests.e2e.store_access import add_user, set_settings


def lr(cluster: Cluster, *args: str, user: str = "alice", stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lr_command(*args), env=cluster.env(user), input=stdin, capture_output=True, text=True, timeout=60
    )


def test_login_then_lockout_with_a_clear_message(cluster: Cluster) -> None:
    cluster.admin("user", "add", "lena", "--role", "responder", "--password-stdin", stdin="right-pw\n")
    env = cluster.env("alice")
    del env["LR_TOKEN"]
    login = lr_command("login", "--server", cluster.url, "--user", "lena", "--password-stdin", "--ca", cluster.ca)
    ok = subprocess.run(login, env=env, input="right-pw\n", capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "signed in as lena (responder)" in ok.stdout
    devices = subprocess.run(
        lr_command("devices", "--output", "json"), env=env, capture_output=True, text=True, timeout=60
    )
    assert devices.returncode == 0 and json.loads(devices.stdout)  # the stored credential works
    for _ in range(4):
        bad = subprocess.run(login, env=env, input="wrong\n", capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "unknown user or wrong password" in bad.stderr
    bad = subprocess.run(login, env=env, input="wrong\n", capture_output=True, text=True, timeout=60)
    assert "too many failed sign-ins for user lena: the account is locked until" in bad.stderr
    again = subprocess.run(login, env=env, input="right-pw\n", capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "try again in" in again.stderr


def test_token_revoke_by_id_and_by_token(cluster: Cluster) -> None:
    first = cluster.admin("token", "create", "rita", "--name", "ci")
    token = first.stdout.strip()
    token_id = first.stderr.split("token id ")[1].split()[0]
    second = cluster.admin("token", "create", "rita").stdout.strip()
    for value in (token, second):
        with cluster.api("rita") as api:
            assert api.get("/api/v1/me", headers={"authorization": f"Bearer {value}"}).status_code == 200
    assert f"token {token_id} (ci) revoked" in cluster.admin("token", "revoke", token_id).stdout
    cluster.admin("token", "revoke", second)
    with cluster.api("rita") as api:
        for value in (token, second):
            refused = api.get("/api/v1/me", headers={"authorization": f"Bearer {value}"})
            assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
        assert api.get("/api/v1/me").status_code == 200  # rita's other credentials are untouched
    with cluster.api("alice") as api:
        events = [r["event"] for r in api.get("/api/v1/audit", params={"type": "token"}).json()]
    assert events.count("token.revoke") >= 2 and "token.create" in events


def test_custom_role_limited_to_a_group(cluster: Cluster) -> None:
    cluster.admin("group", "add", "lab")
    added = cluster.admin("role", "add", "triage", "--permissions", "devices.read,live_response.basic")
    assert "role triage added: devices.read,live_response.basic" in added.stdout
    bad = cluster.admin("role", "add", "oops", "--permissions", "devices.read,root", check=False)
    assert bad.returncode == 1 and "unknown permission 'root'" in bad.stderr
    cluster.admin("user", "add", "gina", "--role", "triage", "--groups", "lab")
    add_user(cluster, "gina", "triage")
    result = cluster.console("dir", user="gina")
    assert result.returncode == 2
    assert "your role triage is limited to other device groups" in result.stderr
    assert json.loads(lr(cluster, "devices", "--output", "json", user="gina").stdout) == []
    cluster.admin("role", "assign", "gina", "triage")  # every group now
    result = cluster.console("cd /", user="gina")
    assert result.returncode == 0, result.stderr
    with cluster.api("alice") as api:
        events = [r["event"] for r in api.get("/api/v1/audit", params={"type": "role"}).json()]
    assert events == ["role.add", "role.assign"]


def test_gates_name_the_setting_and_who_may_change_it(cluster: Cluster) -> None:
    set_settings(cluster, live_response_enabled=False)
    try:
        result = cluster.console("dir")
        assert result.returncode == 2
        assert "live response is disabled for this tenant (setting live_response_enabled=false)" in result.stderr
        assert "settings.manage" in result.stderr
    finally:
        set_settings(cluster, live_response_enabled=True)
    cluster.admin("group", "add", "frozen", "--remediation-level", "none")
    server_token = cluster.admin("enroll-token", "create", "--server-url", cluster.url, "--device-type", "server")
    frozen_token = cluster.admin("enroll-token", "create", "--server-url", cluster.url, "--group", "frozen")
    ids = []
    for i, token in enumerate((server_token.stdout.strip(), frozen_token.stdout.strip())):
        state = str(cluster.base / f"gate-agent-{i}")
        enroll = lr_command("agent", "enroll", "--server", cluster.url, "--token", token, "--state", state)
        enrolled = subprocess.run([*enroll, "--device-type", "workstation"], capture_output=True, text=True)
        assert enrolled.returncode == 0, enrolled.stderr
        ids.append(enrolled.stdout.split("device ")[1].split()[0])
    rows = {r["id"]: r for r in json.loads(lr(cluster, "devices", "--output", "json").stdout)}
    assert rows[ids[0]]["type"] == "server"  # the token's type wins over the agent's report
    set_settings(cluster, live_response_servers_enabled=False)
    try:
        result = cluster.console("dir", device=ids[0])
        assert "is a server" in result.stderr and "live_response_servers_enabled=false" in result.stderr
    finally:
        set_settings(cluster, live_response_servers_enabled=True)
    result = cluster.console("dir", device=ids[1])
    assert "group frozen, whose automation remediation level is none" in result.stderr
    assert "lr admin group set frozen --remediation-level semi" in result.stderr


def test_sessions_end_own_and_by_an_admin(cluster: Cluster) -> None:
    with cluster.api("rita") as api:
        opened = api.post("/api/v1/sessions", json={"device": cluster.device_id}).json()
    try:
        listed = json.loads(lr(cluster, "sessions", "--output", "json").stdout)
        row = next(r for r in listed if r["id"] == opened["id"])
        assert row["user"] == "rita" and row["device"] and row["started"] and row["duration_s"] >= 0
        refused = lr(cluster, "sessions", "end", opened["id"], user="adam")
        assert refused.returncode == 1 and "needs the permission users.manage" in refused.stderr
    finally:
        ended = lr(cluster, "sessions", "end", opened["id"], user="alice")
    assert ended.returncode == 0 and f"session {opened['id']} ended" in ended.stdout


def test_audit_list_and_log_search_and_export(cluster: Cluster) -> None:
    result = cluster.console("cd /etc", "dir", "fileinfo /etc/hostname", user="adam")
    assert result.returncode == 0, result.stderr
    rows = json.loads(lr(cluster, "log", "--user", "adam", "--type", "fileinfo", "--output", "json").stdout)
    assert [r["command_line"] for r in rows][-1] == "fileinfo /etc/hostname"
    assert all(r["user"] == "adam" for r in rows)
    exported = lr(cluster, "log", "--user", "adam", "--device", cluster.device_id, "--output", "csv").stdout
    table = list(csv.DictReader(io.StringIO(exported)))
    assert {"cd /etc", "dir", "fileinfo /etc/hostname"} <= {r["command_line"] for r in table}
    assert {"id", "session_id", "user", "device", "status", "output"} <= set(table[0])
    future = json.loads(lr(cluster, "log", "--since", "2999-01-01T00:00:00Z", "--output", "json").stdout)
    assert future == []
    audit = json.loads(lr(cluster, "audit", "list", "--user", "adam", "--type", "session", "--output", "json").stdout)
    assert {r["event"] for r in audit} == {"session.open", "session.close"}
    by_device = json.loads(lr(cluster, "audit", "list", "--device", cluster.device_id, "--output", "json").stdout)
    assert {"device.enroll", "session.open", "command"} <= {r["event"] for r in by_device}
    audit_csv = list(csv.DictReader(io.StringIO(lr(cluster, "audit", "list", "--output", "csv").stdout)))
    assert {"seq", "at", "actor", "event", "outcome", "detail", "hash"} <= set(audit_csv[0])
    refused = lr(cluster, "audit", "list", user="rita")
    assert refused.returncode == 1 and "needs the permission audit.read" in refused.stderr
    assert any(r["detail"]["needs"] == "audit.read" for r in _audit(cluster, "rita"))


def _audit(cluster: Cluster, user: str) -> list[dict[str, Any]]:
    with cluster.api("alice") as api:
        return list(api.get("/api/v1/audit", params={"user": user, "type": "denied", "limit": 100000}).json())


def test_audit_verify_finds_edited_deleted_and_reordered_records(cluster: Cluster, tmp_path: Path) -> None:
    intact = cluster.admin("audit", "verify")
    assert "audit chain intact" in intact.stdout
    source = sqlite3.connect(cluster.data / "liveresponse.db")
    copies = {}
    for case in ("edited", "deleted", "reordered"):
        path = tmp_path / f"{case}.db"
        with sqlite3.connect(path) as copy:
            source.backup(copy)
        copies[case] = path
    source.close()
    with sqlite3.connect(copies["edited"]) as db:
        db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    with sqlite3.connect(copies["deleted"]) as db:
        db.execute("DELETE FROM audit WHERE seq = 4")
    with sqlite3.connect(copies["reordered"]) as db:  # records 5 and 6 swap places, hashes and all
        db.execute("UPDATE audit SET seq = -5 WHERE seq = 5")
        db.execute("UPDATE audit SET seq = 5 WHERE seq = 6")
        db.execute("UPDATE audit SET seq = 6 WHERE seq = -5")
    procs = {
        case: subprocess.Popen(
            lr_command(
                "admin", "--data", str(tmp_path / case), "--db", f"sqlite+aiosqlite:///{path}", "audit", "verify"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, path in copies.items()
    }
    out = {case: (p.communicate(timeout=60), p.returncode) for case, p in procs.items()}
    (edited, _), code = out["edited"]
    assert code == 1 and "TAMPERED: record 3" in edited and "was edited" in edited
    (deleted, _), code = out["deleted"]
    assert code == 1 and "record 4 is missing" in deleted
    (reordered, _), code = out["reordered"]
    assert code == 1 and "record 5" in reordered and "TAMPERED" in reordered


def test_idle_session_ends_for_real(cluster: Cluster) -> None:
    set_settings(cluster, idle_timeout_s=3)

    async def watch() -> tuple[list[dict[str, Any]], str]:
        client = Client(ClientConfig(cluster.url, cluster.tokens["rita"], cluster.ca))
        try:
            session = await client.open_session(cluster.device_id)
            events = []
            async with client.console_channel(session["id"]) as channel:
                while True:
                    event = await asyncio.wait_for(channel.next_event(), 15)
                    events.append(event)
                    if event["type"] == "session_ended":
                        return events, session["id"]
        finally:
            await client.aclose()

    started = time.monotonic()
    try:
        events, session_id = asyncio.run(watch())
    finally:
        set_settings(cluster, idle_timeout_s=300)
    assert [e["type"] for e in events] == ["notice", "session_ended"]
    assert "without activity (idle_timeout_s=3)" in events[0]["message"]
    assert events[1]["reason"] == "idle timeout after 3 s"
    assert 2.5 < time.monotonic() - started < 10
    with cluster.api("rita") as api:
        row = api.get(f"/api/v1/sessions/{session_id}").json()
    assert (row["status"], row["end_reason"]) == ("ended", "idle timeout after 3 s")
