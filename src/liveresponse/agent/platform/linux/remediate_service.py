"""``remediate service`` and ``undo service`` on Linux (SPEC §5).

Remediation, in this order, each step a plain sentence in ``record["actions"]``:

1. *Verify*: the service is listed again the way ``services`` lists it; its unit
   file, ExecStart, scope and user must be those of the row the analyst saw, and
   a process running now must be the main pid that row showed. Otherwise nothing
   is done and the difference is named. A service that runs this agent, or the
   liveresponse server it reports to on this host (its main pid, a descendant,
   or a process in its cgroup: protected_processes.py), is refused.
2. *Stop*: ``systemctl stop`` when systemd runs the system; else the main pid
   found again from /proc (service_match.py), with the start time it had then,
   and its descendants get SIGTERM, a grace period and SIGKILL (a pid reused
   since is left alone). Whether it ran, its pid and argv are kept for undo.
   A SysV script is not run to stop its daemon (it is the suspect): its process is
   signalled the same way.
3. *Disable*: every enabling link (``*.wants``, ``*.requires``, ``*.upholds``) and
   alias link of the unit in its scope is removed, each recorded exactly (path,
   raw target, owner); SysV ``S`` links in ``rc?.d`` likewise; ``systemctl
   daemon-reload`` when systemd runs.
4. *Quarantine*: the executable (first word of ExecStart, links resolved) — and
   the script an interpreter runs, when ExecStart is ``python3 /x.py`` and the like;
   for SysV the ``DAEMON=`` program and the init script — through the vault,
   unless protected (package-owned or core system files stay without -force,
   and ``left`` says so). A file that cannot be quarantined is named in ``left``;
   the links are gone by then, so the rest of the remediation stands.

Undo checks first that no restored file or link would overwrite something that
appeared since, nor land where a directory was swapped for a link (Conflict
naming every one; nothing changed), then restores the files, re-creates the
links, reloads systemd when it runs, and starts the service if it was running:
``systemctl start``, else ExecStart launched detached with the unit's
WorkingDirectory=, User=, Group= and Environment= (SysV: ``/etc/init.d/NAME
start``), through a short-lived launcher process, so the program is re-parented
to init and never lingers as the agent's zombie.

The record is saved before every destructive step and at the end, so an agent
that dies half-way leaves a record undo can act on (items done are marked); a
failure before anything changed leaves no record (remediate_common.remediation).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import process_stop, protected_processes, remediate_links, systemd_control
from liveresponse.agent.platform.linux import remediate_common as common
from liveresponse.agent.platform.linux.nofollow_paths import conflict
from liveresponse.agent.platform.linux.passwd import read_users, users_with_homes
from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process
from liveresponse.agent.platform.linux.remediate_common import (
    Record,
    check_restorable,
    file_conflicts,
    finish_undo,
    inside_of,
    pending_files,
    quarantine_unless_protected,
    restore_files,
    text_of,
)
from liveresponse.agent.platform.linux.remediate_links import link_conflicts, unit_links
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.services import list_services, systemd_is_running
from liveresponse.agent.platform.linux.sysv import InitScript, collect_init_scripts
from liveresponse.agent.platform.linux.units import (
    Unit,
    UnitScope,
    exec_starts,
    index_units,
    load_unit,
    split_exec,
    system_scope,
    user_scopes,
)
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, Conflict, LiveResponseError, NotFound
from liveresponse.protocol.names import escape_bytes

Row = dict[str, Any]
_COMPARED = ("exec", "scope", "user")
_INTERPRETER = re.compile(r"^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*|bash|sh|dash|zsh|ksh)$")
_INLINE_CODE_FLAGS = {"-c", "-e", "-m", "-r", "--eval", "--command"}
LAUNCH_TIMEOUT_S = 30
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


@dataclass
class Located:
    row: Row  # the service as listed now
    name: str
    kind: str  # "systemd" or "sysv"
    unit_file: str  # inside path
    scope: UnitScope | None = None
    unit: Unit | None = None
    script: InitScript | None = None
    main_started_s: float | None = None  # start time of the main pid when it was found again

    @property
    def scope_kind(self) -> str:
        return self.scope.kind if self.scope else "system"

    @property
    def manager_user(self) -> str | None:
        return systemd_control.manager_user(self.scope)


# ---------------------------------------------------------------- remediate


def remediate_service(ctx: CommandContext, vault: Vault, ident: str, entity: Row | None, force: bool) -> Record:
    if not entity or not entity.get("name"):
        raise CommandFailed(f"remediate service {ident} needs the service's row from services in this session")
    fs = FsRoot(ctx.root or "/")
    found = locate(fs, entity, protected_processes.server_url_of(ctx.files))
    systemd = systemd_is_running(fs)
    # The record is found again by the word the analyst typed (undo service NAME), with or without .service.
    entity_name = ident if ident in (found.name, found.name.removesuffix(".service")) else found.name
    record: Record = vault.new_record("service", entity_name, ctx)
    record["path"] = text_of(found.unit_file)
    spec, problem = (None, None) if found.kind == "sysv" else start_spec(fs, found)
    state: dict[str, Any] = {
        "kind": "service_state", "name": found.name, "unit_kind": found.kind, "scope": found.scope_kind,
        "manager_user": found.manager_user, "systemd": systemd, "was_running": False, "pid": None, "argv": None,
        "start": spec.to_record() if spec else None, "start_problem": problem,
        "script": text_of(found.script.path) if found.script else None,
    }  # fmt: skip
    record["items"].append(state)
    with common.remediation(vault, record):
        _stop(fs, found, state, record, vault, systemd)
        _disable(fs, found, record, vault, systemd)
        _quarantine(fs, found, record, vault, force, ctx.state_dir)
    return record


def locate(fs: FsRoot, entity: Row, server_url: str | None = None) -> Located:
    """The service of ``entity`` as it is now; Conflict/NotFound naming what changed since the listing.

    A service that runs this agent, or the server at ``server_url`` when it is on this host, is refused.
    """
    name = str(entity["name"])
    kind = entity.get("kind") or "systemd"
    listed_file = entity.get("unit_file")
    rows = [r for r in list_services(fs, glob.escape(name)) if r.get("name") == name and r.get("kind") == kind]
    same_file = [r for r in rows if r.get("unit_file") == listed_file]
    if not same_file:
        if not rows:
            raise NotFound(f"service {name} is no longer there (listed with unit file {listed_file}); nothing was done")
        raise Conflict(f"service {name} changed since it was listed: its unit file is now {rows[0]['unit_file']}, "
                       f"listed {listed_file}; nothing was done, run services again")  # fmt: skip
    row = next((r for r in same_file if all(r.get(k) == entity.get(k) for k in ("scope", "user"))), same_file[0])
    differences = [
        f"{key} is now {row.get(key)!r}, listed {entity.get(key)!r}"
        for key in _COMPARED
        if key in entity and row.get(key) != entity.get(key)
    ]
    if row.get("main_pid") is not None and row.get("main_pid") != entity.get("main_pid"):
        listed = f"pid {entity['main_pid']}" if entity.get("main_pid") else "not running"
        differences.append(f"it runs now as pid {row['main_pid']}, listed {listed}")
    if differences:
        raise Conflict(f"service {name} changed since it was listed: {'; '.join(differences)}; nothing was done, "
                       "run services again")  # fmt: skip
    main_pid = row.get("main_pid")
    if main_pid and int(main_pid) in protected_processes.agent_and_ancestors():
        raise CommandFailed(f"service {name} (pid {main_pid}) runs this agent: stopping it would end the remediation "
                            "half-way; nothing was done")  # fmt: skip
    _refuse_server(name, main_pid, server_url)
    found = Located(row, name, kind, inside_of(str(listed_file)))
    if main_pid and fs.live:
        try:  # at once: the pid is stopped only while it still has this start time (process_stop)
            found.main_started_s = read_process(int(main_pid), boot_time_s()).start_time_s
        except ProcessGone:
            found.row = {**row, "main_pid": None, "state": "stopped"}
    reader = Reader(fs)
    if kind == "sysv":
        found.script = next((s for s in collect_init_scripts(reader) if s.name == name), None)
        if found.script is None:
            raise NotFound(f"init script {listed_file} is no longer there; nothing was done")
        return found
    found.scope, found.unit = _unit_of(fs, reader, name, found.unit_file, row)
    return found


def _refuse_server(name: str, main_pid: Any, server_url: str | None) -> None:
    """Refuse to stop the server this agent reports to: its main pid, a descendant of it, or in its cgroup."""
    server = protected_processes.server_pids(server_url)
    if not server:
        return
    if main_pid and int(main_pid) in server:
        raise CommandFailed(f"service {name}: {protected_processes.server_refusal(int(main_pid))}; nothing was done")
    below = set(process_stop.descendants_of(process_stop.process_table(), int(main_pid))) if main_pid else set()
    with_it = sorted(pid for pid in server if pid in below or protected_processes.cgroup_leaf(pid) == name)
    if with_it:
        refusal = protected_processes.server_refusal(with_it[0])
        raise CommandFailed(f"service {name} would stop pid {with_it[0]} with it: {refusal}; nothing was done")


def _unit_of(fs: FsRoot, reader: Reader, name: str, unit_file: str, row: Row) -> tuple[UnitScope, Unit | None]:
    if row.get("scope", "system") == "system":
        scope = system_scope(reader)
        unit = load_unit(reader, name, index_units(reader, scope.lookup_dirs, (".service",)), scope.lookup_dirs)
        return scope, unit  # under systemd the row came from systemctl: the name is what counts
    candidates: list[tuple[UnitScope, Unit]] = []
    for scope in user_scopes(reader, users_with_homes(read_users(fs, reader))):
        index = index_units(reader, scope.lookup_dirs, (".service",))
        unit = load_unit(reader, name, index, scope.lookup_dirs)
        if unit is not None and (unit.fragment or unit.path) == unit_file:
            candidates.append((scope, unit))
    if not candidates:
        raise NotFound(f"unit file {text_of(unit_file)} of {name} is no longer there; nothing was done")
    return next((c for c in candidates if c[0].user == row.get("user")), candidates[0])


def start_spec(fs: FsRoot, found: Located) -> tuple[LaunchSpec | None, str | None]:
    """How undo starts the unit without systemd: (spec, None) or (None, why it cannot)."""
    unit = found.unit
    commands = exec_starts(unit) if unit else []
    if unit is None or not commands:
        return None, "the unit has no ExecStart="
    executable, argv = split_exec(commands[0])
    if executable is None:
        return None, "ExecStart= is empty"
    if any("$" in word or "%" in word for word in [executable, *argv]):
        return None, "ExecStart= uses $VARIABLES or %specifiers that only systemd expands"
    program = executable if executable.startswith("/") else fs.find_command(executable)
    if program is None:
        return None, f"ExecStart= program {executable} is not found"
    # A user's own unit runs as that user, unless User= says otherwise.
    user = unit.value("Service", "User") or found.manager_user
    if user is None and found.scope_kind == "user":
        return None, "a global user unit runs in each user's own manager, not as root"
    cwd = (unit.value("Service", "WorkingDirectory") or "/").lstrip("-") or "/"
    if cwd == "~":
        cwd = _home_of(fs, user) or "/"
    environment: dict[str, str] = {}
    for assignments in unit.values("Service", "Environment"):
        try:
            words = shlex.split(assignments)
        except ValueError:
            words = assignments.split()
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                environment[key] = value
    return LaunchSpec(program, argv, cwd, user, unit.value("Service", "Group") or None, environment), None


def _home_of(fs: FsRoot, user: str | None) -> str | None:
    account = next((u for u in read_users(fs) if u.name == (user or "root")), None)
    return account.home if account else None


def _argv_of(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [escape_bytes(word) for word in raw.rstrip(b"\0").split(b"\0")] if raw else None


def _stop(fs: FsRoot, found: Located, state: dict[str, Any], record: Record, vault: Vault, systemd: bool) -> None:
    actions = record["actions"]
    pid = found.row.get("main_pid")
    if systemd and found.scope_kind == "system":
        # systemd knows the cgroup: its stop reaches every process of the service.
        if found.row.get("state") != "running":
            actions.append("not running: nothing to stop")
            return
        state.update(was_running=True, pid=pid, argv=_argv_of(pid) if pid else None)
        vault.save(record)
        systemd_control.systemctl(None, "stop", found.name)
        common.changed(record, f"stopped through systemctl stop {found.name}" + (f" (main pid {pid})" if pid else ""))
        return
    if not fs.live:
        record["left"].append(f"not stopped: the collector root {fs.root} is offline, it has no processes")
        return
    if systemd and found.manager_user:
        try:  # its user manager would restart it otherwise
            systemd_control.systemctl(found.manager_user, "stop", found.name)
            common.changed(
                record, f"stopped through systemctl --user --machine={found.manager_user}@ stop {found.name}"
            )
        except CommandFailed as error:
            record["left"].append(f"the user manager of {found.manager_user} did not stop it: {error.message}")
    if pid is None:
        actions.append("not running: no process matches its ExecStart" if found.kind == "systemd"
                       else "not running: no process runs its DAEMON= / PIDFILE=")  # fmt: skip
        return
    state.update(was_running=True, pid=pid, argv=_argv_of(pid))
    vault.save(record)
    result = process_stop.stop_process_tree(int(pid), process_stop.STOP_GRACE_S, found.main_started_s)
    if result is None:
        state["was_running"] = False
        actions.append(f"not running: pid {pid} had exited before it was stopped")
        return
    state["argv"] = [escape_bytes(word) for word in result.argv]
    common.changed(record, result.describe(process_stop.STOP_GRACE_S))
    if result.survived:
        record["left"].append(f"still running after SIGKILL: {', '.join(map(str, result.survived))}")


def _disable(fs: FsRoot, found: Located, record: Record, vault: Vault, systemd: bool) -> None:
    reader = Reader(fs)
    if found.script is not None:
        paths = [p for p in found.script.start_links if os.path.islink(fs.host_nofollow(p))]
        what = "start link"
    else:
        assert found.scope is not None
        paths = unit_links(reader, remediate_links.scope_link_dirs(fs, reader, found.scope), found.name)
        what = "enabling link"
    removed = remediate_links.remove_links(fs, vault, record, paths, what if found.script is not None else None)
    if not paths:
        record["actions"].append(f"no {what}s: it was not enabled")
    if removed and systemd and found.kind == "systemd":
        systemd_control.daemon_reload(found.scope_kind, found.manager_user, record["actions"], record["left"])


def _executables(fs: FsRoot, found: Located) -> list[tuple[str, str]]:
    """(role, inside path as named) of what to quarantine."""
    if found.script is not None:
        daemon = [("daemon", found.script.daemon)] if found.script.daemon else []
        return [*daemon, ("init script", found.script.path)]
    commands = exec_starts(found.unit) if found.unit else []
    if not commands:
        return []
    executable, argv = split_exec(commands[0])
    if not executable:
        return []
    program = executable if executable.startswith("/") else (fs.find_command(executable) or executable)
    targets = [("executable", program)]
    if _INTERPRETER.match(os.path.basename(program)):
        script = _script_argument(argv[1:])
        if script:
            targets.append(("script", script))
    return targets


def _script_argument(words: list[str]) -> str | None:
    """The script file an interpreter is asked to run (``python3 -u /opt/x.py``), if any."""
    for word in words:
        if word in _INLINE_CODE_FLAGS:
            return None
        if word.startswith("-"):
            continue
        return word if word.startswith("/") else None
    return None


def _quarantine(fs: FsRoot, found: Located, record: Record, vault: Vault, force: bool, state_dir: Path | None) -> None:
    for role, named in _executables(fs, found):
        try:
            path = fs.resolve(named)
        except OSError:
            path = named
        if not fs.is_file(path):
            record["left"].append(f"{role} {text_of(named)} is not there: nothing to quarantine")
            continue
        host = os.fsencode(fs.host(path))
        try:
            quarantine_unless_protected(vault, record, host, force, state_dir, shown=text_of(path), role=role)
        except LiveResponseError as error:
            if not record.get("_changed"):
                raise  # nothing done yet: the remediation fails as a whole, and leaves no record
            record["left"].append(f"{role} {text_of(path)} was not quarantined: {error.message}")


# ---------------------------------------------------------------- undo


def undo_service(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    check_restorable(record)
    fs = FsRoot(ctx.root or "/")
    state = next((i for i in record["items"] if i.get("kind") == "service_state"), None)
    if state is None:
        raise CommandFailed(f"{record.get('id')} holds no service state to undo")
    files = pending_files(record)
    links = remediate_links.pending_links(record)
    conflicts = file_conflicts(vault, files) + [place for item in links for place in link_conflicts(item)]
    if conflicts:
        raise conflict(conflicts)
    actions: list[str] = []
    left: list[str] = []
    with common.undoing(record, actions):
        restore_files(vault, record, files, actions, left)
        what = "start link" if state["unit_kind"] == "sysv" else None
        remediate_links.recreate_links(vault, record, links, actions, what)
    systemd = systemd_is_running(fs)
    if links and systemd and state["unit_kind"] == "systemd":
        systemd_control.daemon_reload(state["scope"], state.get("manager_user"), actions, left)
    if state.get("was_running"):
        _start(fs, state, systemd, actions, left)
    else:
        actions.append("not started: it was not running when it was remediated")
    return finish_undo(vault, record, ctx, actions, left)


def _start(fs: FsRoot, state: dict[str, Any], systemd: bool, actions: list[str], left: list[str]) -> None:
    name = state["name"]
    user = state.get("manager_user")
    try:
        if systemd and state["scope"] == "system":
            systemd_control.systemctl(None, "start", name)
            actions.append(f"started through systemctl start {name}")
            return
        if systemd and user:
            try:
                systemd_control.systemctl(user, "start", name)
                actions.append(f"started through systemctl --user --machine={user}@ start {name}")
                return
            except CommandFailed as error:
                left.append(f"the user manager of {user} did not start it: {error.message}")
        if not fs.live:
            left.append(f"not started: the collector root {fs.root} is offline")
            return
        if state["unit_kind"] == "sysv":
            script = inside_of(state["script"])
            pid = launch_detached(LaunchSpec(script, [script, "start"]))
            actions.append(f"started with {text_of(script)} start (systemd is not running): pid {pid}")
            return
        if state.get("start") is None:
            left.append(f"not started: {state.get('start_problem') or 'no ExecStart= to run'}")
            return
        pid = launch_detached(LaunchSpec.from_record(state["start"]))
    except CommandFailed as error:
        left.append(f"not started: {error.message}")
        return
    how = "systemd is not running" if not systemd else f"the user manager of {user} is not reachable"
    actions.append(f"started from ExecStart ({how}): pid {pid}")


# ---------------------------------------------------------------- launching detached (undo without systemd)


@dataclass(frozen=True)
class LaunchSpec:
    executable: str
    argv: list[str]
    cwd: str = "/"
    user: str | None = None
    group: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "executable": text_of(self.executable),
            "argv": [text_of(word) for word in self.argv],
            "cwd": text_of(self.cwd),
            "user": self.user,
            "group": self.group,
            "environment": {key: text_of(value) for key, value in self.environment.items()},
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> LaunchSpec:
        return cls(
            inside_of(data["executable"]),
            [inside_of(word) for word in data["argv"]],
            inside_of(data.get("cwd") or "/"),
            data.get("user"),
            data.get("group"),
            {key: inside_of(value) for key, value in (data.get("environment") or {}).items()},
        )


def launch_detached(spec: LaunchSpec) -> int:
    """Start ``spec`` in a new session with stdio on /dev/null; its pid.

    A launcher process starts it and exits at once, so the program's parent
    becomes init (or the nearest subreaper), as under a service manager.
    """
    code = "from liveresponse.agent.platform.linux.remediate_service import launcher_main; launcher_main()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(spec.to_record()),
            capture_output=True,
            text=True,
            timeout=LAUNCH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise CommandFailed(f"could not start {text_of(spec.executable)}: {error}") from error
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise CommandFailed(f"could not start {text_of(spec.executable)}: {reason}")
    return int(done.stdout.strip())


def launcher_main() -> None:
    """The launcher's body: read a LaunchSpec as JSON on stdin, start it, print its pid."""
    import grp
    import pwd

    spec = LaunchSpec.from_record(json.load(sys.stdin))
    environment = {"PATH": SERVICE_PATH, "LANG": "C.UTF-8"}
    kwargs: dict[str, Any] = {}
    try:
        if spec.user is not None:
            account = pwd.getpwuid(int(spec.user)) if spec.user.isdigit() else pwd.getpwnam(spec.user)
            gid = account.pw_gid
            kwargs.update(user=account.pw_uid, extra_groups=os.getgrouplist(account.pw_name, gid))
            environment.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name,
                               SHELL=account.pw_shell)  # fmt: skip
            kwargs["group"] = gid
        if spec.group is not None:
            kwargs["group"] = int(spec.group) if spec.group.isdigit() else grp.getgrnam(spec.group).gr_gid
        environment.update(spec.environment)
        process = subprocess.Popen(
            spec.argv,
            executable=spec.executable,
            cwd=spec.cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            **kwargs,
        )
    except (OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(process.pid)
    sys.stdout.flush()
    os._exit(0)  # leave the child running; do not let Popen's finaliser wait for it
