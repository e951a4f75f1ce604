"""What service and scheduled-task remediation share (SPEC §5 ``remediate``, ``undo``).

- Stopping a process tree: SIGTERM to the main process and its descendants, a
  grace period, SIGKILL to what is left. Every process is held by a pidfd opened
  after checking its start time, so a pid reused since the listing is never hit.
- Launching a program detached (undo of a service that ran while systemd is not
  PID 1): through a short-lived launcher process, so the program is re-parented
  to init and never lingers as the agent's zombie.
- Rewriting a text file atomically (a temp file in the same directory, same mode
  and owner, fsync, rename, fsync of the directory).
- Enabling links of a systemd unit: finding them, recording each one exactly
  (path, raw target, owner) and re-creating it.
- Quarantine through the vault, leaving protected files in place without -force.
- ``systemctl``, only ever called when systemd runs.

Paths handed around are *inside* paths of the collector root (``FsRoot``); the
record keeps their escaped text form (protocol/names.py), so any byte survives JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from liveresponse.agent.platform.linux.passwd import ALL_USERS, read_users, users_with_homes
from liveresponse.agent.platform.linux.process_table import (
    ProcessGone,
    ProcessRecord,
    boot_time_s,
    read_process,
    read_processes,
)
from liveresponse.agent.platform.linux.rootfs import FsRoot, Reader
from liveresponse.agent.platform.linux.units import (
    ENABLING_DIR_SUFFIXES,
    UNIT_SUFFIXES,
    UnitScope,
    enabling_links,
    template_of,
    user_scopes,
)
from liveresponse.protocol.errors import CommandFailed, Conflict
from liveresponse.protocol.names import escape_bytes, escape_text, unescape_to_bytes

Record = dict[str, Any]
STOP_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL (systemd's default is 90 s; an analyst waits)
KILL_WAIT_S = 2.0
SYSTEMCTL_TIMEOUT_S = 60
LAUNCH_TIMEOUT_S = 30
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


# ---------------------------------------------------------------- text forms


def text_of(path: str) -> str:
    """Record form of an inside path (str, surrogate-escaped) or of raw bytes."""
    return escape_text(path)


def inside_of(text: str) -> str:
    """Back from the record form to an inside path."""
    return os.fsdecode(unescape_to_bytes(text))


def now_text() -> str:
    """The vault's time form (whole seconds, UTC), so remediated_at and restored_at read alike."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- stopping processes


@dataclass
class StopResult:
    pid: int
    argv: list[bytes]
    exe: bytes | None
    descendants: list[int] = field(default_factory=list)
    terminated: list[int] = field(default_factory=list)  # gone after SIGTERM
    killed: list[int] = field(default_factory=list)  # gone after SIGKILL
    survived: list[int] = field(default_factory=list)

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


def _open_pidfd(process: ProcessRecord, boot_s: float) -> int | None:
    """A pidfd for ``process`` if that very process (same start time) still runs."""
    try:
        fd = os.pidfd_open(process.pid)
    except (ProcessLookupError, OSError):
        return None
    try:
        now = read_process(process.pid, boot_s)
    except ProcessGone:
        os.close(fd)
        return None
    if abs(now.start_time_s - process.start_time_s) > 0.05 or now.state == "zombie":
        os.close(fd)  # the pid was reused since the table was read
        return None
    return fd


def _send(fd: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile
        signal.pidfd_send_signal(fd, sig)


def _wait_gone(fds: dict[int, int], timeout_s: float) -> set[int]:
    """Wait until the processes behind ``fds`` exit; the pids still alive at the deadline."""
    alive = set(fds)
    by_fd = {fd: pid for pid, fd in fds.items()}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while alive:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            break
        for fd, _events in poller.poll(max(1, int(left_s * 1000))):
            alive.discard(by_fd[fd])
            poller.unregister(fd)
    return alive


def stop_process_tree(pid: int, grace_s: float = STOP_GRACE_S) -> StopResult | None:
    """Stop ``pid`` and its descendants (None when ``pid`` no longer runs)."""
    boot_s = boot_time_s()
    table = process_table()
    main = table.get(pid)
    if main is None:
        return None
    fds: dict[int, int] = {}
    try:
        for member in [pid, *descendants_of(table, pid)]:
            fd = _open_pidfd(table[member], boot_s)
            if fd is not None:
                fds[member] = fd
        if pid not in fds:
            return None
        result = StopResult(pid, main.cmdline, main.exe, [p for p in fds if p != pid])
        for fd in fds.values():
            _send(fd, signal.SIGTERM)
        alive = _wait_gone(fds, grace_s)
        if alive:
            # Children forked while it shut down go too.
            later = process_table()
            for parent in list(alive):
                for child in descendants_of(later, parent):
                    if child not in fds and (fd := _open_pidfd(later[child], boot_s)) is not None:
                        fds[child] = fd
                        alive.add(child)
                        result.descendants.append(child)
            for member in alive:
                _send(fds[member], signal.SIGKILL)
            result.survived = sorted(_wait_gone({p: fds[p] for p in alive}, KILL_WAIT_S))
            result.killed = sorted(alive - set(result.survived))
        result.terminated = sorted(set(fds) - alive)
        return result
    finally:
        for fd in fds.values():
            os.close(fd)


# ---------------------------------------------------------------- launching detached


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
    code = "from liveresponse.agent.platform.linux.remediate_common import launcher_main; launcher_main()"
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


# ---------------------------------------------------------------- files


def sha256_of(host_path: str) -> str:
    digest = hashlib.sha256()
    with open(host_path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def rewrite_atomically(host_path: str, data: bytes) -> None:
    """Replace the file's content with ``data``: same directory, mode and owner; never half-written.

    A symlink is followed (the file it names is rewritten, the link stays).
    """
    real = os.path.realpath(host_path)
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


def describe_existing(host_path: str) -> str | None:
    """What is at ``host_path`` now, for a Conflict message (None when nothing is)."""
    try:
        info = os.lstat(host_path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link to {escape_bytes(os.readlink(os.fsencode(host_path)))}"
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    if stat.S_ISREG(info.st_mode):
        try:
            return f"a file of {info.st_size} bytes, sha256 {sha256_of(host_path)}"
        except OSError:
            return f"a file of {info.st_size} bytes"
    return "a special file"


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
    host = fs.host_nofollow(path)
    info = os.lstat(host)
    target = os.readlink(os.fsencode(host))
    return {"kind": "link", "path": text_of(path), "target": escape_bytes(target), "uid": info.st_uid,
            "gid": info.st_gid}  # fmt: skip


def remove_link(fs: FsRoot, item: dict[str, Any]) -> bool:
    """Remove the recorded link if it is still that link (False when something else is there now)."""
    host = fs.host_nofollow(inside_of(item["path"]))
    try:
        if os.readlink(os.fsencode(host)) != unescape_to_bytes(item["target"]):
            return False
        os.unlink(host)
    except OSError:
        return False
    return True


def link_conflict(fs: FsRoot, item: dict[str, Any]) -> str | None:
    """Why the link cannot be re-created (None: the place is free, or the same link is already there)."""
    host = fs.host_nofollow(inside_of(item["path"]))
    try:
        if os.readlink(os.fsencode(host)) == unescape_to_bytes(item["target"]):
            return None
    except OSError:
        pass
    there = describe_existing(host)
    return None if there is None else f"{item['path']} is now {there}"


def recreate_link(fs: FsRoot, item: dict[str, Any]) -> bool:
    """Re-create the link exactly (target text, owner); False when it was already there."""
    host = fs.host_nofollow(inside_of(item["path"]))
    target = unescape_to_bytes(item["target"])
    try:
        if os.readlink(os.fsencode(host)) == target:
            return False
    except OSError:
        pass
    parent = os.path.dirname(host)
    missing: list[str] = []
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chown(directory, item["uid"], item["gid"])
    os.symlink(target, os.fsencode(host))
    os.lchown(host, item["uid"], item["gid"])
    return True


# ---------------------------------------------------------------- vault


def begin(vault: Any, record: Record) -> None:
    """Save the new record as in progress: an agent that dies now leaves it for undo (quarantine.py)."""
    record["state"] = "remediating"
    vault.save(record)


def finish(vault: Any, record: Record) -> Record:
    record["state"] = "remediated"
    vault.save(record)
    return record


def quarantine_unless_protected(
    vault: Any, record: Record, fs: FsRoot, path: str, what: str, force: bool, state_dir: Any = None
) -> dict[str, Any] | None:
    """Quarantine the file at inside ``path`` into the vault, or say in ``left`` why it stays."""
    from liveresponse.agent.platform.linux.protected import protection

    host = os.fsencode(fs.host(path))
    reason = protection(host, state_dir)
    if reason and not force:
        record["left"].append(f"left {text_of(path)} in place: {reason}; -force quarantines it")
        return None
    # The vault adds the item to the record and saves it before the original is unlinked.
    item: dict[str, Any] = vault.quarantine_file(host, None, record)
    item["role"] = what
    forced = f" (-force: {reason})" if reason else ""
    record["actions"].append(f"quarantined {what} {text_of(path)} (sha256 {item['sha256']}){forced}")
    vault.save(record)
    return item


def item_host_path(item: dict[str, Any]) -> bytes:
    path = item["path"]
    return path if isinstance(path, bytes) else unescape_to_bytes(path)


def still_in_place(item: dict[str, Any]) -> bool:
    """The quarantined original never left (the agent died between saving the record and the unlink).

    The inode alone does not prove it: a file created after the unlink often gets the freed inode
    back. Size, mtime, mode, owner and content must all be the recorded ones too.
    """
    host = item_host_path(item)
    try:
        info = os.lstat(host)
    except OSError:
        return False
    recorded = (item.get("dev"), item.get("inode"), item.get("size"), item.get("mtime_ns"), item.get("mode"),
                item.get("uid"), item.get("gid"))  # fmt: skip
    now = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode), info.st_uid,
           info.st_gid)  # fmt: skip
    if not stat.S_ISREG(info.st_mode) or now != recorded:
        return False
    try:
        return sha256_of(os.fsdecode(host)) == item.get("sha256")
    except OSError:
        return False


def file_conflict(item: dict[str, Any]) -> str | None:
    if still_in_place(item):
        return None
    host = item_host_path(item)
    there = describe_existing(os.fsdecode(host))
    return None if there is None else f"{escape_bytes(host)} is now {there}"


def restore_quarantined(vault: Any, record: Record, item: dict[str, Any], actions: list[str]) -> None:
    shown = escape_bytes(item_host_path(item))
    if still_in_place(item):
        vault.discard_blob(item)
        actions.append(f"{item.get('role', 'file')} {shown} had never left its place")
    else:
        restored = vault.restore_file(item)
        actions.append(f"restored {item.get('role', 'file')} {shown} (sha256 {restored.get('sha256', item['sha256'])})")
    item["restored"] = True
    vault.save(record)


def raise_conflicts(conflicts: list[str]) -> None:
    if conflicts:
        raise Conflict("undo would overwrite what is there now, so nothing was changed: " + "; ".join(conflicts))


def check_restorable(record: Record) -> None:
    if record.get("state") not in ("remediated", "remediating"):
        raise CommandFailed(f"{record.get('id')} is {record.get('state')}: nothing to undo")


def finish_undo(vault: Any, record: Record, ctx: Any, actions: list[str], left: list[str]) -> Record:
    """Mark the record restored, save it, and return it with the undo's own actions and leftovers.

    The saved record keeps the remediation's ``actions``/``left`` and gains ``undo_actions``/``undo_left``;
    what undo returns shows what undo did.
    """
    record["state"] = "restored"
    record["restored_by"] = getattr(ctx, "requested_by", "") or None
    record["restored_at"] = now_text()
    record["undo_actions"] = actions
    record["undo_left"] = left
    vault.save(record)
    return {**record, "actions": actions, "left": left}


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
        systemctl(None, "daemon-reload")
        actions.append("systemctl daemon-reload")
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
