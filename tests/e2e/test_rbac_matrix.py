"""Every catalogue command x every built-in role, through the real server and agent (SPEC §5, §8).

Allowed commands reach the agent (its log names the command id); denied ones are
refused before dispatch: a command-log row with the command named and the missing
permission in its errors, an audit record, and not a word in the agent's log.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from liveresponse.protocol.catalogue import COMMANDS, CommandSpec, Runs
from liveresponse.server.rbac import BUILTIN_ROLES, command_permission
from liveresponse.testing.cluster import Cluster
from tests.e2e.store_access import add_user

USERS = {"viewer": "vera", "responder": "rita", "advanced-responder": "adam", "admin": "alice"}
USERS["security-admin"] = "sam"

# Lines that are safe to run on this machine; a command not listed runs its catalogue example.
SAFE_LINES = {
    "cd": "cd /",
    "fileinfo": "fileinfo /etc/hostname",
    "findfile": "findfile no-such-lr-matrix-file -path /etc",
    "getfile": "getfile /nonexistent-lr-matrix/x -auto",
    "putfile": "putfile no-such-library-file",
    "run": "run no-such-script.sh",
    "remediate": "remediate list",
    "undo": "undo file /nonexistent-lr-matrix/x",
    "analyze": "analyze file /nonexistent-lr-matrix/x",
    "library": "library",
    "processes": "processes 1",
}
DEVICE_COMMANDS = [c for c in COMMANDS if c.runs is not Runs.CONSOLE]


def line_of(spec: CommandSpec) -> str:
    return SAFE_LINES.get(spec.name, spec.example)


def agent_log(cluster: Cluster) -> str:
    return (cluster.base / "agent.log").read_text(errors="replace")


def run_as(cluster: Cluster, user: str, session_id: str, line: str) -> tuple[int, dict[str, Any]]:
    with cluster.api(user) as api:
        response = api.post(f"/api/v1/sessions/{session_id}/commands", json={"command_line": line, "wait_s": 30})
    return response.status_code, response.json()


@pytest.fixture(scope="module")
def matrix(cluster: Cluster) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """Run every device command as every role; (role, command) -> (HTTP status, answer)."""
    if "sam" not in cluster.tokens:
        add_user(cluster, "sam", "security-admin")
    results: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    with cluster.api("alice") as api:
        for role, user in USERS.items():
            opener = "alice" if role == "viewer" else user  # a viewer cannot open one: it tries alice's
            with cluster.api(opener) as own:
                opened = own.post("/api/v1/sessions", json={"device": cluster.device_id})
                assert opened.status_code == 200, opened.text
            session_id = opened.json()["id"]
            try:
                for spec in DEVICE_COMMANDS:
                    results[(role, spec.name)] = run_as(cluster, user, session_id, line_of(spec))
            finally:
                assert api.delete(f"/api/v1/sessions/{session_id}").status_code == 200
    time.sleep(0.5)  # the agent's last log lines
    return results


@pytest.mark.parametrize("role", sorted(BUILTIN_ROLES))
def test_role_row_of_the_matrix(cluster: Cluster, matrix: Any, role: str) -> None:
    held = {str(p) for p in BUILTIN_ROLES[role]}
    seen_by_agent = agent_log(cluster)
    wrong = []
    with cluster.api("alice") as api:
        audit = api.get("/api/v1/audit", params={"user": USERS[role], "limit": 100000}).json()
    for spec in DEVICE_COMMANDS:
        status, answer = matrix[(role, spec.name)]
        needed = command_permission(spec)
        if role == "viewer":  # refused at the route: live response itself needs live_response.basic
            if status != 403 or answer["error"]["permission"] != "live_response.basic":
                wrong.append(f"{spec.name}: viewer got {status} {answer}")
            continue
        allowed = needed is None or str(needed) in held
        if allowed:
            if status != 200:
                error = answer.get("error", {})
                if error.get("code") == "permission_denied":
                    wrong.append(f"{spec.name}: allowed for {role} but denied: {error}")
                continue  # refused by the server for another reason (e.g. a missing library file)
            if answer["status"] not in ("completed", "failed", "timed_out", "cancelled"):
                wrong.append(f"{spec.name}: {role}: status {answer['status']}")
            elif spec.runs is Runs.AGENT and answer["id"] not in seen_by_agent and not answer["errors"]:
                wrong.append(f"{spec.name}: {role}: completed but the agent never logged {answer['id']}")
        else:
            error = answer.get("error", {})
            if status != 403 or error.get("permission") != str(needed):
                wrong.append(f"{spec.name}: denied for {role} but got {status} {answer}")
                continue
            command_id = error["command_id"]
            if command_id in seen_by_agent:
                wrong.append(f"{spec.name}: denied for {role} yet the agent saw {command_id}")
            with cluster.api("alice") as api:
                row = api.get(f"/api/v1/commands/{command_id}").json()
            if (row["command"], row["status"]) != (spec.name, "failed") or str(needed) not in row["errors"]:
                wrong.append(f"{spec.name}: the log row of a denial is {row}")
            if not any(r["outcome"] == "denied" and r["detail"].get("command_id") == command_id for r in audit):
                wrong.append(f"{spec.name}: denial of {command_id} not audited")
    assert wrong == []


def test_allowed_basic_commands_reach_the_agent(cluster: Cluster, matrix: Any) -> None:
    seen = agent_log(cluster)
    for spec in DEVICE_COMMANDS:
        status, answer = matrix[("responder", spec.name)]
        if spec.runs is Runs.AGENT and spec.prerequisite is None and status == 200:
            assert f"running {answer['id']} {spec.name}" in seen


def test_viewer_denials_are_audited(cluster: Cluster, matrix: Any) -> None:
    with cluster.api("alice") as api:
        audit = api.get("/api/v1/audit", params={"user": "vera", "type": "denied", "limit": 100000}).json()
    refused = [
        r for r in audit if r["detail"].get("needs") == "live_response.basic" and "/commands" in r["detail"]["action"]
    ]
    assert len(refused) >= len(DEVICE_COMMANDS)


def test_matrix_covers_every_device_command() -> None:
    assert {c.name for c in DEVICE_COMMANDS} == {c.name for c in COMMANDS if c.runs is not Runs.CONSOLE}
    assert DEVICE_COMMANDS, "the catalogue has commands that run on the device"
    assert all(line_of(c).split()[0].lower() == c.name for c in DEVICE_COMMANDS)
