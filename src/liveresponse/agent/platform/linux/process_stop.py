"""Stopping processes for a remediation: pinned first, then SIGTERM, a grace period, SIGKILL (SPEC §5, DR-14).

Each process is pinned before it is signalled (``pin_process``: a pidfd opened,
then its start time checked against the one it was read with), so a pid reused
since it was read is never signalled; without pidfds (a kernel before 5.3) the
start time is read again before each signal. ``stop_pinned`` stops one process
or, with its children, a tree (``stop_process_tree``, for a service without
systemd); children forked while it shuts down are found and stopped too.

``image_users`` finds the processes that still run a given file (its device and
inode, as /proc/PID/exe shows them): a parent stopped on its own leaves the
children it forked running the same image, and the analyst is told which.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from liveresponse.agent.platform.linux.process_table import (
    ProcessGone,
    ProcessRecord,
    boot_time_s,
    read_process,
    read_processes,
)
from liveresponse.protocol.names import escape_bytes

STOP_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL (systemd's default is 90 s; an analyst waits)
KILL_WAIT_S = 5.0  # how long a SIGKILLed process may take to go (one stuck in the kernel never does)
_POLL_S = 0.02  # how often a process without a pidfd is looked at while waiting for it to exit
_SAME_START_S = 0.05  # a process's start time read twice differs by rounding at most


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


def image_users(dev: int, inode: int, exclude: Iterable[int] = (), proc: str = "/proc") -> list[int]:
    """The pids whose executable (``/proc/PID/exe``) is the file ``dev``/``inode``, lowest first.

    A zombie or a kernel thread has no executable and is not counted; a process that exits
    during the scan is left out.
    """
    skipped = set(exclude)
    found = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) in skipped:
            continue
        try:
            info = os.stat(f"{proc}/{name}/exe")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (dev, inode):
            found.append(int(name))
    return sorted(found)
