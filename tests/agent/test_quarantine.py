"""The quarantine vault (agent/quarantine.py) and the protected-path check, on real files.

The tests run as root, as the agent does: files are chowned to other owners and
restored with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liveresponse.agent import quarantine_blob
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux.protected import Protection, core_system_reason, protection
from liveresponse.agent.quarantine import Vault
from liveresponse.agent.quarantine_blob import CHUNK_BYTES, MAGIC
from liveresponse.agent.quarantine_records import public
from liveresponse.protocol.errors import CommandFailed, Conflict, NotFound
from liveresponse.protocol.names import escape_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root, as the agent runs")

# Spaces, both quotes, a backslash before "x41" (escaped as \x5c in the text form) and bytes that are not UTF-8.
ODD_NAME = b"odd name \"dq\" 'sq' back\\x41slash \xff\xfe.bin"
ATIME_NS = 1_600_000_000_123_456_789
MTIME_NS = 1_500_000_000_987_654_321


def plant(path: bytes, content: bytes, mode: int = 0o750, uid: int = 1234, gid: int = 1235) -> os.stat_result:
    with open(path, "wb") as out:
        out.write(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, ns=(ATIME_NS, MTIME_NS))
    return os.lstat(path)


def ctx_for(state: Path, user: str = "alice") -> CommandContext:
    return CommandContext(state_dir=state, requested_by=user, session_id="ses_1", command_id="cmd_1")


def test_round_trip_keeps_content_name_mode_owner_and_times(tmp_path: Path) -> None:
    state = tmp_path / "state"
    vault = Vault(state)
    directory = os.fsencode(tmp_path / "files")
    os.mkdir(directory)
    path = os.path.join(directory, ODD_NAME)
    content = os.urandom(CHUNK_BYTES * 2 + 12345)  # several chunks and a partial one
    before = plant(path, content)
    os.setxattr(path, "user.lr-test", b"kept")

    item = vault.quarantine_file(path)

    assert not os.path.lexists(path)
    sha256 = hashlib.sha256(content).hexdigest()
    shown = escape_bytes(path)
    assert "\\x5cx41" in shown and "\\xff\\xfe" in shown
    assert {k: item[k] for k in ("kind", "path", "size", "sha256", "mode", "uid", "gid", "owner", "group")} == {
        "kind": "file",
        "path": shown,
        "size": len(content),
        "sha256": sha256,
        "mode": 0o750,
        "uid": 1234,
        "gid": 1235,
        "owner": "1234",
        "group": "1235",
    }
    assert (item["atime_ns"], item["mtime_ns"], item["inode"], item["links"]) == (
        ATIME_NS,
        MTIME_NS,
        before.st_ino,
        1,
    )
    assert item["xattrs"] == {"user.lr-test": "a2VwdA=="}
    assert [p["path"] for p in item["parents"]] == ["/", *_ancestors(tmp_path), escape_bytes(directory)]

    blob = state / "quarantine" / "blobs" / item["blob"]
    data = blob.read_bytes()
    assert data.startswith(MAGIC) and content[:4096] not in data and content[-4096:] not in data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600  # never executable
    assert stat.S_IMODE((state / "quarantine").stat().st_mode) == 0o700
    key = state / "quarantine.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32

    result = vault.restore_file(item)

    assert result == {"path": shown, "sha256": sha256, "size": len(content), "created_parents": []}
    after = os.lstat(path)
    assert stat.S_ISREG(after.st_mode) and stat.S_IMODE(after.st_mode) == 0o750
    assert (after.st_uid, after.st_gid) == (1234, 1235)
    assert (after.st_atime_ns, after.st_mtime_ns) == (ATIME_NS, MTIME_NS)
    with open(path, "rb") as restored:
        assert hashlib.sha256(restored.read()).hexdigest() == sha256
    assert os.getxattr(path, "user.lr-test") == b"kept"
    assert not blob.exists()
    assert os.listdir(directory) == [ODD_NAME]  # no temporary file left beside it


def _ancestors(path: Path) -> list[str]:
    parts = path.resolve().parts[1:]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def test_setuid_bit_and_empty_file_survive(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "suid")
    plant(path, b"", mode=0o4755, uid=0, gid=0)
    item = vault.quarantine_file(path)
    assert item["sha256"] == hashlib.sha256(b"").hexdigest() and item["mode"] == 0o4755
    vault.restore_file(item)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o4755 and os.path.getsize(path) == 0


def test_missing_parent_directories_are_recreated_with_their_modes_and_owners(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    top = tmp_path / "top"
    inner = top / "inner dir"
    inner.mkdir(parents=True)
    os.chown(top, 1234, 1234)
    os.chmod(top, 0o751)
    os.chown(inner, 1235, 1236)
    os.chmod(inner, 0o2700)
    path = os.fsencode(inner / "payload")
    plant(path, b"payload bytes\n")
    item = vault.quarantine_file(path)
    shutil.rmtree(top)

    result = vault.restore_file(item)

    assert result["created_parents"] == [str(top), str(inner)]
    assert (stat.S_IMODE(top.stat().st_mode), top.stat().st_uid, top.stat().st_gid) == (0o751, 1234, 1234)
    assert (stat.S_IMODE(inner.stat().st_mode), inner.stat().st_uid, inner.stat().st_gid) == (0o2700, 1235, 1236)
    assert (inner / "payload").read_bytes() == b"payload bytes\n"


def test_restore_never_overwrites_and_keeps_the_content_after_refusing(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "dropper")
    plant(path, b"the original\n")
    item = vault.quarantine_file(path)
    with open(path, "wb") as newcomer:
        newcomer.write(b"something new, 27 bytes...\n")
    os.utime(path, ns=(MTIME_NS, MTIME_NS))

    with pytest.raises(Conflict) as refused:
        vault.restore_file(item)

    assert refused.value.message == (
        f"{os.fsdecode(path)} exists (file, 27 bytes, modified 2017-07-14T02:40:00.987654Z): "
        "undo never overwrites, so nothing was changed; move it away first"
    )
    assert Path(os.fsdecode(path)).read_bytes() == b"something new, 27 bytes...\n"
    assert (vault.blobs / item["blob"]).exists()
    os.unlink(path)
    vault.restore_file(item)
    assert Path(os.fsdecode(path)).read_bytes() == b"the original\n"


def test_a_directory_where_a_parent_was_is_a_conflict(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    (tmp_path / "d").mkdir()
    path = os.fsencode(tmp_path / "d" / "f")
    plant(path, b"x")
    item = vault.quarantine_file(path)
    shutil.rmtree(tmp_path / "d")
    (tmp_path / "d").write_bytes(b"a file now")
    with pytest.raises(Conflict, match=r"/d exists \(file, 10 bytes, .*\) where a directory was: undo never"):
        vault.restore_file(item)


def test_a_file_that_differs_from_its_listing_is_refused_and_left_alone(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "listed")
    info = plant(path, b"as listed\n")
    listed_sha = hashlib.sha256(b"as listed\n").hexdigest()
    other_sha = hashlib.sha256(b"other").hexdigest()

    with pytest.raises(CommandFailed) as by_hash:
        vault.quarantine_file(path, {"sha256": other_sha, "inode": info.st_ino, "size": 10})
    assert by_hash.value.message == (
        f"{os.fsdecode(path)} changed since it was listed: sha256 was {other_sha}, now {listed_sha}; nothing done"
    )
    with pytest.raises(CommandFailed, match=rf"inode was 1, now {info.st_ino} \(replaced\); size was 3 bytes, now 10"):
        vault.quarantine_file(path, {"inode": 1, "size": 3})
    assert Path(os.fsdecode(path)).read_bytes() == b"as listed\n"
    assert os.listdir(vault.blobs) == []


@pytest.mark.parametrize("kind", ["link", "fifo", "dir"])
def test_only_regular_files_are_quarantined(tmp_path: Path, kind: str) -> None:
    vault = Vault(tmp_path / "state")
    path = tmp_path / "thing"
    if kind == "link":
        path.symlink_to("/etc/hostname")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(CommandFailed) as refused:
        vault.quarantine_file(os.fsencode(path))
    assert refused.value.message == f"{path} is a {kind}, not a regular file: only regular files are quarantined"
    assert os.path.lexists(path)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no such file: .*/absent"):
        Vault(tmp_path / "state").quarantine_file(os.fsencode(tmp_path / "absent"))


def test_a_damaged_blob_restores_nothing(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "victim")
    plant(path, b"A" * 5000)
    item = vault.quarantine_file(path)
    blob = vault.blobs / item["blob"]
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(CommandFailed, match="is damaged; nothing restored"):
        vault.restore_file(item)
    assert not os.path.lexists(path) and os.listdir(tmp_path) == ["state"]


def test_a_truncated_blob_restores_nothing(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "big")
    plant(path, os.urandom(CHUNK_BYTES + 10))
    item = vault.quarantine_file(path)
    blob = vault.blobs / item["blob"]
    with open(blob, "r+b") as cut:
        cut.truncate(len(MAGIC) + 16 + 4 + CHUNK_BYTES + 16)  # exactly the first chunk: the final flag is missing
    with pytest.raises(CommandFailed, match="is damaged"):
        vault.restore_file(item)
    assert not os.path.lexists(path)


def test_records_ids_order_and_the_undo_lookup(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    ctx = ctx_for(tmp_path / "state")
    first = vault.new_record("file", "/tmp/a", ctx)
    assert re.fullmatch(r"rem_[0-9a-f]{12}", first["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["remediated_at"])
    assert public(first) == {
        "id": first["id"],
        "type": "file",
        "entity": "/tmp/a",
        "state": "remediated",
        "actions": [],
        "left": [],
        "path": None,
        "sha256": None,
        "remediated_by": "alice",
        "remediated_at": first["remediated_at"],
        "session_id": "ses_1",
        "command_id": "cmd_1",
        "restored_by": None,
        "restored_at": None,
    }
    second = vault.new_record("file", "/tmp/a", ctx)
    other = vault.new_record("service", "evil.service", ctx)
    for record in (second, other, first):  # saved out of order: listed oldest first
        vault.save(record)
    assert [r["id"] for r in vault.records()] == [first["id"], second["id"], other["id"]]
    assert stat.S_IMODE((vault.records_dir / f"{first['id']}.json").stat().st_mode) == 0o600

    assert vault.find_for_undo("file", "/tmp/x/../a")["id"] == second["id"]  # the newest, after resolution
    assert vault.find_for_undo("file", first["id"])["id"] == first["id"]
    assert vault.find_for_undo("service", "evil.service")["id"] == other["id"]

    second.update(state="restored", restored_by="adam", restored_at="2030-01-01T00:00:00Z")
    vault.save(second)
    assert vault.find_for_undo("file", "/tmp/a")["id"] == first["id"]
    first.update(state="restored", restored_by="alice", restored_at="2030-01-02T00:00:00Z")
    vault.save(first)
    with pytest.raises(CommandFailed) as nothing:
        vault.find_for_undo("file", "/tmp/a")
    restored_first = f"nothing to do: {first['id']} was already restored at 2030-01-02T00:00:00Z by alice"
    assert nothing.value.message == restored_first
    with pytest.raises(CommandFailed, match=f"nothing to do: {second['id']} was already restored"):
        vault.find_for_undo("file", second["id"])
    with pytest.raises(NotFound) as missing:
        vault.find_for_undo("file", "/tmp/never")
    assert missing.value.message == "no file remediation of /tmp/never on this device ('remediate list' shows them)"
    with pytest.raises(CommandFailed, match=f"{other['id']} is a service remediation of evil.service"):
        vault.find_for_undo("file", other["id"])
    assert json.loads((vault.records_dir / f"{other['id']}.json").read_text())["entity"] == "evil.service"


def test_vaults_of_one_state_directory_share_one_lock(tmp_path: Path) -> None:
    assert Vault(tmp_path).lock is Vault(tmp_path / "." / "").lock
    assert Vault(tmp_path).lock is not Vault(tmp_path / "other").lock


def test_a_record_given_is_saved_before_the_original_goes_and_dropped_when_the_unlink_fails(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    ctx = ctx_for(tmp_path / "state")
    locked = tmp_path / "locked"
    locked.mkdir()
    path = os.fsencode(locked / "immutable")
    plant(path, b"cannot go")
    record = vault.new_record("file", os.fsdecode(path), ctx)
    os.chmod(locked, 0o500)
    if subprocess.run(["chattr", "+i", os.fsdecode(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        with pytest.raises(CommandFailed, match=r"cannot remove .*: Operation not permitted; nothing done"):
            vault.quarantine_file(path, record=record)
    finally:
        subprocess.run(["chattr", "-i", os.fsdecode(path)], check=True)
    assert record["items"] == [] and vault.get(record["id"]) is None and os.listdir(vault.blobs) == []
    assert Path(os.fsdecode(path)).read_bytes() == b"cannot go"


_RSS_PROBE = """
import os, resource, sys
from pathlib import Path
from liveresponse.agent import quarantine_blob
from liveresponse.agent.quarantine import Vault
vault = Vault(Path(sys.argv[1]))
vault.key()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
item = vault.quarantine_file(os.fsencode(sys.argv[2]))
mid = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
vault.restore_file(item)
end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, mid, end)
"""


def test_a_50_mib_file_keeps_memory_flat(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        for _ in range(50):
            out.write(os.urandom(CHUNK_BYTES))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(tmp_path / "state"), str(big)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    base_kib, mid_kib, end_kib = map(int, done.stdout.split())
    assert mid_kib - base_kib < 12 * 1024 and end_kib - base_kib < 12 * 1024, (base_kib, mid_kib, end_kib)
    assert hashlib.sha256(big.read_bytes()).hexdigest() == digest


# -- protected paths ---------------------------------------------------------------------------------------------

_DPKG_OWNS_SLEEP = any(
    line in (b"/bin/sleep", b"/usr/bin/sleep")
    for line in (Path("/var/lib/dpkg/info/coreutils.list").read_bytes().split(b"\n")
                 if Path("/var/lib/dpkg/info/coreutils.list").exists() else [])
)  # fmt: skip


@pytest.mark.skipif(not _DPKG_OWNS_SLEEP, reason="a dpkg system with coreutils is needed")
def test_sleep_is_owned_by_coreutils_under_both_spellings_and_a_copy_is_not(tmp_path: Path) -> None:
    assert protection(b"/usr/bin/sleep") == "owned by package coreutils (dpkg)"
    assert protection(b"/bin/sleep") == "owned by package coreutils (dpkg)"
    copy = tmp_path / "sleep"
    shutil.copy2("/usr/bin/sleep", copy)
    assert protection(os.fsencode(copy)) is None


def test_core_paths_the_agent_and_its_state_are_protected(tmp_path: Path) -> None:
    nothing = Protection(dpkg_info_dir=str(tmp_path / "no-dpkg"), rpm_db_dirs=(), agent_paths=[b"/opt/agent"])
    assert nothing.reason(b"/etc/shadow") == "a core system path (/etc/shadow)"
    assert nothing.reason(b"/usr/lib/x86_64-linux-gnu/libc.so.6") == "a core system path (/usr/lib)"
    assert nothing.reason(b"/lib64/ld-linux-x86-64.so.2") == "a core system path (/lib64)"
    assert nothing.reason(b"/boot/vmlinuz") == "a core system path (/boot)"
    assert nothing.reason(b"/etc/ld.so.preload") is None  # a persistence mechanism: must be remediable
    assert nothing.reason(b"/usr/local/bin/miner") is None
    assert nothing.reason(b"/opt/agent/bin/python") == "part of the agent's own installation (/opt/agent)"
    assert nothing.reason(b"/opt/agentx/evil") is None
    state = tmp_path / "state"
    assert nothing.reason(os.fsencode(state / "quarantine.key"), state) == (
        f"inside the agent's state directory ({state})"
    )
    assert core_system_reason(b"/librarian/x") == "a core system path (/librarian)"
    assert protection(os.fsencode(sys.executable)) is not None


def test_a_fake_dpkg_list_protects_a_file_in_a_temp_dir(tmp_path: Path) -> None:
    info = tmp_path / "dpkg-info"
    info.mkdir()
    target = tmp_path / "bin" / "tool"
    target.parent.mkdir()
    target.write_bytes(b"#!/bin/sh\n")
    listing = b"/.\n" + os.fsencode(target.parent) + b"\n" + os.fsencode(target) + b"\n"
    (info / "faketool:amd64.list").write_bytes(listing)
    (info / "faketool:amd64.md5sums").write_bytes(b"ignored " + os.fsencode(target) + b"\n")
    now = [0.0]
    checker = Protection(dpkg_info_dir=str(info), rpm_db_dirs=(), agent_paths=[], clock=lambda: now[0])
    assert checker.reason(os.fsencode(target)) == "owned by package faketool:amd64 (dpkg)"
    link = tmp_path / "link-to-tool"
    link.symlink_to(target)
    assert checker.reason(os.fsencode(link)) == "owned by package faketool:amd64 (dpkg)"  # through its real path
    (info / "faketool:amd64.list").unlink()
    now[0] = 30.0
    assert checker.reason(os.fsencode(target)) == "owned by package faketool:amd64 (dpkg)"  # cached for a minute
    now[0] = 61.0
    assert checker.reason(os.fsencode(target)) is None


# -- links on the way are never followed --------------------------------------------------------------------------


def test_a_directory_swapped_for_a_link_is_a_conflict_and_nothing_is_written_there(tmp_path: Path) -> None:
    # An unprivileged user owning /tmp/x swaps it for a link to /etc/cron.d: a restore made as root must not follow.
    vault = Vault(tmp_path / "state")
    (tmp_path / "x").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = os.fsencode(tmp_path / "x" / "job")
    plant(path, b"* * * * * root evil\n")
    item = vault.quarantine_file(path)
    os.rename(tmp_path / "x", tmp_path / "x-moved")
    (tmp_path / "x").symlink_to(elsewhere)

    assert vault.restore_conflicts(item) == [
        f"{tmp_path / 'x'} exists (link to {elsewhere}, modified {_modified(tmp_path / 'x')}) where a directory was"
    ]
    with pytest.raises(Conflict, match=r"/x exists \(link to .*/elsewhere, .*\) where a directory was: undo never"):
        vault.restore_file(item)
    assert os.listdir(elsewhere) == [] and (vault.blobs / item["blob"]).exists()


def test_a_file_reached_through_a_link_goes_back_where_it_really_was(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    real, other = tmp_path / "real", tmp_path / "other"
    real.mkdir()
    other.mkdir()
    (tmp_path / "via").symlink_to(real)
    path = os.fsencode(tmp_path / "via" / "payload")
    plant(path, b"payload\n")
    item = vault.quarantine_file(path)
    assert (item["path"], item["real_path"]) == (os.fsdecode(path), str(real / "payload"))
    (tmp_path / "via").unlink()
    (tmp_path / "via").symlink_to(other)  # re-pointed meanwhile: the restore still goes to the real place

    result = vault.restore_file(item)

    assert result["path"] == os.fsdecode(path)
    assert (real / "payload").read_bytes() == b"payload\n" and os.listdir(other) == []


def test_original_in_place_never_opens_a_fifo(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "state")
    path = os.fsencode(tmp_path / "f")
    plant(path, b"content")
    item = vault.quarantine_file(path)
    os.mkfifo(path)
    assert vault.original_in_place(item) is False  # answered at once: a FIFO opened for reading waits for a writer
    assert vault.restore_conflicts(item) == [
        f"{os.fsdecode(path)} exists (fifo, modified {_modified(Path(os.fsdecode(path)))})"
    ]


def _modified(path: Path) -> str | None:
    from liveresponse.agent.platform.linux.timestamps import iso_utc_from_ns

    return iso_utc_from_ns(path.lstat().st_mtime_ns)


# -- room on the vault's file system (quarantine_blob.require_room) ------------------------------------------------


def test_blob_size_and_reserve_arithmetic() -> None:
    assert quarantine_blob.blob_bytes(0) == 24 + 20  # header, one empty chunk
    assert quarantine_blob.blob_bytes(CHUNK_BYTES) == 24 + CHUNK_BYTES + 20
    assert quarantine_blob.blob_bytes(CHUNK_BYTES + 1) == 24 + CHUNK_BYTES + 1 + 2 * 20
    assert quarantine_blob.reserve_bytes(100 * 1024**2) == 5 * 1024**2  # 5% of a small file system
    assert quarantine_blob.reserve_bytes(10 * 1024**4) == 1024**3  # at most 1 GiB


def fake_free_space(monkeypatch: pytest.MonkeyPatch, free_bytes: int, total_bytes: int) -> None:
    real = os.statvfs

    def statvfs(path: object) -> object:
        found = real(path)  # type: ignore[arg-type]
        fields = dict.fromkeys(("f_bsize", "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax"), 0)
        fields.update({name: getattr(found, name) for name in fields})
        return type("FakeStatvfs", (), {**fields, "f_frsize": 4096, "f_blocks": total_bytes // 4096,
                                        "f_bfree": free_bytes // 4096, "f_bavail": free_bytes // 4096})()  # fmt: skip

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_a_sparse_file_whose_copy_would_not_leave_the_reserve_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sparse file holds nothing on disk, but its copy is stored whole: 2 GiB of holes would be a 2 GiB blob.
    vault = Vault(tmp_path / "state")
    vault.key()
    record = vault.new_record("file", "sparse", ctx_for(tmp_path / "state"))
    sparse = tmp_path / "sparse.img"
    with open(sparse, "wb") as out:
        out.truncate(2 * 1024**3)
    fake_free_space(monkeypatch, free_bytes=1024**3, total_bytes=1024**4)

    with pytest.raises(CommandFailed) as refused:
        vault.quarantine_file(os.fsencode(sparse), record=record)

    needed = 24 + 2 * 1024**3 + 2048 * 20
    allocated = sparse.stat().st_blocks * 512
    assert refused.value.message == (
        f"cannot quarantine {sparse}: its encrypted copy needs {needed} bytes ({sparse} is sparse, {allocated} bytes"
        f" on disk, but a quarantined copy is stored whole) and the vault's file system ({vault.blobs}) has"
        f" {1024**3} bytes free, of which {1024**3} must stay free (5% of the file system or 1 GiB, whichever is"
        " smaller); nothing done"
    )
    assert refused.value.fields == {"needed_bytes": needed, "free_bytes": 1024**3, "reserve_bytes": 1024**3}
    assert sparse.stat().st_size == 2 * 1024**3 and os.listdir(vault.blobs) == [] and vault.records() == []


def test_a_copy_that_fits_with_the_reserve_left_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vault = Vault(tmp_path / "state")
    vault.key()
    # A 100 MiB file system keeps 5 MiB free: 8 MiB free takes a 2 MiB file, not a 4 MiB one.
    fake_free_space(monkeypatch, free_bytes=8 * 1024**2, total_bytes=100 * 1024**2)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(os.urandom(2 * 1024**2))
    large.write_bytes(os.urandom(4 * 1024**2))
    assert vault.quarantine_file(os.fsencode(small))["size"] == 2 * 1024**2
    with pytest.raises(CommandFailed, match=r"needs 4194408 bytes and .* has 8388608 bytes free, of which 5242880"):
        vault.quarantine_file(os.fsencode(large))
    assert large.exists() and len(os.listdir(vault.blobs)) == 1


def test_a_file_that_grows_while_its_copy_is_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The room was checked for the size it had: a file that keeps growing must not fill the disk meanwhile.
    vault = Vault(tmp_path / "state")
    growing = tmp_path / "growing"
    growing.write_bytes(b"x" * CHUNK_BYTES)
    real_read = quarantine_blob.read_chunk

    def read_and_grow(fd: int) -> bytes:
        with open(growing, "ab") as more:
            more.write(b"y" * CHUNK_BYTES)
        return real_read(fd)

    monkeypatch.setattr(quarantine_blob, "read_chunk", read_and_grow)
    with pytest.raises(CommandFailed, match=r"grew while being quarantined; nothing done$"):
        vault.quarantine_file(os.fsencode(growing))
    assert growing.exists() and os.listdir(vault.blobs) == []


# -- partial blobs left by a killed writer -----------------------------------------------------------------------

_SLOW_WRITER = """
import os, sys, time
from pathlib import Path
from liveresponse.agent import quarantine_blob
from liveresponse.agent import quarantine_blob
from liveresponse.agent.quarantine import Vault
real_read = quarantine_blob.read_chunk
def slow_read(fd):
    data = real_read(fd)
    print("writing", flush=True)
    time.sleep(600)
    return data
quarantine_blob.read_chunk = slow_read
Vault(Path(sys.argv[1])).quarantine_file(os.fsencode(sys.argv[2]))
"""
_AGENT_START = """
import os, sys
from pathlib import Path
from liveresponse.agent import quarantine_blob
from liveresponse.agent.quarantine import Vault
print(" ".join(sorted(os.listdir(Vault(Path(sys.argv[1])).blobs))))
"""


def test_a_partial_blob_of_a_killed_writer_goes_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    target = tmp_path / "target"
    target.write_bytes(os.urandom(3 * CHUNK_BYTES))
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(state), str(target)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
        writer.kill()  # kill -9 half-way through the blob
    finally:
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    blobs = state / "quarantine" / "blobs"
    (partial,) = os.listdir(blobs)
    assert partial.startswith(".tmp-") and partial.endswith(".qv") and target.exists()
    (blobs / "0123abcd.qv").write_bytes(b"a published blob, however old")
    (blobs / ".tmp-not-a-blob").write_bytes(b"not the vault's partial blob")
    os.utime(blobs / "0123abcd.qv", (0, 0))
    os.utime(blobs / ".tmp-not-a-blob", (0, 0))
    (blobs / ".tmp-still-written.qv").write_bytes(b"by a writer that runs on")
    later = time.time() + 3600  # written since the next agent started
    os.utime(blobs / ".tmp-still-written.qv", (later, later))

    time.sleep(0.05)  # a start time is known to a clock tick (10 ms): a restart comes later than that anyway
    started = subprocess.run([sys.executable, "-c", _AGENT_START, str(state)], capture_output=True, text=True)

    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == [".tmp-not-a-blob", ".tmp-still-written.qv", "0123abcd.qv"]


def test_partial_blobs_are_cleared_once_per_process_and_never_newer_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    blobs = state / "quarantine" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / ".tmp-old.qv").write_bytes(b"left by a killed writer")
    os.utime(blobs / ".tmp-old.qv", (0, 0))
    (blobs / ".tmp-new.qv").write_bytes(b"written by this process")  # newer than this process: kept
    Vault(state)
    assert sorted(os.listdir(blobs)) == [".tmp-new.qv"]
    (blobs / ".tmp-old.qv").write_bytes(b"again")
    os.utime(blobs / ".tmp-old.qv", (0, 0))
    Vault(state)  # not the first Vault of this directory in this process: nothing is cleared
    assert sorted(os.listdir(blobs)) == [".tmp-new.qv", ".tmp-old.qv"]
