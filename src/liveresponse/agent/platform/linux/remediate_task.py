"""``remediate scheduledtask`` and ``undo scheduledtask`` on Linux (SPEC §5).

By the row's ``kind`` (scheduled.py names the tasks):

- ``cron`` (``/etc/crontab:4``): exactly that line is removed, the file rewritten
  atomically with its mode, owner and trailing newline as they were. The record
  keeps the source, the line number, the raw line bytes and the file's sha256
  before and after. Undo puts the line back at its number (at the end when the
  file is shorter now, and says so); an identical line already there means there
  is nothing to do (or, for a remediation interrupted before the rewrite, that
  the line never left).
- ``cron-periodic`` (``/etc/cron.daily/x``): the script is quarantined (unless protected).
- ``at`` (``at:7``): the job's spool file is quarantined; undo restores it with
  at's mode and owner exactly, so atd picks it up again. Either file must still be
  the one checked (device, inode, size, status change time) when it is quarantined.
- ``systemd-timer``: stopped when systemd runs, its enabling links removed and
  recorded; undo re-creates them and starts it again if it was active.

Before anything is done the task is read again and must be what was listed
(same schedule, command and user at that line; the file still there); otherwise
nothing changes and the difference is named. A file rewritten (a crontab) must
still hold what was read when the new content replaces it, or nothing changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import remediate_common as common
from liveresponse.agent.platform.linux import remediate_links, systemd_control
from liveresponse.agent.platform.linux.atjobs import collect_at_jobs
from liveresponse.agent.platform.linux.cron import CRON_D, PERIODIC_DIRS, SYSTEM_CRONTAB, parse_crontab
from liveresponse.agent.platform.linux.nofollow_paths import conflict
from liveresponse.agent.platform.linux.passwd import read_users, users_with_homes
from liveresponse.agent.platform.linux.remediate_common import Record, inside_of, text_of
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.scheduled import timer_task_name
from liveresponse.agent.platform.linux.services import systemd_is_running
from liveresponse.agent.platform.linux.timers import TimerInfo, collect_timers
from liveresponse.agent.platform.linux.timestamps import iso_utc
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

Row = dict[str, Any]
NOTHING_DONE = "nothing was done, run scheduledtasks again"


# What each kind of row must carry for its remediation (scheduled.py gives them all).
_NEEDED = {"cron": ("source", "line"), "cron-periodic": ("source",), "at": ("source",), "systemd-timer": ()}


def _fs(ctx: CommandContext) -> FsRoot:
    return FsRoot(ctx.root or "/")


def remediate_task(ctx: CommandContext, vault: Vault, ident: str, entity: Row | None, force: bool) -> Record:
    if not entity or not entity.get("name"):
        raise CommandFailed(f"remediate scheduledtask {ident} needs the task's row from scheduledtasks in this session")
    kind = entity.get("kind")
    handlers = {"cron": _remediate_cron_line, "cron-periodic": _remediate_file, "at": _remediate_file,
                "systemd-timer": _remediate_timer}  # fmt: skip
    if kind not in handlers:
        raise CommandFailed(f"scheduled task {entity['name']} is of kind {kind!r}, which remediate cannot handle")
    missing = [key for key in _NEEDED[str(kind)] if entity.get(key) in (None, "")]
    if missing:
        raise CommandFailed(f"the scheduledtasks row of {entity['name']} has no {', '.join(missing)}; nothing was done")
    return handlers[str(kind)](ctx, vault, entity, force)


def undo_task(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    common.check_restorable(record)
    kinds = {item.get("kind") for item in record["items"]}
    if "cron_line" in kinds:
        return _undo_cron_line(ctx, vault, record)
    if "timer_state" in kinds:
        return _undo_timer(ctx, vault, record)
    return common.undo_quarantine(ctx, vault, record)


# ---------------------------------------------------------------- cron lines


def _split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Lines (``\\r`` kept: the raw bytes) and whether the file ends in a newline."""
    if not data:
        return [], False
    trailing = data.endswith(b"\n")
    lines = data.split(b"\n")
    return (lines[:-1] if trailing else lines), trailing


def _join_lines(lines: list[bytes], trailing: bool) -> bytes:
    return b"\n".join(lines) + (b"\n" if trailing and lines else b"")


def _crontab_layout(source: str) -> tuple[bool, str | None]:
    """(has a user column, the user of a spool file)."""
    if source == SYSTEM_CRONTAB or os.path.dirname(source) == CRON_D:
        return True, None
    return False, os.path.basename(source)


def _read_listed(fs: FsRoot, source: str, what: str) -> bytes:
    try:
        return fs.read_bytes(source)
    except FileNotFoundError:
        raise NotFound(f"{text_of(source)} no longer exists, so {what} is gone; {NOTHING_DONE}") from None
    except OSError as error:
        raise CommandFailed(f"cannot read {text_of(source)}: {error.strerror}") from None


def _verify_cron_line(fs: FsRoot, entity: Row) -> tuple[str, int, bytes]:
    """(source, line number, the file's bytes) when the line is still the listed entry."""
    source = inside_of(str(entity["source"]))
    number = int(entity["line"])
    data = _read_listed(fs, source, f"line {number}")
    with_user_column, user = _crontab_layout(source)
    entries = [e for e in parse_crontab(data, source, user, with_user_column) if e.line == number]
    lines, _ = _split_lines(data)
    if not entries:
        now = escape_bytes(lines[number - 1]) if number <= len(lines) else None
        reads = f"it reads {now!r}" if now is not None else f"the file has {len(lines)} lines"
        raise Conflict(f"line {number} of {text_of(source)} is no longer a cron entry ({reads}); {NOTHING_DONE}")
    entry = entries[0]
    differences = [
        f"{key} is now {getattr(entry, key)!r}, listed {entity.get(key)!r}"
        for key in ("schedule", "command", "user")
        if key in entity and getattr(entry, key) != entity.get(key)
    ]
    if differences:
        raise Conflict(f"line {number} of {text_of(source)} changed since it was listed: {'; '.join(differences)}; "
                       f"{NOTHING_DONE}")  # fmt: skip
    return source, number, data


def _remediate_cron_line(ctx: CommandContext, vault: Vault, entity: Row, force: bool) -> Record:
    fs = _fs(ctx)
    source, number, data = _verify_cron_line(fs, entity)
    host = fs.host(source)
    lines, trailing = _split_lines(data)
    raw = lines.pop(number - 1)
    edited = _join_lines(lines, trailing)
    info = os.stat(host)
    record: Record = vault.new_record("scheduledtask", str(entity["name"]), ctx)
    record["path"] = text_of(source)
    record["sha256"] = hashlib.sha256(data).hexdigest()  # what undo gives back
    item = {
        "kind": "cron_line", "source": text_of(source), "line": number, "raw": escape_bytes(raw),
        "trailing_newline": trailing, "sha256_before": record["sha256"], "sha256": None,
        "mode": info.st_mode & 0o7777, "uid": info.st_uid, "gid": info.st_gid,
    }  # fmt: skip
    record["items"].append(item)
    with common.remediation(vault, record):
        rewrite_atomically(host, data, edited)
        item["sha256"] = hashlib.sha256(edited).hexdigest()
        common.changed(record, f"removed line {number} of {text_of(source)}: {escape_bytes(raw)}")
    return record


def rewrite_atomically(host_path: str, expected: bytes, data: bytes) -> None:
    """Replace the file's content ``expected`` with ``data``: same directory, mode and owner; never half-written.

    A symlink is followed (the file it names is rewritten, the link stays). A file that no longer holds
    ``expected`` when the new content is ready is left as it is (CommandFailed): a change made
    meanwhile, by an editor or by crontab(1), is never lost.
    """
    real = os.path.realpath(host_path)
    shown = text_of(host_path)
    before = os.stat(real)
    directory, name = os.path.split(real)
    # A dot name: cron skips dot files in /etc/cron.d while the temp file exists.
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".lr-tmp", dir=directory)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, before.st_uid, before.st_gid)  # before chmod: chown clears set-id bits
        os.fchmod(fd, stat.S_IMODE(before.st_mode))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        with open(real, "rb") as current:
            if current.read() != expected:
                raise CommandFailed(f"{shown} changed while it was being edited; nothing was done, read it again")
        os.rename(temp, real)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _undo_cron_line(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    fs = _fs(ctx)
    item = next(i for i in record["items"] if i.get("kind") == "cron_line")
    source = inside_of(item["source"])
    number = int(item["line"])
    raw = unescape_to_bytes(item["raw"])
    try:
        data = fs.read_bytes(source)
    except FileNotFoundError:
        raise NotFound(f"{item['source']} no longer exists: there is no file to put line {number} back in") from None
    lines, trailing = _split_lines(data)
    if number <= len(lines) and lines[number - 1] == raw:
        if record["state"] == "remediating":  # the agent died before the file was rewritten
            interrupted = f"the remediation was interrupted before line {number} of {item['source']} was removed"
            return common.finish_undo(vault, record, ctx, [f"{interrupted}: it is in place, unchanged"], [])
        raise CommandFailed(f"nothing to do: line {number} of {item['source']} already reads {item['raw']}")
    actions: list[str] = []
    left: list[str] = []
    if hashlib.sha256(data).hexdigest() != item.get("sha256"):
        left.append(f"{item['source']} changed since the line was removed; the line went back by its number")
    index = number - 1
    if index > len(lines):
        index = len(lines)
        left.append(f"{item['source']} has {len(lines)} lines now: the line went at the end, as line {index + 1}")
    lines.insert(index, raw)
    try:
        rewrite_atomically(fs.host(source), data, _join_lines(lines, trailing if data else item["trailing_newline"]))
    except OSError as error:
        raise CommandFailed(f"cannot put line {number} back in {item['source']}: {error.strerror}") from None
    item["restored"] = True
    actions.append(f"put line {index + 1} back in {item['source']}: {item['raw']}")
    return common.finish_undo(vault, record, ctx, actions, left)


# ---------------------------------------------------------------- periodic scripts and at jobs


def _verify_at_job(fs: FsRoot, entity: Row, source: str) -> None:
    reader = Reader(fs)
    jobs = [job for job in collect_at_jobs(reader, read_users(fs, reader)) if job.source == source]
    if not jobs:
        raise Conflict(f"{text_of(source)} is no longer an at job; {NOTHING_DONE}")
    job = jobs[0]
    now = {"name": f"at:{job.job}", "command": job.command, "user": job.user, "schedule": iso_utc(job.run_at)}
    differences = [
        f"{key} is now {value!r}, listed {entity.get(key)!r}"
        for key, value in now.items()
        if key in entity and entity.get(key) != value
    ]
    if differences:
        raise Conflict(f"at job {text_of(source)} changed since it was listed: {'; '.join(differences)}; "
                       f"{NOTHING_DONE}")  # fmt: skip


def _remediate_file(ctx: CommandContext, vault: Vault, entity: Row, force: bool) -> Record:
    """A periodic cron script or an at job's spool file: quarantined, if it is still the file that was checked."""
    fs = _fs(ctx)
    source = inside_of(str(entity["source"]))
    try:
        checked = fs.stat(source)  # before the check: the file quarantined must be the one checked
    except OSError:
        checked = None
    if entity["kind"] == "at":
        what = "at job"
        if checked is None or not fs.is_file(source):
            raise NotFound(f"{text_of(source)} no longer exists: the at job ran or was removed; {NOTHING_DONE}")
        _verify_at_job(fs, entity, source)
    else:
        what = "periodic cron script"
        if checked is None or os.path.dirname(source) not in PERIODIC_DIRS or not fs.is_file(source):
            raise NotFound(f"{text_of(source)} is no longer a script in a cron periodic directory; {NOTHING_DONE}")
    record: Record = vault.new_record("scheduledtask", str(entity["name"]), ctx)
    record["path"] = text_of(source)
    expect = {"dev": checked.st_dev, "inode": checked.st_ino, "size": checked.st_size, "ctime_ns": checked.st_ctime_ns}
    with common.remediation(vault, record):
        host = os.fsencode(fs.host(source))
        shown = text_of(source)
        common.quarantine_unless_protected(
            vault, record, host, force, ctx.state_dir, shown=shown, role=what, expect=expect
        )
    return record


# ---------------------------------------------------------------- systemd timers


def _locate_timer(fs: FsRoot, entity: Row) -> TimerInfo:
    reader = Reader(fs)
    timers = [t for t in collect_timers(reader, users_with_homes(read_users(fs, reader))) if
              timer_task_name(t) == entity["name"]]  # fmt: skip
    if not timers:
        raise NotFound(f"timer {entity['name']} is no longer there; {NOTHING_DONE}")
    timer = timers[0]
    now = {
        "source": text_of(timer.path),
        "schedule": timer.schedule,
        "command": "; ".join(timer.commands) if timer.commands else None,
    }
    differences = [
        f"{key} is now {value!r}, listed {entity.get(key)!r}"
        for key, value in now.items()
        if key in entity and entity.get(key) != value
    ]
    if differences:
        raise Conflict(f"timer {entity['name']} changed since it was listed: {'; '.join(differences)}; {NOTHING_DONE}")
    return timer


def _remediate_timer(ctx: CommandContext, vault: Vault, entity: Row, force: bool) -> Record:
    fs = _fs(ctx)
    timer = _locate_timer(fs, entity)
    systemd = systemd_is_running(fs)
    user = systemd_control.manager_user(timer.scope)
    record: Record = vault.new_record("scheduledtask", str(entity["name"]), ctx)
    record["path"] = text_of(timer.path)
    state = {"kind": "timer_state", "name": timer.name, "scope": timer.scope.kind, "manager_user": user,
             "was_active": False}  # fmt: skip
    record["items"].append(state)
    with common.remediation(vault, record):
        _stop_timer(timer, state, record, vault, systemd)
        _disable_timer(fs, timer, record, vault, systemd)
    return record


def _stop_timer(timer: TimerInfo, state: Record, record: Record, vault: Vault, systemd: bool) -> None:
    user = state["manager_user"]
    actions, left = record["actions"], record["left"]
    if not systemd:
        actions.append("not stopped: systemd is not running, so the timer is not active")
    elif timer.scope.kind == "user" and user is None:
        left.append("a global user timer runs in every user's manager: not stopped there")
    elif systemd_control.systemctl(user, "is-active", timer.name).strip() == "active":
        state["was_active"] = True
        vault.save(record)
        systemd_control.systemctl(user, "stop", timer.name)
        common.changed(record, f"stopped the timer through systemctl{_user_flags(user)} stop {timer.name}")
    else:
        actions.append("not active: nothing to stop")


def _disable_timer(fs: FsRoot, timer: TimerInfo, record: Record, vault: Vault, systemd: bool) -> None:
    actions, left = record["actions"], record["left"]
    timer_user = systemd_control.manager_user(timer.scope)
    reader = Reader(fs)
    links = remediate_links.unit_links(reader, remediate_links.scope_link_dirs(fs, reader, timer.scope), timer.name)
    if not remediate_links.remove_links(fs, vault, record, links):
        actions.append("no enabling links: it was not enabled")
    elif systemd:
        systemd_control.daemon_reload(timer.scope.kind, timer_user, actions, left)


def _user_flags(user: str | None) -> str:
    return f" --user --machine={user}@" if user else ""


def _undo_timer(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    fs = _fs(ctx)
    state = next(i for i in record["items"] if i.get("kind") == "timer_state")
    links = remediate_links.pending_links(record)
    conflicts = [place for item in links for place in remediate_links.link_conflicts(item)]
    if conflicts:
        raise conflict(conflicts)
    actions: list[str] = []
    left: list[str] = []
    with common.undoing(record, actions):
        remediate_links.recreate_links(vault, record, links, actions)
    systemd = systemd_is_running(fs)
    if systemd and links:
        systemd_control.daemon_reload(state["scope"], state.get("manager_user"), actions, left)
    if state.get("was_active"):
        if systemd:
            try:
                systemd_control.systemctl(state.get("manager_user"), "start", state["name"])
                actions.append(f"started the timer through systemctl{_user_flags(state.get('manager_user'))} start "
                               f"{state['name']}")  # fmt: skip
            except CommandFailed as error:
                left.append(f"not started: {error.message}")
        else:
            left.append("not started: systemd is not running now")
    if not actions and not left:
        raise CommandFailed(f"nothing to do: {record['id']} removed no links and stopped nothing")
    return common.finish_undo(vault, record, ctx, actions, left)
