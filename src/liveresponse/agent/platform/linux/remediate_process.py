"""remediate process: stop it (SIGTERM, a grace period, SIGKILL), then quarantine its image (SPEC §5).

The process is read, checked against the listing (its start time, as
``processes`` showed it in ``started``, and its executable), then pinned
(process_stop.pin_process: a pidfd opened, then the start time checked
again), so a pid reused at any point is refused or left alone rather than
signalled. The agent, its ancestors, init, kernel threads and the liveresponse
server this agent reports to, when it runs on this host, are never stopped
(protected_processes.py). The record is saved before the signal. Its executable
is identified before the signal, while /proc/PID/exe still exists, and
quarantined afterwards as a separate ``file`` record, so that ``undo file PATH``
brings it back; a stopped process itself cannot be restarted. Other processes
still running the quarantined image (the children a parent forked: same device
and inode behind /proc/PID/exe) are named in ``left``, not stopped: the analyst
chose one process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import process_table
from liveresponse.agent.platform.linux.process_stop import (
    KILL_WAIT_S,
    STOP_GRACE_S,
    PinnedProcess,
    image_users,
    pin_process,
    stop_pinned,
)
from liveresponse.agent.platform.linux.protected import Protection
from liveresponse.agent.platform.linux.protected_processes import (
    agent_and_ancestors,
    server_pids,
    server_refusal,
    server_url_of,
)
from liveresponse.agent.platform.linux.remediate_common import changed, finish, quarantine_unless_protected, remediation
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_seconds
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, LiveResponseError, NotFound
from liveresponse.protocol.names import escape_bytes

GRACE_S = STOP_GRACE_S
_KTHREADD_PID = 2


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
    if pid in server_pids(server_url_of(ctx.files)):
        raise CommandFailed(f"{server_refusal(pid)}; nothing done")
    entity = entity or {}
    boot_s = process_table.boot_time_s()
    process = _read(pid, boot_s)
    _check_listed(process, entity)
    pinned = pin_process(process, boot_s)
    if pinned is None:
        raise NotFound(f"no process with pid {pid}: it exited since it was listed; nothing done")
    try:
        image_identity = _image_identity(pinned)
        record = vault.new_record("process", str(pid), ctx)
        record["path"] = None if process.exe is None else escape_bytes(process.exe)
        with remediation(vault, record):
            _stop(pinned, escape_bytes(process.full_name), record, grace_s)
            others = _other_image_users(image_identity, pid)
            _quarantine_image(ctx, vault, record, process, image_identity, force, checker)
            if others and record.get("image_record"):
                record["left"].append(_still_running(others))
    finally:
        pinned.close()
    return record


def undo_process(ctx: CommandContext, vault: Vault, record: dict[str, Any]) -> dict[str, Any]:
    image_id = record.get("image_record")
    if image_id:
        raise CommandFailed(
            f"a stopped process cannot be restarted; undo file {record['path']} restores its image ({image_id})"
        )
    left = "; ".join(record.get("left") or []) or "its image was not quarantined"
    raise CommandFailed(f"a stopped process cannot be restarted, and nothing of {record['id']} is in the vault: {left}")


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
    if pid in agent_and_ancestors():
        raise CommandFailed(
            f"pid {pid} is an ancestor of the agent: stopping it could stop the agent half-way; it is never remediated"
        )


def _read(pid: int, boot_s: float) -> process_table.ProcessRecord:
    try:
        return process_table.read_process(pid, boot_s)
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


def _image_identity(pinned: PinnedProcess) -> dict[str, Any] | None:
    """Device and inode of the running image (what /proc/PID/exe points at), to be sure we quarantine it."""
    try:
        info = os.stat(f"/proc/{pinned.pid}/exe")
    except OSError:
        return None
    # Still running after the stat: the pid was not reused in between, so the image is this process's.
    return {"dev": info.st_dev, "inode": info.st_ino} if pinned.still_running() else None


def _stop(pinned: PinnedProcess, name: str, record: dict[str, Any], grace_s: float) -> None:
    pid = pinned.pid
    began = time.monotonic()
    result = stop_pinned(pinned, [], grace_s, with_children=False)
    if result.unsignalled:
        record["actions"].append(f"pid {pid} ({name}) exited before it was signalled")
        return
    changed(record, f"sent SIGTERM to pid {pid} ({name})")
    if result.terminated:
        record["actions"].append(f"exited after SIGTERM in {time.monotonic() - began:.1f} s")
    elif result.killed:
        record["actions"].append(f"killed with SIGKILL after {grace_s:g} s")
    else:
        record["actions"].append(f"sent SIGKILL after {grace_s:g} s")
        record["left"].append(
            f"pid {pid} did not exit within {KILL_WAIT_S:g} s of SIGKILL:"
            " it is stuck in the kernel (uninterruptible sleep?)"
        )


def _other_image_users(identity: dict[str, Any] | None, pid: int) -> list[int]:
    """The other processes running the image now (the children a parent forked), the agent's own left out."""
    if identity is None:
        return []
    return image_users(int(identity["dev"]), int(identity["inode"]), exclude={pid, *agent_and_ancestors()})


def _still_running(others: list[int]) -> str:
    """They are not stopped: the analyst listed one process, and decides on the others."""
    if len(others) == 1:
        return f"1 other process still runs this image: pid {others[0]}; remediate it too"
    return f"{len(others)} other processes still run this image: pids {', '.join(map(str, others))}; remediate them too"


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
    if identity is None:
        record["left"].append(f"image {image} could not be identified while pid {process.pid} ran: left in place")
        return
    image_record = vault.new_record("file", image, ctx)
    image_record["path"] = image
    image_record["actions"].append(f"image of pid {process.pid}, quarantined by {record['id']}")
    try:
        item = quarantine_unless_protected(
            vault, image_record, process.exe, force, ctx.state_dir, expect=identity, checker=checker
        )
    except LiveResponseError as error:  # the vault forgot the new image record: nothing of it was kept
        record["left"].append(f"image {image} was not quarantined: {error.message}")
        return
    if item is None:
        record["left"].extend(image_record["left"])  # protected: left in place
        return
    finish(vault, image_record)
    record["sha256"] = image_record["sha256"]
    record["image_record"] = image_record["id"]
    forced = f" (-force: {item['forced']})" if item.get("forced") else ""
    record["actions"].append(
        f"quarantined image {image} (sha256 {image_record['sha256']}) as {image_record['id']}{forced}:"
        f" 'undo file {image}' restores it"
    )
