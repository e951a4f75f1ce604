"""What the Linux remediations share (SPEC §5 ``remediate``, ``undo``).

- A record's life: saved "remediating" before the first change and "remediated"
  at the end (``remediation``). An ordinary failure before anything changed
  forgets the record; one after a change keeps it, "remediated", with where it
  stopped in ``left``, so undo can reverse what was done. Undo marks each item
  restored as it goes (a failure half-way names what was done, ``undoing``), then
  the record "restored", and returns what undo itself did (``finish_undo``).
- Quarantine through the vault unless the file is protected (protected.py;
  -force overrides), the record saved with the item before the original goes;
  and the undo of quarantined files: every conflict checked before anything is
  put back, each item marked restored as it goes.
- Stopping processes: each one pinned first (a pidfd opened, then its start time
  checked, so a pid reused since it was read is never signalled), SIGTERM, a
  grace period, SIGKILL; a tree with its descendants, or one process.
- Enabling links of a systemd unit: finding them, recording each one exactly
  (path, raw target, owner, real directory), removing and re-creating it in a
  directory opened without following links (quarantine.open_directory).
- ``systemctl``, only ever called when systemd runs.

Paths handed around are *inside* paths of the collector root (``FsRoot``); the
record keeps their escaped text form (protocol/names.py), so any byte survives JSON.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import protected
from liveresponse.agent.platform.linux.file_metadata import group_name, owner_name
from liveresponse.agent.platform.linux.passwd import ALL_USERS, read_users, users_with_homes
from liveresponse.agent.platform.linux.process_table import (
    ProcessGone,
    ProcessRecord,
    boot_time_s,
    read_process,
    read_processes,
)
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.platform.linux.units import (
    ENABLING_DIR_SUFFIXES,
    UNIT_SUFFIXES,
    UnitScope,
    enabling_links,
    template_of,
    user_scopes,
)
from liveresponse.agent.quarantine import (
    UNRECORDED_PARENT,
    Blocked,
    Vault,
    conflict,
    describe_existing,
    in_the_way,
    now_iso_seconds,
    open_directory,
    place_of,
    remove_made,
)
from liveresponse.protocol.errors import CommandFailed, LiveResponseError
from liveresponse.protocol.names import escape_bytes, escape_text, unescape_to_bytes

Record = dict[str, Any]
STOP_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL (systemd's default is 90 s; an analyst waits)
KILL_WAIT_S = 5.0  # how long a SIGKILLed process may take to go (one stuck in the kernel never does)
SYSTEMCTL_TIMEOUT_S = 60
_POLL_S = 0.02  # how often a process without a pidfd is looked at while waiting for it to exit
_SAME_START_S = 0.05  # a process's start time read twice differs by rounding at most


# ---------------------------------------------------------------- text forms


def text_of(path: str) -> str:
    """Record form of an inside path (str, surrogate-escaped) or of raw bytes."""
    return escape_text(path)


def inside_of(text: str) -> str:
    """Back from the record form to an inside path."""
    return os.fsdecode(unescape_to_bytes(text))


# ---------------------------------------------------------------- a record's life


def begin(vault: Vault, record: Record) -> None:
    """Save the new record as in progress: an agent that dies now leaves it for undo (quarantine.py)."""
    record["state"] = "remediating"
    vault.save(record)


def finish(vault: Vault, record: Record) -> Record:
    record["state"] = "remediated"
    vault.save(record)
    return record


def changed(record: Record, action: str) -> None:
    """Note a change made on the device: from now on the record has something to undo."""
    record["actions"].append(action)
    record["_changed"] = True


@contextlib.contextmanager
def remediation(vault: Vault, record: Record) -> Iterator[Record]:
    """The record saved "remediating" for the block, "remediated" after it (see the module docstring)."""
    begin(vault, record)
    try:
        yield record
    except (LiveResponseError, OSError) as error:
        reason = error.message if isinstance(error, LiveResponseError) else _os_reason(error)
        if not record.get("_changed"):
            vault.drop_record(record)
            if isinstance(error, LiveResponseError):
                raise
            raise CommandFailed(f"{reason}; nothing was done") from None
        record["left"].append(f"stopped at an error: {reason}")
        finish(vault, record)
        done = "; ".join(record["actions"])
        raise CommandFailed(
            f"{reason}; {record['id']} stopped there, after: {done} (undo {record['type']} {record['id']} reverses it)"
        ) from None
    finish(vault, record)


def _os_reason(error: OSError) -> str:
    where = f" ({escape_bytes(os.fsencode(error.filename))})" if error.filename else ""
    return f"{error.strerror or error}{where}"


def check_restorable(record: Record) -> None:
    if record.get("state") not in ("remediated", "remediating"):
        raise CommandFailed(f"{record.get('id')} is {record.get('state')}: nothing to undo")


@contextlib.contextmanager
def undoing(record: Record, actions: list[str]) -> Iterator[None]:
    """An undo's steps, each item marked restored as it goes: a failure after some says which were done."""
    try:
        yield
    except LiveResponseError as error:
        if not actions:
            raise
        done = "; ".join(actions)
        raise CommandFailed(f"{error.message}; the undo of {record['id']} stopped there, after: {done}") from None


def finish_undo(vault: Vault, record: Record, ctx: CommandContext, actions: list[str], left: list[str]) -> Record:
    """Mark the record restored, save it, and return it with the undo's own actions and leftovers.

    The saved record keeps the remediation's ``actions``/``left`` and gains ``undo_actions``/``undo_left``;
    what undo returns shows what undo did.
    """
    record["state"] = "restored"
    record["restored_by"] = ctx.requested_by or None
    record["restored_at"] = now_iso_seconds()
    record["undo_actions"] = actions
    record["undo_left"] = left
    vault.save(record)
    return {**record, "actions": actions, "left": left}


# ---------------------------------------------------------------- quarantine and its undo


def protection_reason(path: bytes, state_dir: Path | None, checker: protected.Protection | None = None) -> str | None:
    """Why ``path`` stays in place without -force (protected.py), or None."""
    if checker is not None:
        return checker.reason(path, state_dir)
    return protected.protection(path, state_dir)


def quarantine_unless_protected(
    vault: Vault,
    record: Record,
    path: bytes,
    force: bool,
    state_dir: Path | None,
    *,
    shown: str | None = None,
    role: str | None = None,
    expect: dict[str, Any] | None = None,
    checker: protected.Protection | None = None,
) -> dict[str, Any] | None:
    """Quarantine the file at host ``path`` into ``record``; its item, or None when it stays.

    The vault saves the record ("remediating") with the item before the original goes. A protected
    file stays without ``force`` and ``left`` says why; with it, the action says what was forced.
    ``shown`` is the path as the analyst knows it (the inside path of a collector root).
    """
    shown = shown or escape_bytes(path)
    reason = protection_reason(path, state_dir, checker)
    if reason is not None and not force:
        record["left"].append(f"left {shown} in place: {reason}; -force quarantines it")
        return None
    details = {key: value for key, value in (("role", role), ("forced", reason)) if value is not None}
    record["state"] = "remediating"
    item = vault.quarantine_file(path, expect, record=record, details=details)
    what = f"{role} {shown}" if role else shown
    forced = f" (-force: {reason})" if reason else ""
    changed(record, f"quarantined {what} ({item['size']} bytes, sha256 {item['sha256']}){forced}")
    if item["links"] > 1:
        others = item["links"] - 1
        record["left"].append(
            f"{shown} had {item['links']} hard links: its content stays reachable under the other {others}"
        )
    if record.get("sha256") is None:
        record["sha256"] = item["sha256"]
    vault.save(record)
    return item


def pending_files(record: Record) -> list[dict[str, Any]]:
    """The quarantined files of a record not restored yet."""
    return [item for item in record.get("items") or [] if item.get("kind") == "file" and not item.get("restored")]


def file_conflicts(vault: Vault, items: list[dict[str, Any]]) -> list[str]:
    return [place for item in items for place in vault.restore_conflicts(item)]


def restore_files(
    vault: Vault, record: Record, items: list[dict[str, Any]], actions: list[str], left: list[str]
) -> None:
    """Put each quarantined file back (conflicts checked by the caller), marking each restored as it goes."""
    for item in items:
        what = f"{item['role']} {item['path']}" if item.get("role") else item["path"]
        if vault.original_in_place(item):
            vault.discard_blob(item)
            interrupted = record["state"] == "remediating"
            why = "the remediation was interrupted before removing it" if interrupted else "nothing to put back"
            actions.append(f"{what} is in place, unchanged: {why}")
        else:
            result = vault.restore_file(item)
            recorded = {parent["path"]: parent for parent in item.get("parents") or []}
            for made in result["created_parents"]:
                parent = recorded.get(made, UNRECORDED_PARENT)
                owner = f"{owner_name(parent['uid'])}:{group_name(parent['gid'])}"
                actions.append(f"re-created directory {made} with mode {parent['mode']:04o}, owner {owner}")
            actions.append(
                f"restored {what} (sha256 {result['sha256']}) with mode {int(item['mode']):04o},"
                f" owner {item['owner']}:{item['group']}, mtime {iso_utc_from_ns(int(item['mtime_ns']))}"
            )
            if result.get("xattrs_not_restored"):
                left.append(f"extended attributes of {what} not restored: {', '.join(result['xattrs_not_restored'])}")
        item["restored"] = True
        vault.save(record)


def undo_quarantine(ctx: CommandContext, vault: Vault, record: Record) -> Record:
    """Undo of a remediation that quarantined files and did nothing else (file, autostart entry, at job...)."""
    check_restorable(record)
    items = pending_files(record)
    if not items and record["state"] == "remediating":
        interrupted = "the remediation was interrupted before anything was quarantined: nothing to restore"
        return finish_undo(vault, record, ctx, [interrupted], [])
    if not items:
        why = "; ".join(record.get("left") or [])
        raise CommandFailed(f"nothing to do: {record['id']} quarantined nothing" + (f" ({why})" if why else ""))
    conflicts = file_conflicts(vault, items)
    if conflicts:
        raise conflict(conflicts)
    actions: list[str] = []
    left: list[str] = []
    with undoing(record, actions):
        restore_files(vault, record, items, actions, left)
    return finish_undo(vault, record, ctx, actions, left)


# ---------------------------------------------------------------- stopping processes


class PinnedProcess:
    """One process held for signalling, as it was read from /proc (``process``).

    With a pidfd a signal reaches that very process or none; without one (a kernel before 5.3) its
    start time is read again before each signal, since a reused pid belongs to a later process.
    """

    def __init__(self, process: ProcessRecord, pidfd: int | None, boot_s: float) -> None:
        self.process = process
        self.pid = process.pid
        self.pidfd = pidfd
        self._boot_s = boot_s

    def still_running(self) -> bool:
        """The pid still belongs to this process (same start time), and it has not exited."""
        try:
            now = read_process(self.pid, self._boot_s)
        except ProcessGone:
            return False
        same = abs(now.start_time_s - self.process.start_time_s) <= _SAME_START_S
        return same and now.state not in ("zombie", "dead")

    def send(self, sig: int) -> bool:
        """Signal it; False when it had exited already."""
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            elif self.still_running():
                os.kill(self.pid, sig)
            else:
                return False
        except ProcessLookupError:
            return False
        return True

    def exited(self) -> bool:
        if self.pidfd is None:
            return not self.still_running()
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)  # a pidfd is readable once its process has exited
        return bool(poller.poll(0))

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def pin_process(process: ProcessRecord, boot_s: float) -> PinnedProcess | None:
    """Hold ``process`` (as read from /proc) for signalling; None when it no longer runs.

    The pidfd is opened first and the process read again after: if it still has the start time it
    was read with, the pidfd holds that process, not a later one given the same pid.
    """
    try:
        pidfd: int | None = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        pidfd = None  # no pidfds on this kernel: start times are checked before each signal instead
    pinned = PinnedProcess(process, pidfd, boot_s)
    if not pinned.still_running():
        pinned.close()
        return None
    return pinned


def wait_exited(members: list[PinnedProcess], timeout_s: float) -> list[PinnedProcess]:
    """Wait at most ``timeout_s`` for ``members`` to exit; the ones still running then."""
    deadline = time.monotonic() + timeout_s
    alive = [member for member in members if not member.exited()]
    while alive:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            break
        poller = select.poll()
        for member in alive:
            if member.pidfd is not None:
                poller.register(member.pidfd, select.POLLIN)
        every_one_has_a_pidfd = all(member.pidfd is not None for member in alive)
        pause_s = left_s if every_one_has_a_pidfd else min(left_s, _POLL_S)
        poller.poll(max(1, int(pause_s * 1000)))
        alive = [member for member in alive if not member.exited()]
    return alive


@dataclass
class StopResult:
    pid: int
    argv: list[bytes]
    exe: bytes | None
    descendants: list[int] = field(default_factory=list)
    unsignalled: list[int] = field(default_factory=list)  # had exited before SIGTERM
    terminated: list[int] = field(default_factory=list)  # gone after SIGTERM
    killed: list[int] = field(default_factory=list)  # gone after SIGKILL
    survived: list[int] = field(default_factory=list)  # still there KILL_WAIT_S after SIGKILL

    def describe(self, grace_s: float) -> str:
        argv = " ".join(escape_bytes(word) for word in self.argv)
        text = f"stopped pid {self.pid} ({argv})"
        if self.descendants:
            text += f" and {len(self.descendants)} descendant(s) {', '.join(map(str, self.descendants))}"
        if self.killed:
            text += f": SIGTERM, then SIGKILL after {grace_s:g} s for {', '.join(map(str, self.killed))}"
        else:
            text += ": SIGTERM"
        if self.survived:
            text += f"; still running after SIGKILL: {', '.join(map(str, self.survived))}"
        return text


def stop_pinned(main: PinnedProcess, others: list[PinnedProcess], grace_s: float, *, with_children: bool) -> StopResult:
    """SIGTERM to ``main`` and ``others``, ``grace_s`` to exit, then SIGKILL to what is left.

    ``with_children``: children forked while they shut down are stopped too. Closes what it pins itself.
    """
    members = [main, *others]
    result = StopResult(main.pid, main.process.cmdline, main.process.exe, [other.pid for other in others])
    signalled: list[PinnedProcess] = []
    for member in members:
        if member.send(signal.SIGTERM):
            signalled.append(member)
        else:
            result.unsignalled.append(member.pid)
    alive = wait_exited(signalled, grace_s)
    late: list[PinnedProcess] = []
    try:
        if alive and with_children:
            late = _pin_children(alive, {member.pid for member in members})
            result.descendants += [member.pid for member in late]
        to_kill = [member for member in [*alive, *late] if member.send(signal.SIGKILL)]
        survivors = wait_exited(to_kill, KILL_WAIT_S)
    finally:
        for member in late:
            member.close()
    result.survived = sorted(member.pid for member in survivors)
    result.killed = sorted(member.pid for member in to_kill if member not in survivors)
    result.terminated = sorted(member.pid for member in [*signalled, *late] if member not in to_kill)
    return result


def _pin_children(parents: list[PinnedProcess], known: set[int]) -> list[PinnedProcess]:
    table = process_table()
    boot_s = boot_time_s()
    found = []
    for parent in parents:
        for child in descendants_of(table, parent.pid):
            if child not in known and (pinned := pin_process(table[child], boot_s)) is not None:
                known.add(child)
                found.append(pinned)
    return found


def process_table() -> dict[int, ProcessRecord]:
    return {p.pid: p for p in read_processes() if p.state != "zombie"}


def descendants_of(table: dict[int, ProcessRecord], pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in sorted(children.get(pending.pop(0), [])):
            if child not in found and child != pid:
                found.append(child)
                pending.append(child)
    return found


def stop_process_tree(pid: int, grace_s: float = STOP_GRACE_S, started_s: float | None = None) -> StopResult | None:
    """Stop ``pid`` and its descendants (None when ``pid`` no longer runs).

    ``started_s``: the start time the pid was found with; a pid that now has another one was reused
    by a later process, which is left alone.
    """
    boot_s = boot_time_s()
    table = process_table()
    main = table.get(pid)
    if main is None or (started_s is not None and abs(main.start_time_s - started_s) > _SAME_START_S):
        return None
    pinned_main = pin_process(main, boot_s)
    if pinned_main is None:
        return None
    others = [pinned for child in descendants_of(table, pid) if (pinned := pin_process(table[child], boot_s))]
    try:
        return stop_pinned(pinned_main, others, grace_s, with_children=True)
    finally:
        for member in [pinned_main, *others]:
            member.close()


def agent_and_ancestors() -> set[int]:
    """This process and every process above it: stopping one of them would stop the agent half-way."""
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


# ---------------------------------------------------------------- links


def unit_links(reader: Reader, dirs: Iterable[str], unit_name: str) -> list[str]:
    """Inside paths of the symlinks that enable or alias ``unit_name`` in ``dirs``.

    Enabling: in ``*.wants``/``*.requires``/``*.upholds``, named as the unit (or an instance of the
    template), or pointing at a file of that name. Alias: a unit-named link at the top of a unit
    directory that points at the unit (``systemctl enable`` makes these from ``Alias=``). The unit's
    own file, even when it is a link (``systemctl link``), is neither.
    """
    fs = reader.fs
    found: list[str] = []
    dirs = tuple(dirs)
    for link in enabling_links(reader, dirs):
        base = link.target.rsplit("/", 1)[-1] if link.target else None
        if unit_name in (link.name, template_of(link.name), base) and _is_link(fs, link.path):
            found.append(link.path)
    for directory in dirs:
        for name in reader.list_dir(directory) or []:
            path = f"{directory}/{name}"
            if name == unit_name or not name.endswith(UNIT_SUFFIXES) or not _is_link(fs, path):
                continue
            try:
                target = fs.resolve(path)
            except OSError:
                continue
            if target != "/dev/null" and target.rsplit("/", 1)[-1] == unit_name:
                found.append(path)
    return list(dict.fromkeys(found))


def _is_link(fs: FsRoot, path: str) -> bool:
    try:
        return stat.S_ISLNK(fs.lstat(path).st_mode)
    except OSError:
        return False


def link_role(item: dict[str, Any]) -> str:
    """ "enabling link" in a .wants/.requires/.upholds directory, else "alias link"."""
    folder = os.path.dirname(inside_of(item["path"]))
    return "enabling link" if folder.endswith(ENABLING_DIR_SUFFIXES) else "alias link"


def link_item(fs: FsRoot, path: str) -> dict[str, Any]:
    """The record of the link at inside ``path``: raw target, owner, and where it really is."""
    host = fs.host_nofollow(path)
    info = os.lstat(host)
    target = os.readlink(os.fsencode(host))
    real = os.path.join(os.path.realpath(os.path.dirname(os.fsencode(host))), os.path.basename(os.fsencode(host)))
    return {"kind": "link", "path": text_of(path), "target": escape_bytes(target), "uid": info.st_uid,
            "gid": info.st_gid, "real_path": escape_bytes(real)}  # fmt: skip


def _link_at(item: dict[str, Any]) -> tuple[int, bytes] | None:
    """The directory (opened without following links) and name of the item's link; None if unreachable."""
    directory, name = os.path.split(place_of(item))
    try:
        dir_fd, _ = open_directory(directory)
    except (Blocked, OSError):
        return None
    return dir_fd, name


def _same_link(dir_fd: int, name: bytes, item: dict[str, Any]) -> bool:
    try:
        return os.readlink(name, dir_fd=dir_fd) == unescape_to_bytes(item["target"])
    except OSError:
        return False


def remove_link(item: dict[str, Any]) -> bool:
    """Remove the recorded link if it is still that link (False when something else is there now)."""
    found = _link_at(item)
    if found is None:
        return False
    dir_fd, name = found
    try:
        if not _same_link(dir_fd, name, item):
            return False
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    finally:
        os.close(dir_fd)
    return True


def link_conflicts(item: dict[str, Any]) -> list[str]:
    """What stands in the way of re-creating the link (none: the place is free, or the same link is there)."""
    found = _link_at(item)
    if found is not None:
        dir_fd, name = found
        try:
            if _same_link(dir_fd, name, item):
                return []
        finally:
            os.close(dir_fd)
    return in_the_way(place_of(item))


def recreate_link(item: dict[str, Any]) -> bool:
    """Re-create the link exactly (target text, owner; missing directories too); False when it was there."""
    directory, name = os.path.split(place_of(item))
    owner = {"mode": 0o755, "uid": item["uid"], "gid": item["gid"]}
    try:
        dir_fd, made = open_directory(directory, lambda _missing: owner)
    except Blocked as blocked:
        raise conflict([blocked.description]) from None
    except OSError as error:
        raise CommandFailed(f"cannot re-create {item['path']}: {error.strerror}") from None
    try:
        if _same_link(dir_fd, name, item):
            return False
        os.symlink(unescape_to_bytes(item["target"]), name, dir_fd=dir_fd)
        os.chown(name, item["uid"], item["gid"], dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        appeared = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        remove_made(made)
        raise conflict([describe_existing(place_of(item), appeared)]) from None
    except OSError as error:
        remove_made(made)
        raise CommandFailed(f"cannot re-create {item['path']}: {error.strerror}") from None
    finally:
        os.close(dir_fd)
    return True


def remove_links(fs: FsRoot, vault: Vault, record: Record, paths: list[str], what: str | None = None) -> int:
    """Remove the links at inside ``paths``, each recorded (and the record saved) first; how many went.

    ``what`` names them in sentences (default: "enabling link" or "alias link", by their directory).
    """
    removed = 0
    for path in paths:
        try:
            item = link_item(fs, path)
        except OSError:
            record["left"].append(f"{what or 'link'} {text_of(path)} was gone when it was to be removed")
            continue
        role = what or link_role(item)
        record["items"].append(item)
        vault.save(record)
        if remove_link(item):
            removed += 1
            changed(record, f"removed {role} {item['path']} -> {item['target']}")
        else:
            record["items"].remove(item)
            record["left"].append(f"{role} {item['path']} changed while it was removed: left as it is")
            vault.save(record)
    return removed


def pending_links(record: Record) -> list[dict[str, Any]]:
    """The removed links of a record not re-created yet."""
    return [item for item in record.get("items") or [] if item.get("kind") == "link" and not item.get("restored")]


def recreate_links(
    vault: Vault, record: Record, items: list[dict[str, Any]], actions: list[str], what: str | None = None
) -> None:
    """Re-create each link (conflicts checked by the caller), marking each restored as it goes."""
    for item in items:
        created = recreate_link(item)
        item["restored"] = True
        done = "re-created" if created else "kept the existing"
        actions.append(f"{done} {what or link_role(item)} {item['path']} -> {item['target']}")
        vault.save(record)


# ---------------------------------------------------------------- systemd scopes


def manager_user(scope: UnitScope | None) -> str | None:
    """The user whose systemd instance runs the scope's units (None: the system's, or every user's)."""
    if scope is not None and scope.kind == "user" and scope.user != ALL_USERS:
        return scope.user
    return None


def scope_link_dirs(fs: FsRoot, reader: Reader, scope: UnitScope) -> tuple[str, ...]:
    """Where links enabling a unit of ``scope`` live."""
    if scope.kind == "user" and scope.user == ALL_USERS:
        # A global user unit is enabled for everybody in /etc/systemd/user, or per user in their home.
        homes = [s.dirs for s in user_scopes(reader, users_with_homes(read_users(fs, reader)))[1:]]
        return scope.dirs + tuple(d for dirs in homes for d in dirs)
    return scope.dirs


def daemon_reload(scope_kind: str, user: str | None, actions: list[str], left: list[str]) -> None:
    """Make a running systemd see removed or re-created links (only called when systemd runs)."""
    if scope_kind == "system":
        try:
            systemctl(None, "daemon-reload")
            actions.append("systemctl daemon-reload")
        except CommandFailed as error:
            left.append(f"systemd was not reloaded: {error.message}")
    elif user is not None:
        try:
            systemctl(user, "daemon-reload")
            actions.append(f"systemctl --user --machine={user}@ daemon-reload")
        except CommandFailed as error:
            left.append(f"the user manager of {user} was not reloaded: {error.message}")
    else:
        left.append("a global user unit: each user's manager sees the change at its next daemon-reload or login")


# ---------------------------------------------------------------- systemctl


def systemctl(user: str | None, *args: str) -> str:
    """Run systemctl for the system (``user`` None) or one user's manager; its stdout."""
    command = ["systemctl", "--no-pager"]
    if user is not None:
        command += ["--user", f"--machine={user}@"]
    command += list(args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        raise CommandFailed(f"{' '.join(command)}: {error}") from error
    if done.returncode != 0 and args[:1] != ("is-active",):
        raise CommandFailed(f"{' '.join(command)} failed: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout
