"""Cron entries: system crontab, /etc/cron.d, the periodic directories, user spools.

User spools differ by distribution, so every known one is read:
``/var/spool/cron/crontabs/<user>`` (Debian, Ubuntu), ``/var/spool/cron/<user>``
(RHEL, Fedora, Arch cronie), ``/var/spool/cron/tabs/<user>`` (SUSE) and
``/var/cron/tabs/<user>`` (BSD-style). The system crontab and /etc/cron.d have a
user column; spool files do not (the file name is the user).

Scripts in ``/etc/cron.{hourly,daily,weekly,monthly}`` run through run-parts;
their schedule is the one of the crontab line that runs the directory, else the
directory's period (anacron).

Every file is listed, including names cron itself would skip (dots in
/etc/cron.d): an attacker's file is worth seeing even where cron ignores it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from liveresponse.agent.platform.linux.cron_schedule import MACROS, REBOOT
from liveresponse.agent.platform.linux.rootfs import Reader, lines_of, show
from liveresponse.protocol.names import escape_bytes

SYSTEM_CRONTAB = "/etc/crontab"
CRON_D = "/etc/cron.d"
PERIODIC_DIRS = {
    "/etc/cron.hourly": "@hourly",
    "/etc/cron.daily": "@daily",
    "/etc/cron.weekly": "@weekly",
    "/etc/cron.monthly": "@monthly",
    "/etc/cron.yearly": "@yearly",
}
SPOOL_DIRS = ("/var/spool/cron/crontabs", "/var/spool/cron", "/var/spool/cron/tabs", "/var/cron/tabs")
# Directories that live inside /var/spool/cron but are not user crontabs.
_NOT_USER_SPOOLS = {"crontabs", "tabs", "atjobs", "atspool", "lastrun", "at"}
_ENVIRONMENT = re.compile(rb"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


@dataclass(frozen=True)
class CronEntry:
    source: str  # inside path of the file holding the entry
    line: int | None  # None for a periodic script (the whole file runs)
    user: str | None
    schedule: str
    command: str  # escaped text (SPEC §5)
    raw: str  # the line as written, escaped
    time_zone: str | None  # CRON_TZ / TZ set in the crontab above the line
    kind: str  # "crontab" or "periodic"
    executable: str | None  # what the command runs, for hashing (inside path)


def first_word(command: str) -> str | None:
    """The program a shell command line starts, skipping ``VAR=value`` prefixes."""
    try:
        words = shlex.split(command, comments=False)
    except ValueError:
        words = command.split()
    for word in words:
        if "=" in word and not word.startswith(("/", "=")) and word.split("=", 1)[0].isidentifier():
            continue
        return word
    return None


def parse_crontab(data: bytes, source: str, user: str | None, with_user_column: bool) -> list[CronEntry]:
    entries: list[CronEntry] = []
    zone: str | None = None
    for number, raw in lines_of(data):
        stripped = raw.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        env = _ENVIRONMENT.match(raw)
        if env and not stripped.startswith((b"*", b"@")) and not stripped[:1].isdigit():
            if env.group(1) in (b"CRON_TZ", b"TZ"):
                zone = env.group(2).strip().strip(b"\"'").decode("utf-8", "replace") or None
            continue
        head = 1 if stripped.startswith(b"@") else 5
        needed = head + (1 if with_user_column else 0) + 1
        words = stripped.split(None, needed - 1)
        if len(words) < needed:
            continue  # a malformed line cron itself would refuse
        schedule = escape_bytes(b" ".join(words[:head]))
        if head == 1 and schedule.lower() not in MACROS and schedule.lower() != REBOOT:
            continue
        owner = escape_bytes(words[head]) if with_user_column else user
        command = escape_bytes(words[-1])
        entries.append(CronEntry(source, number, owner, schedule, command, escape_bytes(raw), zone, "crontab", None))
    return entries


def _crontab_files(reader: Reader) -> list[tuple[str, str | None, bool]]:
    """(path, user, has user column) of every crontab to read."""
    files: list[tuple[str, str | None, bool]] = [(SYSTEM_CRONTAB, None, True)]
    files.extend((path, None, True) for path in reader.files_in(CRON_D))
    for spool in reader.fs.distinct(SPOOL_DIRS):
        for path in reader.files_in(spool):
            name = path.rsplit("/", 1)[1]
            if spool == "/var/spool/cron" and name in _NOT_USER_SPOOLS:
                continue
            if name.startswith("."):
                continue  # .placeholder and lock files, not crontabs
            files.append((path, name, False))
    return files


def collect_cron(reader: Reader) -> list[CronEntry]:
    entries: list[CronEntry] = []
    for path, user, with_user_column in _crontab_files(reader):
        data = reader.read(path)
        if data is not None:
            entries.extend(parse_crontab(data, path, user, with_user_column))
    for directory, period in PERIODIC_DIRS.items():
        schedule = _schedule_running(entries, directory) or period
        for path in reader.files_in(directory):
            name = path.rsplit("/", 1)[1]
            if name == ".placeholder":
                continue
            entries.append(CronEntry(path, None, "root", schedule, show(path), show(path), None, "periodic", path))
    return entries


def _schedule_running(entries: list[CronEntry], directory: str) -> str | None:
    for entry in entries:
        if directory in entry.command and "run-parts" in entry.command:
            return entry.schedule
    return None
