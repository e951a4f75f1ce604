"""bench/persistence: the persistence command on this machine (root "/").

Prints the median wall time of a few runs, the row count and the target
(under 1 s), beside an anchor measured in the same run (SPEC §13): a walk of
/etc that lstat()s every entry, a file-system workload of the same kind, so a
slow machine shows in both figures and the ratio stays comparable.

    .venv/bin/python bench/persistence.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from liveresponse.agent.commands import persistence
from liveresponse.agent.commands.context import CommandContext

TARGET_S = 1.0


def time_persistence() -> tuple[float, int]:
    started = time.perf_counter()
    rows = list(persistence.run(CommandContext(root="/"), {}))
    return time.perf_counter() - started, len(rows)


def time_anchor() -> float:
    started = time.perf_counter()
    for directory, subdirs, files in os.walk("/etc"):
        for name in subdirs + files:
            with contextlib.suppress(OSError):
                os.lstat(os.path.join(directory, name))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    measured = [time_persistence() for _ in range(runs)]
    anchor = statistics.median(time_anchor() for _ in range(runs))
    wall = statistics.median(seconds for seconds, _ in measured)
    rows = measured[-1][1]
    verdict = "ok" if wall < TARGET_S else "OVER TARGET"
    print(
        f"persistence: median {wall * 1000:.1f} ms over {runs} runs, {rows} rows (target < {TARGET_S:.0f} s: {verdict})"
    )
    print(f"anchor (walk + lstat of /etc): median {anchor * 1000:.1f} ms; ratio persistence/anchor {wall / anchor:.1f}")


if __name__ == "__main__":
    main()
