"""A snapshot of the live process table, read from /proc.

Only meaningful on the live system: an offline root has no processes. A
process that exits while we read it is simply left out (SPEC §5, processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    uid: int
    argv: tuple[str, ...]  # fs-decoded (surrogateescape)
    exe: str | None  # None when unreadable (another user's process, kernel thread)
    start_ticks: int
    comm: str

    @property
    def display_name(self) -> str:
        """Full program name: comm is cut at 15 characters; argv[0] or the exe name are not.

        argv[0] comes first because multi-call binaries (redis-server is a link
        to redis-check-rdb) are known by the name they were started as.
        """
        first = self.argv[0] if self.argv else ""
        if len(self.argv) == 1 and " " in first:
            first = first.split(" ", 1)[0]  # a rewritten process title: "redis-server 127.0.0.1:6379"
        for candidate in (first, self.exe or ""):
            base = os.path.basename(candidate.removesuffix(" (deleted)"))
            if base and base.startswith(self.comm):
                return base
        return self.comm


def process_ids(proc: str = "/proc") -> list[int]:
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def read_process(pid: int, proc: str = "/proc") -> ProcessInfo | None:
    base = f"{proc}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as handle:
            stat_text = handle.read().decode("utf-8", "surrogateescape")
        with open(f"{base}/cmdline", "rb") as handle:
            cmdline = handle.read()
        uid = os.stat(base).st_uid
    except OSError:
        return None  # exited meanwhile
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_at, close_at = stat_text.find("("), stat_text.rfind(")")
    comm = stat_text[open_at + 1 : close_at]
    fields = stat_text[close_at + 2 :].split()
    try:
        exe: str | None = os.readlink(f"{base}/exe")
    except OSError:
        exe = None
    argv = tuple(os.fsdecode(arg) for arg in cmdline.rstrip(b"\0").split(b"\0")) if cmdline else ()
    return ProcessInfo(pid, int(fields[1]), uid, argv, exe, int(fields[19]), comm)


def snapshot(proc: str = "/proc") -> list[ProcessInfo]:
    try:
        pids = process_ids(proc)
    except OSError:
        return []
    return [info for pid in pids if (info := read_process(pid, proc)) is not None]


@dataclass
class SocketOwners:
    """Socket inode -> pids holding it, and how many fd tables could not be read."""

    by_inode: dict[int, list[int]]
    unreadable: int


def socket_owners(proc: str = "/proc") -> SocketOwners:
    by_inode: dict[int, list[int]] = {}
    unreadable = 0
    try:
        pids = process_ids(proc)
    except OSError:
        return SocketOwners({}, 0)
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        except OSError:
            unreadable += 1
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                owners = by_inode.setdefault(inode, [])
                if pid not in owners:
                    owners.append(pid)
    return SocketOwners(by_inode, unreadable)
