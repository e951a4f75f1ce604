"""Benchmark: our processes handler against ps(1) listing the same fields.

Anchor: ``ps -eo pid,ppid,user,stat,lstart,rss,args`` run as a subprocess from
this script (so its time includes starting ps, as an analyst's ps would).
Ours: the real handler, rows materialised and serialised with json.dumps, as
the console's ``-output json`` needs them.

Median of 20 runs each after one untimed run. Target: ours <= 1.5x ps.

Run: .venv/bin/python bench/processes.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable

from liveresponse.agent.commands import processes
from liveresponse.agent.commands.context import CommandContext

RUNS = 20
TARGET_RATIO = 1.5
PS_COMMAND = ["ps", "-eo", "pid,ppid,user,stat,lstart,rss,args"]


def median_seconds(action: Callable[[], object]) -> float:
    action()
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    def ours() -> object:
        return json.dumps(list(processes.run(CommandContext(), {})))

    def anchor() -> object:
        return subprocess.run(PS_COMMAND, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)

    count = len(list(processes.run(CommandContext(), {})))
    anchor_s = median_seconds(anchor)
    ours_s = median_seconds(ours)
    print(f"{' '.join(PS_COMMAND)}: {anchor_s * 1000:.1f} ms (median of {RUNS})")
    print(f"processes -output json ({count} processes): {ours_s * 1000:.1f} ms (median of {RUNS})")
    print(f"ratio ours/ps: {ours_s / anchor_s:.2f} (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
