"""processes through the real stack: whole command lines, exiting processes left out."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from liveresponse.testing.cluster import Cluster


def test_a_1500_argument_command_line_comes_back_whole(cluster: Cluster) -> None:
    args = [f"arg {i} ü \"q\" 'x' \\ ;|&$" if i % 3 else f"--flag-{i}={'z' * (i % 50)}" for i in range(1500)]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args])
    try:
        time.sleep(0.3)
        result = cluster.console(f"processes {child.pid} -output json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert len(rows) == 1
        row = rows[0]
        assert row["pid"] == child.pid
        assert row["ppid"] == __import__("os").getpid()
        assert row["cmdline"] == [sys.executable, "-c", "import time; time.sleep(120)", *args]
        assert row["name"].startswith("python")
    finally:
        child.kill()
        child.wait()


def test_processes_exiting_during_the_listing_are_left_out(cluster: Cluster) -> None:
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            procs = [subprocess.Popen(["true"]) for _ in range(20)]
            for p in procs:
                p.wait()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(3):
            result = cluster.console("processes -output json")
            assert result.returncode == 0, result.stderr
            rows = json.loads(result.stdout)
            assert rows, "no processes listed"
            for row in rows:
                assert isinstance(row["pid"], int) and row["pid"] > 0
                assert row["name"], row
                assert isinstance(row["cmdline"], list)
    finally:
        stop.set()
        thread.join()


def test_unknown_pid_is_an_error(cluster: Cluster) -> None:
    result = cluster.console("processes 999999999")
    assert result.returncode == 1
    assert "999999999" in result.stderr


def test_processes_name_filter(cluster: Cluster) -> None:
    child = subprocess.Popen(["sleep", "77.5"])
    try:
        result = cluster.console("process -name SLEEP -output json")
        assert result.returncode == 0, result.stderr
        pids = [r["pid"] for r in json.loads(result.stdout)]
        assert child.pid in pids
    finally:
        child.kill()
        child.wait()
