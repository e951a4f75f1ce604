"""The built-in heuristics of ``analyze`` (SPEC §5): checks that need no tenant intelligence.

Files:

- ``eicar``: the EICAR anti-malware test file: the standard 68-byte string at the
  very start, followed by nothing but whitespace, 128 bytes at most → malicious.
- ``setuid``: a setuid or setgid executable outside the system directories → suspicious.
- ``world-writable``: an ELF or script executable below a world-writable directory
  (/tmp, /var/tmp, /dev/shm, or any directory with o+w, sticky or not: whoever may
  write there may have planted it, or may swap it) → suspicious.
- ``hidden``: an ELF or script executable with a hidden component (a name starting
  with '.') in its path → suspicious. Well-known per-user tool folders (``~/.local``,
  ``~/.cargo``, a ``.venv``...) are not counted: they hold executables by design.

Processes (their image, through /proc/PID/exe): ``deleted-image`` (runs from a file
that was deleted), ``memfd-image`` (runs from an anonymous memory file: nothing on
disk), ``world-writable`` and ``hidden`` (the image's location), and the file checks
``eicar`` and ``setuid`` on the image itself.

"Executable" is an execute bit set and content that starts as an ELF file (``\\x7fELF``)
or a script (``#!``). Only metadata and the first bytes are looked at.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from liveresponse.protocol.names import escape_bytes

Finding = dict[str, Any]

# The EICAR test string, kept in two halves so this source file is not itself the test file's signature.
_EICAR_HEAD = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
_EICAR_TAIL = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR = _EICAR_HEAD + _EICAR_TAIL
EICAR_MAX_BYTES = 128
_EICAR_PADDING = b" \t\r\n\x1a"  # whitespace, and the DOS end-of-file some copies carry

HEAD_BYTES = 4096  # what the heuristics see of the content
_EXECUTE_BITS = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
# Where setuid and setgid programs are installed by packages.
_SYSTEM_BIN_DIRS = (b"/bin", b"/sbin", b"/usr/bin", b"/usr/sbin", b"/usr/local/bin", b"/usr/local/sbin")
_SYSTEM_TREES = (b"/usr/lib", b"/usr/lib32", b"/usr/lib64", b"/usr/libexec", b"/lib", b"/lib32", b"/lib64")
_USUAL_HIDDEN = {
    b".local", b".cargo", b".rustup", b".venv", b".nvm", b".pyenv", b".rbenv", b".deno", b".bun", b".dotnet",
    b".vscode-server", b".sdkman", b".gem", b".linuxbrew",
}  # fmt: skip
_MEMFD_PREFIX = b"/memfd:"

FILE_CHECKS = ("eicar", "setuid", "world-writable", "hidden")
PROCESS_CHECKS = ("deleted-image", "memfd-image", "world-writable", "hidden", "eicar", "setuid")


@dataclass(frozen=True)
class Examined:
    """What the heuristics are given about one opened file."""

    info: os.stat_result  # fstat of the opened file
    head: bytes  # its first HEAD_BYTES bytes
    location: bytes  # its real path (links resolved); for a process image, without " (deleted)"


def finding(result: str, reason: str, rule: str) -> Finding:
    return {"engine": "heuristics", "result": result, "reason": reason, "rule": rule}


def content_kind(head: bytes) -> str | None:
    """``ELF`` or ``script`` when the content is something a kernel would execute, else None."""
    if head.startswith(b"\x7fELF"):
        return "ELF"
    if head.startswith(b"#!"):
        return "script"
    return None


def is_eicar(size: int, head: bytes) -> bool:
    if size > EICAR_MAX_BYTES or not head.startswith(EICAR):
        return False
    return head[len(EICAR) : size].strip(_EICAR_PADDING) == b""


def _in_system_dir(path: bytes) -> bool:
    parent = os.path.dirname(path)
    if parent in _SYSTEM_BIN_DIRS:
        return True
    return any(path.startswith(tree + b"/") for tree in _SYSTEM_TREES)


def world_writable_ancestor(path: bytes) -> tuple[bytes, int] | None:
    """The nearest directory above ``path`` that anyone may write to, with its mode; None when there is none."""
    directory = os.path.dirname(path)
    while True:
        try:
            mode = os.stat(directory).st_mode
        except OSError:
            mode = 0
        if stat.S_ISDIR(mode) and mode & stat.S_IWOTH:
            return directory, stat.S_IMODE(mode)
        if directory in (b"/", b""):
            return None
        directory = os.path.dirname(directory)


def hidden_component(path: bytes) -> bytes | None:
    """The first path component that is hidden (a name starting with '.') and not a usual tool folder."""
    parts = [p for p in path.split(b"/") if p]
    for index, part in enumerate(parts):
        is_last = index == len(parts) - 1
        if part.startswith(b".") and part not in (b".", b"..") and (is_last or part not in _USUAL_HIDDEN):
            return part
    return None


def _special_bits(mode: int) -> str | None:
    names = [name for bit, name in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")) if mode & bit]
    return " and ".join(names) or None


def file_findings(examined: Examined) -> list[Finding]:
    """The file checks, in the order of FILE_CHECKS."""
    found = [*_content_findings(examined)]
    kind = content_kind(examined.head)
    mode = examined.info.st_mode
    if kind is None or not mode & _EXECUTE_BITS:
        return found
    shown = escape_bytes(examined.location)
    writable = world_writable_ancestor(examined.location)
    if writable is not None:
        directory, dir_mode = writable
        reason = f"{kind} executable {shown} is below the world-writable directory {escape_bytes(directory)} "
        found.append(finding("suspicious", reason + f"(mode {dir_mode:04o})", "world-writable"))
    hidden = hidden_component(examined.location)
    if hidden is not None:
        reason = f"{kind} executable {shown} is in a hidden location ({escape_bytes(hidden)})"
        found.append(finding("suspicious", reason, "hidden"))
    return found


def _content_findings(examined: Examined) -> list[Finding]:
    """eicar and setuid: what the file itself is, wherever it lies."""
    found = []
    info = examined.info
    if is_eicar(info.st_size, examined.head):
        found.append(finding("malicious", "the EICAR anti-malware test file", "eicar"))
    special = _special_bits(info.st_mode)
    if special and info.st_mode & _EXECUTE_BITS and not _in_system_dir(examined.location):
        reason = (
            f"{special} executable {escape_bytes(examined.location)} outside the system directories "
            f"(mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})"
        )
        found.append(finding("suspicious", reason, "setuid"))
    return found


def process_findings(examined: Examined, deleted: bool) -> list[Finding]:
    """The process checks on a process's image, in the order of PROCESS_CHECKS."""
    found = []
    location = examined.location
    shown = escape_bytes(location)
    memfd = location.startswith(_MEMFD_PREFIX)
    if memfd:
        reason = f"runs from an anonymous memory file {shown} (deleted): its image is on no file system"
        found.append(finding("suspicious", reason, "memfd-image"))
    elif deleted:
        found.append(finding("suspicious", f"runs from a deleted file {shown} (deleted)", "deleted-image"))
    if not memfd and location.startswith(b"/"):
        writable = world_writable_ancestor(location)
        if writable is not None:
            directory, dir_mode = writable
            reason = f"runs from {shown}, below the world-writable directory {escape_bytes(directory)} "
            found.append(finding("suspicious", reason + f"(mode {dir_mode:04o})", "world-writable"))
        hidden = hidden_component(location)
        if hidden is not None:
            reason = f"runs from {shown}, a hidden location ({escape_bytes(hidden)})"
            found.append(finding("suspicious", reason, "hidden"))
    return found + _content_findings(examined)
