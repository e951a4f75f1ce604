"""Finding the running process of a service without asking systemd.

When systemd is not PID 1 there is no cgroup bookkeeping to ask, so a unit's
main process is recognised from what it was told to run. The rule, in order:

1. ``PIDFile=`` names a readable file whose pid is alive: that pid.
2. A process whose argv equals the ExecStart= argv. argv[0] matches when it is
   the same string, or names the same file (``/proc/PID/exe`` or the resolved
   path). A word holding an unexpanded ``$VAR`` or ``%`` specifier matches the
   rest of the argv, whatever it is.
3. A process whose ``/proc/PID/exe`` is the ExecStart executable, when that
   executable is not an interpreter (a python, shell, perl... program is shared
   by many unrelated processes, so it proves nothing alone). This catches
   daemons that rewrite their process title.

Among several matches the main pid is the one whose parent is not itself a
match (the first started), ties broken by the lowest pid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from liveresponse.agent.platform.linux.process_table import ProcessRecord

_INTERPRETER = re.compile(r"^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|java|php[0-9.]*|bash|sh|dash|zsh|env)$")


def _same_file(a: bytes, b: bytes) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _argv0_matches(process: ProcessRecord, executable: bytes, argv0: bytes) -> bool:
    if not process.cmdline:
        return False
    first = process.cmdline[0]
    if first in (argv0, executable):
        return True
    if process.exe and os.path.isabs(executable) and _same_file(process.exe, executable):
        # The exe is the program; argv[0] may be a symlink name or a bare name.
        return os.path.basename(first) == os.path.basename(argv0) or _same_file(first, executable)
    return False


def _args_match(actual: list[bytes], expected: list[bytes]) -> bool:
    for index, word in enumerate(expected):
        if b"$" in word or b"%" in word:
            return True  # the rest depends on an environment or specifier we cannot expand
        if index >= len(actual) or actual[index] != word:
            return False
    return len(actual) == len(expected)


def _pid_from_file(path: str, processes: dict[int, ProcessRecord]) -> int | None:
    try:
        with open(path, "rb") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid in processes else None


def _main_of(candidates: list[ProcessRecord]) -> ProcessRecord:
    pids = {c.pid for c in candidates}
    roots = [c for c in candidates if c.ppid not in pids] or candidates
    return min(roots, key=lambda c: (c.start_time_s, c.pid))


def find_main_pid(
    executable: str | None,
    argv: list[str],
    processes: Iterable[ProcessRecord],
    pid_file: str | None = None,
    uid: int | None = None,
) -> int | None:
    """The main pid of a service, by the rule in the module docstring.

    ``executable`` and ``argv`` are unit-file text (surrogate-escaped); /proc
    gives bytes, so they are compared as the bytes the kernel was handed.
    """
    table = {p.pid: p for p in processes if uid is None or p.effective_uid == uid}
    if pid_file:
        pid = _pid_from_file(pid_file, table)
        if pid is not None:
            return pid
    if not executable or not argv:
        return None
    program = os.fsencode(executable)
    words = [os.fsencode(word) for word in argv]
    by_argv = [
        p for p in table.values() if _argv0_matches(p, program, words[0]) and _args_match(p.cmdline[1:], words[1:])
    ]
    if by_argv:
        return _main_of(by_argv).pid
    if _INTERPRETER.match(os.path.basename(executable)) or not os.path.isabs(executable):
        return None
    by_exe = [p for p in table.values() if p.exe and _same_file(p.exe, program)]
    return _main_of(by_exe).pid if by_exe else None
