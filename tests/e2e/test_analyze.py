"""analyze on a real agent (SPEC §5), with intel added by the real ``lr admin`` while the server runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import json_documents

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"  # two halves: see heuristics.py


def analyze(cluster: Cluster, *lines: str, user: str = "alice") -> list[dict[str, object]]:
    result = cluster.console(*[f"{line} -output json" for line in lines], user=user)
    assert result.returncode == 0, result.stderr
    docs = json_documents(result.stdout)
    assert len(docs) == len(lines) and all(isinstance(d, dict) for d in docs)
    return docs  # type: ignore[return-value]


def audit_events(cluster: Cluster, prefix: str) -> list[tuple[str, dict[str, object]]]:
    db = sqlite3.connect(cluster.data / "liveresponse.db")
    try:
        rows = db.execute("SELECT event, detail_json FROM audit WHERE event LIKE ? ORDER BY seq", (f"{prefix}%",))
        return [(event, json.loads(detail)) for event, detail in rows]
    finally:
        db.close()


@pytest.fixture
def in_tmp() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="lr-e2e-analyze-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_eicar_is_malicious_and_plain_text_clean(cluster: Cluster, tmp_path: Path) -> None:
    eicar = tmp_path / "eicar.com"
    eicar.write_bytes(EICAR)
    text = tmp_path / "notes.txt"
    text.write_text("quarterly notes\n")
    found, clean = analyze(cluster, f'analyze file "{eicar}"', f'analyze file "{text}"')
    assert found["verdict"] == "malicious"
    assert found["findings"] == [
        {"engine": "heuristics", "result": "malicious", "reason": "the EICAR anti-malware test file", "rule": "eicar"}
    ]
    assert found["type"] == "file" and found["path"] == str(eicar) and found["size"] == 68
    assert found["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert clean["verdict"] == "clean" and clean["findings"] == []
    assert clean["sha256"] == hashlib.sha256(b"quarterly notes\n").hexdigest()
    engines = clean["engines"]
    assert isinstance(engines, dict) and engines["heuristics"] == "eicar, setuid, world-writable, hidden"

    table = cluster.console(f'analyze file "{eicar}"')  # the default table shows the verdict too
    assert table.returncode == 0, table.stderr
    assert "malicious" in table.stdout and "eicar" in table.stdout


def test_yara_rules_added_while_the_server_runs(cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.server is not None
    server_pid = cluster.server.pid
    marker = f"lr-e2e-{uuid.uuid4().hex[:12]}"
    rule_file = tmp_path / "e2e-analyze.yar"
    rule_file.write_text(
        'rule E2eMarker\n{\n    strings:\n        $m = "' + marker + '"\n    condition:\n        $m\n}\n'
    )
    sample = tmp_path / "payload.bin"
    sample.write_bytes(os.urandom(1000) + marker.encode() + os.urandom(24))
    (before,) = analyze(cluster, f'analyze file "{sample}"')
    assert before["verdict"] == "clean"

    added = cluster.admin("rules", "add", str(rule_file))
    assert added.stdout.startswith("rule set e2e-analyze.yar added: 1 rule, sha256 ")
    try:
        (after,) = analyze(cluster, f'analyze file "{sample}"')
        assert after["verdict"] == "malicious"
        assert after["findings"] == [
            {
                "engine": "yara",
                "result": "malicious",
                "reason": "YARA rule E2eMarker matched (strings $m at offset 1000)",
                "rule": "e2e-analyze.yar:E2eMarker",
            }
        ]
        listed = cluster.admin("rules", "list", "--output", "json")
        (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "e2e-analyze.yar"]
        assert row["rules"] == 1 and row["sha256"] == hashlib.sha256(rule_file.read_bytes()).hexdigest()
        assert row["created_by"] == "admin-cli"
    finally:
        deleted = cluster.admin("rules", "delete", "e2e-analyze.yar")
    assert deleted.stdout == "rule set e2e-analyze.yar deleted (1 rule)\n"
    (gone,) = analyze(cluster, f'analyze file "{sample}"')
    assert gone["verdict"] == "clean" and gone["findings"] == []
    assert cluster.server.pid == server_pid and cluster.server.poll() is None  # no restart
    events = [(e, d["name"]) for e, d in audit_events(cluster, "rules.") if d["name"] == "e2e-analyze.yar"]
    assert events[-2:] == [("rules.add", "e2e-analyze.yar"), ("rules.delete", "e2e-analyze.yar")]


def test_a_rule_file_that_does_not_compile_is_refused_and_nothing_stored(cluster: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "e2e-bad.yar"
    bad.write_text('rule Bad\n{\n    strings:\n        $a = "x"\n    condition:\n        $a and nonsense\n}\n')
    refused = cluster.admin("rules", "add", str(bad), check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        'lr admin: e2e-bad.yar: the YARA rules do not compile: line 6: undefined identifier "nonsense"; '
        "nothing was stored\n"
    )
    listed = cluster.admin("rules", "list", "--output", "json")
    assert "e2e-bad.yar" not in {r["name"] for r in json.loads(listed.stdout)}
    includes = tmp_path / "e2e-include.yar"
    includes.write_text('include "/etc/passwd"\nrule X { condition: true }\n')
    refused = cluster.admin("rules", "add", str(includes), check=False)
    assert refused.returncode == 1 and "line 1: includes are disabled" in refused.stderr


def test_an_indicator_added_while_the_server_runs(cluster: Cluster, tmp_path: Path) -> None:
    sample = tmp_path / "dropper.bin"
    sample.write_bytes(os.urandom(4096))
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    (before,) = analyze(cluster, f'analyze file "{sample}"')
    assert before["verdict"] == "clean"

    added = cluster.admin("ioc", "add", digest.upper(), "--verdict", "malicious", "--title", "test dropper")
    assert added.stdout == f"indicator {digest} added: malicious, test dropper\n"
    try:
        first, second = analyze(cluster, f'analyze file "{sample}"', f'analyze file "{sample}"')
        expected = {
            "engine": "hash",
            "result": "malicious",
            "reason": f"sha256 {digest} is on the tenant indicator list: test dropper",
            "rule": digest,
        }
        assert first["verdict"] == "malicious" and first["findings"] == [expected]
        assert second["findings"] == [expected]
        first_intel, second_intel = first["intel"], second["intel"]
        assert isinstance(first_intel, dict) and isinstance(second_intel, dict)
        assert first_intel["from"] == "server"  # a new bundle: fetched once
        assert second_intel == {"sha256": first_intel["sha256"], "from": "memory"}  # then cached

        updated = cluster.admin("ioc", "add", digest, "--verdict", "suspicious", "--title", "test dropper, maybe")
        assert updated.stdout == f"indicator {digest} updated: suspicious, test dropper, maybe\n"
        (again,) = analyze(cluster, f'analyze file "{sample}"')
        assert again["verdict"] == "suspicious"
        listed = cluster.admin("ioc", "list", "--output", "json")
        (row,) = [r for r in json.loads(listed.stdout) if r["sha256"] == digest]
        assert row["verdict"] == "suspicious" and row["title"] == "test dropper, maybe"
    finally:
        cluster.admin("ioc", "delete", digest)
    (after,) = analyze(cluster, f'analyze file "{sample}"')
    assert after["verdict"] == "clean"
    events = [e for e, d in audit_events(cluster, "ioc.") if d["sha256"] == digest]
    assert events == ["ioc.add", "ioc.add", "ioc.delete"]
    refused = cluster.admin("ioc", "add", "abc", "--verdict", "malicious", "--title", "t", check=False)
    assert refused.returncode == 1 and refused.stderr == "lr admin: 'abc' is not a sha256: 64 hexadecimal digits\n"


def test_a_process_running_from_a_deleted_file_is_suspicious(cluster: Cluster, in_tmp: Path) -> None:
    image = in_tmp / "sleeper"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", image)
    proc = subprocess.Popen([str(image), "300"])
    try:
        deadline = time.monotonic() + 5
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(str(image).encode()):
            assert time.monotonic() < deadline, "the copy of sleep did not start"
            time.sleep(0.01)
        image.unlink()
        (result,) = analyze(cluster, f"analyze process {proc.pid}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert result["verdict"] == "suspicious"
    assert result["findings"] == [
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"runs from a deleted file {image} (deleted)",
            "rule": "deleted-image",
        },
        {
            "engine": "heuristics",
            "result": "suspicious",
            "reason": f"runs from {image}, below the world-writable directory /tmp (mode 1777)",
            "rule": "world-writable",
        },
    ]
    assert result["pid"] == proc.pid and result["path"] == str(image) and result["exe_deleted"] is True
    assert result["cmdline"] == [str(image), "300"]


def test_analyze_errors(cluster: Cluster, tmp_path: Path) -> None:
    result = cluster.console(
        "analyze process 999999999", "analyze process abc", f'analyze file "{tmp_path / "absent"}"'
    )
    assert result.returncode == 1
    assert "no process with pid 999999999" in result.stderr
    assert "analyze process takes a process id, a positive number, not 'abc'" in result.stderr
    assert f"no such file: {tmp_path / 'absent'}" in result.stderr
    denied = cluster.console(f'analyze file "{tmp_path}"', user="rita")  # a responder: basic tier only
    assert denied.returncode == 1 and "needs the permission live_response.advanced" in denied.stderr
