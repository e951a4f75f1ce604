"""Persistence run by the system itself: cron, at, systemd, SysV, rc.local, udev, kernel modules.

See ``persistence.py`` for the row shape and the "absent" / "not checked" rules.
"""

from __future__ import annotations

import re
from typing import Any

from liveresponse.agent.platform.linux.atjobs import AT_SPOOLS, collect_at_jobs
from liveresponse.agent.platform.linux.cron import CRON_D, PERIODIC_DIRS, SPOOL_DIRS, SYSTEM_CRONTAB, collect_cron
from liveresponse.agent.platform.linux.passwd import User
from liveresponse.agent.platform.linux.persistence import Mechanism, Scan, program_of
from liveresponse.agent.platform.linux.rootfs import lines_of, show
from liveresponse.agent.platform.linux.sysv import RC_LOCAL, collect_init_scripts
from liveresponse.agent.platform.linux.timestamps import iso_utc
from liveresponse.agent.platform.linux.units import (
    GLOBAL_USER_UNIT_DIRS,
    SYSTEM_UNIT_DIRS,
    Unit,
    UnitScope,
    enabling_links,
    exec_starts,
    index_units,
    load_unit,
    split_exec,
    system_scope,
    user_scopes,
)
from liveresponse.protocol.names import escape_bytes

UDEV_RULE_DIRS = ("/etc/udev/rules.d", "/run/udev/rules.d", "/usr/local/lib/udev/rules.d", "/usr/lib/udev/rules.d",
                  "/lib/udev/rules.d")  # fmt: skip
# udev runs a relative RUN program from its own directory first (udev(7)).
UDEV_PROGRAM_PATH = ("/usr/lib/udev", "/lib/udev", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d", "/usr/local/lib/modules-load.d",
                     "/usr/lib/modules-load.d", "/lib/modules-load.d")  # fmt: skip
MODULES_FILE = "/etc/modules"
MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d",
                 "/lib/modprobe.d")  # fmt: skip
MODPROBE_FILE = "/etc/modprobe.conf"
_UDEV_PROGRAM = re.compile(rb'\b(RUN(?:\{(\w+)\})?|PROGRAM|IMPORT\{program\})\s*(?:\+=|:=|=)\s*"((?:[^"\\]|\\.)*)"')


def _cron(scan: Scan, users: list[User], homes: list[User]) -> None:
    for entry in collect_cron(scan.reader):
        target = entry.executable or program_of(scan.fs, entry.command)
        scan.add(entry.source, line=entry.line, user=entry.user, entry=entry.raw, command=entry.command,
                 target=target, schedule=entry.schedule)  # fmt: skip


def _at(scan: Scan, users: list[User], homes: list[User]) -> None:
    for job in collect_at_jobs(scan.reader, users):
        run_at = iso_utc(job.run_at)
        scan.add(job.source, user=job.user, entry=f"at job {job.job} (queue {job.queue}) at {run_at}",
                 command=job.command, target=program_of(scan.fs, job.command), schedule=run_at)  # fmt: skip


def _activated_service(unit_name: str, unit: Unit | None) -> str | None:
    """The service a timer, socket or path unit starts."""
    if unit_name.endswith(".service"):
        return unit_name
    stem, _, kind = unit_name.rpartition(".")
    if kind in ("timer", "path"):
        return (unit.value(kind.capitalize(), "Unit") if unit else None) or f"{stem}.service"
    if kind == "socket":
        explicit = unit.value("Socket", "Service") if unit else None
        accept = (unit.value("Socket", "Accept") or "no").lower() in ("yes", "true", "1") if unit else False
        return explicit or (f"{stem}@.service" if accept else f"{stem}.service")
    return None


def _systemd_scope(scan: Scan, scope: UnitScope) -> None:
    reader = scan.reader
    index = index_units(reader, scope.lookup_dirs)
    for link in enabling_links(reader, scope.dirs):
        # A link may name a unit outside the search path ("linked" unit files): read it through the link.
        lookup = index if link.name in index else {**index, link.name: link.path}
        unit = load_unit(reader, link.name, lookup, scope.lookup_dirs)
        service_name = _activated_service(link.name, unit)
        service = unit if service_name == link.name else None
        if service_name and service is None:
            service = load_unit(reader, service_name, index, scope.lookup_dirs)
        commands = exec_starts(service) if service else []
        executable = split_exec(commands[0])[0] if commands else None
        details: dict[str, Any] = {"wanted_by": link.wanted_by, "scope": scope.kind}
        details["unit_file"] = show(unit.fragment) if unit and unit.fragment else None
        if unit is not None and unit.masked:
            details["unit_file"] = "/dev/null"
        if link.name.endswith(".timer") and unit is not None:
            details["schedule"] = "; ".join(unit.values("Timer", "OnCalendar")) or None
        if service_name != link.name:
            details["service"] = service_name
        scan.add(
            link.path,
            user=(service.value("Service", "User") if service else None) or scope.user,
            entry=link.name,
            command="; ".join(commands) or None,
            target=program_of(scan.fs, executable),
            **details,
        )


def _systemd(scan: Scan, users: list[User], homes: list[User]) -> None:
    for scope in [system_scope(scan.reader), *user_scopes(scan.reader, homes)]:
        _systemd_scope(scan, scope)


def _sysv(scan: Scan, users: list[User], homes: list[User]) -> None:
    for script in collect_init_scripts(scan.reader):
        if script.start_links:
            scan.add(script.path, user="root", entry=script.name, command=show(script.path), target=script.path,
                     runlevels=script.runlevels, start_links=[show(p) for p in script.start_links])  # fmt: skip


def _command_lines(scan: Scan, path: str, user: str) -> None:
    data = scan.reader.read(path)
    for number, raw in lines_of(data or b""):
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            command = escape_bytes(stripped)
            scan.add(path, line=number, user=user, entry=command, command=command, target=program_of(scan.fs, command))


def _rc_local(scan: Scan, users: list[User], homes: list[User]) -> None:
    for path in RC_LOCAL:
        _command_lines(scan, path, "root")


def _rule_files(scan: Scan, dirs: tuple[str, ...], suffix: str) -> list[str]:
    """Files by name, the first directory holding a name winning (how udev and modprobe read them)."""
    chosen: dict[str, str] = {}
    for directory in scan.fs.distinct(dirs):
        for path in scan.reader.files_in(directory):
            name = path.rsplit("/", 1)[1]
            if name.endswith(suffix):
                chosen.setdefault(name, path)
    return [chosen[name] for name in sorted(chosen)]


def _udev(scan: Scan, users: list[User], homes: list[User]) -> None:
    for path in _rule_files(scan, UDEV_RULE_DIRS, ".rules"):
        data = scan.reader.read(path) or b""
        logical = data.replace(b"\\\n", b"")  # a rule may continue over several lines
        for number, raw in lines_of(logical):
            if raw.lstrip().startswith(b"#"):
                continue
            for match in _UDEV_PROGRAM.finditer(raw):
                if match.group(2) == b"builtin":
                    continue  # RUN{builtin}: code inside udevd, no program
                command = escape_bytes(match.group(3))
                scan.add(path, line=number, user="root", entry=escape_bytes(raw.strip()), command=command,
                         target=program_of(scan.fs, command, UDEV_PROGRAM_PATH),
                         key=match.group(1).decode())  # fmt: skip


def _modules_load(scan: Scan, users: list[User], homes: list[User]) -> None:
    files = [*_rule_files(scan, MODULES_LOAD_DIRS, ".conf"), MODULES_FILE]
    for path in files:
        for number, raw in lines_of(scan.reader.read(path) or b""):
            name = raw.split(b"#", 1)[0].strip()
            if name and not name.startswith(b";"):
                scan.add(path, line=number, user="root", entry=escape_bytes(name))


def _modprobe(scan: Scan, users: list[User], homes: list[User]) -> None:
    for path in [*_rule_files(scan, MODPROBE_DIRS, ".conf"), MODPROBE_FILE]:
        data = (scan.reader.read(path) or b"").replace(b"\\\n", b"")
        for number, raw in lines_of(data):
            words = raw.strip().split(None, 2)
            if len(words) == 3 and words[0] in (b"install", b"remove"):
                command = escape_bytes(words[2])
                scan.add(path, line=number, user="root", entry=escape_bytes(raw.strip()), command=command,
                         target=program_of(scan.fs, command), module=escape_bytes(words[1]))  # fmt: skip


MECHANISMS = (
    Mechanism("cron", ", ".join((SYSTEM_CRONTAB, CRON_D, *PERIODIC_DIRS, *SPOOL_DIRS)), _cron),
    Mechanism("at", ", ".join(AT_SPOOLS), _at),
    Mechanism("systemd", ", ".join((*SYSTEM_UNIT_DIRS, *GLOBAL_USER_UNIT_DIRS, "~/.config/systemd/user")), _systemd),
    Mechanism("sysv", "/etc/init.d, /etc/rc.d/init.d", _sysv),
    Mechanism("rc.local", ", ".join(RC_LOCAL), _rc_local),
    Mechanism("udev", ", ".join(UDEV_RULE_DIRS), _udev),
    Mechanism("modules-load", ", ".join((*MODULES_LOAD_DIRS, MODULES_FILE)), _modules_load),
    Mechanism("modprobe", ", ".join((*MODPROBE_DIRS, MODPROBE_FILE)), _modprobe),
)
