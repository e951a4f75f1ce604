"""``scheduledtasks``: cron entries, systemd timers and at jobs with their next run.

Names, chosen to be unique and to say where the task lives:
``/etc/crontab:12`` (a crontab line), ``/etc/cron.daily/logrotate`` (a periodic
script), ``apt-daily.timer`` (a timer; ``user/NAME.timer`` for a global user timer,
``user:alice/backup.timer`` for a user's own), ``at:257`` (an at job by number). The positional filter is matched
(exact or glob) against that name.

Next runs are in UTC. Wall-clock schedules are read in the root's time zone
(``/etc/localtime``, else ``/etc/timezone``, else UTC) or the crontab's
``CRON_TZ=``. ``now`` is injectable for tests.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liveresponse.agent.platform.linux.atjobs import collect_at_jobs
from liveresponse.agent.platform.linux.calendar_spec import zone_named
from liveresponse.agent.platform.linux.cron import CronEntry, collect_cron
from liveresponse.agent.platform.linux.cron_schedule import next_cron_run, next_run_reason
from liveresponse.agent.platform.linux.passwd import ALL_USERS, read_users, users_with_homes
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader, show
from liveresponse.agent.platform.linux.timers import TimerInfo, collect_timers
from liveresponse.agent.platform.linux.timestamps import iso_utc

Row = dict[str, Any]


def root_time_zone(fs: FsRoot) -> tzinfo:
    """The collector root's local time zone; cron and timers count in it."""
    try:
        with open(fs.host("/etc/localtime"), "rb") as handle:
            return ZoneInfo.from_file(handle)
    except (OSError, ValueError):
        pass
    try:
        name = fs.read_bytes("/etc/timezone").decode().strip()
        return ZoneInfo(name)
    except (OSError, UnicodeDecodeError, ZoneInfoNotFoundError, ValueError):
        return UTC


def _zone_named(name: str | None, default: tzinfo) -> tzinfo:
    return (zone_named(name) if name else None) or default


def cron_task_name(entry: CronEntry) -> str:
    return entry.source if entry.line is None else f"{entry.source}:{entry.line}"


def _cron_row(entry: CronEntry, now: datetime, zone: tzinfo) -> Row:
    reason = next_run_reason(entry.schedule)
    try:
        next_run = next_cron_run(entry.schedule, now, _zone_named(entry.time_zone, zone))
    except ValueError as error:
        next_run, reason = None, f"schedule not understood: {error}"
    return {
        "name": show(cron_task_name(entry)),
        "schedule": entry.schedule,
        "command": entry.command,
        "user": entry.user,
        "source": show(entry.source),
        "next_run": iso_utc(next_run) if next_run else None,
        "kind": "cron" if entry.kind == "crontab" else "cron-periodic",
        "line": entry.line,
        "next_run_reason": reason,
    }


def timer_task_name(timer: TimerInfo) -> str:
    if timer.scope.kind != "user":
        return timer.name
    if timer.scope.user == ALL_USERS:
        return f"user/{timer.name}"  # a global user timer, run by every user's manager
    return f"user:{timer.scope.user}/{timer.name}"


def _timer_row(timer: TimerInfo, now: datetime, zone: tzinfo) -> Row:
    next_run, reason = timer.next_run(now, zone)
    return {
        "name": timer_task_name(timer),
        "schedule": timer.schedule,
        "command": "; ".join(timer.commands) if timer.commands else None,
        "user": timer.run_as,
        "source": show(timer.path),
        "next_run": iso_utc(next_run) if next_run else None,
        "kind": "systemd-timer",
        "line": None,
        "service": timer.service,
        "enabled": bool(timer.enabled_by),
        "enabled_by": [show(p) for p in timer.enabled_by],
        "next_run_reason": reason,
    }


def list_scheduled_tasks(fs: FsRoot, name_filter: str | None = None, now: datetime | None = None) -> Iterator[Row]:
    now = now or datetime.now(UTC)
    zone = root_time_zone(fs)
    reader = Reader(fs)
    users = read_users(fs, reader)
    rows: list[Row] = [_cron_row(entry, now, zone) for entry in collect_cron(reader)]
    rows.extend(_timer_row(timer, now, zone) for timer in collect_timers(reader, users_with_homes(users)))
    for job in collect_at_jobs(reader, users):
        rows.append(
            {
                "name": f"at:{job.job}",
                "schedule": iso_utc(job.run_at),
                "command": job.command,
                "user": job.user,
                "source": show(job.source),
                "next_run": iso_utc(job.run_at),
                "kind": "at",
                "line": None,
                "queue": job.queue,
                "next_run_reason": None if job.run_at > now else "due time passed (the job is pending or running)",
            }
        )
    for row in rows:
        if not name_filter or fnmatch.fnmatchcase(row["name"], name_filter):
            yield row
    for path, reason in reader.problems:
        yield {
            "name": None, "schedule": None, "command": None, "user": None, "source": show(path),
            "next_run": None, "kind": None, "checked": False, "reason": reason,
        }  # fmt: skip
