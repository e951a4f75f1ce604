"""Sessions, the command log and exit codes through the real stack (SPEC §3, §6, §9)."""

from __future__ import annotations

import json
import subprocess

from liveresponse.testing.cluster import Cluster, lr_command


def session_log(cluster: Cluster, user: str = "alice") -> list[dict[str, object]]:
    with cluster.api(user) as api:
        sessions = api.get("/api/v1/sessions", params={"all": "true"}).json()
        newest = max(sessions, key=lambda s: s["started"])
        return list(api.get(f"/api/v1/sessions/{newest['id']}/commands").json())


def test_parse_error_never_reaches_the_agent_and_is_logged(cluster: Cluster) -> None:
    result = cluster.console('dir "unterminated', "dir / -output json")
    assert result.returncode == 1
    assert 'unterminated " quote starting at position 4' in result.stderr
    log = session_log(cluster)
    assert [row["command_line"] for row in log] == ['dir "unterminated', "dir / -output json"]
    refused, ran = log
    assert refused["status"] == "failed"
    assert refused["command"] is None  # never bound to a command, never signed, never sent
    assert "unterminated" in str(refused["errors"])
    assert ran["status"] == "completed"
    assert ran["command"] == "dir"
    assert isinstance(ran["output"], list) and any(r["name"] == "etc" for r in ran["output"])


def test_every_command_is_logged_with_its_outcome(cluster: Cluster) -> None:
    result = cluster.console("registry", "processes 1", "fileinfo /no/such/file", "cd /tmp", "cd")
    assert result.returncode == 1
    log = session_log(cluster)
    assert [(r["command_line"], r["status"]) for r in log] == [
        ("registry", "failed"),
        ("processes 1", "completed"),
        ("fileinfo /no/such/file", "failed"),
        ("cd /tmp", "completed"),
        ("cd", "completed"),
    ]
    assert "not available on linux" in str(log[0]["errors"])
    assert log[4]["output"] == {"cwd": "/tmp"}
    for row in log:
        assert row["user"] == "alice" and row["ended"] is not None and row["duration"] is not None


def test_exit_code_zero_when_all_succeed(cluster: Cluster) -> None:
    result = cluster.console("cd /", "dir", "help", "help dir")
    assert result.returncode == 0, result.stderr
    assert "usage: dir [path] [-full_path] [-output json|table]" in result.stdout
    assert "tier: basic" in result.stdout


def test_unknown_device_is_exit_2_with_a_clear_error(cluster: Cluster) -> None:
    result = cluster.console("dir", device="no-such-host")
    assert result.returncode == 2
    assert "no device with id or host name 'no-such-host'" in result.stderr


def test_bad_token_is_exit_2(cluster: Cluster) -> None:
    env = cluster.env()
    env["LR_TOKEN"] = "lrt_not-a-real-token"
    result = subprocess.run(
        lr_command("console", cluster.device_id, "-c", "dir"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown, expired or revoked" in result.stderr


def test_offline_device_names_its_last_seen_time(cluster: Cluster, tmp_path: object) -> None:
    token = cluster.admin("enroll-token", "create", "--server-url", cluster.url).stdout.strip()
    state = str(cluster.base / "second-agent")
    enrolled = subprocess.run(
        lr_command("agent", "enroll", "--server", cluster.url, "--token", token, "--state", state),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device = enrolled.stdout.split("device ")[1].split()[0]
    result = cluster.console("dir", device=device)
    assert result.returncode == 2
    assert f"({device}) is offline; last seen never" in result.stderr


def test_a_viewer_cannot_open_a_session(cluster: Cluster) -> None:
    result = cluster.console("dir", user="vera")
    assert result.returncode == 2
    assert "needs the permission live_response.basic" in result.stderr


def test_one_session_per_device_names_the_holder(cluster: Cluster) -> None:
    with cluster.api("alice") as api:
        opened = api.post("/api/v1/sessions", json={"device": cluster.device_id}).json()
        try:
            result = cluster.console("dir", user="rita")
            assert result.returncode == 2
            assert f"session {opened['id']} of user alice, open since" in result.stderr
        finally:
            api.delete(f"/api/v1/sessions/{opened['id']}")
    sessions = json.loads(
        subprocess.run(
            lr_command("sessions", "--all", "--output", "json"),
            env=cluster.env(),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    row = next(s for s in sessions if s["id"] == opened["id"])
    assert row["status"] == "ended" and row["user"] == "alice" and row["duration_s"] >= 0


def test_devices_lists_the_agent_online_with_its_version(cluster: Cluster) -> None:
    result = subprocess.run(
        lr_command("devices", "--output", "json"), env=cluster.env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    me = rows[cluster.device_id]
    assert me["status"] == "online"
    assert me["agent_version"] == __import__("liveresponse").__version__
    assert set(me) >= {"id", "name", "os", "type", "group", "status", "last_seen", "agent_version"}
