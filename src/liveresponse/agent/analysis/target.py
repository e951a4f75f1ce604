"""Opening what ``analyze`` examines: a regular file by path, or a process's image by pid.

A file is looked at with lstat first. A symbolic link is followed once, on
purpose, and the result says so; anything but a regular file (a FIFO, socket,
device, directory) is refused from its metadata and never opened, because opening
a FIFO blocks and reading a device has side effects. The file is then opened
read-only, non-blocking, without following a link that was swapped in meanwhile,
and without updating its access time where the kernel lets us; fstat must show
the very inode that was looked at. Nothing opened here is ever executed or mapped
executable: the engines read it (hash) or let YARA map it read-only.

A process's image is opened through ``/proc/PID/exe``, which reaches the
executable even after it was deleted from its directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from liveresponse.agent.platform.linux import file_metadata, mounts, process_table
from liveresponse.protocol.errors import CommandFailed, NotFound
from liveresponse.protocol.names import escape_bytes

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)
_DELETED_SUFFIX = b" (deleted)"
_NOT_READ = {
    "dir": "a directory",
    "fifo": "a FIFO (named pipe)",
    "socket": "a socket",
    "char_device": "a character device",
    "block_device": "a block device",
}


@dataclass
class Opened:
    fd: int
    info: os.stat_result  # fstat of fd
    location: bytes  # the real path of the opened file; a process image's without " (deleted)"
    deleted: bool = False
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open_flags_no_atime(path: bytes, flags: int, dir_fd: int | None = None) -> int:
    """Open without touching the access time (forensics); the kernel allows it only to the owner or root."""
    if _NOATIME:
        try:
            return os.open(path, flags | _NOATIME, dir_fd=dir_fd)
        except PermissionError:
            pass
    return os.open(path, flags, dir_fd=dir_fd)


def _real_path(fd: int) -> tuple[bytes, bool]:
    target = os.readlink(f"/proc/self/fd/{fd}".encode())
    if target.endswith(_DELETED_SUFFIX):
        return target[: -len(_DELETED_SUFFIX)], True
    return target, False


def open_file(path: bytes) -> Opened:
    shown = escape_bytes(path)
    try:
        described = os.lstat(path)
    except FileNotFoundError:
        raise NotFound(f"no such file: {shown}") from None
    except OSError as exc:
        raise CommandFailed(f"cannot analyze {shown}: {exc.strerror}") from None
    notes = []
    flags = _OPEN_FLAGS | os.O_NOFOLLOW
    if stat.S_ISLNK(described.st_mode):
        link = escape_bytes(os.readlink(path))
        try:
            described = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"{shown} is a symbolic link to {link}, which does not exist") from None
        except OSError as exc:
            raise CommandFailed(f"cannot follow the symbolic link {shown} to {link}: {exc.strerror}") from None
        notes.append(f"{shown} is a symbolic link to {link}; its target was analyzed")
        flags = _OPEN_FLAGS
    kind = file_metadata.detailed_type(described.st_mode)
    if not stat.S_ISREG(described.st_mode):
        what = _NOT_READ.get(kind, kind)
        raise CommandFailed(f"{shown} is {what}, not a regular file: not analyzable (only regular files are read)")
    try:
        fd = _open_flags_no_atime(path, flags)
    except PermissionError:
        raise CommandFailed(f"permission denied: {shown}") from None
    except OSError as exc:
        raise CommandFailed(f"cannot open {shown}: {exc.strerror}") from None
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (described.st_dev, described.st_ino) or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CommandFailed(f"{shown} was replaced while it was being opened; analyze it again")
    location, deleted = _real_path(fd)
    pseudo = mounts.pseudo_file_system_of(location)
    if pseudo is not None:
        os.close(fd)
        raise CommandFailed(
            f"{shown} is on a {pseudo} pseudo file system: the kernel makes its content up as it is read, so it "
            "is not analyzable as a file ('analyze process PID' examines a process)"
        )
    return Opened(fd, info, location, deleted, notes)


def open_process_image(pid: int) -> tuple[Opened, process_table.ProcessRecord]:
    """The image of process ``pid`` (through /proc/PID/exe) and what /proc says about the process."""
    try:
        record = process_table.read_process(pid, process_table.boot_time_s())
    except process_table.ProcessGone:
        raise NotFound(f"no process with pid {pid}") from None
    name = escape_bytes(record.full_name)
    try:
        fd = _open_flags_no_atime(f"/proc/{pid}/exe".encode(), _OPEN_FLAGS)
    except PermissionError:
        raise CommandFailed(f"permission denied: the image of process {pid} ({name})") from None
    except (FileNotFoundError, ProcessLookupError):
        if record.exe is None:
            raise CommandFailed(f"process {pid} ({name}) has no executable image: a kernel thread") from None
        raise NotFound(f"process {pid} ({name}) ended while it was being analyzed") from None
    except OSError as exc:
        raise CommandFailed(f"cannot open the image of process {pid} ({name}): {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CommandFailed(f"the image of process {pid} ({name}) is not a regular file")
    location, deleted = (record.exe, record.exe_deleted) if record.exe is not None else _real_path(fd)
    return Opened(fd, info, location, deleted), record
