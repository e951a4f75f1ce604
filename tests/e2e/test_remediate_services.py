"""remediate / undo of a service and of a cron line through the real stack: console -> server -> agent.

A unit is planted in this machine's real /etc/systemd/system with its wants link, and its process is
started by the test (systemd is not PID 1 here, so the agent finds it from the unit file and /proc);
a crontab is planted in the real /etc/cron.d. Everything planted is removed in ``finally``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process, read_processes
from liveresponse.agent.platform.linux.rootfs import FsRoot
from liveresponse.agent.platform.linux.services import systemd_is_running
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import json_documents

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="plants in /etc/systemd/system and /etc/cron.d"),
    pytest.mark.skipif(systemd_is_running(FsRoot("/")), reason="a running systemd would start the planted unit"),
]


def run_json(cluster: Cluster, *lines: str) -> list[Any]:
    """Run the lines in one session; one JSON document per line."""
    result = cluster.console(*lines, output="json")
    assert result.returncode == 0, (lines, result.stdout, result.stderr)
    documents = json_documents(result.stdout)
    assert len(documents) == len(lines), result.stdout
    return documents


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pids_running(argv: list[str]) -> list[int]:
    wanted = [os.fsencode(word) for word in argv]
    return [p.pid for p in read_processes() if p.cmdline == wanted and p.state != "zombie"]


def kill_quietly(pid: int) -> None:
    try:
        read_process(pid, boot_time_s())
        os.kill(pid, signal.SIGKILL)
    except (ProcessGone, ProcessLookupError):
        pass


def test_a_running_service_is_stopped_disabled_quarantined_and_undone(cluster: Cluster, tmp_path: Path) -> None:
    name = f"lr-e2e-{uuid.uuid4().hex[:10]}"
    exe = tmp_path / "bin" / f"{name}-sleep"
    exe.parent.mkdir()
    shutil.copy2("/bin/sleep", exe)
    exe_sha, exe_mode, exe_size = sha256(exe), exe.stat().st_mode, exe.stat().st_size
    exe_mtime = iso_utc_from_ns(exe.stat().st_mtime_ns)
    argv = [str(exe), "3600", "7"]  # sleep adds its arguments up
    unit = Path(f"/etc/systemd/system/{name}.service")
    wants = Path(f"/etc/systemd/system/multi-user.target.wants/{name}.service")
    process = None
    restarted: list[int] = []
    try:
        unit.write_text(
            f"[Unit]\nDescription=liveresponse e2e {name}\n[Service]\nExecStart={' '.join(argv)}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        wants.parent.mkdir(exist_ok=True)
        wants.symlink_to(unit)
        process = subprocess.Popen(argv)
        time.sleep(0.3)  # let exec finish so /proc shows the new command line

        listing, record = run_json(cluster, f"services -name {name}", f"remediate service {name}")
        assert [(r["name"], r["state"], r["main_pid"], r["enabled"]) for r in listing] == [
            (f"{name}.service", "running", process.pid, "enabled"),
        ]
        assert process.wait(15) == -signal.SIGTERM  # gone: stopped by the agent
        assert not wants.is_symlink() and not os.path.lexists(wants)
        assert not exe.exists() and unit.exists()
        assert record["actions"] == [
            f"stopped pid {process.pid} ({' '.join(argv)}): SIGTERM",
            f"removed enabling link {wants} -> {unit}",
            f"quarantined executable {exe} ({exe_size} bytes, sha256 {exe_sha})",
        ]
        assert (record["type"], record["entity"], record["state"], record["path"], record["sha256"]) == (
            "service", name, "remediated", str(unit), exe_sha,
        )  # fmt: skip
        assert (record["left"], record["remediated_by"]) == ([], "alice")
        assert "items" not in record

        (undone,) = run_json(cluster, f"undo service {name}")
        restarted = pids_running(argv)
        assert len(restarted) == 1 and restarted[0] != process.pid
        assert undone["actions"] == [
            f"restored executable {exe} (sha256 {exe_sha}) with mode {exe_mode & 0o7777:04o}, owner root:root,"
            f" mtime {exe_mtime}",
            f"re-created enabling link {wants} -> {unit}",
            f"started from ExecStart (systemd is not running): pid {restarted[0]}",
        ]
        assert (undone["id"], undone["state"], undone["restored_by"], undone["left"]) == (
            record["id"], "restored", "alice", [],
        )  # fmt: skip
        assert os.readlink(wants) == str(unit)
        assert sha256(exe) == exe_sha and exe.stat().st_mode == exe_mode
        again = read_process(restarted[0], boot_time_s())
        assert again.cmdline == [os.fsencode(word) for word in argv] and os.getsid(restarted[0]) == restarted[0]
        (listing,) = run_json(cluster, f"services -name {name}")
        assert [(r["state"], r["main_pid"], r["enabled"]) for r in listing] == [("running", restarted[0], "enabled")]
    finally:
        unit.unlink(missing_ok=True)
        if os.path.lexists(wants):
            wants.unlink()
        if process is not None:
            process.kill()
            process.wait()
        for pid in restarted or (pids_running(argv) if exe.exists() else []):
            kill_quietly(pid)


def test_a_cron_line_is_removed_and_put_back_byte_for_byte(cluster: Cluster) -> None:
    name = f"lr-e2e-{uuid.uuid4().hex[:10]}"
    crontab = Path(f"/etc/cron.d/{name}")
    lines = [
        b"# planted by the liveresponse e2e tests",
        b'MAILTO=""',
        f"17 3 * * * root /bin/true {name} line-3".encode(),
        f"23 4 * * 0 root /bin/true {name} line-4".encode(),
        f"@reboot root /bin/true {name} line-5".encode(),
    ]
    original = b"\n".join(lines) + b"\n"
    task = f"{crontab}:3"
    try:
        crontab.write_bytes(original)
        crontab.chmod(0o644)
        listing, record = run_json(cluster, f"scheduledtasks {task}", f"remediate scheduledtask {task}")
        assert [(r["name"], r["schedule"], r["command"], r["user"], r["kind"]) for r in listing] == [
            (task, "17 3 * * *", f"/bin/true {name} line-3", "root", "cron"),
        ]
        assert crontab.read_bytes() == b"\n".join(lines[:2] + lines[3:]) + b"\n"
        assert crontab.stat().st_mode & 0o7777 == 0o644
        assert record["actions"] == [f"removed line 3 of {crontab}: {lines[2].decode()}"]
        assert (record["entity"], record["path"], record["sha256"]) == (
            task,
            str(crontab),
            hashlib.sha256(original).hexdigest(),
        )

        (undone,) = run_json(cluster, f"undo scheduledtask {task}")
        assert hashlib.sha256(crontab.read_bytes()).hexdigest() == hashlib.sha256(original).hexdigest()
        assert undone["actions"] == [f"put line 3 back in {crontab}: {lines[2].decode()}"]
        assert (undone["state"], undone["left"]) == ("restored", [])
        assert crontab.stat().st_mode & 0o7777 == 0o644

        second = cluster.console(f"undo scheduledtask {task}")
        assert second.returncode == 1 and "nothing to do" in second.stderr, second.stderr
    finally:
        crontab.unlink(missing_ok=True)
