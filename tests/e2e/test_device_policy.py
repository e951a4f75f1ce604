"""The device's own policy (SPEC §11): a real agent refuses what its policy file forbids, whatever the server sends."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from liveresponse.testing.cluster import Cluster, lr_command
from tests.e2e.library_helpers import json_documents, upload


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    base = tmp_path_factory.mktemp("guarded")
    policy = base / "agent-policy.toml"
    policy.write_text(
        '# this device allows no remediation and no scripts\nforbid = ["remediation", "run", "putfile"]\n'
        "getfile_max_bytes = 1000\n"
    )
    running = Cluster(base / "cluster", agent_args=["--policy", str(policy)]).start()
    try:
        running.admin("settings", "set", "unsigned_scripts_allowed", "true")
        yield running, policy
    finally:
        running.stop()


def _refusal(policy: Path, what: str) -> str:
    return f"refused by this device's policy ({policy}): {what} is forbidden on this device"


def test_forbidden_classes_are_refused_on_the_device(guarded: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, policy = guarded
    target = tmp_path / "keep me.bin"
    target.write_bytes(b"evidence\n")
    marker = tmp_path / "script-ran"
    script = tmp_path / "policy-probe.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    upload(cluster, script, "--overwrite")
    result = cluster.console(
        f'remediate file "{target}" -auto',
        f'undo file "{target}"',
        "run policy-probe.sh",
        "putfile policy-probe.sh",
        "remediate list -output json",
    )
    assert result.returncode == 1
    assert result.stderr.count(_refusal(policy, "remediation (remediate, undo)")) == 2, result.stderr
    assert _refusal(policy, "run") in result.stderr
    assert _refusal(policy, "putfile") in result.stderr
    assert target.read_bytes() == b"evidence\n"
    assert not marker.exists()
    assert not (cluster.agent_state / "files" / "policy-probe.sh").exists()
    (listing,) = json_documents(result.stdout)
    assert listing == []  # remediate list only reads the device's records: allowed

    with cluster.api() as api:
        rows = api.get("/api/v1/log", params={"status": "failed", "limit": 50}).json()
    refused = [r for r in rows if "device's policy" in (r.get("errors") or "")]
    assert {r["command_line"].split()[0] for r in refused} >= {"remediate", "undo", "run", "putfile"}


def test_getfile_is_capped_by_the_device_policy(guarded: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, policy = guarded
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(b"L" * 1001)
    result = cluster.console(f"getfile {small} -auto -output json", f"getfile {large} -auto", cwd=tmp_path)
    assert result.returncode == 1
    (row,) = [d for d in json_documents(result.stdout) if isinstance(d, dict) and "download_id" in d]
    assert row["sha256"] == hashlib.sha256(b"s" * 1000).hexdigest()
    assert (
        f"{large} is 1001 bytes, over the getfile_max_bytes of this device's policy ({policy}) (1000 bytes)"
        in result.stderr
    )


def test_policy_changes_apply_without_a_restart(guarded: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, policy = guarded
    original = policy.read_text()
    note = tmp_path / "policy-note.txt"
    note.write_bytes(b"note\n")
    upload(cluster, note, "--overwrite")
    try:
        policy.write_text('forbid = ["remediation", "run"]\n')
        stat = policy.stat()
        os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        allowed = cluster.console("putfile policy-note.txt -overwrite -output json")
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["sha256"] == hashlib.sha256(b"note\n").hexdigest()

        policy.write_text("forbid = [\n")  # broken: the agent fails closed
        os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
        closed = cluster.console("dir /")
        assert closed.returncode == 1
        assert f"device policy {policy} is not valid TOML" in closed.stderr
    finally:
        policy.write_text(original)
        os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3 * 10**9))


def test_an_unusable_policy_stops_the_agent_at_start(guarded: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, _ = guarded
    bad = tmp_path / "bad.toml"
    bad.write_text('forbid = ["reboot"]\n')
    for policy in (bad, tmp_path / "missing.toml"):
        started = subprocess.run(
            lr_command("agent", "run", "--state", str(cluster.agent_state), "--policy", str(policy)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert started.returncode == 2
        assert f"device policy {policy}" in started.stderr
        assert "the agent does not start with an unusable policy" in started.stderr
        assert "Traceback" not in started.stderr
