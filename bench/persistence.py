"""bench/persistence: the persistence command on this machine (root "/"), direct and through the real stack.

Prints, each as the median wall time of a few runs with its row count and the
target (under 1 s):

* the handler called directly, in this process;
* the same command as an analyst runs it: the real ``lr console DEVICE -c
  "persistence -output json"`` against a real ``lr server`` and ``lr agent run``
  on loopback (``liveresponse.testing.cluster``), so signing, the agent's
  worker thread, row batching, the store and the console's JSON rendering are
  all in the figure, and so is starting the console process itself (``cd``
  through the same path is printed as that floor).

Beside them an anchor measured in the same run (SPEC §13): a walk of /etc that
lstat()s every entry, a file-system workload of the same kind, so a slow machine
shows in every figure and the ratios stay comparable.

    .venv/bin/python bench/persistence.py [--runs N] [--direct-only]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from liveresponse.agent.commands import persistence
from liveresponse.agent.commands.context import CommandContext
from liveresponse.testing.cluster import Cluster

TARGET_S = 1.0
LINE = "persistence -output json"


def time_direct() -> tuple[float, int]:
    started = time.perf_counter()
    rows = list(persistence.run(CommandContext(root="/"), {}))
    return time.perf_counter() - started, len(rows)


def through_stack(cluster: Cluster, line: str = LINE) -> Callable[[], tuple[float, int]]:
    def timed() -> tuple[float, int]:
        started = time.perf_counter()
        result = cluster.console(line)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{line} failed through the console: {result.stderr}")
        shown = json.loads(result.stdout)
        return elapsed, len(shown) if isinstance(shown, list) else 1

    return timed


def time_anchor() -> float:
    started = time.perf_counter()
    for directory, subdirs, files in os.walk("/etc"):
        for name in subdirs + files:
            with contextlib.suppress(OSError):
                os.lstat(os.path.join(directory, name))
    return time.perf_counter() - started


def report(label: str, measured: list[tuple[float, int]], anchor_s: float) -> None:
    wall = statistics.median(seconds for seconds, _ in measured)
    rows = measured[-1][1]
    verdict = "ok" if wall < TARGET_S else "OVER TARGET"
    print(
        f"{label}: median {wall * 1000:.1f} ms over {len(measured)} runs, {rows} rows "
        f"(target < {TARGET_S:.0f} s: {verdict}); ratio to anchor {wall / anchor_s:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--direct-only", action="store_true", help="skip the real-stack measurement")
    options = parser.parse_args()
    runs = options.runs
    anchor = statistics.median(time_anchor() for _ in range(runs))
    print(f"anchor (walk + lstat of /etc): median {anchor * 1000:.1f} ms over {runs} runs")
    report("persistence, handler called directly", [time_direct() for _ in range(runs)], anchor)
    if options.direct_only:
        return
    with tempfile.TemporaryDirectory(prefix="lr-bench-") as base:
        cluster = Cluster(Path(base)).start()
        try:
            timed = through_stack(cluster)
            timed()  # untimed: the first command opens the session
            report(f"{LINE}, real console -> server -> agent", [timed() for _ in range(runs)], anchor)
            # The floor of that path: a console process and one round trip for a command that does nothing.
            floor = through_stack(cluster, "cd -output json")
            report("cd -output json (the floor of the same path)", [floor() for _ in range(runs)], anchor)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
