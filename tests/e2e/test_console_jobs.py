"""Background jobs in the console: &, jobs, fg, status; the non-interactive console waits for them (SPEC §4)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from liveresponse.testing.cluster import Cluster


def test_background_job_is_waited_for_and_reported(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "target.log").write_text("t")
    result = cluster.console(
        f'findfile target.log -path "{tmp_path}" -output json &',
        "jobs -output json",
        "cd /",
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"\[(cmd_[0-9a-f]+)\] running in the background", result.stdout)
    assert match, result.stdout
    command_id = match.group(1)
    # the jobs listing names it; the findfile rows come at the end, once the console waited for it
    jobs_start = result.stdout.index("[", match.end())
    jobs, end = json.JSONDecoder().raw_decode(result.stdout, jobs_start)
    assert [j["id"] for j in jobs] == [command_id]
    assert jobs[0]["command_line"].startswith("findfile target.log")
    rows = json.loads(result.stdout[result.stdout.index("[", result.stdout.index("cwd", end)) :])
    assert [r["path"] for r in rows] == [f"{tmp_path}/a/b/target.log"]
    with cluster.api() as api:
        record = api.get(f"/api/v1/commands/{command_id}").json()
    assert record["status"] == "completed"


def test_status_of_a_finished_command(cluster: Cluster) -> None:
    first = cluster.console("cd /tmp &", "jobs -output json")
    assert first.returncode == 0, first.stderr
    command_id = re.search(r"\[(cmd_[0-9a-f]+)\]", first.stdout).group(1)  # type: ignore[union-attr]
    status = cluster.console(f"status {command_id} -output json")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["id"] == command_id and record["status"] == "completed"
    assert record["output"] == {"cwd": "/tmp"}


def test_fg_of_an_unknown_job_is_an_error(cluster: Cluster) -> None:
    result = cluster.console("fg cmd_0000000000000000")
    assert result.returncode == 1
    assert "fg: no job cmd_0000000000000000" in result.stderr
