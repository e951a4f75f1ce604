"""fileinfo describes kernel-made files without reading them forever (a /proc file reads for minutes)."""

from __future__ import annotations

import time

from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.commands.fileinfo import run
from liveresponse.agent.platform.linux.mounts import pseudo_file_system_of


def test_proc_and_sys_files_are_described_not_hashed() -> None:
    for path, kind in (("/proc/self/pagemap", "proc"), ("/sys/kernel/notes", "sysfs")):
        started = time.monotonic()
        row = run(CommandContext(), {"path": path})
        assert time.monotonic() - started < 5
        assert row["path"] == path and row["type"] == "file"
        assert (row["md5"], row["sha1"], row["sha256"]) == (None, None, None)
        assert row["hash_skipped_reason"] == (
            f"on a {kind} pseudo file system: made up by the kernel as it is read, not hashed"
        )


def test_the_innermost_mount_decides() -> None:
    assert pseudo_file_system_of(b"/proc") == "proc"
    assert pseudo_file_system_of(b"/proc/self/status") == "proc"
    assert pseudo_file_system_of(b"/") is None
    assert pseudo_file_system_of(b"/etc/hostname") is None
