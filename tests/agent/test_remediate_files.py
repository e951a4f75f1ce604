"""remediate and undo handlers for files, autostart entries and processes, on real files and processes.

The entity each test hands over is what the server would: the row of the
listing (fileinfo, startupfolders, processes) the analyst ran in the session,
produced here by the same agent commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from liveresponse.agent.commands import fileinfo, processes, remediate, undo
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import process_stop
from liveresponse.agent.platform.linux.protected import Protection
from liveresponse.agent.platform.linux.remediate_files import remediate_file
from liveresponse.agent.platform.linux.remediate_process import remediate_process
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, Conflict, NotAvailable, NotFound
from liveresponse.protocol.names import escape_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root, as the agent runs")
MTIME_NS = 1_700_000_000_123_456_789
RECORD_ID = re.compile(r"rem_[0-9a-f]{12}")


@pytest.fixture
def ctx(tmp_path: Path) -> CommandContext:
    return CommandContext(
        cwd=str(tmp_path), state_dir=tmp_path / "state", requested_by="alice", session_id="ses_9", command_id="cmd_9"
    )


def listed(path: Path | bytes) -> dict[str, Any]:
    return fileinfo.run(CommandContext(), {"path": escape_bytes(os.fsencode(path))})


def plant(path: Path, content: bytes, mode: int = 0o750, uid: int = 1234, gid: int = 1234) -> None:
    path.write_bytes(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


def test_remediate_file_then_undo_by_path(ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "drop per"
    content = b"#!/bin/sh\necho pwned\n"
    plant(target, content)
    sha256 = hashlib.sha256(content).hexdigest()
    entity = listed(target)

    record = remediate.run(ctx, {"type": "file", "id": "drop per", "entity": entity, "force": False})

    assert not target.exists()
    rid = record["id"]
    assert RECORD_ID.fullmatch(rid)
    assert record == {
        "id": rid,
        "type": "file",
        "entity": str(target),
        "state": "remediated",
        "actions": [f"quarantined {target} ({len(content)} bytes, sha256 {sha256})"],
        "left": [],
        "path": str(target),
        "sha256": sha256,
        "remediated_by": "alice",
        "remediated_at": record["remediated_at"],
        "session_id": "ses_9",
        "command_id": "cmd_9",
        "restored_by": None,
        "restored_at": None,
    }
    rows = remediate.run(ctx, {"type": "list"})
    assert rows == [record]

    ctx.requested_by = "adam"
    restored = undo.run(ctx, {"type": "file", "id": str(target)})

    assert restored["state"] == "restored" and restored["restored_by"] == "adam"
    assert restored["actions"][-1] == (
        f"restored {target} (sha256 {sha256}) with mode 0750, owner 1234:1234, mtime 2023-11-14T22:13:20.123456Z"
    )
    info = target.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns) == (0o750, 1234, 1234, MTIME_NS)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha256
    assert remediate.run(ctx, {"type": "list"})[0]["state"] == "restored"

    with pytest.raises(CommandFailed) as again:
        undo.run(ctx, {"type": "file", "id": rid})
    assert again.value.message == f"nothing to do: {rid} was already restored at {restored['restored_at']} by adam"


def test_undo_refuses_what_appeared_at_the_path_and_changes_nothing(ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "payload"
    plant(target, b"malicious\n")
    record = remediate.run(ctx, {"type": "file", "id": str(target), "entity": listed(target)})
    target.write_bytes(b"new\n")
    os.utime(target, ns=(MTIME_NS, MTIME_NS))

    with pytest.raises(Conflict) as refused:
        undo.run(ctx, {"type": "file", "id": record["id"]})

    assert refused.value.message == (
        f"{target} exists (file, 4 bytes, modified 2023-11-14T22:13:20.123456Z):"
        " undo never overwrites, so nothing was changed; move it away first"
    )
    assert target.read_bytes() == b"new\n"
    assert remediate.run(ctx, {"type": "list"})[0]["state"] == "remediated"
    target.unlink()
    assert undo.run(ctx, {"type": "file", "id": "payload"})["state"] == "restored"  # relative to the cwd
    assert target.read_bytes() == b"malicious\n"


def test_a_file_changed_since_fileinfo_is_refused(ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "changing"
    plant(target, b"version 1\n")
    entity = listed(target)
    target.write_bytes(b"version 2\n")
    now = hashlib.sha256(b"version 2\n").hexdigest()
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "file", "id": str(target), "entity": entity})
    assert refused.value.message == (
        f"{target} changed since it was listed: sha256 was {entity['sha256']}, now {now}; nothing done"
    )
    assert target.read_bytes() == b"version 2\n" and remediate.run(ctx, {"type": "list"}) == []

    replaced = tmp_path / "replaced"
    plant(replaced, b"same\n")
    entity = listed(replaced)
    plant(tmp_path / "newcomer", b"same\n")
    os.rename(tmp_path / "newcomer", replaced)  # a new inode while the old one is still allocated
    with pytest.raises(CommandFailed, match=rf"inode was {entity['inode']}, now \d+ \(replaced\); nothing done"):
        remediate.run(ctx, {"type": "file", "id": str(replaced), "entity": entity})


def test_a_same_size_edit_is_refused_when_fileinfo_gave_no_sha256(ctx: CommandContext, tmp_path: Path) -> None:
    # Over fileinfo_hash_max_bytes there is no sha256 to compare: inode and size stay, the times tell.
    target = tmp_path / "large log"
    plant(target, b"version 1\n")
    entity = fileinfo.run(CommandContext(fileinfo_hash_max_bytes=4), {"path": str(target)})
    assert entity["sha256"] is None
    target.write_bytes(b"version 2\n")
    now = os.stat(target)
    modified, changed = iso_utc_from_ns(now.st_mtime_ns), iso_utc_from_ns(now.st_ctime_ns)
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "file", "id": str(target), "entity": entity})
    assert refused.value.message == (
        f"{target} changed since it was listed: modified was {entity['modified']}, now {modified};"
        f" changed (status change time) was {entity['changed']}, now {changed} (rewritten or replaced)"
        " (the listing has no sha256, so its times are compared); nothing done"
    )
    assert target.read_bytes() == b"version 2\n" and remediate.run(ctx, {"type": "list"}) == []

    os.utime(target, ns=(MTIME_NS, MTIME_NS))  # the modification time set back: the status change time still moved
    with pytest.raises(CommandFailed, match=r": changed \(status change time\) was .*; nothing done$") as stomped:
        remediate.run(ctx, {"type": "file", "id": str(target), "entity": entity})
    assert "modified was" not in stomped.value.message and target.exists()

    unchanged = fileinfo.run(CommandContext(fileinfo_hash_max_bytes=4), {"path": str(target)})
    assert remediate.run(ctx, {"type": "file", "id": str(target), "entity": unchanged})["state"] == "remediated"
    assert not target.exists()


def test_a_protected_file_needs_force(ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "tool"
    plant(target, b"\x7fELF pretend\n", mode=0o755, uid=0, gid=0)
    info = tmp_path / "dpkg-info"
    info.mkdir()
    (info / "faketool.list").write_bytes(os.fsencode(target) + b"\n")
    checker = Protection(dpkg_info_dir=str(info), rpm_db_dirs=(), agent_paths=[])
    vault = Vault(tmp_path / "state")
    entity = listed(target)

    with pytest.raises(CommandFailed) as refused:
        remediate_file(ctx, vault, str(target), entity, False, checker=checker)
    assert refused.value.message == f"left {target} in place: owned by package faketool (dpkg); -force quarantines it"
    assert target.exists() and vault.records() == []

    record = remediate_file(ctx, vault, str(target), entity, True, checker=checker)
    assert record["actions"][0].endswith(" (-force: owned by package faketool (dpkg))")
    assert not target.exists()


def test_a_real_package_file_is_refused_without_force(ctx: CommandContext) -> None:
    sleep = Path("/usr/bin/sleep")
    before = sleep.stat()
    reason = r"(owned by package coreutils \(dpkg\)|a core system path \(/usr/bin\))"
    with pytest.raises(CommandFailed, match=rf"left /usr/bin/sleep in place: {reason}; -force quarantines it"):
        remediate.run(ctx, {"type": "file", "id": str(sleep), "entity": listed(sleep)})
    after = sleep.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_hard_links_are_named_in_left(ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "linked"
    plant(target, b"x")
    os.link(target, tmp_path / "other-name")
    record = remediate.run(ctx, {"type": "file", "id": str(target), "entity": listed(target)})
    assert record["left"] == [f"{target} had 2 hard links: its content stays reachable under the other 1"]


def test_registry_and_unknown_modules(ctx: CommandContext) -> None:
    with pytest.raises(NotAvailable, match="remediate registry is not available on linux"):
        remediate.run(ctx, {"type": "registry", "id": "HKLM\\x"})
    with pytest.raises(NotAvailable, match="undo registry is not available on linux"):
        undo.run(ctx, {"type": "registry", "id": "HKLM\\x"})
    with pytest.raises(NotFound, match="no file remediation of /nowhere"):
        undo.run(ctx, {"type": "file", "id": "/nowhere"})


def test_remediation_acts_on_the_live_system_only(ctx: CommandContext, tmp_path: Path) -> None:
    ctx.root = str(tmp_path)
    with pytest.raises(NotAvailable, match="acts on the live system only"):
        remediate.run(ctx, {"type": "list"})


# -- startup folder entries ------------------------------------------------------------------------------------


def entry_row(path: Path, name: str, command: str) -> dict[str, Any]:
    from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns

    return {"path": str(path), "name": name, "exec": command, "user": "(all users)",
            "modified": iso_utc_from_ns(path.lstat().st_mtime_ns)}  # fmt: skip


def test_remediate_startupfolder_quarantines_the_entry(ctx: CommandContext, tmp_path: Path) -> None:
    entry = tmp_path / "autostart" / "updater.desktop"
    entry.parent.mkdir()
    content = b"[Desktop Entry]\nName=Updater\nExec=/tmp/.x/updater --silent\n"
    plant(entry, content, mode=0o644, uid=0, gid=0)
    row = entry_row(entry, "Updater", "/tmp/.x/updater --silent")

    record = remediate.run(ctx, {"type": "startupfolder", "id": str(entry), "entity": row})

    assert not entry.exists()
    assert record["type"] == "startupfolder" and record["entity"] == str(entry)
    assert record["actions"] == [
        "autostart entry 'Updater' (Exec '/tmp/.x/updater --silent')",
        f"quarantined {entry} ({len(content)} bytes, sha256 {hashlib.sha256(content).hexdigest()})",
    ]
    restored = undo.run(ctx, {"type": "startupfolder", "id": str(entry)})
    assert restored["state"] == "restored"
    assert entry.read_bytes() == content
    assert entry.stat().st_mtime_ns == MTIME_NS


def test_an_entry_named_by_its_name_or_file_name(ctx: CommandContext, tmp_path: Path) -> None:
    entry = tmp_path / "autostart" / "tray-helper.desktop"
    entry.parent.mkdir()
    plant(entry, b"[Desktop Entry]\nName=Tray Helper\nExec=/opt/th\n", mode=0o644)
    row = entry_row(entry, "Tray Helper", "/opt/th")
    ctx.cwd = "/"
    record = remediate.run(ctx, {"type": "startupfolder", "id": "Tray Helper", "entity": row})
    assert record["entity"] == str(entry) and not entry.exists()
    assert undo.run(ctx, {"type": "startupfolder", "id": "Tray Helper"})["id"] == record["id"]
    assert entry.exists()
    record = remediate.run(
        ctx, {"type": "startupfolder", "id": "Tray Helper", "entity": entry_row(entry, "Tray Helper", "/opt/th")}
    )
    assert undo.run(ctx, {"type": "startupfolder", "id": "tray-helper.desktop"})["id"] == record["id"]


def test_an_entry_changed_since_the_listing_is_refused(ctx: CommandContext, tmp_path: Path) -> None:
    entry = tmp_path / "evil.desktop"
    plant(entry, b"[Desktop Entry]\nExec=/bin/true\n", mode=0o644)
    row = entry_row(entry, "Evil", "/bin/true")
    entry.write_bytes(b"[Desktop Entry]\nExec=/bin/false\n")
    os.utime(entry, ns=(MTIME_NS, MTIME_NS))
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "startupfolder", "id": str(entry), "entity": row})
    assert refused.value.message == (
        f"{entry} changed since startupfolders listed it: Exec was '/bin/true', now '/bin/false'; nothing done"
    )
    assert entry.exists()


# -- processes -------------------------------------------------------------------------------------------------


def wait_running(pid: int, exe: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        (row,) = list(processes.run(CommandContext(), {"pid": pid}))
        if row["cmdline"] and row["state"] == "sleeping" and (exe is None or row["exe"] == exe):
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.01)


@pytest.fixture
def sleep_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "bin dir" / "sl eep"
    copy.parent.mkdir()
    shutil.copy2("/bin/sleep", copy)
    return copy


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_remediate_process_stops_it_and_quarantines_its_image(
    ctx: CommandContext, sleep_copy: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    child = subprocess.Popen([str(sleep_copy), "600", *["0"] * 300])  # sleep adds its arguments up
    children.append(child)
    row = wait_running(child.pid, str(sleep_copy))
    sha256 = hashlib.sha256(sleep_copy.read_bytes()).hexdigest()

    record = remediate.run(ctx, {"type": "process", "id": str(child.pid), "entity": row})

    assert child.wait(5) == -signal.SIGTERM
    assert not sleep_copy.exists()
    image = next(r for r in remediate.run(ctx, {"type": "list"}) if r["type"] == "file")
    assert record["type"] == "process" and record["entity"] == str(child.pid) and record["path"] == str(sleep_copy)
    assert record["actions"][0] == f"sent SIGTERM to pid {child.pid} (sl eep)"
    assert re.fullmatch(r"exited after SIGTERM in \d+\.\d s", record["actions"][1])
    assert record["actions"][2:] == [
        f"quarantined image {sleep_copy} (sha256 {sha256}) as {image['id']}: 'undo file {sleep_copy}' restores it"
    ]
    assert record["left"] == [] and record["sha256"] == sha256 and record["image_record"] == image["id"]
    assert image["entity"] == str(sleep_copy) and image["sha256"] == sha256

    with pytest.raises(CommandFailed) as cannot:
        undo.run(ctx, {"type": "process", "id": str(child.pid)})
    assert cannot.value.message == (
        f"a stopped process cannot be restarted; undo file {sleep_copy} restores its image ({image['id']})"
    )
    undo.run(ctx, {"type": "file", "id": str(sleep_copy)})
    assert hashlib.sha256(sleep_copy.read_bytes()).hexdigest() == sha256
    assert os.access(sleep_copy, os.X_OK)


def test_a_reused_pid_is_refused(ctx: CommandContext, children: list[subprocess.Popen[bytes]]) -> None:
    child = subprocess.Popen(["/bin/sleep", "600"])
    children.append(child)
    row = dict(wait_running(child.pid))
    row["started"] = "2001-01-01T00:00:00.000000Z"
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "process", "id": str(child.pid), "entity": row})
    assert refused.value.message.startswith(
        f"pid {child.pid} is now another process: processes listed sleep started 2001-01-01T00:00:00.000000Z,"
        f" pid {child.pid} is now sleep started "
    )
    assert child.poll() is None


def test_a_system_image_is_left_in_place(ctx: CommandContext, children: list[subprocess.Popen[bytes]]) -> None:
    child = subprocess.Popen(["/usr/bin/sleep", "600"])
    children.append(child)
    row = wait_running(child.pid)
    record = remediate.run(ctx, {"type": "process", "id": str(child.pid), "entity": row})
    assert child.wait(5) == -signal.SIGTERM
    assert record["left"] == [f"left {row['exe']} in place: owned by package coreutils (dpkg); -force quarantines it"]
    assert [r["type"] for r in remediate.run(ctx, {"type": "list"})] == ["process"]


def test_a_deleted_image_is_said_so(
    ctx: CommandContext, sleep_copy: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    child = subprocess.Popen([str(sleep_copy), "600"])
    children.append(child)
    wait_running(child.pid, str(sleep_copy))
    sleep_copy.unlink()
    row = wait_running(child.pid)
    assert row["exe_deleted"] is True
    record = remediate.run(ctx, {"type": "process", "id": str(child.pid), "entity": row})
    assert child.wait(5) == -signal.SIGTERM
    assert record["left"] == [f"image {sleep_copy} was deleted before the remediation: nothing to quarantine"]


def test_sigterm_ignored_means_sigkill_after_the_grace_period(
    ctx: CommandContext, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    children.append(child)
    assert child.stdout is not None and child.stdout.readline() == b"1\n"
    child.stdout.close()
    row = wait_running(child.pid)
    vault = Vault(tmp_path / "state")
    record = remediate_process(ctx, vault, str(child.pid), row, False, grace_s=0.3)
    assert child.wait(5) == -signal.SIGKILL
    assert record["actions"][1] == "killed with SIGKILL after 0.3 s"
    assert record["left"][0].startswith("left ") and "the agent's own installation" in record["left"][0]


@pytest.mark.parametrize(
    ("pid", "message"),
    [
        (1, "pid 1 is the system's init process: it is never remediated"),
        (os.getpid(), f"pid {os.getpid()} is this agent: the agent never remediates itself"),
        (os.getppid(), f"pid {os.getppid()} is the agent's parent process: the agent never remediates it"),
        (2, "pid 2 (kthreadd) is a kernel thread: it cannot be remediated"),
    ],
)
def test_the_agent_init_and_kernel_threads_are_never_remediated(ctx: CommandContext, pid: int, message: str) -> None:
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "process", "id": str(pid), "entity": {}})
    assert refused.value.message == message


def test_a_process_gone_before_remediation_is_not_found(
    ctx: CommandContext, children: list[subprocess.Popen[bytes]]
) -> None:
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    with pytest.raises(NotFound, match=f"no process with pid {child.pid}: it exited since it was listed"):
        remediate.run(ctx, {"type": "process", "id": str(child.pid), "entity": {}})


def test_the_record_is_saved_before_the_original_goes(
    ctx: CommandContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ordered"
    plant(target, b"content\n")
    vault = Vault(tmp_path / "state")
    seen: list[tuple[str, int]] = []
    real_unlink = os.unlink

    def observing_unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if path == b"ordered":
            (record,) = vault.records()
            seen.append((record["state"], len(record["items"])))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", observing_unlink)
    record = remediate.run(ctx, {"type": "file", "id": str(target), "entity": listed(target)})
    assert seen == [("remediating", 1)]
    assert vault.records()[0]["id"] == record["id"] and vault.records()[0]["state"] == "remediated"


def test_undo_of_a_remediation_interrupted_before_the_unlink(ctx: CommandContext, tmp_path: Path) -> None:
    # A crash after the record was saved and before the unlink leaves the file in place and the record
    # "remediating". A hard-link twin makes that state for real: same inode still at the recorded path.
    target = tmp_path / "interrupted"
    plant(target, b"still here\n")
    twin = tmp_path / "twin"
    os.link(target, twin)
    vault = Vault(tmp_path / "state")
    record = vault.new_record("file", str(target), ctx)
    record["state"] = "remediating"
    item = vault.quarantine_file(os.fsencode(twin), record=record)
    item["path"] = item["real_path"] = str(target)
    vault.save(record)

    restored = undo.run(ctx, {"type": "file", "id": str(target)})

    assert restored["state"] == "restored"
    assert restored["actions"] == [
        f"{target} is in place, unchanged: the remediation was interrupted before removing it"
    ]
    assert target.read_bytes() == b"still here\n" and os.listdir(vault.blobs) == []


def test_an_entry_swapped_for_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    # The entry is checked with lstat, then read: a FIFO swapped in between would block a plain open() forever.
    from liveresponse.agent.platform.linux import remediate_files

    entry = tmp_path / "swapped.desktop"
    plant(entry, b"[Desktop Entry]\nExec=/bin/true\n", mode=0o644)
    listed_info = entry.lstat()
    entry.unlink()
    os.mkfifo(entry)
    began = time.monotonic()
    changes = remediate_files._entry_changes(os.fsencode(entry), listed_info, {"exec": "/bin/true"})
    assert changes == ["it was replaced meanwhile"] and time.monotonic() - began < 5


_AGENT_BELOW = """
import os, sys
from pathlib import Path
from liveresponse.agent.commands import remediate
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.process_table import boot_time_s, read_process
grandparent = read_process(os.getppid(), boot_time_s()).ppid
try:
    remediate.run(CommandContext(state_dir=Path(sys.argv[1])), {"type": "process", "id": str(grandparent)})
except Exception as error:
    print(error)
"""
_LAUNCH = "import subprocess, sys; subprocess.run([sys.executable, *sys.argv[1:]], check=True)"


def test_an_ancestor_of_the_agent_is_never_stopped(
    ctx: CommandContext, children: list[subprocess.Popen[bytes]]
) -> None:
    # Say a shell that started the agent by hand: stopping it could take the agent down half-way through.
    # The shape: this test -> launcher (the grandparent, a throwaway) -> launcher -> an agent that is asked to stop it.
    argv = [sys.executable, "-c", _LAUNCH, "-c", _LAUNCH, "-c", _AGENT_BELOW, str(ctx.state_dir)]
    grandparent = subprocess.Popen(argv, stdout=subprocess.PIPE)
    children.append(grandparent)
    out, _ = grandparent.communicate(timeout=60)
    assert grandparent.returncode == 0
    assert out.decode().strip() == (
        f"pid {grandparent.pid} is an ancestor of the agent: stopping it could stop the agent half-way;"
        " it is never remediated"
    )


# -- the server this agent reports to, on this host ----------------------------------------------------------------

_LISTENER = """
import socket, sys, time
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind((sys.argv[1], 0))
server.listen()
print(server.getsockname()[1], flush=True)
time.sleep(600)
"""


def start_listener(children: list[subprocess.Popen[bytes]], address: str) -> tuple[subprocess.Popen[bytes], int]:
    """A process listening on ``address`` (a stand-in for an lr server), and its port."""
    listener = subprocess.Popen([sys.executable, "-c", _LISTENER, address], stdout=subprocess.PIPE)
    children.append(listener)
    assert listener.stdout is not None
    port = int(listener.stdout.readline())
    listener.stdout.close()
    return listener, port


@pytest.mark.parametrize(
    ("listen", "url_host"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "localhost"), ("127.0.0.1", "[::ffff:127.0.0.1]")],
)
def test_the_server_this_agent_reports_to_is_never_stopped(
    ctx: CommandContext, children: list[subprocess.Popen[bytes]], listen: str, url_host: str
) -> None:
    listener, port = start_listener(children, listen)
    ctx.files = SimpleNamespace(server_url=f"https://{url_host}:{port}")  # the agent's WorkFolder
    row = wait_running(listener.pid)
    with pytest.raises(CommandFailed) as refused:
        remediate.run(ctx, {"type": "process", "id": str(listener.pid), "entity": row})
    assert refused.value.message == (
        f"pid {listener.pid} is the liveresponse server this agent reports to: stopping it would cut the session;"
        " nothing done"
    )
    time.sleep(0.2)
    assert listener.poll() is None and remediate.run(ctx, {"type": "list"}) == []


def test_a_server_on_another_host_protects_no_local_process(
    ctx: CommandContext, children: list[subprocess.Popen[bytes]]
) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host, so a local process on that port is not the server.
    listener, port = start_listener(children, "0.0.0.0")
    ctx.files = SimpleNamespace(server_url=f"https://192.0.2.10:{port}")
    row = wait_running(listener.pid)
    record = remediate.run(ctx, {"type": "process", "id": str(listener.pid), "entity": row})
    assert listener.wait(5) == -signal.SIGTERM and record["state"] == "remediated"


# -- other processes running the quarantined image -----------------------------------------------------------------


def test_other_processes_still_running_the_image_are_named_not_stopped(
    ctx: CommandContext, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    # A parent that forked children running its own image: stopping the parent leaves them running it.
    image = tmp_path / "mysleep"
    shutil.copy2(os.path.realpath("/bin/sh"), image)
    loop = f"{image} -c 'sleep 600; :' & {image} -c 'sleep 600; :' & wait"
    parent = subprocess.Popen([str(image), "-c", loop])
    children.append(parent)
    forked: list[int] = []
    deadline = time.monotonic() + 10
    while len(forked) < 2:
        assert time.monotonic() < deadline, forked
        time.sleep(0.02)
        table = process_stop.process_table()
        forked = sorted(pid for pid, p in table.items() if p.ppid == parent.pid and p.exe == os.fsencode(image))
    try:
        row = wait_running(parent.pid, str(image))
        record = remediate.run(ctx, {"type": "process", "id": str(parent.pid), "entity": row})
        assert parent.wait(5) == -signal.SIGTERM
        assert record["left"] == [
            f"2 other processes still run this image: pids {forked[0]}, {forked[1]}; remediate them too"
        ]
        assert all(process_stop.process_table().get(pid) is not None for pid in forked)  # not stopped
        assert not image.exists() and record["image_record"]
    finally:
        table = process_stop.process_table()
        for pid in [pid for child in forked for pid in [child, *process_stop.descendants_of(table, child)]]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
