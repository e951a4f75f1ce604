"""``remediate service`` and ``undo service`` on Linux (SPEC §5).

Remediation, in this order, each step a plain sentence in ``record["actions"]``:

1. *Verify*: the service is listed again the way ``services`` lists it; its unit
   file, ExecStart, scope and user must be those of the row the analyst saw, and
   a process running now must be the main pid that row showed. Otherwise nothing
   is done and the difference is named.
2. *Stop*: ``systemctl stop`` when systemd runs the system; else the main pid
   found again from /proc (service_match.py) and its descendants get SIGTERM, a
   grace period and SIGKILL. Whether it ran, its pid and argv are kept for undo.
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
   and ``left`` says so).

Undo checks first that no restored file or link would overwrite something that
appeared since (Conflict naming it; nothing changed), then restores the files,
re-creates the links, reloads systemd when it runs, and starts the service if it
was running: ``systemctl start``, else ExecStart launched detached with the unit's
WorkingDirectory=, User=, Group= and Environment= (SysV: ``/etc/init.d/NAME start``).

The record is saved before every destructive step and at the end, so an agent
that dies half-way leaves a record undo can act on (items done are marked).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

from liveresponse.agent.platform.linux import remediate_common as common
from liveresponse.agent.platform.linux.passwd import read_users, users_with_homes
from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process
from liveresponse.agent.platform.linux.remediate_common import (
    LaunchSpec,
    Record,
    check_restorable,
    file_conflict,
    finish_undo,
    link_conflict,
    link_item,
    quarantine_unless_protected,
    raise_conflicts,
    recreate_link,
    remove_link,
    restore_quarantined,
    text_of,
    unit_links,
)
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
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from liveresponse.protocol.names import escape_bytes

Row = dict[str, Any]
_COMPARED = ("exec", "scope", "user")
_INTERPRETER = re.compile(r"^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*|bash|sh|dash|zsh|ksh)$")
_INLINE_CODE_FLAGS = {"-c", "-e", "-m", "-r", "--eval", "--command"}


@dataclass
class Located:
    row: Row  # the service as listed now
    name: str
    kind: str  # "systemd" or "sysv"
    unit_file: str  # inside path
    scope: UnitScope | None = None
    unit: Unit | None = None
    script: InitScript | None = None

    @property
    def scope_kind(self) -> str:
        return self.scope.kind if self.scope else "system"

    @property
    def manager_user(self) -> str | None:
        return common.manager_user(self.scope)


# ---------------------------------------------------------------- remediate


def remediate_service(ctx: Any, vault: Any, ident: str, entity: Row | None, force: bool) -> Record:
    if not entity or not entity.get("name"):
        raise CommandFailed(f"remediate service {ident} needs the service's row from services in this session")
    fs = FsRoot(getattr(ctx, "root", "/") or "/")
    found = locate(fs, entity)
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
    common.begin(vault, record)
    _stop(fs, found, state, record, vault, systemd)
    _disable(fs, found, record, vault, systemd)
    _quarantine(fs, found, record, vault, force, getattr(ctx, "state_dir", None))
    return common.finish(vault, record)


def locate(fs: FsRoot, entity: Row) -> Located:
    """The service of ``entity`` as it is now; Conflict/NotFound naming what changed since the listing."""
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
    if main_pid and int(main_pid) in _agent_and_ancestors():
        raise CommandFailed(f"service {name} (pid {main_pid}) runs this agent: stopping it would end the remediation "
                            "half-way; nothing was done")  # fmt: skip
    found = Located(row, name, kind, common.inside_of(str(listed_file)))
    reader = Reader(fs)
    if kind == "sysv":
        found.script = next((s for s in collect_init_scripts(reader) if s.name == name), None)
        if found.script is None:
            raise NotFound(f"init script {listed_file} is no longer there; nothing was done")
        return found
    found.scope, found.unit = _unit_of(fs, reader, name, found.unit_file, row)
    return found


def _agent_and_ancestors() -> set[int]:
    """This process and every process above it: a service whose main pid is one of them runs the agent."""
    pids: set[int] = set()
    pid = os.getpid()
    boot_s = boot_time_s()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        try:
            pid = read_process(pid, boot_s).ppid
        except ProcessGone:
            break
    return pids


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


def _stop(fs: FsRoot, found: Located, state: dict[str, Any], record: Record, vault: Any, systemd: bool) -> None:
    actions = record["actions"]
    pid = found.row.get("main_pid")
    if systemd and found.scope_kind == "system":
        # systemd knows the cgroup: its stop reaches every process of the service.
        if found.row.get("state") != "running":
            actions.append("not running: nothing to stop")
            return
        state.update(was_running=True, pid=pid, argv=_argv_of(pid) if pid else None)
        vault.save(record)
        common.systemctl(None, "stop", found.name)
        actions.append(f"stopped through systemctl stop {found.name}" + (f" (main pid {pid})" if pid else ""))
        return
    if not fs.live:
        record["left"].append(f"not stopped: the collector root {fs.root} is offline, it has no processes")
        return
    if systemd and found.manager_user:
        try:  # its user manager would restart it otherwise
            common.systemctl(found.manager_user, "stop", found.name)
            actions.append(f"stopped through systemctl --user --machine={found.manager_user}@ stop {found.name}")
        except CommandFailed as error:
            record["left"].append(f"the user manager of {found.manager_user} did not stop it: {error.message}")
    if pid is None:
        actions.append("not running: no process matches its ExecStart" if found.kind == "systemd"
                       else "not running: no process runs its DAEMON= / PIDFILE=")  # fmt: skip
        return
    state.update(was_running=True, pid=pid, argv=_argv_of(pid))
    vault.save(record)
    result = common.stop_process_tree(int(pid), common.STOP_GRACE_S)
    if result is None:
        state["was_running"] = False
        actions.append(f"not running: pid {pid} had exited before it was stopped")
        return
    state["argv"] = [escape_bytes(word) for word in result.argv]
    actions.append(result.describe(common.STOP_GRACE_S))
    if result.survived:
        record["left"].append(f"still running after SIGKILL: {', '.join(map(str, result.survived))}")


def _disable(fs: FsRoot, found: Located, record: Record, vault: Any, systemd: bool) -> None:
    reader = Reader(fs)
    if found.script is not None:
        paths = [p for p in found.script.start_links if os.path.islink(fs.host_nofollow(p))]
        what = "start link"
    else:
        assert found.scope is not None
        paths = unit_links(reader, common.scope_link_dirs(fs, reader, found.scope), found.name)
        what = "enabling link"
    removed = 0
    for path in paths:
        item = link_item(fs, path)
        record["items"].append(item)
        vault.save(record)
        if remove_link(fs, item):
            removed += 1
            role = what if found.script is not None else common.link_role(item)
            record["actions"].append(f"removed {role} {item['path']} -> {item['target']}")
        else:
            record["items"].remove(item)
            record["left"].append(f"{what} {item['path']} changed while it was removed: left as it is")
            vault.save(record)
    if not paths:
        record["actions"].append(f"no {what}s: it was not enabled")
    if removed and systemd and found.kind == "systemd":
        common.daemon_reload(found.scope_kind, found.manager_user, record["actions"], record["left"])


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


def _quarantine(fs: FsRoot, found: Located, record: Record, vault: Any, force: bool, state_dir: Any) -> None:
    for role, named in _executables(fs, found):
        try:
            path = fs.resolve(named)
        except OSError:
            path = named
        if not fs.is_file(path):
            record["left"].append(f"{role} {text_of(named)} is not there: nothing to quarantine")
            continue
        item = quarantine_unless_protected(vault, record, fs, path, role, force, state_dir)
        if item is not None and not record.get("sha256"):
            record["sha256"] = item["sha256"]


# ---------------------------------------------------------------- undo


def undo_service(ctx: Any, vault: Any, record: Record) -> Record:
    check_restorable(record)
    fs = FsRoot(getattr(ctx, "root", "/") or "/")
    state = next((i for i in record["items"] if i.get("kind") == "service_state"), None)
    if state is None:
        raise CommandFailed(f"{record.get('id')} holds no service state to undo")
    files = [i for i in record["items"] if i.get("kind") == "file" and not i.get("restored")]
    links = [i for i in record["items"] if i.get("kind") == "link" and not i.get("restored")]
    raise_conflicts([c for i in files if (c := file_conflict(i))] + [c for i in links if (c := link_conflict(fs, i))])
    actions: list[str] = []
    left: list[str] = []
    for item in files:
        restore_quarantined(vault, record, item, actions)
    for item in links:
        created = recreate_link(fs, item)
        item["restored"] = True
        role = "start link" if state["unit_kind"] == "sysv" else common.link_role(item)
        actions.append(f"{'re-created' if created else 'kept the existing'} {role} {item['path']} -> {item['target']}")
        vault.save(record)
    systemd = systemd_is_running(fs)
    if links and systemd and state["unit_kind"] == "systemd":
        common.daemon_reload(state["scope"], state.get("manager_user"), actions, left)
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
            common.systemctl(None, "start", name)
            actions.append(f"started through systemctl start {name}")
            return
        if systemd and user:
            try:
                common.systemctl(user, "start", name)
                actions.append(f"started through systemctl --user --machine={user}@ start {name}")
                return
            except CommandFailed as error:
                left.append(f"the user manager of {user} did not start it: {error.message}")
        if not fs.live:
            left.append(f"not started: the collector root {fs.root} is offline")
            return
        if state["unit_kind"] == "sysv":
            script = common.inside_of(state["script"])
            pid = common.launch_detached(LaunchSpec(script, [script, "start"]))
            actions.append(f"started with {text_of(script)} start (systemd is not running): pid {pid}")
            return
        if state.get("start") is None:
            left.append(f"not started: {state.get('start_problem') or 'no ExecStart= to run'}")
            return
        pid = common.launch_detached(LaunchSpec.from_record(state["start"]))
    except CommandFailed as error:
        left.append(f"not started: {error.message}")
        return
    how = "systemd is not running" if not systemd else f"the user manager of {user} is not reachable"
    actions.append(f"started from ExecStart ({how}): pid {pid}")
