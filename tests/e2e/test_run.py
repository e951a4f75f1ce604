"""run on a real agent (SPEC §5): argv without a shell, exit codes, timeouts, cancel, big output, signing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import console_word, json_documents, setting, upload

ARGV = [
    "with space", "", "it's", 'say "hi"', "ünïcødé ✓", ";", "$HOME", "|", "&", "a;b|c&d", "$(id)", "`id`",
    "*", ">", "-x", "back\\slash",
]  # fmt: skip


def _params(args: list[str]) -> str:
    """A -parameters string using both quote kinds, doubled quotes inside (SPEC §4)."""
    out = []
    for i, arg in enumerate(args):
        out.append("'" + arg.replace("'", "''") + "'" if i % 2 else '"' + arg.replace('"', '""') + '"')
    return " ".join(out)


@pytest.fixture(scope="module")
def unsigned_ok(cluster: Cluster) -> Iterator[None]:
    with setting(cluster, "unsigned_scripts_allowed", "true", "false"):
        yield


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie awaiting its reaper is gone too
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if not _gone(p)]


def test_argv_is_exact_without_a_shell(cluster: Cluster, tmp_path: Path, unsigned_ok: None) -> None:
    script = tmp_path / "run-argv.py"
    script.write_text("import json, os, sys\nprint(json.dumps({'argv': sys.argv[1:], 'env': sorted(os.environ)}))\n")
    upload(cluster, script, "--overwrite")
    line = f"run run-argv.py -parameters {console_word(_params(ARGV))} -output json"
    result = cluster.console(line, "help run")
    assert result.returncode == 0, result.stderr
    (run,) = json_documents(result.stdout.split("usage: run")[0])
    assert isinstance(run, dict)
    printed = json.loads(run["stdout"])
    assert printed["argv"] == ARGV
    assert run["argv"] == ARGV and run["exit_code"] == 0 and run["stderr"] == ""
    assert printed["env"] == sorted(["HOME", "LANG", "LOGNAME", "PATH", "PWD", "USER"])
    assert "no shell is involved" in result.stdout  # help run says so


def test_non_zero_exit_is_a_failed_command_with_its_output(cluster: Cluster, tmp_path: Path, unsigned_ok: None) -> None:
    script = tmp_path / "run-exit3.sh"
    script.write_text("echo to-stdout\necho to-stderr >&2\nexit 3\n")
    upload(cluster, script, "--overwrite")
    result = cluster.console("run run-exit3.sh -output json")
    assert result.returncode == 1
    (run,) = json_documents(result.stdout)
    assert isinstance(run, dict)
    assert run["exit_code"] == 3 and run["stdout"] == "to-stdout\n" and run["stderr"] == "to-stderr\n"
    assert "run: failed: run-exit3.sh exited with code 3" in result.stderr
    with cluster.api() as api:
        (row,) = [r for r in api.get("/api/v1/log").json() if r["command_line"] == "run run-exit3.sh -output json"]
    assert row["status"] == "failed" and row["output"]["exit_code"] == 3


CHILDREN = """\
sleep 300 & echo $!
sleep 300 & echo $!
( sleep 300 & echo $! ; wait ) &
sleep 0.3
sleep 300
"""


def _pids(stdout: str) -> list[int]:
    pids = [int(p) for p in stdout.split()]
    assert len(pids) == 3
    return pids


def test_timeout_kills_the_whole_process_group(cluster: Cluster, tmp_path: Path, unsigned_ok: None) -> None:
    script = tmp_path / "run-children.sh"
    script.write_text(CHILDREN)
    upload(cluster, script, "--overwrite")
    started = time.monotonic()
    result = cluster.console("run run-children.sh -timeout 2 -output json")
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "timed out after 2 s" in result.stderr
    (run,) = json_documents(result.stdout)
    assert isinstance(run, dict) and run["exit_code"] is None
    assert _wait_gone(_pids(run["stdout"])) == []


def test_command_timeout_and_cancel_kill_the_group_too(cluster: Cluster, tmp_path: Path, unsigned_ok: None) -> None:
    script = tmp_path / "run-children.sh"
    script.write_text(CHILDREN)
    upload(cluster, script, "--overwrite")
    with setting(cluster, "long_command_timeout_s", "3", "1800"):
        result = cluster.console("run run-children.sh -output json")
    assert result.returncode == 1 and "timed_out" in result.stderr
    (run,) = json_documents(result.stdout)
    assert isinstance(run, dict)
    assert _wait_gone(_pids(run["stdout"])) == []

    with cluster.api() as api:  # Ctrl+C's path: cancel reaches the device
        session = api.post("/api/v1/sessions", json={"device": cluster.device_id}).json()
        try:
            sent = api.post(f"/api/v1/sessions/{session['id']}/commands", json={"command_line": "run run-children.sh"})
            command_id = sent.json()["id"]
            time.sleep(1.5)
            assert api.post(f"/api/v1/commands/{command_id}/cancel").status_code == 200
            deadline = time.monotonic() + 15
            while (row := api.get(f"/api/v1/commands/{command_id}").json())["status"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            api.delete(f"/api/v1/sessions/{session['id']}")
    assert row["status"] == "cancelled"
    assert _wait_gone(_pids(row["output"]["stdout"])) == []


def test_a_mebibyte_of_output_is_saved_byte_exact(cluster: Cluster, tmp_path: Path, unsigned_ok: None) -> None:
    script = tmp_path / "run-big.py"
    script.write_text(
        "import sys\n"
        "line = ''.join(chr(33 + i % 90) for i in range(63)) + '\\n'\n"
        "sys.stdout.write(line * 16384)\n"  # 64 * 16384 = 1 MiB
        "sys.stdout.write('ünï\\\\x41 end')\n"
    )
    upload(cluster, script, "--overwrite")
    line = "".join(chr(33 + i % 90) for i in range(63)) + "\n"
    expected = (line * 16384 + "ünï\\x41 end").encode()
    assert len(expected) > 1024 * 1024
    out = tmp_path / "big.out"
    result = cluster.console(f"run run-big.py > {console_word(str(out))}")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()
    with cluster.api() as api:
        (row,) = [r for r in api.get("/api/v1/log").json() if r["command_line"].startswith("run run-big.py >")]
        assert f"truncated: 4096 of {row['output_bytes']} bytes" in row["output"]
        whole = api.get(f"/api/v1/commands/{row['id']}").json()
    assert whole["output"]["stdout_bytes"] == len(expected) and whole["output"]["truncated"] is None
