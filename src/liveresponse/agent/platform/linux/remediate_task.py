"""``remediate scheduledtask`` and ``undo scheduledtask`` on Linux (SPEC §5).

By the row's ``kind`` (scheduled.py names the tasks):

- ``cron`` (``/etc/crontab:4``): exactly that line is removed, the file rewritten
  atomically with its mode, owner and trailing newline as they were. The record
  keeps the source, the line number, the raw line bytes and the file's sha256
  before and after. Undo puts the line back at its number (at the end when the
  file is shorter now, and says so); an identical line already there means there
  is nothing to do.
- ``cron-periodic`` (``/etc/cron.daily/x``): the script is quarantined (unless protected).
- ``at`` (``at:7``): the job's spool file is quarantined; undo restores it with
  at's mode and owner exactly, so atd picks it up again.
- ``systemd-timer``: stopped when systemd runs, its enabling links removed and
  recorded; undo re-creates them and starts it again if it was active.

Before anything is done the task is read again and must be what was listed
(same schedule, command and user at that line; the file still there); otherwise
nothing changes and the difference is named.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from liveresponse.agent.platform.linux import remediate_common as common
from liveresponse.agent.platform.linux.atjobs import collect_at_jobs
from liveresponse.agent.platform.linux.cron import CRON_D, PERIODIC_DIRS, SYSTEM_CRONTAB, parse_crontab
from liveresponse.agent.platform.linux.passwd import read_users, users_with_homes
from liveresponse.agent.platform.linux.remediate_common import Record, inside_of, text_of
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.scheduled import timer_task_name
from liveresponse.agent.platform.linux.services import systemd_is_running
from liveresponse.agent.platform.linux.timers import TimerInfo, collect_timers
from liveresponse.agent.platform.linux.timestamps import iso_utc
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

Row = dict[str, Any]
NOTHING_DONE = "nothing was done, run scheduledtasks again"


def _fs(ctx: Any) -> FsRoot:
    return FsRoot(getattr(ctx, "root", "/") or "/")


def remediate_task(ctx: Any, vault: Any, ident: str, entity: Row | None, force: bool) -> Record:
    if not entity or not entity.get("name"):
        raise CommandFailed(f"remediate scheduledtask {ident} needs the task's row from scheduledtasks in this session")
    kind = entity.get("kind")
    handlers = {"cron": _remediate_cron_line, "cron-periodic": _remediate_file, "at": _remediate_file,
                "systemd-timer": _remediate_timer}  # fmt: skip
    if kind not in handlers:
        raise CommandFailed(f"scheduled task {entity['name']} is of kind {kind!r}, which remediate cannot handle")
    return handlers[kind](ctx, vault, entity, force)


def undo_task(ctx: Any, vault: Any, record: Record) -> Record:
    common.check_restorable(record)
    kinds = {item.get("kind") for item in record["items"]}
    if "cron_line" in kinds:
        return _undo_cron_line(ctx, vault, record)
    if "timer_state" in kinds:
        return _undo_timer(ctx, vault, record)
    return _undo_file(ctx, vault, record)


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


def _remediate_cron_line(ctx: Any, vault: Any, entity: Row, force: bool) -> Record:
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
    common.begin(vault, record)
    common.rewrite_atomically(host, edited)
    item["sha256"] = hashlib.sha256(edited).hexdigest()
    record["actions"].append(f"removed line {number} of {text_of(source)}: {escape_bytes(raw)}")
    return common.finish(vault, record)


def _undo_cron_line(ctx: Any, vault: Any, record: Record) -> Record:
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
    common.rewrite_atomically(fs.host(source), _join_lines(lines, trailing if data else item["trailing_newline"]))
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


def _remediate_file(ctx: Any, vault: Any, entity: Row, force: bool) -> Record:
    """A periodic cron script or an at job's spool file: quarantined."""
    fs = _fs(ctx)
    source = inside_of(str(entity["source"]))
    if entity["kind"] == "at":
        what = "at job"
        if not fs.is_file(source):
            raise NotFound(f"{text_of(source)} no longer exists: the at job ran or was removed; {NOTHING_DONE}")
        _verify_at_job(fs, entity, source)
    else:
        what = "periodic cron script"
        if os.path.dirname(source) not in PERIODIC_DIRS or not fs.is_file(source):
            raise NotFound(f"{text_of(source)} is no longer a script in a cron periodic directory; {NOTHING_DONE}")
    record: Record = vault.new_record("scheduledtask", str(entity["name"]), ctx)
    record["path"] = text_of(source)
    common.begin(vault, record)
    item = common.quarantine_unless_protected(vault, record, fs, source, what, force, getattr(ctx, "state_dir", None))
    if item is not None:
        record["sha256"] = item["sha256"]
    return common.finish(vault, record)


def _undo_file(ctx: Any, vault: Any, record: Record) -> Record:
    files = [i for i in record["items"] if i.get("kind") == "file" and not i.get("restored")]
    if not files:
        raise CommandFailed(f"nothing to do: {record['id']} quarantined nothing ({'; '.join(record['left'])})")
    common.raise_conflicts([c for i in files if (c := common.file_conflict(i))])
    actions: list[str] = []
    for item in files:
        common.restore_quarantined(vault, record, item, actions)
    return common.finish_undo(vault, record, ctx, actions, [])


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


def _remediate_timer(ctx: Any, vault: Any, entity: Row, force: bool) -> Record:
    fs = _fs(ctx)
    timer = _locate_timer(fs, entity)
    systemd = systemd_is_running(fs)
    user = common.manager_user(timer.scope)
    record: Record = vault.new_record("scheduledtask", str(entity["name"]), ctx)
    record["path"] = text_of(timer.path)
    state = {"kind": "timer_state", "name": timer.name, "scope": timer.scope.kind, "manager_user": user,
             "was_active": False}  # fmt: skip
    record["items"].append(state)
    common.begin(vault, record)
    actions, left = record["actions"], record["left"]
    if not systemd:
        actions.append("not stopped: systemd is not running, so the timer is not active")
    elif timer.scope.kind == "user" and user is None:
        left.append("a global user timer runs in every user's manager: not stopped there")
    elif common.systemctl(user, "is-active", timer.name).strip() == "active":
        state["was_active"] = True
        vault.save(record)
        common.systemctl(user, "stop", timer.name)
        actions.append(f"stopped the timer through systemctl{_user_flags(user)} stop {timer.name}")
    else:
        actions.append("not active: nothing to stop")
    reader = Reader(fs)
    removed = 0
    for path in common.unit_links(reader, common.scope_link_dirs(fs, reader, timer.scope), timer.name):
        item = common.link_item(fs, path)
        record["items"].append(item)
        vault.save(record)
        if common.remove_link(fs, item):
            removed += 1
            actions.append(f"removed {common.link_role(item)} {item['path']} -> {item['target']}")
        else:
            record["items"].remove(item)
            left.append(f"enabling link {item['path']} changed while it was removed: left as it is")
            vault.save(record)
    if not removed:
        actions.append("no enabling links: it was not enabled")
    elif systemd:
        common.daemon_reload(timer.scope.kind, user, actions, left)
    return common.finish(vault, record)


def _user_flags(user: str | None) -> str:
    return f" --user --machine={user}@" if user else ""


def _undo_timer(ctx: Any, vault: Any, record: Record) -> Record:
    fs = _fs(ctx)
    state = next(i for i in record["items"] if i.get("kind") == "timer_state")
    links = [i for i in record["items"] if i.get("kind") == "link" and not i.get("restored")]
    common.raise_conflicts([c for i in links if (c := common.link_conflict(fs, i))])
    actions: list[str] = []
    left: list[str] = []
    for item in links:
        created = common.recreate_link(fs, item)
        item["restored"] = True
        actions.append(f"{'re-created' if created else 'kept the existing'} {common.link_role(item)} {item['path']} "
                       f"-> {item['target']}")  # fmt: skip
        vault.save(record)
    systemd = systemd_is_running(fs)
    if systemd and links:
        common.daemon_reload(state["scope"], state.get("manager_user"), actions, left)
    if state.get("was_active"):
        if systemd:
            try:
                common.systemctl(state.get("manager_user"), "start", state["name"])
                actions.append(f"started the timer through systemctl{_user_flags(state.get('manager_user'))} start "
                               f"{state['name']}")  # fmt: skip
            except CommandFailed as error:
                left.append(f"not started: {error.message}")
        else:
            left.append("not started: systemd is not running now")
    if not actions and not left:
        raise CommandFailed(f"nothing to do: {record['id']} removed no links and stopped nothing")
    return common.finish_undo(vault, record, ctx, actions, left)
