"""remediate process: stop it (SIGTERM, a grace period, SIGKILL), then quarantine its image (SPEC §5).

The process is pinned with a pidfd before it is checked against the listing
(its start time, as ``processes`` showed it in ``started``), so a pid reused in
between is refused rather than signalled. Its executable is read before the
signal, while /proc/PID/exe still exists, and quarantined afterwards as a
separate ``file`` record, so that ``undo file PATH`` brings it back; a stopped
process itself cannot be restarted.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import process_table
from liveresponse.agent.platform.linux.protected import Protection
from liveresponse.agent.platform.linux.remediate_files import protected_reason, quarantine_into_record
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_seconds
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, LiveResponseError, NotFound
from liveresponse.protocol.names import escape_bytes

GRACE_S = 5.0
_POLL_S = 0.02
_KTHREADD_PID = 2


def _pid_of(ident: str) -> int:
    try:
        pid = int(str(ident).strip())
    except ValueError:
        raise CommandFailed(f"a process id is a number, not {ident!r}") from None
    if pid <= 0:
        raise CommandFailed(f"a process id is a positive number, not {pid}")
    return pid


def _refuse_own(pid: int) -> None:
    if pid == 1:
        raise CommandFailed("pid 1 is the system's init process: it is never remediated")
    if pid == os.getpid():
        raise CommandFailed(f"pid {pid} is this agent: the agent never remediates itself")
    if pid == os.getppid():
        raise CommandFailed(f"pid {pid} is the agent's parent process: the agent never remediates it")


def _read(pid: int) -> process_table.ProcessRecord:
    try:
        return process_table.read_process(pid, process_table.boot_time_s())
    except process_table.ProcessGone:
        raise NotFound(f"no process with pid {pid}: it exited since it was listed; nothing done") from None


def _check_listed(record: process_table.ProcessRecord, entity: dict[str, Any]) -> None:
    pid = record.pid
    if record.pid == _KTHREADD_PID or record.ppid == _KTHREADD_PID:
        raise CommandFailed(f"pid {pid} ({escape_bytes(record.comm)}) is a kernel thread: it cannot be remediated")
    name = escape_bytes(record.full_name)
    started = iso_utc_from_seconds(record.start_time_s)
    listed_started = entity.get("started")
    if listed_started and listed_started != started:
        raise CommandFailed(
            f"pid {pid} is now another process: processes listed {entity.get('name')} started {listed_started},"
            f" pid {pid} is now {name} started {started} (the pid was reused); nothing done"
        )
    exe = None if record.exe is None else escape_bytes(record.exe)
    if entity.get("exe") and exe is not None and entity["exe"] != exe:
        raise CommandFailed(
            f"pid {pid} now runs {exe}, not {entity['exe']} as processes listed it (it executed another program);"
            " nothing done"
        )
    if record.state == "zombie":
        raise CommandFailed(
            f"pid {pid} ({name}) has already exited: it is a zombie waiting for its parent (pid {record.ppid})"
            " to collect it; nothing to stop"
        )


class _Target:
    """A process to signal: through a pidfd when the kernel has them (no pid reuse race), else by pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(pid)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def send(self, sig: int) -> bool:
        """Signal it; False if it had already exited."""
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def exited(self) -> bool:
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return bool(poller.poll(0))
        try:
            return process_table.read_process(self.pid, process_table.boot_time_s()).state in ("zombie", "dead")
        except process_table.ProcessGone:
            return True

    def wait(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> bool:
        deadline = clock() + timeout_s
        while True:
            if self.exited():
                return True
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            if self.pidfd is not None:
                poller = select.poll()
                poller.register(self.pidfd, select.POLLIN)
                poller.poll(max(1, int(remaining * 1000)))
            else:
                time.sleep(min(_POLL_S, remaining))


def _stop(target: _Target, name: str, record: dict[str, Any], grace_s: float) -> None:
    pid = target.pid
    if not target.send(signal.SIGTERM):
        record["actions"].append(f"pid {pid} ({name}) exited before it was signalled")
        return
    record["actions"].append(f"sent SIGTERM to pid {pid} ({name})")
    began = time.monotonic()
    if target.wait(grace_s):
        record["actions"].append(f"exited after SIGTERM in {time.monotonic() - began:.1f} s")
        return
    if not target.send(signal.SIGKILL):
        record["actions"].append(f"exited after SIGTERM in {time.monotonic() - began:.1f} s")
        return
    if target.wait(GRACE_S):
        record["actions"].append(f"killed with SIGKILL after {grace_s:g} s")
        return
    record["actions"].append(f"sent SIGKILL after {grace_s:g} s")
    record["left"].append(
        f"pid {pid} did not exit within {GRACE_S:g} s of SIGKILL: it is stuck in the kernel (uninterruptible sleep?)"
    )


def remediate_process(
    ctx: CommandContext,
    vault: Vault,
    ident: str,
    entity: dict[str, Any] | None,
    force: bool,
    *,
    checker: Protection | None = None,
    grace_s: float = GRACE_S,
) -> dict[str, Any]:
    pid = _pid_of(ident)
    _refuse_own(pid)
    entity = entity or {}
    target = _Target(pid)
    try:
        if target.pidfd is None and not _exists(pid):
            raise NotFound(f"no process with pid {pid}: it exited since it was listed; nothing done")
        process = _read(pid)  # after the pidfd: what we read is the process we will signal
        _check_listed(process, entity)
        name = escape_bytes(process.full_name)
        image_identity = _image_identity(pid)
        record = vault.new_record("process", str(pid), ctx)
        record["path"] = None if process.exe is None else escape_bytes(process.exe)
        _stop(target, name, record, grace_s)
    finally:
        target.close()
    _quarantine_image(ctx, vault, record, process, image_identity, force, checker)
    vault.save(record)
    return record


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _image_identity(pid: int) -> dict[str, Any] | None:
    """Device and inode of the running image (what /proc/PID/exe points at), to be sure we quarantine it."""
    try:
        info = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return {"dev": info.st_dev, "inode": info.st_ino}


def _quarantine_image(
    ctx: CommandContext,
    vault: Vault,
    record: dict[str, Any],
    process: process_table.ProcessRecord,
    identity: dict[str, Any] | None,
    force: bool,
    checker: Protection | None,
) -> None:
    if process.exe is None:
        record["left"].append(f"the image of pid {process.pid} could not be read: nothing to quarantine")
        return
    image = escape_bytes(process.exe)
    if process.exe_deleted:
        record["left"].append(f"image {image} was deleted before the remediation: nothing to quarantine")
        return
    reason = protected_reason(ctx, process.exe, checker)
    if reason is not None and not force:
        record["left"].append(f"left {image} in place: {reason}; -force quarantines it")
        return
    if identity is None:
        record["left"].append(f"image {image} could not be identified while pid {process.pid} ran: left in place")
        return
    image_record = vault.new_record("file", image, ctx)
    image_record["actions"].append(f"image of pid {process.pid}, quarantined by {record['id']}")
    try:
        quarantine_into_record(ctx, vault, image_record, process.exe, identity, force, checker)
    except LiveResponseError as error:
        record["left"].append(f"image {image} was not quarantined: {error.message}")
        return
    image_record["state"] = "remediated"
    vault.save(image_record)
    record["sha256"] = image_record["sha256"]
    record["image_record"] = image_record["id"]
    if reason is not None:
        record["actions"].append(f"forced: {reason}")
    record["actions"].append(
        f"quarantined image {image} (sha256 {image_record['sha256']}) as {image_record['id']}:"
        f" 'undo file {image}' restores it"
    )


def undo_process(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    image_id = record.get("image_record")
    if image_id:
        raise CommandFailed(
            f"a stopped process cannot be restarted; undo file {record['path']} restores its image ({image_id})"
        )
    left = "; ".join(record.get("left") or []) or "its image was not quarantined"
    raise CommandFailed(f"a stopped process cannot be restarted, and nothing of {record['id']} is in the vault: {left}")
