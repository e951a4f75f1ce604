"""getfile through the real stack: exact bytes, refusals before transfer, resume after kills (SPEC §7)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from liveresponse.testing.cluster import Cluster

MIB = 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> str:
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            fh.write(block)
            left -= len(block)
    return sha256_of(path)


def quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def test_a_20_mib_plus_7_file_arrives_exact(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "evidence 'one'.bin"
    digest = random_file(source, 20 * MIB + 7)
    analyst = tmp_path / "analyst"
    analyst.mkdir()
    result = cluster.console(f"getfile {quote(str(source))} -auto -output json", cwd=analyst)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["sha256"] == digest and answer["size"] == 20 * MIB + 7
    saved = analyst / "downloads" / os.uname().nodename / source.name
    assert saved.exists(), list((analyst / "downloads").rglob("*"))
    assert sha256_of(saved) == digest
    # A second collection never overwrites the first.
    again = cluster.console(f"getfile {quote(str(source))} -auto", cwd=analyst)
    assert again.returncode == 0, again.stderr
    second = analyst / "downloads" / os.uname().nodename / "evidence 'one' (1).bin"
    assert sha256_of(second) == digest
    # Still retrievable after the session ended.
    with cluster.api() as api:
        rows = api.get("/api/v1/downloads").json()
        row = next(r for r in rows if r["id"] == answer["download_id"])
        assert row["status"] == "complete" and row["sha256"] == digest
        content = api.get(f"/api/v1/downloads/{row['id']}/content")
        assert hashlib.sha256(content.content).hexdigest() == digest


def test_getfile_needs_fileinfo_first(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "x.txt"
    source.write_text("x")
    result = cluster.console(f"getfile {quote(str(source))}")
    assert result.returncode == 1
    assert f"getfile needs fileinfo of {source} first in this session" in result.stderr
    ok = cluster.console(f"fileinfo {quote(str(source))}", f"download {quote(str(source))}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_refusals_before_any_byte_moves(cluster: Cluster, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = cluster.console(f"getfile {quote(str(fifo))} -auto")
    assert result.returncode == 1
    assert "is a fifo, not a regular file" in result.stderr
    limit = 1000
    cluster.admin("settings", "set", "getfile_max_bytes", str(limit))
    try:
        at_limit = tmp_path / "at"
        at_limit.write_bytes(b"a" * limit)
        over = tmp_path / "over"
        over.write_bytes(b"a" * (limit + 1))
        sparse = tmp_path / "sparse"
        with open(sparse, "wb") as fh:
            fh.truncate(20 * 1024**3)  # 20 GiB logical, nothing on disk (and over the hashing limit)
        ok = cluster.console(f"getfile {quote(str(at_limit))} -auto", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        refused = cluster.console(
            f"getfile {quote(str(over))} -auto", f"getfile {quote(str(sparse))} -auto", cwd=tmp_path
        )
        assert refused.returncode == 1
        assert f"{over} is 1001 bytes, over getfile_max_bytes (1000 bytes)" in refused.stderr
        assert f"{sparse} is 21474836480 bytes, over getfile_max_bytes (1000 bytes)" in refused.stderr
    finally:
        cluster.admin("settings", "set", "getfile_max_bytes", str(3 * 1024**3))
    with cluster.api() as api:
        rows = api.get("/api/v1/downloads").json()
    assert not any(r["path"] in (str(over), str(sparse)) for r in rows)  # no transfer was even opened


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own: these tests kill its agent and its server."""
    running = Cluster(tmp_path_factory.mktemp("own") / "cluster").start()
    try:
        yield running
    finally:
        running.stop()


def _wait_for_progress(cluster: Cluster, path: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    with cluster.api() as api:
        while time.monotonic() < deadline:
            rows = [r for r in api.get("/api/v1/downloads").json() if r["path"] == path]
            if rows and rows[-1]["received_bytes"] >= at_least:
                return
            time.sleep(0.01)
    raise AssertionError("the transfer never got under way")


def _wait_complete(cluster: Cluster, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    with cluster.api() as api:
        while time.monotonic() < deadline:
            rows = [r for r in api.get("/api/v1/downloads").json() if r["path"] == path]
            if rows and rows[-1]["status"] in ("complete", "failed"):
                return dict(rows[-1])
            time.sleep(0.1)
    raise AssertionError("the transfer never ended")


def _start_getfile(cluster: Cluster, path: Path, cwd: Path) -> object:
    import subprocess

    from liveresponse.testing.cluster import lr_command

    line = f"getfile {quote(str(path))} -auto -output json"
    return subprocess.Popen(
        lr_command("console", cluster.device_id, "-c", line),
        env=cluster.env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_of_the_agent_mid_transfer_resumes_from_an_offset(own_cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "two hundred.bin"
    digest = random_file(source, 200 * MIB)
    console = _start_getfile(own_cluster, source, tmp_path)
    _wait_for_progress(own_cluster, str(source), 1)  # the first durable offset (64 MiB) is recorded
    own_cluster.stop_agent(signal.SIGKILL)
    time.sleep(0.5)
    own_cluster.start_agent()
    row = _wait_complete(own_cluster, str(source))
    out, err = console.communicate(timeout=120)  # type: ignore[attr-defined]
    assert row["status"] == "complete", row
    assert row["sha256"] == digest
    assert console.returncode == 0, err  # type: ignore[attr-defined]
    answer = json.loads(out)
    assert answer["sha256"] == digest
    assert answer["resumed_from"] > 0
    saved = tmp_path / "downloads" / os.uname().nodename / source.name
    assert sha256_of(saved) == digest


def test_server_restart_mid_transfer_resumes_from_an_offset(own_cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "restart.bin"
    digest = random_file(source, 200 * MIB)
    console = _start_getfile(own_cluster, source, tmp_path)
    _wait_for_progress(own_cluster, str(source), 1)  # the first durable offset (64 MiB) is recorded
    assert own_cluster.server is not None
    own_cluster.server.send_signal(signal.SIGKILL)
    own_cluster.server.wait()
    console.communicate(timeout=60)  # type: ignore[attr-defined]  # the console loses its server
    own_cluster.start_server()
    row = _wait_complete(own_cluster, str(source))
    assert row["status"] == "complete", row
    assert row["sha256"] == digest
    with own_cluster.api() as api:
        log = api.get(f"/api/v1/commands/{row['command_id']}").json()
    assert log["status"] == "completed"
    assert log["output"]["resumed_from"] > 0
    # The download stays retrievable from the CLI.
    import subprocess

    from liveresponse.testing.cluster import lr_command

    got = subprocess.run(
        lr_command("downloads", "get", str(row["id"]), "--to", str(tmp_path / "got")),
        env=own_cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert sha256_of(tmp_path / "got" / "restart.bin") == digest
