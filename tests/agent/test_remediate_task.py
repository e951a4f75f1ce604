"""remediate scheduledtask / undo scheduledtask under a planted root: cron lines, periodic scripts,
at jobs and systemd timers, checked on exact bytes, positions, modes, owners and link targets."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from liveresponse.agent.commands import scheduledtasks
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import protected, remediate_task, systemd_control
from liveresponse.agent.platform.linux.remediate_task import remediate_task as remediate
from liveresponse.agent.platform.linux.remediate_task import undo_task as undo
from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns
from liveresponse.agent.quarantine import Vault
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from tests.agent.planting import AT_RUN, at_job_name, plant, plant_jobs, plant_user_timer

BACKUP = (
    b"MAILTO=root\n"
    b"# nightly\n"
    b"30 2 * * 1-5 root /opt/backup/run.sh --full\n"
    b"*/10 * * * * root /usr/local/bin/beacon\r\n"
    b"0 4 * * * root /opt/backup/prune.sh\n"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    top.mkdir()
    plant_jobs(top)
    plant_user_timer(top)
    backup = top / "etc/cron.d/backup"
    backup.write_bytes(BACKUP)
    backup.chmod(0o640)
    os.chown(backup, 0, 1003)
    os.chown(top / "var/spool/cron/crontabs/alice", 1001, 1001)
    os.chown(top / f"var/spool/cron/atjobs/{at_job_name(7, AT_RUN)}", 1001, 1)
    for path in [top / "home/alice/.config/systemd/user/timers.target.wants"]:
        os.lchown(path / "beacon.timer", 1001, 1001)
        os.chown(path, 1001, 1001)
    return top


@pytest.fixture
def ctx(root: Path, tmp_path: Path) -> CommandContext:
    return CommandContext(root=str(root), state_dir=tmp_path / "state", requested_by="bob")


@pytest.fixture
def vault(ctx: CommandContext) -> Vault:
    assert ctx.state_dir is not None
    return Vault(ctx.state_dir)


def listed(ctx: CommandContext, name: str) -> dict[str, Any]:
    rows = [row for row in scheduledtasks.run(ctx, {"name": name}) if row["name"] is not None]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_cron_line_goes_and_comes_back_byte_for_byte(root: Path, ctx: CommandContext, vault: Vault) -> None:
    backup = root / "etc/cron.d/backup"
    row = listed(ctx, "/etc/cron.d/backup:4")
    assert (row["schedule"], row["command"], row["line"]) == ("*/10 * * * *", "/usr/local/bin/beacon", 4)
    record = remediate(ctx, vault, "/etc/cron.d/backup:4", row, False)
    edited = BACKUP.replace(b"*/10 * * * * root /usr/local/bin/beacon\r\n", b"")
    assert backup.read_bytes() == edited
    info = backup.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o640, 0, 1003)
    assert record["actions"] == ["removed line 4 of /etc/cron.d/backup: */10 * * * * root /usr/local/bin/beacon\\x0d"]
    assert (record["entity"], record["path"], record["sha256"], record["state"]) == (
        "/etc/cron.d/backup:4", "/etc/cron.d/backup", sha(BACKUP), "remediated",
    )  # fmt: skip
    item = record["items"][0]
    assert {k: item[k] for k in ("source", "line", "raw", "trailing_newline", "sha256_before", "sha256")} == {
        "source": "/etc/cron.d/backup", "line": 4, "raw": "*/10 * * * * root /usr/local/bin/beacon\\x0d",
        "trailing_newline": True, "sha256_before": sha(BACKUP), "sha256": sha(edited),
    }  # fmt: skip
    assert sorted(os.listdir(backup.parent)) == ["backup"]  # no temp file left behind
    assert [r["name"] for r in scheduledtasks.run(ctx, {"name": "/etc/cron.d/backup*"})] == [
        "/etc/cron.d/backup:3", "/etc/cron.d/backup:4",
    ]  # fmt: skip

    result = undo(ctx, vault, record)
    assert backup.read_bytes() == BACKUP
    info = backup.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o640, 0, 1003)
    assert result["actions"] == ["put line 4 back in /etc/cron.d/backup: */10 * * * * root /usr/local/bin/beacon\\x0d"]
    assert (result["state"], result["left"], result["restored_by"]) == ("restored", [], "bob")
    with pytest.raises(CommandFailed, match="nothing to undo"):
        undo(ctx, vault, result)


def test_the_same_line_back_in_place_means_nothing_to_do(root: Path, ctx: CommandContext, vault: Vault) -> None:
    backup = root / "etc/cron.d/backup"
    record = remediate(ctx, vault, "x", listed(ctx, "/etc/cron.d/backup:3"), False)
    backup.write_bytes(BACKUP)  # someone put it back by hand
    with pytest.raises(CommandFailed) as raised:
        undo(ctx, vault, record)
    assert raised.value.message == (
        "nothing to do: line 3 of /etc/cron.d/backup already reads 30 2 * * 1-5 root /opt/backup/run.sh --full"
    )
    assert backup.read_bytes() == BACKUP


def test_a_shorter_file_gets_the_line_at_its_end(root: Path, ctx: CommandContext, vault: Vault) -> None:
    backup = root / "etc/cron.d/backup"
    record = remediate(ctx, vault, "x", listed(ctx, "/etc/cron.d/backup:5"), False)
    assert backup.read_bytes() == BACKUP.rsplit(b"0 4 * * *", 1)[0]
    backup.write_bytes(b"MAILTO=root\n")
    result = undo(ctx, vault, record)
    assert backup.read_bytes() == b"MAILTO=root\n0 4 * * * root /opt/backup/prune.sh\n"
    assert result["left"] == [
        "/etc/cron.d/backup changed since the line was removed; the line went back by its number",
        "/etc/cron.d/backup has 1 lines now: the line went at the end, as line 2",
    ]
    assert result["actions"] == ["put line 2 back in /etc/cron.d/backup: 0 4 * * * root /opt/backup/prune.sh"]


@pytest.mark.parametrize(
    ("content", "line", "without"),
    [
        (b"@daily root /a\n@hourly root /b", 2, b"@daily root /a"),  # no final newline, last line
        (b"@daily root /a", 1, b""),  # the only line, no final newline
        (b"@daily root /a\n", 1, b""),  # the only line
    ],
)
def test_trailing_newlines_stay_as_they_were(
    root: Path, ctx: CommandContext, vault: Vault, content: bytes, line: int, without: bytes
) -> None:
    plant(root, "/etc/cron.d/edge", "")
    edge = root / "etc/cron.d/edge"
    edge.write_bytes(content)
    record = remediate(ctx, vault, "x", listed(ctx, f"/etc/cron.d/edge:{line}"), False)
    assert edge.read_bytes() == without
    undo(ctx, vault, record)
    assert edge.read_bytes() == content


def test_a_user_crontab_keeps_its_mode_and_owner(root: Path, ctx: CommandContext, vault: Vault) -> None:
    spool = root / "var/spool/cron/crontabs/alice"
    original = spool.read_bytes()
    row = listed(ctx, "/var/spool/cron/crontabs/alice:2")
    assert row["user"] == "alice"
    record = remediate(ctx, vault, "x", row, False)
    assert spool.read_bytes() == original.replace(b"0 */2 * * * /home/alice/bin/miner -q\n", b"")
    info = spool.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o600, 1001, 1001)
    undo(ctx, vault, record)
    assert spool.read_bytes() == original
    info = spool.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o600, 1001, 1001)


def test_a_changed_line_is_refused_with_nothing_done(root: Path, ctx: CommandContext, vault: Vault) -> None:
    backup = root / "etc/cron.d/backup"
    row = listed(ctx, "/etc/cron.d/backup:3")
    changed = BACKUP.replace(b"30 2 * * 1-5", b"45 2 * * 1-5")
    backup.write_bytes(changed)
    with pytest.raises(Conflict) as raised:
        remediate(ctx, vault, "x", row, False)
    assert raised.value.message == (
        "line 3 of /etc/cron.d/backup changed since it was listed: schedule is now '45 2 * * 1-5', listed "
        "'30 2 * * 1-5'; nothing was done, run scheduledtasks again"
    )
    backup.write_bytes(b"MAILTO=root\n# nightly\n# gone\n")
    with pytest.raises(Conflict, match=r"line 3 of /etc/cron.d/backup is no longer a cron entry \(it reads '# gone'\)"):
        remediate(ctx, vault, "x", row, False)
    backup.unlink()
    with pytest.raises(NotFound, match=r"/etc/cron\.d/backup no longer exists, so line 3 is gone"):
        remediate(ctx, vault, "x", row, False)
    assert vault.records() == []


def test_a_periodic_script_is_quarantined(root: Path, ctx: CommandContext, vault: Vault) -> None:
    script = root / "etc/cron.daily/cleanup"
    content, info = script.read_bytes(), script.stat()
    record = remediate(ctx, vault, "x", listed(ctx, "/etc/cron.daily/cleanup"), False)
    assert not script.exists()
    assert record["actions"] == [
        f"quarantined periodic cron script /etc/cron.daily/cleanup ({len(content)} bytes, sha256 {sha(content)})"
    ]
    assert (record["path"], record["sha256"]) == ("/etc/cron.daily/cleanup", sha(content))
    result = undo(ctx, vault, record)
    mtime = iso_utc_from_ns(info.st_mtime_ns)
    assert result["actions"] == [
        f"restored periodic cron script {script} (sha256 {sha(content)}) with mode {info.st_mode & 0o7777:04o},"
        f" owner root:root, mtime {mtime}"
    ]
    after = script.stat()
    assert script.read_bytes() == content
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (info.st_mode, info.st_uid, info.st_mtime_ns)


def test_a_protected_periodic_script_stays(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def protection(path: bytes, state_dir: object = None) -> str | None:
        return "owned by package cleaner (dpkg)"

    monkeypatch.setattr(protected, "protection", protection)
    record = remediate(ctx, vault, "x", listed(ctx, "/etc/cron.daily/cleanup"), False)
    assert record["left"] == [
        "left /etc/cron.daily/cleanup in place: owned by package cleaner (dpkg); -force quarantines it"
    ]
    assert (record["actions"], record["sha256"]) == ([], None)
    assert (root / "etc/cron.daily/cleanup").exists()
    with pytest.raises(CommandFailed, match=r"nothing to do: rem_[0-9a-f]{12} quarantined nothing"):
        undo(ctx, vault, record)


def test_an_at_job_keeps_at_s_mode_and_owner(root: Path, ctx: CommandContext, vault: Vault) -> None:
    job = root / f"var/spool/cron/atjobs/{at_job_name(7, AT_RUN)}"
    content = job.read_bytes()
    row = listed(ctx, "at:7")
    record = remediate(ctx, vault, "at:7", row, False)
    assert not job.exists() and record["sha256"] == sha(content)
    assert record["actions"] == [
        f"quarantined at job /var/spool/cron/atjobs/{job.name} ({len(content)} bytes, sha256 {sha(content)})",
    ]
    assert [r["name"] for r in scheduledtasks.run(ctx, {"name": "at:*"})] == []
    undo(ctx, vault, record)
    info = job.stat()
    assert (job.read_bytes(), info.st_mode & 0o7777, info.st_uid, info.st_gid) == (content, 0o700, 1001, 1)
    assert listed(ctx, "at:7")["command"] == row["command"]


def test_a_changed_at_job_is_refused(root: Path, ctx: CommandContext, vault: Vault) -> None:
    job = root / f"var/spool/cron/atjobs/{at_job_name(7, AT_RUN)}"
    row = listed(ctx, "at:7")
    job.write_bytes(job.read_bytes().replace(b"evil.example/x", b"evil.example/y"))
    with pytest.raises(Conflict, match=r"at job .* changed since it was listed: command is now '/usr/bin/curl -s "):
        remediate(ctx, vault, "at:7", row, False)
    job.unlink()
    with pytest.raises(NotFound, match="the at job ran or was removed"):
        remediate(ctx, vault, "at:7", row, False)


def test_a_user_timer_loses_its_link_and_gets_it_back(root: Path, ctx: CommandContext, vault: Vault) -> None:
    wants = root / "home/alice/.config/systemd/user/timers.target.wants"
    link = wants / "beacon.timer"
    row = listed(ctx, "user:alice/beacon.timer")
    record = remediate(ctx, vault, "user:alice/beacon.timer", row, False)
    assert record["actions"] == [
        "not stopped: systemd is not running, so the timer is not active",
        "removed enabling link /home/alice/.config/systemd/user/timers.target.wants/beacon.timer -> ../beacon.timer",
    ]
    assert not link.is_symlink() and listed(ctx, "user:alice/beacon.timer")["enabled"] is False
    wants.rmdir()  # even the directory may go meanwhile
    result = undo(ctx, vault, record)
    assert result["actions"] == [
        "re-created enabling link /home/alice/.config/systemd/user/timers.target.wants/beacon.timer -> ../beacon.timer",
    ]
    info = link.lstat()
    assert (os.readlink(link), info.st_uid, info.st_gid) == ("../beacon.timer", 1001, 1001)
    assert (wants.stat().st_uid, wants.stat().st_gid) == (1001, 1001)
    assert listed(ctx, "user:alice/beacon.timer")["enabled_by"] == [
        "/home/alice/.config/systemd/user/timers.target.wants/beacon.timer"
    ]


def test_a_timer_link_in_the_way_is_a_conflict(root: Path, ctx: CommandContext, vault: Vault) -> None:
    link = root / "home/alice/.config/systemd/user/timers.target.wants/beacon.timer"
    record = remediate(ctx, vault, "x", listed(ctx, "user:alice/beacon.timer"), False)
    link.write_text("squatter")
    with pytest.raises(Conflict, match=r"timers.target.wants/beacon.timer exists \(file, 8 bytes, .*\): undo never"):
        undo(ctx, vault, record)
    assert link.read_text() == "squatter"


def test_a_system_timer_through_systemctl(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str | None, tuple[str, ...]]] = []

    def systemctl(user: str | None, *args: str) -> str:
        calls.append((user, args))
        return "active\n" if args[0] == "is-active" else ""

    wants = root / "etc/systemd/system/timers.target.wants"
    wants.mkdir(parents=True)
    (wants / "clean.timer").symlink_to("/usr/lib/systemd/system/clean.timer")
    monkeypatch.setattr(remediate_task, "systemd_is_running", lambda fs: True)
    monkeypatch.setattr(systemd_control, "systemctl", systemctl)
    record = remediate(ctx, vault, "clean.timer", listed(ctx, "clean.timer"), False)
    assert calls == [(None, ("is-active", "clean.timer")), (None, ("stop", "clean.timer")), (None, ("daemon-reload",))]
    assert record["actions"] == [
        "stopped the timer through systemctl stop clean.timer",
        "removed enabling link /etc/systemd/system/timers.target.wants/clean.timer"
        " -> /usr/lib/systemd/system/clean.timer",
        "systemctl daemon-reload",
    ]
    calls.clear()
    result = undo(ctx, vault, record)
    assert calls == [(None, ("daemon-reload",)), (None, ("start", "clean.timer"))]
    assert result["actions"][-1] == "started the timer through systemctl start clean.timer"
    assert os.readlink(wants / "clean.timer") == "/usr/lib/systemd/system/clean.timer"


# ---------------------------------------------------------------- found in review


def test_a_failed_timer_stop_leaves_no_record(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def systemctl(user: str | None, *args: str) -> str:
        if args[0] == "is-active":
            return "active\n"
        raise CommandFailed("systemctl --no-pager stop clean.timer failed: Access denied")

    wants = root / "etc/systemd/system/timers.target.wants"
    wants.mkdir(parents=True)
    (wants / "clean.timer").symlink_to("/usr/lib/systemd/system/clean.timer")
    monkeypatch.setattr(remediate_task, "systemd_is_running", lambda fs: True)
    monkeypatch.setattr(systemd_control, "systemctl", systemctl)
    with pytest.raises(CommandFailed, match=r"^systemctl --no-pager stop clean\.timer failed: Access denied$"):
        remediate(ctx, vault, "clean.timer", listed(ctx, "clean.timer"), False)
    assert vault.records() == [] and (wants / "clean.timer").is_symlink()


def test_a_script_that_cannot_be_quarantined_leaves_no_record(
    root: Path, ctx: CommandContext, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: bytes, *args: object, **kwargs: object) -> dict[str, Any]:
        raise CommandFailed(f"cannot remove {os.fsdecode(path)}: Operation not permitted; nothing done")

    monkeypatch.setattr(vault, "quarantine_file", refuse)
    with pytest.raises(CommandFailed, match=r"cannot remove .*/etc/cron.daily/cleanup: Operation not permitted"):
        remediate(ctx, vault, "x", listed(ctx, "/etc/cron.daily/cleanup"), False)
    assert vault.records() == [] and (root / "etc/cron.daily/cleanup").exists()


def test_a_script_replaced_after_it_was_checked_is_not_quarantined(
    root: Path, ctx: CommandContext, vault: Vault
) -> None:
    script = root / "etc/cron.daily/cleanup"
    row = listed(ctx, "/etc/cron.daily/cleanup")
    real_is_file = remediate_task.FsRoot.is_file

    def swapping_is_file(fs: remediate_task.FsRoot, path: str) -> bool:
        answer = real_is_file(fs, path)
        if path == "/etc/cron.daily/cleanup" and script.read_bytes() != b"#!/bin/sh\necho swapped in..\n":
            script.unlink()
            script.write_bytes(b"#!/bin/sh\necho swapped in..\n")  # after the check, the same size, often the inode
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(remediate_task.FsRoot, "is_file", swapping_is_file)
        with pytest.raises(CommandFailed, match=r"cleanup changed since it was listed: .*status change time was "):
            remediate(ctx, vault, "x", row, False)
    assert script.read_bytes() == b"#!/bin/sh\necho swapped in..\n" and vault.records() == []


def test_a_crontab_edited_meanwhile_is_left_as_it_is(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_bytes(b"edited by someone else\n")
    with pytest.raises(CommandFailed, match="crontab changed while it was being edited; nothing was done"):
        remediate_task.rewrite_atomically(str(crontab), b"as read\n", b"without the line\n")
    assert crontab.read_bytes() == b"edited by someone else\n" and os.listdir(tmp_path) == ["crontab"]


def test_undo_of_a_cron_remediation_interrupted_before_the_rewrite(
    root: Path, ctx: CommandContext, vault: Vault
) -> None:
    backup = root / "etc/cron.d/backup"
    record = remediate(ctx, vault, "x", listed(ctx, "/etc/cron.d/backup:4"), False)
    backup.write_bytes(BACKUP)  # as the agent left it when it died before the rewrite ...
    record["state"] = "remediating"  # ... with the record saved just before
    vault.save(record)
    result = undo(ctx, vault, record)
    assert result["actions"] == [
        "the remediation was interrupted before line 4 of /etc/cron.d/backup was removed: it is in place, unchanged"
    ]
    assert result["state"] == "restored" and backup.read_bytes() == BACKUP


def test_a_row_without_its_source_is_a_clear_error(ctx: CommandContext, vault: Vault) -> None:
    row = {"name": "/etc/cron.d/backup:4", "kind": "cron", "line": 4}
    with pytest.raises(CommandFailed) as raised:
        remediate(ctx, vault, "x", row, False)
    assert raised.value.message == "the scheduledtasks row of /etc/cron.d/backup:4 has no source; nothing was done"
