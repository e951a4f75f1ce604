"""remediate's prerequisite, decided on the server before anything reaches the device (SPEC §4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from liveresponse.testing.cluster import Cluster, lr_command


def test_remediate_needs_the_entity_listed_first(cluster: Cluster, tmp_path: Path) -> None:
    target = tmp_path / "listed later.bin"
    target.write_bytes(b"not yet looked at\n")
    result = cluster.console(
        f'remediate file "{target}"',
        "remediate process abc",
        "remediate service",
        "remediate process 4194304 -auto",  # above the largest pid Linux allows
        "remediate service lr-no-such-service-7f3a -auto",
        "remediate scheduledtask /etc/cron.d/lr-no-such-task:1",
    )
    assert result.returncode == 1
    err = result.stderr
    assert (
        f"remediate needs fileinfo of {target} first in this session: run 'fileinfo \"{target}\"', or add -auto" in err
    )
    assert "remediate process takes a process id, not 'abc'" in err
    assert "remediate service needs the entity's id" in err
    assert "processes 4194304 (run by -auto) failed" in err
    assert 'services -name "lr-no-such-service-7f3a" (run by -auto) did not list lr-no-such-service-7f3a' in err
    assert "remediate needs scheduledtasks of /etc/cron.d/lr-no-such-task:1 first in this session" in err
    assert target.read_bytes() == b"not yet looked at\n"

    with cluster.api() as api:
        log = api.get("/api/v1/log", params={"type": "remediate", "limit": 100_000}).json()
    refused = [
        r
        for r in log
        if r["status"] == "failed"
        and "first in this session" in (r["errors"] or "")
        and (str(target) in r["command_line"] or "lr-no-such-task" in r["command_line"])
    ]
    assert len(refused) == 2
    agent_log = (cluster.base / "agent.log").read_text(errors="replace")
    assert not any(r["id"] in agent_log for r in refused)  # never dispatched


def test_a_file_changed_since_its_fileinfo_is_not_remediated(cluster: Cluster, tmp_path: Path) -> None:
    target = tmp_path / "changes.bin"
    target.write_bytes(b"first\n")
    with cluster.api() as api:
        opened = api.post("/api/v1/sessions", json={"device": cluster.device_id})
        assert opened.status_code == 200, opened.text
        session = opened.json()["id"]

        def run(line: str) -> dict[str, Any]:
            answer = api.post(f"/api/v1/sessions/{session}/commands", json={"command_line": line, "wait_s": 30})
            body: dict[str, Any] = answer.json()
            return body

        try:
            assert run(f"fileinfo {target}")["status"] == "completed"
            target.write_bytes(b"second, written after the listing\n")
            refused = run(f"remediate file {target}")
            assert refused["status"] == "failed"
            assert "changed since" in refused["errors"], refused
            assert target.read_bytes() == b"second, written after the listing\n"  # nothing done
            assert run(f"fileinfo {target}")["status"] == "completed"
            done = run(f"remediate file {target}")
            assert done["status"] == "completed", done
            assert not target.exists()
            assert run(f"undo file {target}")["status"] == "completed"
            assert target.read_bytes() == b"second, written after the listing\n"
        finally:
            api.delete(f"/api/v1/sessions/{session}")


def test_remediations_are_audited(cluster: Cluster, tmp_path: Path) -> None:
    target = tmp_path / "audited.bin"
    target.write_bytes(b"audit me\n")
    result = cluster.console(f"remediate file {target} -auto -output json", f"undo file {target} -output json")
    assert result.returncode == 0, result.stderr
    audit = subprocess.run(
        lr_command("audit", "list", "--type", "remediation", "--output", "json"),
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stderr
    events = [e for e in json.loads(audit.stdout) if str(target) in json.dumps(e)]
    kinds = sorted(e["event"] for e in events)
    assert kinds == ["remediation.remediate", "remediation.undo"], events
    assert all(e["outcome"] == "success" and e["actor"] == "alice" for e in events)
    assert {e["detail"]["remediation_id"] for e in events} and len({e["detail"]["remediation_id"] for e in events}) == 1
