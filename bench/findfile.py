"""Benchmark: our findfile handler against find(1) over / for a name that does not exist.

Anchor: ``find / -xdev -name NAME``. -xdev keeps find on the root file system,
while findfile searches every *local* file system. For a like-for-like figure we
run our handler restricted the same way: ``mounts.plan_search`` is swapped for
``mounts.plan_one_file_system``, which skips every mount point below the root,
exactly what -xdev does. Everything else is the real handler: argument
handling, the walk, row building. (We do not run the unrestricted walk here:
on a sandbox it would wander into tooling mounts that are not ours to read.)

Warm cache: each side runs once untimed, then the median of 5 runs is taken.
Target: ours <= 1.2x find.

Run: .venv/bin/python bench/findfile.py [NAME]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from liveresponse.agent.commands import findfile
from liveresponse.agent.commands.context import CommandContext
from liveresponse.agent.platform.linux import mounts

RUNS = 5
TARGET_RATIO = 1.2


def median_seconds(action: Callable[[], object]) -> float:
    action()  # warm the dentry and inode caches
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "no-such-file-liveresponse-bench"
    mounts.plan_search = mounts.plan_one_file_system  # the -xdev restriction, see the docstring

    def ours() -> object:
        return sum(1 for _ in findfile.run(CommandContext(), {"name": name, "path": "/"}))

    def anchor() -> object:
        command = ["find", "/", "-xdev", "-name", name]
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    anchor_s = median_seconds(anchor)
    ours_s = median_seconds(ours)
    ratio = ours_s / anchor_s
    print(f"find / -xdev -name {name}: {anchor_s:.3f} s (median of {RUNS}, warm)")
    print(f"findfile {name} -path / (same file system): {ours_s:.3f} s (median of {RUNS}, warm)")
    print(f"ratio ours/find: {ratio:.2f} (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
