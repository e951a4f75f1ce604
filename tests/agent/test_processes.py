"""processes against real child processes started by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from liveresponse.agent.commands import processes
from liveresponse.agent.commands.context import Cancelled, CommandContext
from liveresponse.protocol.errors import NotFound

SLEEP_CODE = "import time; time.sleep(60)"
READY_THEN_SLEEP_CODE = "import sys, time; print('ready', flush=True); time.sleep(60)"


def listing(args: dict[str, object] | None = None, ctx: CommandContext | None = None) -> list[dict[str, object]]:
    return list(processes.run(ctx or CommandContext(), args or {}))


def one(pid: int) -> dict[str, object]:
    (row,) = listing({"pid": pid})
    return row


def wait_until_asleep(pid: int, timeout_s: float = 10.0) -> None:
    """Until the child has finished exec and sleeps: right after Popen the kernel may still be
    building its new command line, and on a busy machine it may still be runnable."""
    deadline = time.monotonic() + timeout_s
    child = psutil.Process(pid)
    while not (child.cmdline() and child.status() == psutil.STATUS_SLEEPING):
        assert time.monotonic() < deadline, f"process {pid} did not settle"
        time.sleep(0.01)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", READY_THEN_SLEEP_CODE], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"  # started and settled, so its memory is stable
    wait_until_asleep(child.pid)
    yield child
    child.stdout.close()
    child.kill()
    child.wait()


@pytest.fixture
def long_named_sleeper(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    # The kernel keeps 15 bytes of this name in comm; the full name must still be shown.
    binary = tmp_path / "a-very-long-process-name-sleep"
    shutil.copy("/bin/sleep", binary)
    child = subprocess.Popen([str(binary), "60"])
    yield child, binary
    child.kill()
    child.wait()


def test_a_1500_argument_command_line_comes_back_whole() -> None:
    arguments: list[bytes] = []
    for index in range(1500):
        variants = (
            f"plain{index}".encode(),
            f"with space {index}".encode(),
            f"ünïcödé-{index}-日本".encode(),
            f"quote'\"{index}".encode(),
            f"back\\slash{index}".encode(),
            f"-dash{index}".encode(),
            b"",
            b"bad\xff" + str(index).encode(),
        )
        arguments.append(variants[index % len(variants)])
    command = [os.fsencode(sys.executable), b"-c", SLEEP_CODE.encode(), *arguments]
    child = subprocess.Popen(command)
    try:
        wait_until_asleep(child.pid)
        row = one(child.pid)
        assert row["cmdline"] == [sys.executable, "-c", SLEEP_CODE, *(_shown(argument) for argument in arguments)]
        assert len(row["cmdline"]) == 1503
        assert "bad\\xff7" in row["cmdline"]
    finally:
        child.kill()
        child.wait()


def _shown(argument: bytes) -> str:
    if argument.startswith(b"bad\xff"):
        return "bad\\xff" + argument[4:].decode()  # the one non-UTF-8 byte, escaped
    return argument.decode()


def test_row_fields_of_one_process(sleeper: subprocess.Popen[bytes]) -> None:
    row = one(sleeper.pid)
    reference = psutil.Process(sleeper.pid)
    assert row["pid"] == sleeper.pid
    assert row["ppid"] == os.getpid()
    assert row["user"] == reference.username()
    assert row["state"] == "sleeping"
    assert row["exe"] == os.path.realpath(sys.executable)
    assert row["exe_deleted"] is False
    assert row["name"] == os.path.basename(os.path.realpath(sys.executable))[: len(str(row["name"]))]
    started = datetime.strptime(str(row["started"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(started.timestamp() - reference.create_time()) < 1.0
    assert abs(started.timestamp() - time.time()) < 30
    assert row["rss"] == reference.memory_info().rss
    assert row["threads"] == reference.num_threads()
    assert isinstance(row["cpu_percent"], float) and row["cpu_percent"] >= 0.0


def test_full_name_beyond_the_15_byte_comm(long_named_sleeper: tuple[subprocess.Popen[bytes], Path]) -> None:
    child, binary = long_named_sleeper
    assert psutil.Process(child.pid).name().startswith("a-very-long-pro")
    row = one(child.pid)
    assert row["name"] == "a-very-long-process-name-sleep"
    assert row["exe"] == str(binary)


def test_name_filter_is_case_insensitive_exact_or_glob(
    long_named_sleeper: tuple[subprocess.Popen[bytes], Path],
) -> None:
    child, _ = long_named_sleeper
    for pattern in ("A-VERY-LONG-process-name-SLEEP", "a-very-long-*", "*NAME-sleep"):
        assert [row["pid"] for row in listing({"name": pattern})] == [child.pid]
    assert listing({"name": "a-very-long-pro"}) == []  # the truncated comm is not the name


def test_a_deleted_executable_is_flagged(long_named_sleeper: tuple[subprocess.Popen[bytes], Path]) -> None:
    child, binary = long_named_sleeper
    time.sleep(0.05)
    binary.unlink()
    row = one(child.pid)
    assert row["exe"] == str(binary)
    assert row["exe_deleted"] is True


def test_a_zombie_is_a_complete_row() -> None:
    child = subprocess.Popen(["/bin/true"])
    deadline = time.monotonic() + 5
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        row = one(child.pid)
        assert row["state"] == "zombie"
        assert row["name"] == "true"
        assert row["cmdline"] == []
    finally:
        child.wait()


def test_listing_contains_us_and_children() -> None:
    rows = listing()
    by_pid = {row["pid"]: row for row in rows}
    assert os.getpid() in by_pid
    assert by_pid[1]["ppid"] == 0
    assert [row["pid"] for row in rows] == sorted(by_pid)


def test_unknown_pid_is_not_found() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(NotFound, match=f"^no process with pid {pid_max + 1}$"):
        listing({"pid": pid_max + 1})


def test_processes_exiting_during_the_listing_leave_no_partial_rows() -> None:
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            children = [subprocess.Popen(["/bin/sleep", "0.01"]) for _ in range(10)]
            for child in children[::2]:
                child.kill()
            for child in children:
                child.wait()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(40):
            for row in listing():
                assert isinstance(row["pid"], int) and row["pid"] > 0
                assert isinstance(row["name"], str) and row["name"]
                for field in ("ppid", "user", "state", "cmdline", "started", "cpu_percent", "rss", "threads"):
                    assert row[field] is not None, (field, row)
    finally:
        stop.set()
        churner.join()


def test_cancel_from_another_thread_stops_the_listing() -> None:
    ctx = CommandContext()
    rows = processes.run(ctx, {})
    next(rows)
    canceller = threading.Thread(target=ctx.cancel_event.set)
    canceller.start()
    canceller.join()
    with pytest.raises(Cancelled):
        next(rows)


def test_cancel_before_start() -> None:
    ctx = CommandContext()
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        listing(ctx=ctx)
