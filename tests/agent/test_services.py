"""services from unit files and /proc (systemd is not PID 1 here), and SysV scripts."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from liveresponse.agent.commands import services
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.rootfs import FsRoot
from liveresponse.agent.platform.linux.services import systemd_is_running
from tests.agent.planting import PASSWD, plant

SYSTEM = "/usr/lib/systemd/system"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    plant(tmp_path, "/etc/passwd", PASSWD)
    plant(tmp_path, "/etc/systemd/system/evil.service", "[Unit]\nDescription=Evil\\\n  daemon\n[Service]\n"
          "User=svc\nExecStart=/usr/local/bin/evil --serve\n[Install]\nWantedBy=multi-user.target\n")  # fmt: skip
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "evil.service").symlink_to("/etc/systemd/system/evil.service")
    plant(tmp_path, f"{SYSTEM}/static.service", "[Unit]\nDescription=Static\n[Service]\nExecStart=/bin/true\n")
    plant(tmp_path, f"{SYSTEM}/idle.service", "[Service]\nExecStart=/bin/idle\n[Install]\nWantedBy=multi-user.target\n")
    plant(tmp_path, f"{SYSTEM}/masked.service", "[Service]\nExecStart=/bin/masked\n")
    (tmp_path / "etc/systemd/system/masked.service").symlink_to("/dev/null")
    plant(tmp_path, f"{SYSTEM}/patched.service", "[Service]\nExecStart=/bin/original\n")
    plant(
        tmp_path, "/etc/systemd/system/patched.service.d/override.conf", "[Service]\nExecStart=\nExecStart=/tmp/x -y\n"
    )
    (tmp_path / "etc/systemd/system/alias-of-idle.service").symlink_to(f"{SYSTEM}/idle.service")
    plant(tmp_path, "/home/alice/.config/systemd/user/sync.service", "[Service]\nExecStart=/home/alice/sync\n")
    plant(tmp_path, "/etc/init.d/legacy", "#!/bin/sh\n### BEGIN INIT INFO\n# Short-Description: Legacy daemon\n"
          "### END INIT INFO\nDAEMON=/usr/sbin/legacyd\n", 0o755)  # fmt: skip
    (tmp_path / "etc/rc3.d").mkdir()
    (tmp_path / "etc/rc3.d/S02legacy").symlink_to("../init.d/legacy")
    return tmp_path


def rows_by_name(root: Path, **args: str) -> dict[str, dict]:
    return {row["name"]: row for row in services.run(CommandContext(root=str(root)), dict(args))}


def test_unit_files_of_an_offline_root(planted: Path) -> None:
    rows = rows_by_name(planted)
    evil = rows["evil.service"]
    assert {k: evil[k] for k in ("description", "state", "enabled", "main_pid", "exec", "unit_file", "user")} == {
        "description": "Evil daemon", "state": "unknown", "enabled": "enabled", "main_pid": None,
        "exec": "/usr/local/bin/evil --serve", "unit_file": "/etc/systemd/system/evil.service", "user": "svc",
    }  # fmt: skip
    assert evil["state_reason"] == "offline root: no processes to examine" and evil["root"] == str(planted)
    assert rows["static.service"]["enabled"] == "static"
    assert rows["idle.service"]["enabled"] == "disabled"
    assert rows["idle.service"]["aliases"] == ["alias-of-idle.service"] and "alias-of-idle.service" not in rows
    assert (rows["masked.service"]["enabled"], rows["masked.service"]["state"]) == ("masked", "stopped")
    assert rows["patched.service"]["exec"] == "/tmp/x -y"
    assert rows["patched.service"]["dropins"] == ["/etc/systemd/system/patched.service.d/override.conf"]
    sync = rows["sync.service"]
    assert (sync["scope"], sync["user"], sync["unit_file"]) == (
        "user",
        "alice",
        "/home/alice/.config/systemd/user/sync.service",
    )
    legacy = rows["legacy"]
    assert (legacy["kind"], legacy["description"], legacy["enabled"], legacy["runlevels"]) == (
        "sysv", "Legacy daemon", "enabled", ["3"],
    )  # fmt: skip


def test_name_filter_exact_or_glob(planted: Path) -> None:
    assert list(rows_by_name(planted, name="evil")) == ["evil.service"]
    assert sorted(rows_by_name(planted, name="*d.service")) == ["masked.service", "patched.service"]
    assert list(rows_by_name(planted, name="leg*")) == ["legacy"]


def test_systemd_is_not_pid_1_here() -> None:
    assert systemd_is_running(FsRoot("/")) is (Path("/proc/1/comm").read_text().strip() == "systemd"
                                               and Path("/run/systemd/system").is_dir())  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a unit in /etc/systemd/system")
def test_planted_unit_runs_with_its_pid() -> None:
    name = f"lr-test-{uuid.uuid4().hex[:10]}"
    argv = [sys.executable, "-c", "import time; time.sleep(60)", name]
    unit = Path(f"/etc/systemd/system/{name}.service")
    process = None
    try:
        unit.write_text(f"[Unit]\nDescription=liveresponse test\n[Service]\nExecStart={shlex.join(argv)}\n")
        rows = list(services.run(CommandContext(), {"name": name}))
        assert [(r["name"], r["state"], r["main_pid"]) for r in rows] == [(f"{name}.service", "stopped", None)]
        process = subprocess.Popen(argv)
        time.sleep(0.1)  # let exec finish so /proc shows the new command line
        rows = list(services.run(CommandContext(), {"name": name}))
        assert [(r["state"], r["main_pid"], r["unit_file"], r["enabled"]) for r in rows] == [
            ("running", process.pid, str(unit), "static"),
        ]
        assert rows[0]["exec"] == shlex.join(argv)
    finally:
        unit.unlink(missing_ok=True)
        if process is not None:
            process.kill()
            process.wait()


def test_live_system_rows_have_the_fields() -> None:
    for row in services.run(CommandContext(), {}):
        assert set(row) >= {"name", "description", "state", "enabled", "main_pid", "exec", "unit_file"}
        assert row["state"] in ("running", "stopped", "unknown")
