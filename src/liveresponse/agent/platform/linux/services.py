"""Services: systemd units and SysV init scripts (SPEC §5 ``services``).

When systemd runs the live system (PID 1 is ``systemd`` and
``/run/systemd/system`` exists) it is asked through ``systemctl show``. Otherwise
— containers, machines with another init, an offline root — the unit files are
read (``units.py``) and the running state comes from /proc (``service_match.py``
documents the matching rule). Under an offline root there are no processes:
state is ``unknown`` with ``state_reason`` saying so.

Rows: ``name, description, state (running/stopped/unknown), enabled
(enabled/disabled/static/masked), main_pid, exec, unit_file`` plus ``kind``
(systemd/sysv), ``scope`` (system/user), ``user``, ``aliases``, ``state_reason``.
Alias links (``dbus-org.freedesktop.timesync1.service``) are not rows of their
own; they appear in the ``aliases`` of the unit they name.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Iterator
from typing import Any

from liveresponse.agent.platform.linux import systemctl
from liveresponse.agent.platform.linux.passwd import User, read_users, users_with_homes
from liveresponse.agent.platform.linux.process_table import ProcessRecord, read_processes
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader, show
from liveresponse.agent.platform.linux.service_match import find_main_pid
from liveresponse.agent.platform.linux.sysv import collect_init_scripts
from liveresponse.agent.platform.linux.units import (
    Unit,
    UnitScope,
    enabling_links,
    exec_starts,
    index_units,
    load_unit,
    split_exec,
    system_scope,
    template_of,
    user_scopes,
)

Row = dict[str, Any]
OFFLINE_REASON = "offline root: no processes to examine"


def name_matches(name: str, pattern: str | None) -> bool:
    """Exact or glob, on the unit name with or without its ``.service`` suffix."""
    if not pattern:
        return True
    short = name.removesuffix(".service")
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in (name, short))


def systemd_is_running(fs: FsRoot) -> bool:
    if not fs.live:
        return False
    try:
        with open("/proc/1/comm", "rb") as handle:
            comm = handle.read().strip()
    except OSError:
        return False
    return comm == b"systemd" and fs.is_dir("/run/systemd/system")


def list_services(fs: FsRoot, name_filter: str | None = None) -> Iterator[Row]:
    reader = Reader(fs)
    users = read_users(fs, reader)
    processes = list(read_processes()) if fs.live else []
    scopes = user_scopes(reader, users_with_homes(users))
    rows: list[Row] | None = None
    if systemd_is_running(fs):
        try:
            rows = systemctl.service_rows()
        except (OSError, subprocess.SubprocessError):
            rows = None  # systemctl unusable: fall back to the unit files
    if rows is None:
        scopes.insert(0, system_scope(reader))
        rows = []
    yield from (row for row in rows if name_matches(row["name"], name_filter))
    for row in _unit_file_rows(reader, scopes, users, processes):
        if name_matches(row["name"], name_filter):
            yield row
    for row in _sysv_rows(reader, processes):
        if name_matches(row["name"], name_filter):
            yield row
    for path, reason in reader.problems:
        yield _not_checked(path, reason)


def _not_checked(path: str, reason: str) -> Row:
    return {
        "name": None, "description": None, "state": "unknown", "enabled": None, "main_pid": None,
        "exec": None, "unit_file": show(path), "kind": None, "scope": None, "user": None, "aliases": [],
        "dropins": [], "state_reason": reason, "checked": False, "reason": reason,
    }  # fmt: skip


def _uid_of(users: list[User], name: str | None) -> int | None:
    if name is None:
        return None
    return next((u.uid for u in users if u.name == name), None)


def _unit_file_rows(
    reader: Reader, scopes: list[UnitScope], users: list[User], processes: list[ProcessRecord]
) -> Iterator[Row]:
    for scope in scopes:
        index = index_units(reader, scope.lookup_dirs, (".service",))
        own = index_units(reader, scope.dirs, (".service",)) if scope.dirs != scope.lookup_dirs else index
        # A user's instance also honours the links every user gets from /etc/systemd/user.
        links = enabling_links(reader, scope.lookup_dirs)
        enabled_names = {link.name for link in links} | {link.target.rsplit("/", 1)[1] for link in links if link.target}
        units: dict[str, Unit] = {}
        aliases: dict[str, list[str]] = {}
        own_links = enabling_links(reader, scope.dirs) if scope.dirs != scope.lookup_dirs else links
        # Linked names count too: enabled instances (getty@tty1) and a user's link to a global unit.
        linked_here = {
            link.name
            for link in own_links
            if link.name.endswith(".service") and (link.name in index or template_of(link.name) in index)
        }
        names = list(own) + sorted(linked_here - set(own))
        for name in names:
            unit = load_unit(reader, name, index, scope.lookup_dirs)
            if unit is None:
                continue
            if unit.alias_of:
                aliases.setdefault(unit.alias_of, []).append(name)
                continue
            units[name] = unit
        for name, unit in units.items():
            yield _unit_row(reader.fs, scope, unit, name in enabled_names, aliases.get(name, []), users, processes)


def _enabled_state(unit: Unit, linked: bool) -> str:
    if unit.masked:
        return "masked"
    if linked:
        return "enabled"
    return "disabled" if unit.has_install_section else "static"


def _unit_row(
    fs: FsRoot,
    scope: UnitScope,
    unit: Unit,
    linked: bool,
    aliases: list[str],
    users: list[User],
    processes: list[ProcessRecord],
) -> Row:
    commands = exec_starts(unit)
    run_as = unit.value("Service", "User") or scope.user
    state, main_pid = "unknown", None
    reason: str | None = OFFLINE_REASON
    if unit.masked:
        state, reason = "stopped", "masked"
    elif unit.name.endswith("@.service"):
        state, reason = "stopped", "template unit: only its instances run"
    elif fs.live:
        executable, argv = split_exec(commands[0]) if commands else (None, [])
        uid = _uid_of(users, scope.user) if scope.user != "root" else None
        pid_file = unit.value("Service", "PIDFile")
        main_pid = find_main_pid(executable, argv, processes, fs.host(pid_file) if pid_file else None, uid)
        state = "running" if main_pid else "stopped"
        reason = None if main_pid else "no process matches ExecStart (or PIDFile)"
    return {
        "name": unit.name,
        "description": unit.value("Unit", "Description"),
        "state": state,
        "enabled": _enabled_state(unit, linked),
        "main_pid": main_pid,
        "exec": "; ".join(commands) if commands else None,
        "unit_file": show(unit.fragment or unit.path),
        "kind": "systemd",
        "scope": scope.kind,
        "user": run_as,
        "aliases": sorted(aliases),
        "dropins": [show(d) for d in unit.dropins],
        "state_reason": reason,
    }


def _sysv_rows(reader: Reader, processes: list[ProcessRecord]) -> Iterator[Row]:
    fs = reader.fs
    for script in collect_init_scripts(reader):
        state, main_pid = "unknown", None
        reason: str | None = OFFLINE_REASON
        if fs.live:
            if script.daemon or script.pid_file:
                argv = [script.daemon] if script.daemon else []
                pid_file = fs.host(script.pid_file) if script.pid_file else None
                main_pid = find_main_pid(script.daemon, argv, processes, pid_file)
                if main_pid is None and script.daemon:
                    # Daemons take arguments we cannot see: compare the program alone.
                    daemon = os.fsencode(script.daemon)
                    main_pid = next((p.pid for p in processes if p.exe == daemon), None)
                state = "running" if main_pid else "stopped"
                reason = None if main_pid else "no process runs DAEMON= / PIDFILE="
            else:
                reason = "the script names no DAEMON= or PIDFILE= to look for"
        yield {
            "name": script.name,
            "description": script.description,
            "state": state,
            "enabled": "enabled" if any(level in "2345S" for level in script.runlevels) else "disabled",
            "main_pid": main_pid,
            "exec": show(script.path),
            "unit_file": show(script.path),
            "kind": "sysv",
            "scope": "system",
            "user": "root",
            "aliases": [],
            "dropins": [],
            "runlevels": script.runlevels,
            "state_reason": reason,
        }
