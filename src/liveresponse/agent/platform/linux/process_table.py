"""Reading processes straight from /proc (proc(5)), fast and without partial rows.

The one reader of the process table: ``processes`` lists it, ``services``
matches unit ExecStart lines against it and ``connections`` finds socket owners
through it. Only the live system has processes; an offline root has none.

Each process is read through a descriptor of its /proc/PID directory. That
descriptor stays bound to the process it was opened for: if the process exits,
reads through it fail (ESRCH/ENOENT) instead of silently reading a new process
that reused the pid. Any such failure drops the whole process, so a row is
either complete or absent (SPEC §5: "never a blank row").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

PROC = "/proc"
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_READ_CHUNK_BYTES = 64 * 1024
_DELETED_SUFFIX = b" (deleted)"
_COMM_MAX_CHARS = 15  # TASK_COMM_LEN - 1: the kernel truncates longer names

STATE_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing-stop",
    "X": "dead",
    "x": "dead",
    "I": "idle",
    "P": "parked",
    "K": "wakekill",
    "W": "waking",
}


class ProcessGone(Exception):
    """The process exited (or was reaped) while being read, or /proc hides it from us
    (``hidepid``): either way there is no complete row to give."""


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    ppid: int
    comm: bytes  # the kernel's name, at most 15 bytes
    state: str
    effective_uid: int
    cmdline: list[bytes]
    exe: bytes | None
    exe_deleted: bool
    start_time_s: float  # seconds since the epoch
    cpu_time_s: float  # user + system, over the process's lifetime
    rss_bytes: int
    threads: int

    @property
    def full_name(self) -> bytes:
        """The untruncated name: comm is cut at 15 bytes, so when it is a prefix of the
        executable's or argv[0]'s base name, that longer name is the real one."""
        if len(self.comm) < _COMM_MAX_CHARS:
            return self.comm
        for candidate in (self.exe, self.cmdline[0] if self.cmdline else None):
            if candidate:
                base = os.path.basename(candidate)
                if base.startswith(self.comm):
                    return base
        return self.comm


@cache
def _clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def boot_time_s(proc: str = PROC) -> float:
    """Boot time from /proc/stat ``btime``, the base ps and psutil use for start times."""
    with open(f"{proc}/stat", "rb") as proc_stat:
        for line in proc_stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _read_all(name: str, directory: int) -> bytes:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except (FileNotFoundError, ProcessLookupError, PermissionError) as error:
        raise ProcessGone() from error
    try:
        parts = []
        while True:
            part = os.read(fd, _READ_CHUNK_BYTES)
            if not part:
                break
            parts.append(part)
    except ProcessLookupError as error:
        raise ProcessGone() from error
    finally:
        os.close(fd)
    return b"".join(parts)


def _parse_stat(raw: bytes) -> tuple[bytes, list[bytes]]:
    """comm and the fields after it. comm is in parentheses and may itself hold
    spaces or parentheses, so the fields start after the *last* ')'."""
    opening = raw.index(b"(")
    closing = raw.rindex(b")")
    return raw[opening + 1 : closing], raw[closing + 2 :].split()


def _status_values(status: bytes, key: bytes) -> list[bytes]:
    """The values of one ``Key:`` line of /proc/PID/status, or none when it is absent."""
    start = status.find(b"\n" + key + b":")
    if start < 0:
        return []
    value_start = start + len(key) + 2
    end = status.find(b"\n", value_start)
    return status[value_start : end if end >= 0 else len(status)].split()


def _effective_uid(status: bytes) -> int:
    return int(_status_values(status, b"Uid")[1])  # Uid: real effective saved filesystem


def _resident_bytes(status: bytes) -> int:
    # VmRSS is exact, as ps and psutil show it; the rss field of /proc/PID/stat is only
    # an approximation on kernels with per-CPU memory counters (6.2+). Kernel threads have none.
    values = _status_values(status, b"VmRSS")
    return int(values[0]) * 1024 if values else 0


def _split_cmdline(raw: bytes) -> list[bytes]:
    if not raw:
        return []  # kernel threads and zombies
    # Arguments end in NUL; a process that rewrote its title may leave no final NUL.
    return raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b"\0")


def _executable(directory: int) -> tuple[bytes | None, bool]:
    try:
        target = os.readlink(b"exe", dir_fd=directory)
    except OSError:
        return None, False  # kernel thread, zombie, or not permitted: checked by the caller
    if target.endswith(_DELETED_SUFFIX):
        return target[: -len(_DELETED_SUFFIX)], True
    return target, False


def _open_process(pid: int, proc: str) -> int:
    try:
        return os.open(f"{proc}/{pid}", _DIRECTORY_FLAGS)
    except (FileNotFoundError, ProcessLookupError, PermissionError) as error:
        raise ProcessGone() from error


def read_process(pid: int, boot_s: float, proc: str = PROC) -> ProcessRecord:
    """Read one process; raises :class:`ProcessGone` if it does not exist (any more)."""
    directory = _open_process(pid, proc)
    try:
        comm, fields = _parse_stat(_read_all("stat", directory))
        status = _read_all("status", directory)
        cmdline = _split_cmdline(_read_all("cmdline", directory))
        exe, exe_deleted = _executable(directory)
        if exe is None:
            # An unreadable exe link is only trustworthy if the process is still there.
            _read_all("stat", directory)
    except (ValueError, IndexError) as error:
        raise ProcessGone() from error  # truncated read of a dying process
    finally:
        os.close(directory)
    ticks = _clock_ticks_per_second()
    # Field numbers of proc(5) minus 3: state is field 3, ppid 4, utime 14, stime 15,
    # num_threads 20, starttime 22.
    return ProcessRecord(
        pid=pid,
        ppid=int(fields[1]),
        comm=comm,
        state=STATE_NAMES.get(fields[0].decode("ascii", "replace"), fields[0].decode("ascii", "replace")),
        effective_uid=_effective_uid(status),
        cmdline=cmdline,
        exe=exe,
        exe_deleted=exe_deleted,
        start_time_s=boot_s + int(fields[19]) / ticks,
        cpu_time_s=(int(fields[11]) + int(fields[12])) / ticks,
        rss_bytes=_resident_bytes(status),
        threads=int(fields[17]),
    )


def process_ids(proc: str = PROC) -> list[int]:
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def _not_cancellable() -> None:
    return None


def read_processes(check_cancelled: Callable[[], None] = _not_cancellable, proc: str = PROC) -> Iterator[ProcessRecord]:
    """Every process that is alive while it is read, in pid order."""
    boot_s = boot_time_s(proc)
    for pid in process_ids(proc):
        check_cancelled()
        try:
            yield read_process(pid, boot_s, proc)
        except ProcessGone:
            continue


@dataclass(frozen=True)
class SocketOwners:
    """Socket inode -> pids holding it, and how many fd tables could not be read."""

    by_inode: dict[int, list[int]]
    unreadable: int


def _socket_inodes(pid: int, proc: str) -> set[int]:
    """Inodes of the sockets one process holds; PermissionError when its fd table is closed to us."""
    directory = _open_process(pid, proc)
    try:
        fd_dir = os.open("fd", _DIRECTORY_FLAGS, dir_fd=directory)
    except (FileNotFoundError, ProcessLookupError) as error:
        raise ProcessGone() from error
    finally:
        os.close(directory)
    inodes: set[int] = set()
    try:
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(fd, dir_fd=fd_dir)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except (FileNotFoundError, ProcessLookupError) as error:
        raise ProcessGone() from error
    finally:
        os.close(fd_dir)
    return inodes


def socket_owners(proc: str = PROC) -> SocketOwners:
    """Who holds each socket, from the ``socket:[INODE]`` links of /proc/PID/fd."""
    by_inode: dict[int, list[int]] = {}
    unreadable = 0
    try:
        pids = process_ids(proc)
    except OSError:
        return SocketOwners({}, 0)
    for pid in pids:
        try:
            inodes = _socket_inodes(pid, proc)
        except ProcessGone:
            continue
        except PermissionError:
            unreadable += 1
            continue
        for inode in inodes:
            by_inode.setdefault(inode, []).append(pid)
    return SocketOwners(by_inode, unreadable)
