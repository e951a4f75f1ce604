"""remediate service / undo service: under a planted root (files and links), and on the live system
(a real process stopped and started again; systemd is not PID 1 here)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from liveresponse.agent.commands import services
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import process_stop, protected, remediate_service, systemd_control
from liveresponse.agent.platform.linux.process_table import ProcessGone, boot_time_s, read_process
from liveresponse.agent.platform.linux.remediate_service import remediate_service as remediate
from liveresponse.agent.platform.linux.remediate_service import undo_service as undo
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from tests.agent.planting import PASSWD, plant

UNITS = "/etc/systemd/system"
EVIL = (
    "[Unit]\nDescription=Evil\n[Service]\nExecStart=/usr/local/bin/evil --serve\n"
    "[Install]\nWantedBy=multi-user.target\n"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    plant(top, "/etc/passwd", PASSWD)
    plant(top, f"{UNITS}/evil.service", EVIL)
    plant(top, "/usr/local/bin/evil", "#!/bin/sh\nexec sleep 600\n", 0o750)
    os.chown(top / "usr/local/bin/evil", 0, 1003)
    (top / "etc/systemd/system/multi-user.target.wants").mkdir()
    (top / "etc/systemd/system/multi-user.target.wants/evil.service").symlink_to(f"{UNITS}/evil.service")
    (top / "etc/systemd/system/network.target.requires").mkdir()
    (top / "etc/systemd/system/network.target.requires/evil.service").symlink_to("../evil.service")
    (top / "etc/systemd/system/evil-alias.service").symlink_to("evil.service")
    # Another unit's links stay.
    plant(top, f"{UNITS}/good.service", "[Service]\nExecStart=/bin/good\n")
    (top / "etc/systemd/system/multi-user.target.wants/good.service").symlink_to(f"{UNITS}/good.service")
    return top


@pytest.fixture
def ctx(root: Path, tmp_path: Path) -> CommandContext:
    return CommandContext(root=str(root), state_dir=tmp_path / "state", requested_by="alice", session_id="s1",
                          command_id="c1")  # fmt: skip


@pytest.fixture
def vault(ctx: CommandContext) -> Vault:
    assert ctx.state_dir is not None
    return Vault(ctx.state_dir)


def listed(ctx: CommandContext, name: str) -> dict[str, Any]:
    rows = [row for row in services.run(ctx, {"name": name}) if row["name"] is not None]
    assert len(rows) == 1, rows
    return rows[0]


def mtime_of(path: Path) -> str | None:
    return iso_utc_from_ns(path.lstat().st_mtime_ns)


def links_of(root: Path) -> dict[str, str]:
    units = root / UNITS.lstrip("/")
    found = {}
    for path in sorted(units.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(units))] = os.readlink(path)
    return found


def test_files_and_links_of_a_service_go_and_come_back(root: Path, ctx: CommandContext, vault: Vault) -> None:
    exe = root / "usr/local/bin/evil"
    before_sha, before_stat = sha256(exe), exe.stat()
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    assert record["actions"] == [
        "removed enabling link /etc/systemd/system/multi-user.target.wants/evil.service"
        " -> /etc/systemd/system/evil.service",
        "removed enabling link /etc/systemd/system/network.target.requires/evil.service -> ../evil.service",
        "removed alias link /etc/systemd/system/evil-alias.service -> evil.service",
        f"quarantined executable /usr/local/bin/evil (25 bytes, sha256 {before_sha})",
    ]
    assert record["left"] == [f"not stopped: the collector root {root} is offline, it has no processes"]
    assert (record["type"], record["entity"], record["state"], record["path"], record["sha256"]) == (
        "service", "evil", "remediated", "/etc/systemd/system/evil.service", before_sha,
    )  # fmt: skip
    assert (record["remediated_by"], record["session_id"], record["command_id"]) == ("alice", "s1", "c1")
    assert links_of(root) == {"multi-user.target.wants/good.service": f"{UNITS}/good.service"}
    assert not exe.exists() and (root / "etc/systemd/system/evil.service").exists()
    assert vault.get(record["id"]) == record  # saved as returned
    assert listed(ctx, "evil")["enabled"] == "disabled"

    result = undo(ctx, vault, record)
    assert result["actions"] == [
        f"restored executable {exe} (sha256 {before_sha}) with mode 0750, owner root:1003, mtime {mtime_of(exe)}",
        "re-created enabling link /etc/systemd/system/multi-user.target.wants/evil.service"
        " -> /etc/systemd/system/evil.service",
        "re-created enabling link /etc/systemd/system/network.target.requires/evil.service -> ../evil.service",
        "re-created alias link /etc/systemd/system/evil-alias.service -> evil.service",
        "not started: it was not running when it was remediated",
    ]
    assert (result["state"], result["restored_by"], result["left"]) == ("restored", "alice", [])
    assert links_of(root) == {
        "evil-alias.service": "evil.service",
        "multi-user.target.wants/evil.service": f"{UNITS}/evil.service",
        "multi-user.target.wants/good.service": f"{UNITS}/good.service",
        "network.target.requires/evil.service": "../evil.service",
    }
    after = exe.stat()
    assert sha256(exe) == before_sha
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns) == (
        before_stat.st_mode, 0, 1003, before_stat.st_mtime_ns,
    )  # fmt: skip
    saved = vault.get(record["id"])
    assert saved is not None and saved["state"] == "restored"
    assert saved["actions"] == record["actions"] and saved["undo_actions"] == result["actions"]
    with pytest.raises(CommandFailed, match="nothing to undo"):
        undo(ctx, vault, saved)


def test_a_changed_exec_is_refused_with_nothing_done(root: Path, ctx: CommandContext, vault: Vault) -> None:
    row = listed(ctx, "evil")
    plant(root, f"{UNITS}/evil.service", EVIL.replace("--serve", "--other"))
    with pytest.raises(Conflict) as raised:
        remediate(ctx, vault, "evil", row, False)
    assert raised.value.message == (
        "service evil.service changed since it was listed: exec is now '/usr/local/bin/evil --other', listed "
        "'/usr/local/bin/evil --serve'; nothing was done, run services again"
    )
    assert len(links_of(root)) == 4 and (root / "usr/local/bin/evil").exists() and vault.records() == []


def test_a_removed_unit_is_not_found(root: Path, ctx: CommandContext, vault: Vault) -> None:
    row = listed(ctx, "evil")
    (root / "etc/systemd/system/evil.service").unlink()
    (root / "etc/systemd/system/evil-alias.service").unlink()
    with pytest.raises(NotFound, match=r"service evil.service is no longer there \(listed with unit file "):
        remediate(ctx, vault, "evil", row, False)
    assert (root / "usr/local/bin/evil").exists() and vault.records() == []


def test_undo_never_overwrites_and_changes_nothing(root: Path, ctx: CommandContext, vault: Vault) -> None:
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    newcomer = root / "usr/local/bin/evil"
    newcomer.write_text("new\n")
    squatter = root / "etc/systemd/system/evil-alias.service"
    squatter.symlink_to("/elsewhere")
    with pytest.raises(Conflict) as raised:
        undo(ctx, vault, record)
    assert raised.value.message == (
        f"{newcomer} exists (file, 4 bytes, modified {mtime_of(newcomer)}); {squatter} exists (link to /elsewhere,"
        f" modified {mtime_of(squatter)}): undo never overwrites, so nothing was changed; move them away first"
    )
    assert newcomer.read_text() == "new\n"
    assert links_of(root) == {
        "evil-alias.service": "/elsewhere",
        "multi-user.target.wants/good.service": f"{UNITS}/good.service",
    }
    saved = vault.get(record["id"])
    assert saved is not None and saved["state"] == "remediated"
    newcomer.unlink()
    squatter.unlink()
    assert undo(ctx, vault, saved)["state"] == "restored"
    assert sha256(newcomer) == record["sha256"]


def test_undo_after_the_agent_died_before_the_unlink(root: Path, ctx: CommandContext, vault: Vault) -> None:
    exe = root / "usr/local/bin/evil"
    keep = root / "usr/local/bin/.evil-inode"
    os.link(exe, keep)  # keeps the inode alive across the quarantine's unlink
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    os.link(keep, exe)  # the very file is back at its place, as if the unlink never happened
    keep.unlink()
    result = undo(ctx, vault, record)
    assert result["actions"][0] == f"executable {exe} is in place, unchanged: nothing to put back"
    assert sha256(exe) == record["sha256"] and result["state"] == "restored"


def test_a_protected_executable_stays_without_force(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def protection(path: bytes, state_dir: object = None) -> str | None:
        return "owned by package evil (dpkg)" if path.endswith(b"/usr/local/bin/evil") else None

    monkeypatch.setattr(protected, "protection", protection)
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    assert (
        record["left"][-1] == "left /usr/local/bin/evil in place: owned by package evil (dpkg); -force quarantines it"
    )
    assert (root / "usr/local/bin/evil").exists() and record["sha256"] is None
    assert links_of(root) == {"multi-user.target.wants/good.service": f"{UNITS}/good.service"}  # still disabled
    undo(ctx, vault, record)
    forced = remediate(ctx, vault, "evil", listed(ctx, "evil"), True)
    assert forced["actions"][-1] == (
        f"quarantined executable /usr/local/bin/evil (25 bytes, sha256 {forced['sha256']})"
        " (-force: owned by package evil (dpkg))"
    )
    assert not (root / "usr/local/bin/evil").exists()


def test_the_script_an_interpreter_runs_is_quarantined_too(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def protection(path: bytes, state_dir: object = None) -> str | None:
        return "a core system path (/usr/bin)" if b"/usr/bin/" in path else None

    monkeypatch.setattr(protected, "protection", protection)
    plant(root, "/usr/bin/python3.11", "an interpreter")
    (root / "usr/bin/python3").symlink_to("python3.11")
    script = plant(root, "/opt/evil/beacon.py", "print('beacon')\n", 0o700)
    plant(root, f"{UNITS}/beacon.service", "[Service]\nExecStart=/usr/bin/python3 -u /opt/evil/beacon.py --loop\n")
    record = remediate(ctx, vault, "beacon", listed(ctx, "beacon"), False)
    assert record["left"][-1] == (
        "left /usr/bin/python3.11 in place: a core system path (/usr/bin); -force quarantines it"
    )
    assert record["actions"][-1] == f"quarantined script /opt/evil/beacon.py (16 bytes, sha256 {record['sha256']})"
    assert not script.exists() and (root / "usr/bin/python3.11").exists()


def test_sysv_start_links_and_files(root: Path, ctx: CommandContext, vault: Vault) -> None:
    script = plant(root, "/etc/init.d/legacy", "#!/bin/sh\n### BEGIN INIT INFO\n# Short-Description: Legacy\n"
                   "### END INIT INFO\nDAEMON=/usr/sbin/legacyd\n", 0o755)  # fmt: skip
    daemon = plant(root, "/usr/sbin/legacyd", "daemon", 0o755)
    for level in ("2", "3"):
        (root / f"etc/rc{level}.d").mkdir()
        (root / f"etc/rc{level}.d/S02legacy").symlink_to("../init.d/legacy")
    (root / "etc/rc0.d").mkdir()
    (root / "etc/rc0.d/K01legacy").symlink_to("../init.d/legacy")
    record = remediate(ctx, vault, "legacy", listed(ctx, "legacy"), False)
    assert record["actions"] == [
        "removed start link /etc/rc2.d/S02legacy -> ../init.d/legacy",
        "removed start link /etc/rc3.d/S02legacy -> ../init.d/legacy",
        f"quarantined daemon /usr/sbin/legacyd (6 bytes, sha256 {hashlib.sha256(b'daemon').hexdigest()})",
        f"quarantined init script /etc/init.d/legacy ({record['items'][-1]['size']} bytes,"
        f" sha256 {record['items'][-1]['sha256']})",
    ]
    assert not script.exists() and not daemon.exists() and (root / "etc/rc0.d/K01legacy").is_symlink()
    assert not (root / "etc/rc2.d/S02legacy").is_symlink()
    undo(ctx, vault, record)
    assert os.readlink(root / "etc/rc3.d/S02legacy") == "../init.d/legacy" and script.stat().st_mode & 0o777 == 0o755
    assert listed(ctx, "legacy")["enabled"] == "enabled"


def test_through_systemctl_when_systemd_runs(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str | None, tuple[str, ...]]] = []

    def systemctl(user: str | None, *args: str) -> str:
        calls.append((user, args))
        return ""

    row = listed(ctx, "evil")
    running = {**row, "state": "running", "main_pid": 4242}
    real_list = remediate_service.list_services

    def as_running(fs: object, name: str) -> list[dict[str, Any]]:
        return [{**r, "state": "running", "main_pid": 4242} for r in real_list(fs, name)]

    monkeypatch.setattr(remediate_service, "list_services", as_running)
    monkeypatch.setattr(remediate_service, "systemd_is_running", lambda fs: True)
    monkeypatch.setattr(systemd_control, "systemctl", systemctl)
    record = remediate(ctx, vault, "evil", running, False)
    assert calls == [(None, ("stop", "evil.service")), (None, ("daemon-reload",))]
    assert record["actions"][0] == "stopped through systemctl stop evil.service (main pid 4242)"
    assert record["actions"][4] == "systemctl daemon-reload"
    calls.clear()
    result = undo(ctx, vault, record)
    assert calls == [(None, ("daemon-reload",)), (None, ("start", "evil.service"))]
    assert result["actions"][-2:] == ["systemctl daemon-reload", "started through systemctl start evil.service"]


# ---------------------------------------------------------------- the live system


def alive(pid: int) -> bool:
    try:
        return read_process(pid, boot_time_s()).state != "zombie"
    except ProcessGone:
        return False


@pytest.fixture
def live_unit(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A unit in the real /etc/systemd/system running a copy of sleep, with its wants link."""
    if os.geteuid() != 0:
        pytest.skip("plants a unit in /etc/systemd/system")
    name = f"lr-test-{uuid.uuid4().hex[:10]}"
    exe = tmp_path / "bin" / name
    exe.parent.mkdir()
    shutil.copy2("/bin/sleep", exe)
    unit = Path(f"{UNITS}/{name}.service")
    wants = Path(f"{UNITS}/multi-user.target.wants/{name}.service")
    unit.write_text(
        f"[Service]\nExecStart={exe} 3600\nWorkingDirectory={tmp_path}\n[Install]\nWantedBy=multi-user.target\n"
    )
    wants.parent.mkdir(exist_ok=True)
    try:
        wants.symlink_to(unit)
        yield name, exe, wants
    finally:
        unit.unlink(missing_ok=True)
        wants.unlink(missing_ok=True)


def test_a_running_service_is_stopped_and_started_again(live_unit: tuple[str, Path, Path], tmp_path: Path) -> None:
    name, exe, wants = live_unit
    ctx = CommandContext(state_dir=tmp_path / "state", requested_by="alice")
    vault = Vault(tmp_path / "state")
    process = subprocess.Popen([str(exe), "3600"])
    started: int | None = None
    try:
        time.sleep(0.2)
        row = listed(ctx, name)
        assert (row["state"], row["main_pid"]) == ("running", process.pid)
        record = remediate(ctx, vault, name, row, False)
        assert process.wait(5) == -signal.SIGTERM
        assert record["actions"][0] == f"stopped pid {process.pid} ({exe} 3600): SIGTERM"
        state = record["items"][0]
        assert (state["was_running"], state["pid"], state["argv"]) == (True, process.pid, [str(exe), "3600"])
        assert not wants.is_symlink() and not exe.exists()
        result = undo(ctx, vault, record)
        assert result["left"] == []
        last = result["actions"][-1]
        assert last.startswith("started from ExecStart (systemd is not running): pid ")
        started = int(last.rsplit(" ", 1)[1])
        time.sleep(0.2)
        again = read_process(started, boot_time_s())
        assert again.cmdline == [os.fsencode(exe), b"3600"] and again.ppid != os.getpid()
        assert os.readlink(f"/proc/{started}/cwd") == str(tmp_path)
        assert os.getsid(started) == started
        assert os.readlink(wants) == f"{UNITS}/{name}.service" and sha256(exe) == record["sha256"]
        assert listed(ctx, name)["main_pid"] == started
    finally:
        process.kill()
        process.wait()
        if started is not None and alive(started):
            os.kill(started, signal.SIGKILL)


def test_a_stale_main_pid_is_refused(live_unit: tuple[str, Path, Path], tmp_path: Path) -> None:
    name, exe, _ = live_unit
    ctx = CommandContext(state_dir=tmp_path / "state")
    first = subprocess.Popen([str(exe), "3600"])
    second = None
    try:
        time.sleep(0.2)
        row = listed(ctx, name)
        first.kill()
        first.wait()
        second = subprocess.Popen([str(exe), "3600"])
        time.sleep(0.2)
        with pytest.raises(Conflict, match=rf"it runs now as pid {second.pid}, listed pid {first.pid}"):
            remediate(ctx, Vault(tmp_path / "state"), name, row, False)
        assert second.poll() is None and exe.exists()
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait()


def test_the_service_running_the_agent_is_refused(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getppid()  # an ancestor of the agent: stopping it would take the agent along
    real_list = remediate_service.list_services
    row = {**listed(ctx, "evil"), "main_pid": parent}

    def running_above_us(fs: object, name: str) -> list[dict[str, Any]]:
        return [{**r, "state": "running", "main_pid": parent} for r in real_list(fs, name)]

    monkeypatch.setattr(remediate_service, "list_services", running_above_us)
    with pytest.raises(CommandFailed) as raised:
        remediate(ctx, vault, "evil", row, False)
    assert raised.value.message == (
        f"service evil.service (pid {parent}) runs this agent: stopping it would end the remediation half-way; "
        "nothing was done"
    )
    assert vault.records() == [] and len(links_of(root)) == 4


_LISTENER = """
import socket, subprocess, sys, time
if sys.argv[1] == "parent":  # a launcher whose child is the server
    subprocess.run([sys.executable, "-c", sys.argv[2], "server", sys.argv[2]])
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("main_is", ["server", "parent"])
def test_the_service_running_the_server_this_agent_reports_to_is_refused(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch, main_is: str
) -> None:
    main = subprocess.Popen([sys.executable, "-c", _LISTENER, main_is, _LISTENER], stdout=subprocess.PIPE)
    try:
        assert main.stdout is not None
        port = int(main.stdout.readline())
        (server_pid,) = (
            [main.pid] if main_is == "server" else process_stop.descendants_of(process_stop.process_table(), main.pid)
        )
        ctx.files = SimpleNamespace(server_url=f"https://localhost:{port}")
        real_list = remediate_service.list_services
        row = {**listed(ctx, "evil"), "main_pid": main.pid}

        def running_the_server(fs: object, name: str) -> list[dict[str, Any]]:
            return [{**r, "state": "running", "main_pid": main.pid} for r in real_list(fs, name)]

        monkeypatch.setattr(remediate_service, "list_services", running_the_server)
        with pytest.raises(CommandFailed) as raised:
            remediate(ctx, vault, "evil", row, False)
        refusal = f"pid {server_pid} is the liveresponse server this agent reports to: stopping it would cut the"
        refusal += " session"
        if main_is == "server":
            assert raised.value.message == f"service evil.service: {refusal}; nothing was done"
        else:
            assert (
                raised.value.message == f"service evil.service would stop pid {server_pid} with it: {refusal};"
                " nothing was done"
            )
        assert vault.records() == [] and len(links_of(root)) == 4 and main.poll() is None
    finally:
        table = process_stop.process_table()
        for pid in [main.pid, *process_stop.descendants_of(table, main.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        main.wait()
        assert main.stdout is not None
        main.stdout.close()


def test_sigkill_after_the_grace_and_descendants_too() -> None:
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); "
            "print(child.pid, flush=True); time.sleep(600)")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.2)
        began = time.monotonic()
        result = process_stop.stop_process_tree(parent.pid, grace_s=0.5)
        assert result is not None and time.monotonic() - began < 3
        assert (result.descendants, result.terminated, result.killed, result.survived) == (
            [child], [], sorted([parent.pid, child]), [],
        )  # fmt: skip
        assert result.describe(0.5) == (
            f"stopped pid {parent.pid} ({sys.executable} -c {code}) and 1 descendant(s) {child}: SIGTERM, "
            f"then SIGKILL after 0.5 s for {', '.join(map(str, sorted([parent.pid, child])))}"
        )
        assert parent.wait(5) == -signal.SIGKILL and not alive(child)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_launch_that_cannot_exec_says_why(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(CommandFailed, match=rf"could not start {missing}: FileNotFoundError"):
        remediate_service.launch_detached(remediate_service.LaunchSpec(missing, [missing]))


# ---------------------------------------------------------------- found in review


def test_a_pid_reused_since_it_was_found_is_never_signalled() -> None:
    # The service's main pid is found with its start time; a process given the same pid later has another one.
    process = subprocess.Popen(["/bin/sleep", "600"])
    try:
        started = read_process(process.pid, boot_time_s()).start_time_s
        assert process_stop.stop_process_tree(process.pid, 0.2, started_s=started - 3) is None
        time.sleep(0.3)
        assert process.poll() is None  # left alone
        result = process_stop.stop_process_tree(process.pid, 0.2, started_s=started)
        assert result is not None and result.terminated == [process.pid]
        assert process.wait(5) == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()


def test_every_conflict_is_found_before_anything_is_put_back(root: Path, ctx: CommandContext, vault: Vault) -> None:
    # Two files and two links: the last file's directory and a link's directory are no longer directories.
    plant(root, "/etc/init.d/legacy", "#!/bin/sh\nDAEMON=/usr/sbin/legacyd\n", 0o755)
    daemon = plant(root, "/usr/sbin/legacyd", "daemon", 0o755)
    for level in ("2", "3"):
        (root / f"etc/rc{level}.d").mkdir()
        (root / f"etc/rc{level}.d/S02legacy").symlink_to("../init.d/legacy")
    record = remediate(ctx, vault, "legacy", listed(ctx, "legacy"), False)
    shutil.rmtree(root / "etc/init.d")
    (root / "etc/init.d").write_text("not a directory\n")
    shutil.rmtree(root / "etc/rc3.d")
    (root / "etc/rc3.d").write_text("nor this\n")

    with pytest.raises(Conflict) as raised:
        undo(ctx, vault, record)

    assert raised.value.message == (
        f"{root}/etc/init.d exists (file, 16 bytes, modified {mtime_of(root / 'etc/init.d')}) where a directory was;"
        f" {root}/etc/rc3.d exists (file, 9 bytes, modified {mtime_of(root / 'etc/rc3.d')}) where a directory was:"
        " undo never overwrites, so nothing was changed; move them away first"
    )
    assert not daemon.exists() and not (root / "etc/rc2.d/S02legacy").is_symlink()  # nothing put back
    saved = vault.get(record["id"])
    assert saved is not None and saved["state"] == "remediated" and not any(i.get("restored") for i in saved["items"])


def test_a_links_directory_swapped_for_a_link_is_never_followed(root: Path, ctx: CommandContext, vault: Vault) -> None:
    # multi-user.target.wants swapped for a link to another directory: re-creating the link there would enable
    # the unit somewhere else (a user's own directory pointed at a system one, say).
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (wants / "good.service").rename(elsewhere / "good.service")
    wants.rmdir()
    wants.symlink_to(elsewhere)
    with pytest.raises(Conflict, match=r"multi-user.target.wants exists \(link to .*/elsewhere, .*where a directory"):
        undo(ctx, vault, record)
    assert os.listdir(elsewhere) == ["good.service"]
    assert (root / "usr/local/bin/evil").exists() is False  # nothing restored either


def test_a_failed_stop_leaves_no_record(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def systemctl(user: str | None, *args: str) -> str:
        raise CommandFailed(f"systemctl --no-pager {' '.join(args)} failed: Access denied")

    real_list = remediate_service.list_services
    monkeypatch.setattr(
        remediate_service, "list_services", lambda fs, name: [{**r, "state": "running"} for r in real_list(fs, name)]
    )
    monkeypatch.setattr(remediate_service, "systemd_is_running", lambda fs: True)
    monkeypatch.setattr(systemd_control, "systemctl", systemctl)
    with pytest.raises(CommandFailed, match=r"^systemctl --no-pager stop evil.service failed: Access denied$"):
        remediate(ctx, vault, "evil", {**listed(ctx, "evil"), "state": "running"}, False)
    assert vault.records() == []  # not a record stuck in "remediating"
    assert len(links_of(root)) == 4 and (root / "usr/local/bin/evil").exists()


def test_a_file_that_cannot_be_quarantined_after_the_links_went_is_named(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: bytes, *args: object, **kwargs: object) -> dict[str, Any]:
        raise CommandFailed(f"cannot remove {os.fsdecode(path)}: Operation not permitted; nothing done")

    monkeypatch.setattr(vault, "quarantine_file", refuse)
    record = remediate(ctx, vault, "evil", listed(ctx, "evil"), False)
    exe = root / "usr/local/bin/evil"
    assert record["state"] == "remediated" and exe.exists()
    assert record["left"][-1] == (
        f"executable /usr/local/bin/evil was not quarantined: cannot remove {exe}: Operation not permitted;"
        " nothing done"
    )
    assert links_of(root) == {"multi-user.target.wants/good.service": f"{UNITS}/good.service"}
    saved = vault.get(record["id"])
    assert saved is not None and saved["state"] == "remediated"
    assert undo(ctx, vault, saved)["state"] == "restored" and len(links_of(root)) == 4


def test_an_undo_that_fails_half_way_says_what_it_did(root: Path, ctx: CommandContext, vault: Vault) -> None:
    plant(root, "/etc/init.d/legacy", "#!/bin/sh\nDAEMON=/usr/sbin/legacyd\n", 0o755)
    daemon = plant(root, "/usr/sbin/legacyd", "daemon", 0o755)
    record = remediate(ctx, vault, "legacy", listed(ctx, "legacy"), False)
    daemon_item, script_item = (i for i in record["items"] if i["kind"] == "file")
    (vault.blobs / script_item["blob"]).write_bytes(b"damaged")
    with pytest.raises(CommandFailed) as raised:
        undo(ctx, vault, record)
    assert raised.value.message == (
        f"the quarantined copy {script_item['blob']} is damaged; nothing restored; the undo of {record['id']} stopped"
        f" there, after: restored daemon {daemon} (sha256 {daemon_item['sha256']}) with mode 0755, owner root:root,"
        f" mtime {mtime_of(daemon)}"
    )
    saved = vault.get(record["id"])
    assert saved is not None and saved["state"] == "remediated"
    assert [i.get("restored", False) for i in saved["items"] if i["kind"] == "file"] == [True, False]
