"""The interactive console in a pseudo-terminal: history, completion, Ctrl+C reaching the agent."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pexpect
import pytest

from liveresponse.testing.cluster import Cluster, lr_command

PROMPT = re.escape(socket.gethostname()) + r" \S*>"  # "HOST CWD> ", then terminal escapes


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 directories: a walk that takes more than a second, so Ctrl+C lands while it runs."""
    root = tmp_path_factory.mktemp("wide")
    for i in range(250):
        parent = root / f"d{i:03}"
        parent.mkdir()
        for j in range(800):
            os.mkdir(parent / f"s{j:03}")
    return root


def spawn_console(cluster: Cluster) -> pexpect.spawn:
    argv = lr_command("console", cluster.device_id)
    env = cluster.env()
    env["TERM"] = "xterm"
    env["XDG_STATE_HOME"] = str(cluster.base / "state")
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", dimensions=(40, 200), timeout=30)
    child.expect("Ctrl\\+D leaves")
    child.expect(PROMPT)
    return child


def wait_until_running(cluster: Cluster, command: str) -> None:
    deadline = time.monotonic() + 10
    with cluster.api() as api:
        while time.monotonic() < deadline:
            if any(r["command"] == command and r["status"] == "running" for r in api.get("/api/v1/log").json()):
                return
            time.sleep(0.02)
    raise AssertionError(f"{command} never showed as running")


def newest_session_log(cluster: Cluster) -> list[dict[str, object]]:
    with cluster.api() as api:
        sessions = api.get("/api/v1/sessions", params={"all": "true"}).json()
        newest = max(sessions, key=lambda s: s["started"])
        return list(api.get(f"/api/v1/sessions/{newest['id']}/commands").json())


def test_history_completion_and_ctrl_c(cluster: Cluster, wide_tree: Path) -> None:
    child = spawn_console(cluster)
    try:
        child.send("cd /etc\r")
        child.expect("cwd")
        child.expect(PROMPT)
        # History: the up arrow brings the last line back.
        child.send("\x1b[A")
        child.expect("cd /etc")
        child.send("\r")
        child.expect("cwd")
        child.expect(PROMPT)
        # Completion of a command name and of a parameter name.
        child.send("fileinf\t")
        child.expect("fileinfo")
        child.send(" hostname -outp\t")
        child.expect("-output")
        child.send(" js\t")
        child.expect("json")
        child.send("\r")
        child.expect('"path": "/etc/hostname"')
        child.expect(PROMPT)
        # Ctrl+C cancels findfile on the device.
        child.send(f'findfile no-such-name -path "{wide_tree}"\r')
        wait_until_running(cluster, "findfile")
        child.sendintr()
        child.expect("cancelling cmd_")
        child.expect("findfile: cancelled")
        child.expect(PROMPT)
        # Ctrl+Z sends the running command to the background; fg brings it back.
        child.send(f'findfile still-nothing -path "{wide_tree}"\r')
        wait_until_running(cluster, "findfile")
        child.sendcontrol("z")
        child.expect(r"\[(cmd_[0-9a-f]+)\] moved to the background")
        job_id = child.match.group(1)
        child.expect(PROMPT)
        child.send("jobs\r")
        child.expect(job_id)
        child.expect(PROMPT)
        child.send(f"fg {job_id}\r")
        child.expect(r"\(0 rows\)")
        child.expect(PROMPT)
        child.send("exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)  # what the terminal showed is in child.before on failure
    log = newest_session_log(cluster)
    assert [(r["command_line"], r["status"]) for r in log] == [
        ("cd /etc", "completed"),
        ("cd /etc", "completed"),
        ("fileinfo hostname -output json", "completed"),
        (f'findfile no-such-name -path "{wide_tree}"', "cancelled"),
        (f'findfile still-nothing -path "{wide_tree}"', "completed"),
    ]
    findfile = log[3]
    assert isinstance(findfile["duration"], float) and findfile["duration"] < 5.0


def test_ctrl_d_leaves_and_ends_the_session(cluster: Cluster) -> None:
    child = spawn_console(cluster)
    try:
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)  # what the terminal showed is in child.before on failure
    with cluster.api() as api:
        open_sessions = api.get("/api/v1/sessions").json()
    assert open_sessions == []
