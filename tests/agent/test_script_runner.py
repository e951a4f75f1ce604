"""The device side of run and putfile without a server (tier 1/2): process groups, output, trust, boot cleanup."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liveresponse.agent.commands import putfile
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.script_process import interpreter_for, minimal_env, run_process, safe_cut
from liveresponse.agent.workfolder import WorkFolder
from liveresponse.protocol.errors import CommandFailed, NotAvailable
from liveresponse.protocol.library import (
    LibraryNameError,
    ScriptNotTrusted,
    check_name,
    check_script_trust,
    public_key_text,
    sign_digest,
)
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes


def test_output_cut_points_keep_escaping_exact() -> None:
    rng = random.Random(7)
    alphabet = [b"a", b"\\", b"x", b"4", b"1", b"\xc3", b"\xa9", b"\xe2\x9c\x93", b"\xff", b"\n"]
    for _ in range(300):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        pending = bytearray()
        texts = []
        for i in range(0, len(data), 3):
            pending += data[i : i + 3]
            cut = safe_cut(pending, final=False)
            texts.append(escape_bytes(bytes(pending[:cut])))
            del pending[:cut]
        texts.append(escape_bytes(bytes(pending)))
        assert unescape_to_bytes("".join(texts)) == data


def test_interpreter_by_extension_then_shebang(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/bin/sh -e\necho hi\n")
    assert Path(interpreter_for(script, "x.sh")[0]).name == "bash"
    assert Path(interpreter_for(script, "x.py")[0]).name == "python3"
    assert interpreter_for(script, "noext") == ["/bin/sh", "-e"]
    if shutil.which("pwsh") is None:
        with pytest.raises(NotAvailable, match="pwsh"):
            interpreter_for(script, "x.ps1")
    script.write_text("echo no shebang\n")
    with pytest.raises(CommandFailed, match="cannot tell how to run"):
        interpreter_for(script, "plain")
    script.write_text("#!/no/such/interpreter\n")
    with pytest.raises(NotAvailable, match="not an executable"):
        interpreter_for(script, "plain")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_timeout_kills_the_group_and_keeps_the_output() -> None:
    rows: list[dict[str, Any]] = []
    script = "sleep 300 & echo $!; (sleep 300 & echo $!; wait) & sleep 0.2; echo err >&2; sleep 300"
    started = time.monotonic()
    outcome = run_process(["/bin/bash", "-c", script], b"/", minimal_env("/"), 1.0, threading.Event(), rows.append)
    assert outcome.ended == "timed_out" and outcome.exit_code is None
    assert time.monotonic() - started < 8
    pids = [int(p) for p in outcome.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids)
    assert "".join(r["text"] for r in rows if r["stream"] == "stdout") == outcome.stdout
    assert outcome.stderr == "err\n"


def test_cancel_stops_the_script() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    outcome = run_process(["/bin/sleep", "300"], b"/", minimal_env("/"), None, cancel, None)
    assert outcome.ended == "cancelled"


def test_exit_code_binary_output_and_environment(tmp_path: Path) -> None:
    code = "import os, sys; sys.stdout.buffer.write(bytes(range(256))); print(sorted(os.environ)); sys.exit(5)"
    rows: list[dict[str, Any]] = []
    outcome = run_process(
        [sys.executable, "-c", code], os.fsencode(tmp_path), minimal_env(str(tmp_path)),
        None, threading.Event(), rows.append,
    )  # fmt: skip
    assert outcome.ended == "exited" and outcome.exit_code == 5
    joined = b"".join(unescape_to_bytes(r["text"]) for r in rows if r["stream"] == "stdout")
    assert joined.startswith(bytes(range(256)))
    assert "['HOME', 'LANG', 'LOGNAME', 'PATH', 'PWD', 'USER']" in joined.decode("latin-1")


def test_large_output_is_truncated_in_the_result_and_says_so() -> None:
    rows: list[dict[str, Any]] = []
    outcome = run_process(
        ["/bin/bash", "-c", "head -c 300000 /dev/zero | tr '\\0' a"], b"/", minimal_env("/"), None,
        threading.Event(), rows.append, keep_bytes=100_000,
    )  # fmt: skip
    assert outcome.stdout_bytes == 300_000
    assert outcome.truncated is not None and "of 300000 bytes" in outcome.truncated
    assert sum(len(r["text"]) for r in rows) == 300_000  # the live rows had everything


def _publishers(key: Ed25519PrivateKey) -> list[dict[str, str]]:
    return [{"name": "soc", "public_key": public_key_text(key.public_key())}]


def test_trust_rules_name_the_rule() -> None:
    key = Ed25519PrivateKey.generate()
    sha = "ab" * 32
    signature = sign_digest(key, sha)
    assert check_script_trust("s.sh", sha, signature, _publishers(key), False, "on the device") == "soc"
    with pytest.raises(ScriptNotTrusted, match="does not verify") as tampered:
        check_script_trust("s.sh", "cd" * 32, signature, _publishers(key), True, "on the device")
    assert tampered.value.fields["rule"] == "signature"
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ScriptNotTrusted, match="checked on the device"):
        check_script_trust("s.sh", sha, signature, _publishers(other), False, "on the device")
    with pytest.raises(ScriptNotTrusted, match="not signed") as unsigned:
        check_script_trust("s.sh", sha, None, _publishers(key), False, "on the device")
    assert unsigned.value.fields["rule"] == "unsigned_scripts_allowed"
    assert check_script_trust("s.sh", sha, None, [], True, "on the device") is None


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "a\\b", "", "x" * 256, "semi;colon", "sp ace"])
def test_library_names_are_refused(name: str) -> None:
    with pytest.raises(LibraryNameError):
        check_name(name)


def test_the_agent_refuses_a_traversal_name_whatever_the_server_says(tmp_path: Path) -> None:
    ctx = CommandContext(cwd="/")
    ctx.files = WorkFolder(tmp_path, "https://127.0.0.1:1", tmp_path / "ca.pem", tmp_path / "boot")
    ctx.library = {"name": "../x", "sha256": "0" * 64, "size": 1, "ticket": "t", "path": "/x"}
    with pytest.raises(LibraryNameError):
        putfile.run(ctx, {"name": "../x"})
    with pytest.raises(LibraryNameError):
        ctx.files.put(ctx.library, keep=False, overwrite=True, check_cancelled=lambda: None)
    assert list(tmp_path.iterdir()) == []


def test_boot_cleanup_removes_only_unkept_files_of_earlier_boots(tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("b2\n")
    folder = WorkFolder(tmp_path, "https://127.0.0.1:1", tmp_path / "ca.pem", boot)
    (tmp_path / "files").mkdir(mode=0o700)
    manifest = {
        "old.txt": {"kept": False, "boot_id": "b1"},
        "kept.txt": {"kept": True, "boot_id": "b1"},
        "now.txt": {"kept": False, "boot_id": "b2"},
    }
    for name in manifest:
        (tmp_path / "files" / name).write_text(name)
    (tmp_path / "files" / ".fetch-partial").write_text("torn")
    (tmp_path / "files.json").write_text(json.dumps(manifest))
    assert folder.clean_after_boot() == ["old.txt"]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["kept.txt", "now.txt"]
    assert set(json.loads((tmp_path / "files.json").read_text())) == {"kept.txt", "now.txt"}
